"""ONNX Runtime vs ExecuTorch on the same students: accuracy, size and p50 latency at batch 1, one interleaved run.

    python benchmarks/run.py runtimes [--quick] [--runs N] [--reuse-run]

For two students — the default recipe's (`mobile_executorch`: the `mobile` recipe plus an executorch stage) and
the vision benchmark's architectures on MNIST (benchmarks/recipes/vision_executorch.yaml, bounded training) —
`edgedistill compress` builds every file, then this script scores each FILE on the test split in its own runtime
(the toolchain's `task.score`) and times all four files of a student in ONE profiler call on the x86_executorch
target (a fresh worker process per file, bursts interleaved, one thread, batch 1):

- ort_fp32: the float student as ONNX (compare/student.onnx), ONNX Runtime;
- ort_int8: the quantize stage's static int8 QDQ file (x86_vnni preset), ONNX Runtime;
- pte_fp32 / pte_int8: the executorch stage's .pte files (XNNPACK; int8 from the PT2E XNNPACK quantizer).

Also recorded: the ops each .pte leaves on portable kernels, and each .pte's top-1 agreement with the float
student on the test images. run.py writes benchmarks/results/runtimes.{json,md}. `--quick` shrinks epochs and
runs: it keeps the script working; its numbers mean nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

QUICK = {"mobile_executorch": ["teacher.train.epochs=2", "stages.0.train.epochs=2", "profile.runs=20"],
         "vision": ["teacher.train.epochs=1", "stages.0.train.epochs=1", "profile.runs=20"]}


def compress(recipe: str, run_dir: Path, overrides: list[str]) -> dict[str, Any]:
    from toolchain import edgedistill_command

    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [*edgedistill_command(), "compress", "--recipe", recipe, "--out", str(run_dir),
           *[a for o in overrides for a in ("--set", o)]]
    print("running:", " ".join(cmd), file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 1):  # 1: a gate failed; the run and its report are complete
        raise SystemExit(f"edgedistill compress failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads((run_dir / "report.json").read_text())


def measure(label: str, recipe_name: str, overrides: list[str], run_dir: Path, report: dict[str, Any],
            runs: int) -> dict[str, Any]:
    """Score the four files of one run in their runtimes and time them in one interleaved profiler call."""
    from run import measure_rows

    from edgedistill.data import load_dataset
    from edgedistill.evaluate import onnx_predictor
    from edgedistill.export.executorch import pte_predictor
    from edgedistill.recipe import load_recipe
    from edgedistill.report.runtimes import score_file
    from edgedistill.tasks import build_task

    recipe = load_recipe(recipe_name, overrides)
    data = load_dataset(recipe.config.data)
    task = build_task(recipe.config.task, data)
    stages = {s["kind"]: s for s in report["stages"]}
    et = stages["executorch"]["details"]["executorch"]
    files = {f"{label}_ort_fp32": run_dir / "compare" / "student.onnx",
             f"{label}_ort_int8": run_dir / next(a for a in stages["quantize"]["artifacts"] if a.endswith(".int8.onnx")),
             f"{label}_pte_fp32": run_dir / et["files"]["fp32"]["file"],
             f"{label}_pte_int8": run_dir / et["files"]["int8"]["file"]}
    metrics = {name: score_file(path, data.test, task) for name, path in files.items()}
    batch = task.feed(data.test, slice(None))
    ref = onnx_predictor(files[f"{label}_ort_fp32"])(batch)["logits"].argmax(1)
    agree = {name: float((pte_predictor(path, task)(batch)["logits"].argmax(1) == ref).mean())
             for name, path in files.items() if path.suffix == ".pte"}
    rows = measure_rows(files, metrics, {1: task.feed(data.test, slice(0, 1))}, runs=runs,
                        target_name="x86_executorch", base=f"{label}_ort_fp32")
    for r in rows:
        r["runtime"] = "executorch" if r["name"].split("_")[-2] == "pte" else "onnxruntime"
    notes = [f"{label}: {p} .pte portable-kernel ops: "
             + (", ".join(f"{op} ×{n}" for op, n in et['files'][p]['portable_ops'].items()) or "none")
             + f" ({et['files'][p]['delegated_nodes']} nodes delegated to XNNPACK)" for p in ("fp32", "int8")]
    notes += [f"{label}: {name} top-1 agreement with the float student (ort_fp32) on {len(ref)} test images: {a:.4f}"
              for name, a in agree.items()]
    notes.append(f"{label}: executorch stage keep: {et['keep']['reason']}")
    return {"rows": rows, "notes": notes, "test_samples": len(data.test), "run_dir": str(run_dir),
            "teacher_metric": report["models"]["teacher"]["metric"]}


def run(data_root: Path, work: Path, *, quick: bool, runs: int | None, reuse_run: bool = False) -> dict[str, Any]:
    """Both students: compress (or reuse the finished run), then score and time their four files."""
    runs = runs or (20 if quick else 300)
    jobs = [("mobile", "mobile_executorch", []),
            ("vision", str(HERE / "recipes" / "vision_executorch.yaml"), [f"data.path={data_root / 'mnist'}"])]
    parts = []
    for label, recipe, overrides in jobs:
        extra = QUICK["mobile_executorch" if label == "mobile" else "vision"] if quick else []
        run_dir = work / (label + ("_quick" if quick else ""))
        if reuse_run and (run_dir / "report.json").exists():
            report = json.loads((run_dir / "report.json").read_text())
        else:
            report = compress(recipe, run_dir, [*overrides, *extra])
        parts.append((label, recipe, measure(label, recipe, [*overrides, *extra], run_dir, report, runs)))
    rows = [r for _, _, p in parts for r in p["rows"]]
    return {
        "title": "the same students in ONNX Runtime (.onnx) and ExecuTorch (.pte, XNNPACK), fp32 and int8",
        "metric_name": "accuracy", "cpu": rows[0]["cpu"], "rows": rows,
        "tables": [{"title": None, "columns": {"b1": "b1"}}],
        "students": {label: {"recipe": recipe, **{k: v for k, v in p.items() if k not in ("rows", "notes")}}
                     for label, recipe, p in parts},
        "notes": [n for _, _, p in parts for n in p["notes"]]
        + ["ratios ('× teacher' column) are to each student's ort_fp32 row, measured in the same interleaved run "
           "(x86_executorch target: ONNX files in ONNX Runtime, .pte files in ExecuTorch, one thread, batch 1)"],
    }
