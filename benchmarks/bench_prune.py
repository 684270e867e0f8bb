"""Does pruning pay in latency? Ratios of p50 latency pruned/unpruned, measured interleaved in one run.

Part 1 (always): CNN students on digits (8×8) and MNIST (28×28, from ../shared/data/mnist when present) are
pruned structurally at several ratios, plus 50 % unstructured and 2:4 sparsity for contrast, exported to ONNX
and timed together on one target (fresh worker per file, interleaved bursts; medians). Dense-kernel latency
does not depend on weight values, so the models are not trained here.

Part 2 (--recipes): runs the built-in `mobile_pruned` recipe and the same recipe without its prune stage (which
resumes from the first one's teacher and distilled student, so the only difference is pruning), then times both
deployed int8 files (and both float students) interleaved, and prints deployed accuracy and MACs. With --out,
an earlier run in that folder is resumed rather than retrained.

    python benchmarks/bench_prune.py [--runs 400] [--ratios 0.25 0.5 0.75] [--recipes] [--out /tmp/bench_prune]
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import tempfile
from pathlib import Path

import torch
import yaml

from edgedistill.data import DataConfig, load_dataset
from edgedistill.export import export_onnx
from edgedistill.models import build_model
from edgedistill.profile import profile_models
from edgedistill.prune.measure import macs_params
from edgedistill.prune.sparsity import apply_masks, magnitude_masks, nm_masks, prunable_weights
from edgedistill.prune.structured import output_layers, prune_structured
from edgedistill.target import default_target

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist"


def variants(spec: dict, shape: tuple[int, ...], ratios: list[float]) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    base = build_model(spec, shape, 10).eval()
    out = {"unpruned": base}
    example = torch.zeros(1, *shape)
    for r in ratios:
        m = copy.deepcopy(base)
        prune_structured(m, example, ratio=r)
        out[f"structured {r:.0%}"] = m
    m = copy.deepcopy(base)
    w = prunable_weights(m, skip=output_layers(m, example))
    apply_masks(w, magnitude_masks(w, 0.5))
    out["unstructured 50%"] = m
    m = copy.deepcopy(base)
    w = prunable_weights(m, skip=output_layers(m, example))
    apply_masks(w, nm_masks(w, 2, 4)[0])
    out["2:4"] = m
    return out


def sweep(args, target, work: Path) -> list[str]:
    datasets = [("digits", (1, 8, 8))]
    if MNIST.exists():
        datasets.append(("mnist", (1, 28, 28)))
    else:
        print(f"(MNIST skipped: {MNIST} not found)")
    rows = ["| data | student | variant | MACs | params | file KB | p50 µs | p50 / unpruned |",
            "|---|---|---|---:|---:|---:|---:|---:|"]
    for data, shape in datasets:
        for channels in ([16, 32], [64, 128]):
            spec = {"name": "cnn", "channels": channels}
            models = variants(spec, shape, args.ratios)
            files, info = {}, {}
            for name, m in models.items():
                path = export_onnx(m, work / f"{data}-{channels[0]}-{name.replace(' ', '_').replace(':', '_')}.onnx",
                                   shape)
                files[name] = path
                info[name] = (*macs_params(m, torch.zeros(1, *shape)), path.stat().st_size / 1e3)
            stats = profile_models(files, target, runs=args.runs, warmup=args.warmup, op_profile_runs=0)
            base = stats["unpruned"]["p50_ms"]
            for name in files:
                macs, params, kb = info[name]
                p50 = stats[name]["p50_ms"]
                rows.append(f"| {data} {shape[1]}×{shape[2]} | cnn {channels} | {name} | {macs:,} | {params:,} | "
                            f"{kb:.1f} | {p50 * 1000:.1f} | {p50 / base:.3f} |")
    return rows


def recipes(args, target, work: Path) -> list[str]:
    from edgedistill.pipeline import run_pipeline
    from edgedistill.recipe import load_recipe, read_recipe_text

    text, _ = read_recipe_text("mobile_pruned")
    raw = yaml.safe_load(text)
    raw["name"] = "mobile_pruned_without_prune"
    raw["stages"] = [s for s in raw["stages"] if s["kind"] != "prune"]
    twin = work / "mobile_pruned_without_prune.yaml"
    twin.write_text(yaml.safe_dump(raw, sort_keys=False))
    # Both recipes share the teacher and the distilled student (same stage keys), so the twin resumes from the
    # pruned run's first two checkpoints: the comparison is the same trained student with and without pruning.
    reports = {}
    pruned_dir, twin_dir = work / "mobile_pruned", work / "mobile_pruned_without_prune"
    result = run_pipeline(load_recipe("mobile_pruned"), pruned_dir, resume=True)
    reports["pruned"] = (result.run_dir, result.report)
    for stage in ("0-teacher", "1-distill"):
        if not (twin_dir / "stages" / stage).exists():
            shutil.copytree(pruned_dir / "stages" / stage, twin_dir / "stages" / stage)
    result = run_pipeline(load_recipe(str(twin)), twin_dir, resume=True)
    reports["unpruned"] = (result.run_dir, result.report)
    print(f"runs: {pruned_dir}, {twin_dir} (reused stages: {', '.join(result.skipped_stages) or 'none'})")
    data = load_dataset(DataConfig(name="digits"))
    files, macs = {}, {}
    for name, (run_dir, _) in reports.items():
        files[f"{name} deployed (int8)"] = run_dir / "compare" / "deployed.onnx"
        files[f"{name} student (float)"] = run_dir / "compare" / "student.onnx"
        spec = json.loads(next((run_dir / "stages").glob("*-export/spec.json")).read_text())
        macs[name] = macs_params(build_model(spec, data.input_shape, data.num_classes), torch.zeros(1, *data.input_shape))
    stats = profile_models(files, target, runs=args.runs, warmup=args.warmup, op_profile_runs=0,
                           feed={"input": data.test.x[:1]})
    rows = ["| recipe | deployed accuracy (ONNX Runtime, test) | MACs | params | deployed p50 µs | student p50 µs |",
            "|---|---:|---:|---:|---:|---:|"]
    for name, (_, report) in reports.items():
        rows.append(f"| mobile_pruned{' (no prune stage)' if name == 'unpruned' else ''} | "
                    f"{report['models']['deployed']['metric']:.4f} | {macs[name][0]:,} | {macs[name][1]:,} | "
                    f"{stats[f'{name} deployed (int8)']['p50_ms'] * 1000:.1f} | "
                    f"{stats[f'{name} student (float)']['p50_ms'] * 1000:.1f} |")
    acc = {n: r["models"]["deployed"]["metric"] for n, (_, r) in reports.items()}
    ratio = stats["pruned deployed (int8)"]["p50_ms"] / stats["unpruned deployed (int8)"]["p50_ms"]
    fratio = stats["pruned student (float)"]["p50_ms"] / stats["unpruned student (float)"]["p50_ms"]
    rows.append("")
    rows.append(f"accuracy change from pruning: {100 * (acc['pruned'] - acc['unpruned']):+.2f} points; "
                f"MACs ratio {macs['pruned'][0] / macs['unpruned'][0]:.3f}; deployed p50 ratio {ratio:.3f}; "
                f"float student p50 ratio {fratio:.3f}")
    prune = next(s for s in reports["pruned"][1]["stages"] if s["kind"] == "prune")["details"]
    rows.append(f"prune stage (float files, same run): p50 ratio {prune['latency'].get('p50_ratio')}, "
                f"MACs {prune['macs_before']:,} -> {prune['macs_after']:,}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=400)
    ap.add_argument("--warmup", type=int, default=40)
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    ap.add_argument("--recipes", action="store_true", help="also run mobile_pruned vs the same recipe without pruning")
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="working folder (default: a temporary one)")
    args = ap.parse_args()
    target = default_target()
    print(f"target {target.name}, batch 1, {target.threads} thread(s), {args.runs} runs per model, interleaved\n")
    with tempfile.TemporaryDirectory(prefix="bench_prune-") as tmp:
        work = args.out or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if not args.skip_sweep:
            print("\n".join(sweep(args, target, work)))
        if args.recipes:
            print()
            print("\n".join(recipes(args, target, work)))


if __name__ == "__main__":
    main()
