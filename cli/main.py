"""The click application. Commands parse arguments, call the library and print; nothing else lives here.

Each command lives in its own module listed in COMMAND_MODULES; importing it registers it on `cli`.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
import traceback

import click

from edgedistill import __version__
from edgedistill.crash import EXIT_BAD_INPUT, EXIT_INTERNAL, crash_line, environment_error, write_crash_file
from edgedistill.errors import UserError

COMMAND_MODULES = ("compress", "evaluate", "profile", "hardware", "gate", "bundle")


class _Group(click.Group):
    """Gives every way a command can end exactly one exit code (see edgedistill/crash.py).

    UserError, a full disk, missing permissions and exhausted memory: a short message, exit 2. Ctrl-C: exit 2
    with how to resume. Any other exception is an internal error: exit 3 and one line pointing at the crash
    file. With --debug the traceback is printed too; the exit code stays the same."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except SystemExit as exc:
            if _raised_by_a_command(exc):
                raise
            # a library called exit() in our process (onnx-neural-compressor's autotune does): whatever its code,
            # the command did not finish, so it must not read as a pass (0) or a failed gate (1)
            _fail(crash_line(exc, write_crash_file(exc)), EXIT_INTERNAL)
        except UserError as exc:
            _fail(exc.render(), EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            _fail("interrupted. Finished stages are kept; continue with the same command plus --resume.",
                  EXIT_BAD_INPUT)
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # the reader of stdout went away: click's own handling
                raise
            _crash_or_environment(exc)
        except Exception as exc:  # (this is the one place that turns any crash into exit 3)
            _crash_or_environment(exc)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """click's own endings mapped onto the contract: usage errors 2, "Aborted!" (click's exit 1) → 2."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code if exc.exit_code != 1 else EXIT_BAD_INPUT)
        sys.exit(rv if isinstance(rv, int) else 0)


def _raised_by_a_command(exc: SystemExit) -> bool:
    """Did one of our command modules raise this SystemExit (its exit code), rather than a library?"""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame
        tb = tb.tb_next
    return last is None or str(last.f_globals.get("__name__", "")).startswith(("edgedistill.cli", "cli."))


def _fail(message: str, code: int) -> None:
    if debug_enabled():
        traceback.print_exc()
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _crash_or_environment(exc: BaseException) -> None:
    user = environment_error(exc)
    if user is not None:
        _fail(user.render(), EXIT_BAD_INPUT)
    _fail(crash_line(exc, write_crash_file(exc)), EXIT_INTERNAL)


def import_option(fn):  # (a click decorator)
    """`--import MODULE` (repeatable) for every command that reads a recipe: the only way, besides the registry
    and installed plugins, for a recipe's `MODULE:function` to name code. EDGEDISTILL_IMPORT adds more."""

    def load(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
        from edgedistill.models.registry import import_modules

        import_modules(value)

    return click.option("--import", "imports", multiple=True, metavar="MODULE", expose_value=False, callback=load,
                        help="import MODULE first, so the recipe may name MODULE:function as a model "
                             "(repeatable; also EDGEDISTILL_IMPORT=mod1,mod2)")(fn)


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
    from edgedistill import quiet, threads

    quiet.install()
    threads.apply(threads.resolve(), import_torch=False)  # compress refines it from --threads and the recipe
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
