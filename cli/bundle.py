"""`edgedistill verify BUNDLE`: is a shipped bundle intact and runnable?"""

from __future__ import annotations

import os
from pathlib import Path

import click

from .main import cli


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
def verify(bundle: Path) -> None:
    """Check every checksum in BUNDLE/manifest.json, then load the model and run it once. Exit 0 intact,
    1 damaged, 2 not a bundle."""
    from edgedistill.errors import UserError
    from edgedistill.report.bundle import verify_bundle

    if bundle.name == "manifest.json" and os.path.lexists(bundle) and not bundle.is_dir():
        bundle = bundle.parent
    if not os.path.lexists(bundle / "manifest.json"):  # a manifest that is a link or a FIFO is damage (exit 1)
        raise UserError("not a bundle (no manifest.json)", where=str(bundle),
                        fix="pass the bundle/ directory of a run, e.g. runs/mobile/bundle")
    ok, problems = verify_bundle(bundle)
    for p in problems:
        click.echo(f"DAMAGED: {p}")
    if not ok:
        raise SystemExit(1)
    click.echo(f"intact: {bundle}")
