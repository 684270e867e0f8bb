"""`edgedistill check CURRENT --baseline BASELINE`: the CI regression gate."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .main import cli


class _JunitOnUsageError(click.Command):
    """A usage error (a mistyped flag in the CI file) is an exit 2 too: the CI page still gets its JUnit."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        given = list(args)  # click consumes `args` as it parses
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            args = given
            junit = next((a.split("=", 1)[1] for a in args if a.startswith("--junit=")), None) or next(
                (args[i + 1] for i, a in enumerate(args[:-1]) if a == "--junit"), None)
            if junit:
                _junit_error(Path(junit), f"usage: {exc.format_message()}", "bad input")
            raise


@cli.command(cls=_JunitOnUsageError)
@click.argument("current", type=click.Path(path_type=Path))
@click.option("--baseline", required=True, type=click.Path(path_type=Path),
              help="the baseline run's report.json (its bundle/ beside it)")
@click.option("--policy", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="a YAML file the CI owns: `gates:` tolerances and `strict:`; wins over the baseline's recipe")
@click.option("--strict/--no-strict", default=None,
              help="fail when a latency gate cannot be measured on this machine (default: the policy's, else off)")
@click.option("--junit", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="also write JUnit XML here (for every exit code)")
@click.option("--accuracy-drop", type=float, default=None, help="override gates.accuracy_drop")
@click.option("--size-growth", type=float, default=None, help="override gates.size_growth (0.05 = +5 %)")
@click.option("--latency-growth", type=float, default=None, help="override gates.latency_growth (0.10 = +10 %)")
@click.option("--min-metric", type=float, default=None, help="override gates.min_metric")
@click.option("--runs", type=int, default=300, show_default=True, help="runs per artifact in the latency re-profile")
@click.option("--rounds", type=int, default=3, show_default=True,
              help="rounds of fresh worker processes the runs are split over (one process can be 10-25%% off)")
@click.option("--allow-different-task", is_flag=True,
              help="compare reports of different tasks or metrics anyway (refused by default)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document and nothing else")
def check(current: Path, baseline: Path, policy: Path | None, strict: bool | None, junit: Path | None,
          accuracy_drop: float | None, size_growth: float | None, latency_growth: float | None,
          min_metric: float | None, runs: int, rounds: int, allow_different_task: bool, as_json: bool) -> None:
    """Compare CURRENT against BASELINE (report.json files). Exit 0 pass, 1 regression, 2 bad input.

    Tolerances come from BASELINE's recipe, the --policy file and the flags, never from CURRENT; unset ones
    take the defaults (accuracy_drop 0.01, size_growth 0.10, latency_growth 0.10)."""
    from edgedistill import gate
    from edgedistill.errors import UserError

    if junit:  # before minutes of re-profiling: a device, FIFO or link there is refused, never replaced
        from edgedistill.io import check_output_file

        try:
            check_output_file(junit)
        except UserError as exc:
            raise UserError(exc.message, where=f"--junit {exc.where}", fix=exc.fix) from None
    try:
        if runs < 20:
            raise UserError("--runs must be at least 20", where="--runs", fix="use 300 (30 interleaved bursts)")
        if rounds < 1:
            raise UserError("--rounds must be at least 1", where="--rounds", fix="use 3 (the default)")
        from edgedistill.gate_policy import load_policy_file

        policy_file = load_policy_file(policy) if policy else None
        cur, base = gate.load_report(current, "CURRENT"), gate.load_report(baseline, "--baseline")
        rep = gate.check(cur, base, runs=runs, rounds=rounds, allow_different_task=allow_different_task,
                         policy_file=policy_file, strict=strict, overrides={
                             "accuracy_drop": accuracy_drop, "size_growth": size_growth,
                             "latency_growth": latency_growth, "min_metric": min_metric})
    except UserError as exc:  # the CI page must show why nothing was compared
        _junit_error(junit, exc.render(), "bad input")
        raise
    except Exception as exc:
        _junit_error(junit, f"internal error: {type(exc).__name__}: {exc}", "internal error")
        raise
    if junit:
        gate.write_junit(rep, junit)
    if as_json:
        click.echo(json.dumps(rep.as_dict()))
    else:
        click.echo(f"tolerances never come from CURRENT; strict mode {'on' if rep.strict else 'off'}")
        for r in rep.results:
            click.echo(r.line())
        click.echo("passed" if rep.passed else f"REGRESSION: {len(rep.failures)} gate(s) failed")
    if not rep.passed:
        raise SystemExit(1)


def _junit_error(junit: Path | None, message: str, kind: str) -> None:
    """An error test case for a check that compared nothing; a JUnit path that cannot be written must not hide
    the original error (it is reported instead)."""
    from edgedistill import gate
    from edgedistill.errors import UserError

    if junit:
        try:
            gate.write_junit_error(message, junit, kind=kind)
        except (OSError, ValueError, UserError) as exc:  # e.g. --junit names a folder: say so, keep the first error
            click.echo(f"note: could not write --junit {junit}: {exc}", err=True)
