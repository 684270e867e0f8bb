"""`edgedistill targets` and `edgedistill doctor`: what hardware the tool knows and what works here."""

from __future__ import annotations

import json

import click

from .main import cli


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="print one JSON document and nothing else")
def targets(as_json: bool) -> None:
    """List the built-in hardware targets, one line each, with whether this machine can run them."""
    from edgedistill.target import describe, list_targets

    rows = [describe(t) for t in list_targets()]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for r in rows:
        mark = "usable" if r["usable"] else "unavailable"
        click.echo(f"{r['name']:<16} {r['precision']:<5} {mark:<11} {r['description']}"
                   + ("" if r["usable"] else f"  [{r['reason']}]"))


@cli.command()
@click.option("--probe", is_flag=True, help="also connect to remote (ssh) targets given with --target")
@click.option("--target", "extra", multiple=True, help="also check this target YAML (repeatable)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document and nothing else")
def doctor(probe: bool, extra: tuple[str, ...], as_json: bool) -> None:
    """Which runtimes, execution providers, extras and targets are usable on this machine, and why not."""
    from edgedistill.doctor import diagnose, diagnose_parts, render_part

    if as_json:
        click.echo(json.dumps(diagnose(extra_targets=list(extra), probe_remote=probe)))
        return
    for part in diagnose_parts(extra_targets=list(extra), probe_remote=probe):
        for line in render_part(part):
            click.echo(line)
