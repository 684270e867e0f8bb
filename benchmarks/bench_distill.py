"""Per-epoch wall time of KD with the teacher-output cache, KD without it, and plain cross-entropy training.

Same student, same data (MNIST from ../shared/data/mnist, so the teacher's forward pass costs something),
one process, interleaved: every round trains one epoch of each mode, in a rotating order, and the ratios
are medians of the per-round ratios to plain training (machine load hits all three modes of a round alike).
Target: KD with the cache costs at most 1.15× plain training.

    python benchmarks/bench_distill.py [--rounds 7] [--threads 1] [--teacher-epochs 1]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]


def measure(rounds: int = 7, threads: int = 1, teacher_epochs: int = 1, data: Path | None = None) -> dict:
    """Per-epoch seconds of each mode over `rounds` interleaved rounds, and the median ratios to plain."""
    import torch
    import torch.nn.functional as F

    from edgedistill.config import TrainConfig
    from edgedistill.data import DataConfig, load_dataset
    from edgedistill.distill.cache import CacheConfig, load_or_build
    from edgedistill.distill.kd import train_student
    from edgedistill.distill.stage import DistillConfig
    from edgedistill.models import build_model
    from edgedistill.state import RunContext
    from edgedistill.tasks import build_task
    from edgedistill.train import fit

    data_path = Path(data or ROOT.parent / "shared" / "data" / "mnist")
    if not data_path.exists():
        raise FileNotFoundError(f"MNIST not found at {data_path}")
    torch.set_num_threads(threads)
    data = load_dataset(DataConfig(name="mnist", path=str(data_path), batch_size=64))
    task = build_task(None, data)
    teacher_spec = {"name": "cnn", "channels": [32, 64, 128], "hidden": 128}
    student_spec = {"name": "cnn", "channels": [16, 32]}
    torch.manual_seed(0)
    teacher = build_model(teacher_spec, data.input_shape, data.num_classes)
    ce = lambda m, x, y, i: F.cross_entropy(m(x["input"]), y)  # noqa: E731
    t_fit = fit(teacher, data.train, data.val, ce, TrainConfig(epochs=teacher_epochs, lr=3e-3), batch_size=64, task=task)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    tmp = Path(tempfile.mkdtemp(prefix="bench-distill-"))
    recipe = SimpleNamespace(config=SimpleNamespace(seed=0, data=SimpleNamespace(batch_size=64)))
    ctx = RunContext(run_dir=tmp, stage_dir=tmp, data=data, recipe=recipe, index=1, task=task)
    train1 = TrainConfig(epochs=1, lr=5e-3, schedule="constant")

    def kd_cfg(cached: bool) -> DistillConfig:
        return DistillConfig(student=student_spec, temperature=4.0, alpha=0.9, train=train1,
                             cache=CacheConfig(enabled=cached, dir=str(tmp / "cache")))

    # the one-time cost of building the cache, measured apart from the per-epoch numbers
    t0 = time.perf_counter()
    _, info = load_or_build(teacher, data.train, CacheConfig(dir=str(tmp / "cache")), tmp / "cache",
                            task=task, temperature=4.0, settings={"augment": {"shift": 0}, "epoch": None, "seed": None,
                                                       "standardize": False}, seed=0)
    build_s = time.perf_counter() - t0

    students = {m: build_model(student_spec, data.input_shape, data.num_classes) for m in ("plain", "kd_live", "kd_cache")}
    times: dict[str, list[float]] = {m: [] for m in students}
    calls: dict[str, list[int]] = {m: [] for m in students}
    modes = list(students)
    for r in range(rounds):
        for mode in modes[r % 3:] + modes[: r % 3]:
            model = students[mode]
            if mode == "plain":
                res = fit(model, data.train, data.val, ce, train1, batch_size=64, seed=r, task=task)
                times[mode].append(res.history[0]["seconds"])
                calls[mode].append(0)
            else:
                step = train_student(mode, model, [teacher], [1.0], kd_cfg(mode == "kd_cache"), ctx, seed=r, checkpoint=None)
                times[mode].append(step["history"][0]["seconds"])
                calls[mode].append(step["teacher_forward_calls"][0])
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{m} {times[m][-1]:.2f}s" for m in modes), file=sys.stderr)
    shutil.rmtree(tmp, ignore_errors=True)
    ratio = {m: statistics.median(t / p for t, p in zip(times[m], times["plain"], strict=True)) for m in modes}
    return {**ratio, "times": times, "calls": calls, "build_s": build_s, "cache_bytes": info.get("bytes", 0),
            "cache_key": info["key"], "train_images": len(data.train), "teacher_val": t_fit.best_metric,
            "teacher_params": sum(p.numel() for p in teacher.parameters()),
            "student_params": sum(p.numel() for p in students["plain"].parameters())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7, help="epochs timed per mode")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 keeps the shared machine quiet)")
    ap.add_argument("--teacher-epochs", type=int, default=1)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    args = ap.parse_args()
    if not Path(args.data).exists():
        print(f"MNIST not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    r = measure(args.rounds, args.threads, args.teacher_epochs, Path(args.data))
    modes = ["plain", "kd_live", "kd_cache"]
    print(f"\nMNIST: {r['train_images']} training images, batch 64, {args.threads} thread(s), {args.rounds} interleaved rounds; "
          f"teacher {r['teacher_params']:,} params (val acc {r['teacher_val']:.3f} after "
          f"{args.teacher_epochs} epoch), student {r['student_params']:,} params\n")
    print("| mode | median s/epoch | min s/epoch | ratio to plain (median of per-round ratios) | teacher forwards/epoch |")
    print("|---|---|---|---|---|")
    labels = {"plain": "plain CE", "kd_live": "KD, teacher live", "kd_cache": "KD, teacher cache (dense)"}
    for m in modes:
        print(f"| {labels[m]} | {statistics.median(r['times'][m]):.3f} | {min(r['times'][m]):.3f} | {r[m]:.3f}× | "
              f"{statistics.median(r['calls'][m]):.0f} |")
    print(f"\none-time cache build: {r['build_s']:.2f} s ({r['cache_bytes'] / 1e6:.2f} MB in memory, key {r['cache_key']})")
    verdict = "meets" if r["kd_cache"] <= 1.15 else "misses"
    print(f"target KD+cache ≤ 1.15× plain: {verdict} ({r['kd_cache']:.3f}×)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
