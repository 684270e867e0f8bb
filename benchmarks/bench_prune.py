"""Does pruning pay in latency? Ratios of p50 latency pruned/unpruned, measured interleaved in one run.

Part 1 (always): CNN students on digits (8×8) and MNIST (28×28, from ../shared/data/mnist when present) are
pruned structurally at several ratios, plus 50 % unstructured and 2:4 sparsity for contrast, exported to ONNX
and timed together on one target (fresh worker per file, interleaved bursts; medians). Dense-kernel latency
does not depend on weight values, so the models are not trained here.

Part 2 (--recipes): runs the built-in `mobile_pruned` and `mobile_pruned_latency` recipes and the same recipe
without its prune stage (the others resume from mobile_pruned's teacher and distilled student, so the only
difference is pruning), then times all deployed int8 files and float students interleaved, and prints deployed
accuracy and MACs. With --out, earlier runs in that folder are resumed rather than retrained.

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


RECIPES = {"uniform 50%": "mobile_pruned", "latency-driven 50%": "mobile_pruned_latency"}


def recipes(args, target, work: Path) -> list[str]:
    from edgedistill.pipeline import run_pipeline
    from edgedistill.recipe import load_recipe, read_recipe_text

    text, _ = read_recipe_text("mobile_pruned")
    raw = yaml.safe_load(text)
    raw["name"] = "mobile_pruned_without_prune"
    raw["stages"] = [s for s in raw["stages"] if s["kind"] != "prune"]
    twin = work / "mobile_pruned_without_prune.yaml"
    twin.write_text(yaml.safe_dump(raw, sort_keys=False))
    # All three recipes share the teacher and the distilled student (same stage keys), so the others resume
    # from mobile_pruned's first two checkpoints: the same trained student with and without pruning.
    first = work / "mobile_pruned"
    runs = {**RECIPES, "no prune stage": str(twin)}
    reports = {}
    for label, source in runs.items():
        recipe = load_recipe(source)
        run_dir = work / recipe.name
        if run_dir != first:
            for stage in ("0-teacher", "1-distill"):
                if not (run_dir / "stages" / stage).exists():
                    shutil.copytree(first / "stages" / stage, run_dir / "stages" / stage)
        result = run_pipeline(recipe, run_dir, resume=True)
        reports[label] = (result.run_dir, result.report)
        print(f"{recipe.name}: {run_dir} (reused stages: {', '.join(result.skipped_stages) or 'none'})")
    data = load_dataset(DataConfig(name="digits"))
    files, macs = {}, {}
    for label, (run_dir, _) in reports.items():
        files[f"{label} deployed"] = run_dir / "compare" / "deployed.onnx"
        files[f"{label} student"] = run_dir / "compare" / "student.onnx"
        spec = json.loads(next((run_dir / "stages").glob("*-export/spec.json")).read_text())
        macs[label] = macs_params(build_model(spec, data.input_shape, data.num_classes),
                                  torch.zeros(1, *data.input_shape))
    stats = profile_models(files, target, runs=args.runs, warmup=args.warmup, op_profile_runs=0,
                           feed={"input": data.test.x[:1]})
    base = "no prune stage"
    rows = ["| mobile_pruned student (64/128) | deployed accuracy (ORT, test) | Δ points | MACs | params | "
            "deployed int8 p50 µs | ratio | float student p50 µs | ratio |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, (_, report) in reports.items():
        acc = report["models"]["deployed"]["metric"]
        d, s = stats[f"{label} deployed"]["p50_ms"], stats[f"{label} student"]["p50_ms"]
        rows.append(f"| {label} | {acc:.4f} | {100 * (acc - reports[base][1]['models']['deployed']['metric']):+.2f} | "
                    f"{macs[label][0]:,} | {macs[label][1]:,} | {d * 1000:.1f} | "
                    f"{d / stats[f'{base} deployed']['p50_ms']:.3f} | {s * 1000:.1f} | "
                    f"{s / stats[f'{base} student']['p50_ms']:.3f} |")
    rows.append("")
    for label in RECIPES:
        prune = next(s for s in reports[label][1]["stages"] if s["kind"] == "prune")["details"]
        rows.append(f"{label}: prune stage's own interleaved timing of the float files: p50 ratio "
                    f"{prune['latency'].get('p50_ratio')}, channels {prune['channels']}")
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
