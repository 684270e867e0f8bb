"""`data pack`: write an image folder or a text file once as a packed (Arrow) data set every run streams."""

from __future__ import annotations

import click

from .main import cli


@cli.group()
def data() -> None:
    """Prepare data sets for runs."""


@data.command("pack")
@click.argument("src", type=click.Path())
@click.argument("out", type=click.Path())
@click.option("--shard-mb", type=click.IntRange(1, 65536), default=256, show_default=True,
              help="largest Arrow shard file, in MB")
def pack_command(src: str, out: str, shard_mb: int) -> None:
    """Pack SRC (a folder of class folders of images, or a text file of one sentence a line) into OUT.

    A recipe then reads it with `data: {name: packed, path: OUT}`."""
    from edgedistill.data.packed import pack

    meta = pack(src, out, shard_mb=shard_mb)
    what = f"{meta['rows']} images in {len(meta['classes'])} classes" if meta["kind"] == "images" else f"{meta['rows']} lines"
    click.echo(f"packed {what} → {out} (use data: {{name: packed, path: {out}}})")
