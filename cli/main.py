"""The click application. Commands parse arguments, call the library and print; nothing else lives here.

Each command lives in its own module listed in COMMAND_MODULES; importing it registers it on `cli`.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from edgedistill import __version__
from edgedistill.errors import UserError

COMMAND_MODULES = ("compress", "evaluate", "profile", "hardware", "gate", "bundle")


class _Group(click.Group):
    """Turns UserError and Ctrl-C into a short message and exit code 2 (a traceback only with --debug)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            if debug_enabled():
                raise
            click.echo(f"error: {exc.render()}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            click.echo("error: interrupted. Finished stages are kept; continue with the same command plus --resume.",
                       err=True)
            ctx.exit(2)


def debug_enabled() -> bool:
    return os.environ.get("EDGEDISTILL_DEBUG", "") not in ("", "0")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgedistill")
def cli() -> None:
    """edgedistill: distill, prune, quantize and export a PyTorch model for edge devices, and measure the
    shipped file (accuracy in ONNX Runtime, latency per hardware target).

    Add --debug anywhere to see full tracebacks."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"edgedistill.cli.{_name}")


def main() -> None:
    """Console entry point. `--debug` is accepted anywhere on the command line."""
    args = sys.argv[1:]
    if "--debug" in args:
        args = [a for a in args if a != "--debug"]
        os.environ["EDGEDISTILL_DEBUG"] = "1"
    cli.main(args=args, prog_name="edgedistill")


if __name__ == "__main__":
    # `python -m edgedistill.cli.main`: this file runs as __main__, but the command modules registered on the
    # `cli` of the module imported under its real name, so run that one.
    from edgedistill.cli.main import main as _main

    _main()
