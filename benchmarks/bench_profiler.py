"""How much does the profiler's A-versus-A ratio move, sequential versus interleaved, quiet versus loaded?

The CI gate must not fail on machine noise. This measures the same model against an identical copy:
  sequential   A timed in one call, then A' in another call; ratio of their p50s
  interleaved  A and A' in one call (fresh workers, bursts alternating); median over bursts of the
               burst-minimum ratio (what the gate uses) and of the burst-median ratio; once with the
               bursts split over 3 rounds of fresh worker processes (the default), once with one process
               per model for the whole call (rounds=1), to show what a single process's draw can cost
Each mode is repeated --trials times; we report the spread of the ratio (min, max, median |ratio - 1|) and
the ratio of spreads. With --load a busy-loop process occupies one core for the whole benchmark, as a
neighbour job would on a shared CI machine. A slowed model (extra operators) is also compared, to show the
signal the gate is looking for stays far outside that spread.

    python benchmarks/bench_profiler.py --trials 30 --runs 300 --width 1024 [--batch 8] [--load] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from edgedistill.profile import interleaved_ratio, profile_models
from edgedistill.profile.synthetic import synthetic_mlp
from edgedistill.target import Target

CPU = Target(name="bench_cpu", arch="any", threads=1)


def spread(ratios: list[float]) -> dict[str, float]:
    dev = [abs(r - 1) for r in ratios]
    return {"min": min(ratios), "max": max(ratios), "median": statistics.median(ratios),
            "median_abs_dev": statistics.median(dev), "max_abs_dev": max(dev)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=15)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--burst", type=int, default=10)
    ap.add_argument("--width", type=int, default=384)
    ap.add_argument("--batch", type=int, default=1, help="the gate tests time batch 8")
    ap.add_argument("--load", action="store_true", help="keep one core busy during the benchmark")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.load else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            a = synthetic_mlp(Path(tmp) / "a.onnx", width=args.width)
            a2 = synthetic_mlp(Path(tmp) / "a2.onnx", width=args.width)
            slow = synthetic_mlp(Path(tmp) / "slow.onnx", width=args.width, extra_ops=40)
            kw = {"runs": args.runs, "warmup": 20, "burst": args.burst, "op_profile_runs": 0, "batch": args.batch}
            seq, inter, inter_med, single, signal, p50 = [], [], [], [], [], []
            for _ in range(args.trials):
                ra = profile_models({"a": a}, CPU, **kw)["a"]
                rb = profile_models({"a2": a2}, CPU, **kw)["a2"]
                seq.append(rb["p50_ms"] / ra["p50_ms"])
                both = profile_models({"a": a, "a2": a2}, CPU, **kw)
                ir = interleaved_ratio(both["a"]["samples_ms"], both["a2"]["samples_ms"], args.burst)
                inter.append(ir["ratio"])
                inter_med.append(ir["ratio_median"])
                p50.append(both["a"]["p50_ms"])
                one = profile_models({"a": a, "a2": a2}, CPU, **kw, rounds=1)
                single.append(interleaved_ratio(one["a"]["samples_ms"], one["a2"]["samples_ms"], args.burst)["ratio"])
                sl = profile_models({"a": a, "slow": slow}, CPU, **kw)
                signal.append(interleaved_ratio(sl["a"]["samples_ms"], sl["slow"]["samples_ms"], args.burst)["ratio"])
    finally:
        if busy:
            busy.kill()
            busy.wait()
    s, i, im, one_proc = spread(seq), spread(inter), spread(inter_med), spread(single)
    result = {"trials": args.trials, "runs": args.runs, "burst": args.burst, "batch": args.batch, "load": args.load,
              "model_p50_ms_median": statistics.median(p50),
              "sequential_A_vs_A": s, "interleaved_A_vs_A": i, "interleaved_burst_medians_A_vs_A": im,
              "interleaved_one_process_per_model_A_vs_A": one_proc,
              "spread_ratio_sequential_over_interleaved": s["max_abs_dev"] / max(i["max_abs_dev"], 1e-9),
              "slowed_model_ratio": spread(signal)}
    if args.json:
        print(json.dumps(result))
        return
    print(f"A vs A, {args.trials} trials x {args.runs} runs, burst {args.burst}, batch {args.batch}, "
          f"{'one core busy' if args.load else 'quiet'}; model p50 {result['model_p50_ms_median']:.3f} ms")
    for name, sp in (("sequential p50", s), ("interleaved, burst minima (gate)", i),
                     ("interleaved, burst medians", im), ("interleaved, one process per model", one_proc)):
        print(f"  {name:<36} ratio {sp['min']:.3f}-{sp['max']:.3f}  median |r-1| {sp['median_abs_dev']:.3%}  "
              f"max |r-1| {sp['max_abs_dev']:.3%}")
    print(f"  sequential spread / interleaved spread (max |r-1|): {result['spread_ratio_sequential_over_interleaved']:.1f}x")
    sg = result["slowed_model_ratio"]
    print(f"  slowed model (+40 Mul/Relu) vs A, interleaved: {sg['min']:.3f}-{sg['max']:.3f}x (median {sg['median']:.3f})")


if __name__ == "__main__":
    main()
