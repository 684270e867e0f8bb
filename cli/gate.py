"""`edgedistill check CURRENT --baseline BASELINE`: the CI regression gate."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .main import cli


@cli.command()
@click.argument("current", type=click.Path(path_type=Path))
@click.option("--baseline", required=True, type=click.Path(path_type=Path), help="the baseline run's report.json")
@click.option("--junit", type=click.Path(path_type=Path, dir_okay=False), default=None, help="also write JUnit XML here")
@click.option("--accuracy-drop", type=float, default=None, help="override the recipe's gates.accuracy_drop")
@click.option("--size-growth", type=float, default=None, help="override gates.size_growth (0.05 = +5 %)")
@click.option("--latency-growth", type=float, default=None, help="override gates.latency_growth (0.10 = +10 %)")
@click.option("--min-metric", type=float, default=None, help="override gates.min_metric")
@click.option("--runs", type=int, default=300, show_default=True, help="runs per artifact in the latency re-profile")
@click.option("--rounds", type=int, default=3, show_default=True,
              help="rounds of fresh worker processes the runs are split over (one process can be 10-25%% off)")
@click.option("--allow-different-task", is_flag=True,
              help="compare reports of different tasks or metrics anyway (refused by default)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document and nothing else")
def check(current: Path, baseline: Path, junit: Path | None, accuracy_drop: float | None, size_growth: float | None,
          latency_growth: float | None, min_metric: float | None, runs: int, rounds: int, allow_different_task: bool,
          as_json: bool) -> None:
    """Compare CURRENT against BASELINE (report.json files). Exit 0 pass, 1 regression, 2 bad input."""
    from edgedistill import gate
    from edgedistill.errors import UserError

    if runs < 20:
        raise UserError("--runs must be at least 20", where="--runs", fix="use 300 (30 interleaved bursts)")
    if rounds < 1:
        raise UserError("--rounds must be at least 1", where="--rounds", fix="use 3 (the default)")
    if junit:  # before minutes of re-profiling: a device, FIFO or link there is refused, never replaced
        from edgedistill.io import check_output_file

        check_output_file(junit)
    cur, base = gate.load_report(current, "CURRENT"), gate.load_report(baseline, "--baseline")
    rep = gate.check(cur, base, runs=runs, rounds=rounds, allow_different_task=allow_different_task, overrides={
        "accuracy_drop": accuracy_drop, "size_growth": size_growth, "latency_growth": latency_growth,
        "min_metric": min_metric})
    if junit:
        gate.write_junit(rep, junit)
    if as_json:
        click.echo(json.dumps(rep.as_dict()))
    else:
        for r in rep.results:
            click.echo(r.line())
        if not rep.results:
            click.echo("no gates configured (recipe gates: accuracy_drop, size_growth, latency_growth, min_metric)")
        click.echo("passed" if rep.passed else
                   f"REGRESSION: {sum(not r.passed and not r.skipped for r in rep.results)} gate(s) failed")
    if not rep.passed:
        raise SystemExit(1)
