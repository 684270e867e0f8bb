"""Workload V: MNIST (first 8,000 test images train, last 2,000 evaluate), a ResNet teacher, five rows.

- teacher_fp32: the teacher as the toolchain exports it (the run's compare/teacher.onnx);
- teacher_ptq: ONNX Runtime's own `quantize_static` on that file (pre-processed, QDQ, u8 activations, s8
  per-channel weights, 256 training images): what a user picks instead of this project;
- student_fp32 / student_ptq: the KD student (the pipeline's distill stage), exported, and its static int8
  file from edgedistill's PTQ (x86_vnni preset, 256 class-balanced images);
- pipeline: the deployed file of `edgedistill compress` on benchmarks/recipes/vision_pipeline.yaml
  (distill → prune → QAT with the teacher → keep the faster file by measurement).

The teacher is trained once with the recipe's own teacher section and cached under the work folder, keyed
by a hash of everything it depends on (spec, training settings, seed, data files); runs pass it to the
recipe as a checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

RECIPE = Path(__file__).resolve().parent / "recipes" / "vision_pipeline.yaml"
# --quick: tiny models, one epoch each (keeps the script working in CI; the numbers mean nothing)
QUICK = ["teacher.model.channels=[8,16]", "teacher.model.blocks=1", "teacher.train.epochs=1",
         "stages.0.student.channels=[8,16]", "stages.0.train.epochs=1", "stages.1.recover.train.epochs=1",
         "stages.2.qat.train.epochs=1", "stages.2.qat.observe_epochs=1", "profile.runs=20", "profile.warmup=2"]


def _sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def cached_teacher(recipe, data, task, data_dir: Path, work: Path) -> Path:
    """Train the recipe's teacher once (the toolchain's own trainer); later runs reuse the file."""
    from edgedistill.io import save_weights
    from edgedistill.teacher import prepare_teacher

    cfg = recipe.config
    digest = hashlib.sha256()
    digest.update(json.dumps({"model": cfg.teacher.model, "train": cfg.teacher.train.model_dump(mode="json"),
                              "seed": cfg.seed, "data": cfg.data.model_dump(mode="json", exclude={"path"})},
                             sort_keys=True).encode())
    for f in sorted(data_dir.iterdir()):
        digest.update(f.name.encode() + f.read_bytes())
    path = work / "teachers" / f"teacher-{digest.hexdigest()[:16]}.safetensors"
    if not path.exists():
        print(f"training the teacher once ({cfg.teacher.model}); cached as {path}", file=sys.stderr)
        tmp = work / "teachers" / "train"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        model, record = prepare_teacher(cfg.teacher, data, task, seed=cfg.seed, batch_size=cfg.data.batch_size,
                                        stage_dir=tmp, resume=False)
        save_weights(model, path)
        path.with_suffix(".json").write_text(json.dumps(record.to_json(), indent=1, default=str))
    return path


def ort_static_ptq(fp32: Path, out: Path, calib_x) -> Path:
    """What ONNX Runtime's documentation tells a user to do: pre-process, then quantize_static (QDQ, U8S8)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"input": calib_x[i : i + 1]} for i in range(len(calib_x))])

        def get_next(self):
            return next(self.items, None)

    pre = out.with_name(out.stem + ".pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True)
    pre.unlink()
    return out


def _compress(run_dir: Path, overrides: list[str]) -> None:
    """The pipeline row: `edgedistill compress` on the recipe, as a user runs it (a fresh run folder)."""
    from toolchain import edgedistill_command

    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [*edgedistill_command(), "compress", "--recipe", str(RECIPE), "--out", str(run_dir),
           *_sets(overrides)]
    print("running:", " ".join(cmd), file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 1):  # 1: a gate failed, the run and its report are complete
        raise SystemExit(f"edgedistill compress failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def run(data_dir: Path, work: Path, *, quick: bool, runs: int | None, reuse_run: bool = False) -> dict[str, Any]:
    import hardware
    import numpy as np
    from edgedistill.calibration import select_samples
    from run import measure_rows

    from edgedistill.data import load_dataset
    from edgedistill.export import export_onnx
    from edgedistill.export.onnx import copy_onnx
    from edgedistill.models import build_model, load_checkpoint
    from edgedistill.quantize.presets import PRESETS
    from edgedistill.quantize.ptq import preprocess, quantize_static_qdq
    from edgedistill.recipe import load_recipe
    from edgedistill.tasks import build_task

    if not data_dir.exists():
        raise SystemExit(f"MNIST not found at {data_dir}; pass --data-root")
    overrides = [f"data.path={data_dir}", *(QUICK if quick else [])]
    recipe = load_recipe(str(RECIPE), overrides)
    data = load_dataset(recipe.config.data)
    task = build_task(recipe.config.task, data)
    teacher_ckpt = cached_teacher(recipe, data, task, data_dir, work)

    run_dir = work / ("pipeline_quick" if quick else "pipeline")
    if reuse_run and (run_dir / "report.json").exists():
        print(f"reusing the finished run in {run_dir} (--reuse-run)", file=sys.stderr)
    else:
        _compress(run_dir, [*overrides, f"teacher.checkpoint={teacher_ckpt}", "teacher.train=null"])
    report = json.loads((run_dir / "report.json").read_text())

    files_dir = work / ("files_quick" if quick else "files")
    files_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    files["teacher_fp32"] = copy_onnx(run_dir / "compare" / "teacher.onnx", files_dir / "teacher_fp32.onnx")[0]
    calib = select_samples(data.train.y, 256, "random", seed=0)
    files["teacher_ptq"] = ort_static_ptq(files["teacher_fp32"], files_dir / "teacher_ptq.onnx", data.train.x[calib])
    distill_dir = run_dir / "stages" / "1-distill"
    student = build_model(json.loads((distill_dir / "spec.json").read_text()), data.input_shape, data.num_classes)
    load_checkpoint(student, distill_dir / "model.safetensors", where=str(distill_dir))
    files["student_fp32"] = export_onnx(student, files_dir / "student_fp32.onnx", data.input_shape)
    balanced = select_samples(data.train.y, 256, "balanced")
    files["student_ptq"] = quantize_static_qdq(preprocess(files["student_fp32"], files_dir / "student.pre.onnx"),
                                               files_dir / "student_ptq.onnx", data.train.x, balanced,
                                               preset=PRESETS["x86_vnni"], per_channel=True)
    files["pipeline"] = copy_onnx(run_dir / "bundle" / "model.onnx", files_dir / "pipeline.onnx")[0]

    scored = {name: score_file(path, data.test, task) for name, path in files.items()}
    metrics = {name: m for name, (m, _) in scored.items()}
    correct = {name: c for name, (_, c) in scored.items()}
    macs = {name: hardware.count_macs(path) for name, path in files.items()}
    feeds = {b: {"input": np.ascontiguousarray(data.test.x[:b])} for b in (1, 32)}
    runs = runs or (20 if quick else 300)
    rows = measure_rows(files, metrics, feeds, runs=runs, macs=macs)
    from edgedistill.target import load_target

    peak = hardware.gemm_peak(load_target("x86_vnni"), work / "gemm", size=256 if quick else 1024,
                              runs=5 if quick else 30)
    by = {r["name"]: r for r in rows}
    hw = _hardware_section(by, peak, macs)
    return {
        "title": "MNIST, ResNet teacher → distilled, pruned, QAT student",
        "metric_name": "accuracy",
        "data": {"path": str(data_dir), "train": len(data.train), "val": len(data.val), "test": len(data.test),
                 "split": "first 8,000 test-set images train (val carved out), last 2,000 evaluate"},
        "teacher": {"spec": recipe.config.teacher.model, "checkpoint": str(teacher_ckpt),
                    "params": report["models"]["teacher"]["params"]},
        "recipe": str(RECIPE.relative_to(RECIPE.parents[2])), "overrides": overrides,
        "run_dir": str(run_dir), "cpu": rows[0]["cpu"],
        "rows": rows,
        "targets": _targets(by),
        "paired": [paired_line(correct, "pipeline", other) for other in ("teacher_ptq", "teacher_fp32")],
        "notes": [_moved_line(files["teacher_fp32"], data.test, task, metrics["teacher_fp32"])],
        "hardware": hw, "gemm_peak": peak,
        "cost": _cost(report, quick, data_dir),
        "keep": next((s.get("details", {}).get("keep") for s in _stage_details(run_dir) if s["kind"] == "quantize"),
                     None),
    }


def score_file(path: Path, split, task) -> tuple[float, Any]:
    """The toolchain's metric of the file (`task.score`, as `evaluate_onnx` runs it) and, from the same
    outputs, per-image top-1 correctness for the paired comparison: one pass over the held-out images."""
    import numpy as np

    from edgedistill.evaluate.metrics import onnx_predictor

    predict, seen = onnx_predictor(path, output_names=task.output_names), []

    def recording(batch):
        out = predict(batch)
        seen.append(out[task.output_names[0]])
        return out

    metric = task.score(recording, split)
    return metric, np.concatenate(seen).argmax(1) == split.y


def _moved_line(path: Path, split, task, unmoved: float) -> str:
    """The teacher's accuracy on held-out images moved by up to 1 and 2 pixels: why the recipe's student
    trains on moved images but takes the teacher's labels from the unmoved ones (augment.teacher_sees)."""
    import torch

    from edgedistill.data.base import Split
    from edgedistill.distill.augment import AugmentConfig, apply_shifts, epoch_shifts
    from edgedistill.evaluate import evaluate_onnx

    x = torch.from_numpy(split.x)
    accs = []
    for shift in (1, 2):
        moved = apply_shifts(x, epoch_shifts(AugmentConfig(shift=shift), len(x), seed=0, epoch=0)).numpy()
        accs.append(evaluate_onnx(path, Split(moved, split.y), task))
    return (f"teacher_fp32 on the held-out images moved by up to 1 / 2 pixels: {accs[0]:.4f} / {accs[1]:.4f} "
            f"(unmoved: {unmoved:.4f})")


def paired_line(correct: dict, a: str, b: str) -> str:
    """How many held-out images only `a` gets right and only `b` gets right, with the exact two-sided McNemar
    p-value: on 2,000 images a few images either way is within noise, and a reader should see that."""
    from math import comb

    only_a = int((correct[a] & ~correct[b]).sum())
    only_b = int((correct[b] & ~correct[a]).sum())
    n, k = only_a + only_b, min(only_a, only_b)
    p = min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0
    return (f"{a} vs {b}: {only_a} images right only in {a}, {only_b} only in {b} "
            f"(net {only_a - only_b:+d}; exact McNemar p = {p:.2f})")


def _stage_details(run_dir: Path) -> list[dict]:
    out = []
    for d in sorted((run_dir / "stages").iterdir()):
        rec = d / "record.json"
        if rec.exists():
            out.append(json.loads(rec.read_text())["record"])
    return out


def _targets(by: dict[str, dict]) -> list[str]:
    """The issue's 'done when' figures, as measured (not asserted)."""
    t, p, q = by["teacher_fp32"], by["pipeline"], by["teacher_ptq"]
    smaller = t["size_mb"] / p["size_mb"]
    faster = t["p50_ms_b1"] / p["p50_ms_b1"]
    drop = 100 * (t["metric"] - p["metric"])
    dominates = p["metric"] >= q["metric"] and p["p50_ms_b1"] < q["p50_ms_b1"]
    return [f"pipeline {smaller:.1f}× smaller than teacher fp32 (target ≥ 10×)",
            f"pipeline {faster:.2f}× faster at batch 1, p50 (target ≥ 5×); interleaved burst-min ratio "
            f"{p['ratio_b1_interleaved']:.3f}",
            f"accuracy drop {drop:+.2f} points on the 2,000 held-out images (target ≤ 0.5)",
            f"dominates teacher + ORT PTQ (≥ as accurate and faster at batch 1): {'yes' if dominates else 'no'} "
            f"({p['metric']:.4f} vs {q['metric']:.4f}; {p['p50_ms_b1']:.3f} vs {q['p50_ms_b1']:.3f} ms)"]


def _hardware_section(by: dict[str, dict], peak: dict, macs: dict[str, int]) -> list[str]:
    import hardware

    lines = [hardware.peak_line(peak)]
    for name in ("teacher_fp32", "pipeline"):
        r = by[name]
        for b in (1, 32):
            said = hardware.against_peak(r, f"b{b}", 2 * macs[name] * b / (r[f"p50_ms_b{b}"] / 1e3), peak)
            lines.append(f"{name} at batch {b}: {macs[name] / 1e6:.2f} M MACs/image, {said}")
    return lines


def _cost(report: dict, quick: bool, data_dir: Path) -> list[str]:
    lines = [f"stage {s['index']} {s['kind']}: {s['seconds']:.1f} s" for s in report["stages"]]
    lines.append(f"whole compress run: {report.get('total_seconds', 0):.1f} s (teacher loaded from the cache)")
    if quick:
        lines.append("KD epoch timing: not measured with --quick (python benchmarks/bench_distill.py measures it)")
        return lines
    try:
        import bench_distill

        kd = bench_distill.measure(rounds=3, threads=1, teacher_epochs=1, data=data_dir)
        lines.append(f"KD epoch with the teacher cache: {kd['kd_cache']:.2f}× plain training; teacher live: "
                     f"{kd['kd_live']:.2f}× (bench_distill, median of per-round ratios)")
    except Exception as exc:  # the cost table is secondary; say why it is missing
        lines.append(f"KD epoch timing not measured: {type(exc).__name__}: {exc}")
    return lines
