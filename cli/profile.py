"""`edgedistill profile MODEL`: latency and memory of an ONNX file on one target."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgedistill.errors import UserError

from .main import cli


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", "target_name", default=None, help="built-in target name or YAML path (default: best CPU one)")
@click.option("--batch", type=int, default=None, help="batch size (default: the target's first)")
@click.option("--sequence-length", "sequence", type=int, default=None,
              help="text models: tokens per input (default: the target's first sequence length, else 1)")
@click.option("--threads", type=int, default=None, help="intra-op threads (default: the target's)")
@click.option("--runs", type=int, default=None, help="timed runs (default: the target's, 100)")
@click.option("--warmup", type=int, default=None, help="warm-up runs (default: the target's, 10)")
@click.option("--rounds", type=int, default=3, show_default=True,
              help="rounds of fresh worker processes the runs are split over (docs/profiling.md says why)")
@click.option("--time-budget", type=float, default=None, help="stop timing after this many seconds")
@click.option("--ops/--no-ops", default=True, help="per-operator breakdown from the ONNX Runtime profiler")
@click.option("--bundle-options/--default-options", default=True,
              help="time a bundle's model.onnx with the session options its manifest ships (default) or ORT's defaults")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document and nothing else")
def profile(model: Path, target_name: str | None, batch: int | None, sequence: int | None, threads: int | None,
            runs: int | None, warmup: int | None, rounds: int, time_budget: float | None, ops: bool, bundle_options: bool, as_json: bool) -> None:
    """Latency (p50/p90/p99, mean, std, cv, throughput), peak memory and top operators of MODEL."""
    from edgedistill.profile import profile_models
    from edgedistill.report.bundle import shipped_session_options
    from edgedistill.target import default_target, load_target

    if not model.is_file():
        raise UserError("model file not found", where=str(model), fix="pass the path to an exported .onnx file")
    for opt, val in (("--batch", batch), ("--sequence-length", sequence), ("--threads", threads), ("--runs", runs),
                     ("--rounds", rounds)):
        if val is not None and val < 1:
            raise UserError(f"{opt} must be at least 1", where=opt, fix=f"pass {opt} 1 or more")
    if warmup is not None and warmup < 0:
        raise UserError("--warmup cannot be negative", where="--warmup", fix="pass --warmup 0 or more")
    target = load_target(target_name) if target_name else default_target()
    options = shipped_session_options(model) if bundle_options else {}
    stats = profile_models({model.name: model}, target, batch=batch or target.batch_sizes[0], threads=threads,
                           runs=runs or target.runs, warmup=target.warmup if warmup is None else warmup,
                           rounds=rounds, time_budget_s=time_budget, op_profile_runs=20 if ops else 0,
                           sequence=sequence or (target.sequence_lengths or [None])[0],
                           model_options={model.name: options} if options else None)[model.name]
    stats["session_options"] = options
    if as_json:
        click.echo(json.dumps({"model": str(model), **stats}))
        return
    click.echo(f"{model}  on {target.name} ({stats['cpu']}{', remote ' + stats['remote'] if stats['remote'] else ''})")
    if options:
        click.echo(f"  session options from the bundle manifest: {json.dumps(options)}")
    click.echo(f"  batch {stats['batch']}{', sequence ' + str(stats['sequence']) if stats.get('sequence') else ''}, threads {stats['threads']}, {stats['runs']} runs in {stats['rounds']} round(s) after "
               f"{stats['warmup']} warm-up{' (time budget reached)' if stats['time_budget_hit'] else ''}")
    click.echo(f"  p50 {stats['p50_ms']:.3f} ms   p90 {stats['p90_ms']:.3f} ms   p99 {stats['p99_ms']:.3f} ms")
    click.echo(f"  mean {stats['mean_ms']:.3f} ms ± {stats['std_ms']:.3f} (cv {stats['cv']:.2f})   "
               f"throughput {stats['throughput_per_s']:.1f}/s")
    click.echo(f"  peak RSS {stats['peak_rss_mb']:.1f} MB (session {stats['session_rss_mb']:.1f} MB), "
               f"load {stats['load_ms']:.1f} ms, providers {', '.join(stats['providers'])}")
    if stats.get("ops"):
        share = stats["ops"]["share"]
        click.echo(f"  operator time: int8 {share['int8']:.0%}, float {share['float']:.0%}, "
                   f"quantize/dequantize {share['convert']:.0%}, other {share['other']:.0%}")
        for row in stats["ops"]["top"]:
            click.echo(f"    {row['op']:<24} {row['precision']:<8} {row['ms']:.4f} ms  {row['share']:>6.1%}  "
                       f"x{row['nodes']}")
