"""Data larger than memory: peak memory against data-set size, loader throughput per worker count, and
one process against two under torchrun.

    python benchmarks/bench_stream.py rss --sizes 1000 4000 16000                # peak RSS of compress vs N
    python benchmarks/bench_stream.py load --sizes 1000 4000 [--code DIR]        # load + one pass, any checkout
    python benchmarks/bench_stream.py workers --images 2000                      # images/s with 0, 1, 2 workers
    python benchmarks/bench_stream.py ddp --images 2000                          # 1 vs 2 processes (torchrun)

Images are generated once (JPEG, 224×224 RGB, 4 classes, under ~/.cache/edgedistill/bench/stream) and every
run is a real `edgedistill compress` of a tiny CNN with step-bounded training (`max_steps`), so the run's
time is mostly reading the data: the teacher-cache pass over the training split and the validation/test
passes. Peak RSS is the largest resident set of any process of the run (main process, loader workers,
profiler subprocesses: `RUSAGE_CHILDREN` after it exits). `load --code DIR` measures loading the folder and
reading every training row once with another checkout's `edgedistill` package (e.g. `git archive main`), for
a before/after comparison. Writes benchmarks/results/stream_<what>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WORK = Path(os.environ.get("EDGEDISTILL_BENCH", Path.home() / ".cache/edgedistill/bench")) / "stream"
CLASSES = ("a", "b", "c", "d")


def make_images(n: int, size: int = 224) -> Path:
    """n JPEGs (n/4 per class): smooth class-tinted noise, so the classes are learnable and decoding is real."""
    from PIL import Image

    root = WORK / f"images-{n}-{size}"
    done = root / ".complete"
    if done.exists():
        return root
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n // len(CLASSES)):
            small = rng.normal(0, 40, (28, 28, 3)) + np.array([60, 100, 140]) + 30 * c
            img = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8)).resize((size, size), Image.Resampling.BILINEAR)
            img.save(root / name / f"{i:06d}.jpg", quality=90)
    done.write_text("ok")
    return root


RECIPE = """\
name: stream_bench
seed: 0
data: {{name: image_folder, path: {path}, image_size: 224, batch_size: 32, val_fraction: 0.05, test_fraction: 0.05{extra}}}
teacher:
  model: {{name: cnn, channels: [8, 16], hidden: 16}}
  train: {{epochs: 1, lr: 0.01{steps}}}
stages:
  - kind: distill
    student: {{name: cnn, channels: [4, 8]}}
    train: {{epochs: 1, lr: 0.01{steps}}}
  - kind: quantize
    method: static
    calibration: {{samples: 64}}
  - kind: export
targets: [x86_vnni]
profile: {{runs: 20, warmup: 2}}
"""


def compress(recipe: Path, out: Path, torchrun: int = 0) -> dict:
    """Run compress in a child process; its wall time and the peak RSS of the largest process it ran."""
    env = {**os.environ, "EDGEDISTILL_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    cmd = [str(Path(sys.executable).with_name("edgedistill")), "compress", "--recipe", str(recipe), "--out", str(out), "--overwrite"]
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(torchrun),
               "--no-python", *cmd]
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB; max over every reaped descendant
    if proc.returncode not in (0, 1):
        raise SystemExit(f"compress failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    report = json.loads((out / "report.json").read_text())
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(peak / 1024, 1),
            "peak_rss_note": "max over this and earlier children" if peak == before else "",
            "deployed_metric": report["models"]["deployed"]["metric"],
            "test_samples": report["models"]["deployed"].get("test_samples"), "stages": [
                {"kind": s["kind"], "metric": s.get("metric_after")} for s in report["stages"]]}


def bench_rss(sizes: list[int], steps: int) -> dict:
    rows = []
    for n in sizes:
        root = make_images(n)
        recipe = WORK / f"rss-{n}.yaml"
        recipe.write_text(RECIPE.format(path=root, extra=", workers: 1", steps=f", max_steps: {steps}"))
        # each size in a fresh interpreter, so RUSAGE_CHILDREN's maximum is this run's alone
        got = subprocess.run([sys.executable, __file__, "_one", str(recipe), str(WORK / f"run-{n}")],
                             capture_output=True, text=True)
        if got.returncode:
            raise SystemExit(got.stderr[-3000:])
        row = {"images": n, "float32_gb": round(n * 3 * 224 * 224 * 4 / 1e9, 2), **json.loads(got.stdout)}
        print(row, flush=True)
        rows.append(row)
    return {"what": "peak RSS of compress vs number of 224x224 images", "max_steps": steps, "rows": rows}


LOAD = """
import resource, sys, time
from edgedistill.data import DataConfig, load_dataset
t0 = time.perf_counter()
ds = load_dataset(DataConfig(name="image_folder", path=sys.argv[1], image_size=224, val_fraction=0.05,
                             test_fraction=0.05))
x = ds.train.inputs["input"]
for i in range(0, len(ds.train), 64):
    x[i:i + 64].sum()
print(round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), round(time.perf_counter() - t0, 1))
"""


def bench_load(sizes: list[int], code: Path | None) -> dict:
    """Peak RSS of loading the folder and reading each training row once, with this or another checkout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({"PYTHONPATH": str(code)} if code else {})}
    rows = []
    for n in sizes:
        got = subprocess.run([sys.executable, "-c", LOAD, str(make_images(n))], capture_output=True, text=True,
                             env=env, cwd=str(code or HERE))
        if got.returncode:
            raise SystemExit(got.stderr[-3000:])
        rss, seconds = got.stdout.split()
        rows.append({"images": n, "peak_rss_mb": float(rss), "seconds": float(seconds)})
        print(rows[-1], flush=True)
    return {"what": "load an image folder (224x224) and read every training row once", "code": str(code or "this checkout"),
            "rows": rows}


def bench_workers(n: int, batches: int, train: bool = True) -> dict:
    """Decode (+ train) throughput with 0/1/2 workers, and the share of the loop's time spent waiting for data."""
    import torch

    from edgedistill.data import DataConfig, load_dataset
    from edgedistill.data.loader import Batch
    from edgedistill.data.loader import batches as read
    from edgedistill.models import build_model
    from edgedistill.tasks.image_classification import image_task

    torch.set_num_threads(1)
    ds = load_dataset(DataConfig(name="image_folder", path=str(make_images(n)), image_size=224, val_fraction=0.0))
    task = image_task(ds.input_shape, ds.num_classes)
    model = build_model({"name": "cnn", "channels": [4, 8]}, ds.input_shape, ds.num_classes)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    rng = np.random.default_rng(0)
    rows = []
    for workers in (0, 1, 2, 0, 1, 2):  # two rounds, interleaved; the median of each is reported
        plan = [Batch(np.sort(rng.choice(len(ds.train), 32, replace=False)), 0, i) for i in range(batches)]
        wait = 0.0
        t0 = time.perf_counter()
        it = iter(read(ds.train, plan, workers=workers))
        while True:
            t = time.perf_counter()
            try:
                got = next(it)
            except StopIteration:
                break
            wait += time.perf_counter() - t
            if not train:
                continue
            loss = task.label_loss(task.forward(model, got["inputs"]), got["targets"])
            opt.zero_grad()
            loss.backward()
            opt.step()
        total = time.perf_counter() - t0
        rows.append({"workers": workers, "images_per_s": round(batches * 32 / total, 1),
                     "data_wait_share": round(wait / total, 3)})
        print(rows[-1], flush=True)
    med = {}
    for w in (0, 1, 2):
        mine = [r for r in rows if r["workers"] == w]
        med[w] = {k: float(np.median([r[k] for r in mine])) for k in ("images_per_s", "data_wait_share")}
    what = "decode 224x224 JPEGs + train a tiny CNN step" if train else "decode 224x224 JPEGs only (no training)"
    return {"what": f"loader: {what}, batch 32", "images": n,
            "batches": batches, "cpus": os.cpu_count(), "rounds": rows, "median": med}


def bench_ddp(n: int, steps: int) -> dict:
    root = make_images(n)
    recipe = WORK / f"ddp-{n}.yaml"
    recipe.write_text(RECIPE.format(path=root, extra=", workers: 1", steps=f", max_steps: {steps}"))
    out = {}
    for procs in (1, 2):
        got = subprocess.run([sys.executable, __file__, "_one", str(recipe), str(WORK / f"ddp-{procs}"),
                              str(procs if procs > 1 else 0)], capture_output=True, text=True)
        if got.returncode:
            raise SystemExit(got.stderr[-3000:])
        out[procs] = json.loads(got.stdout)
        print(procs, out[procs], flush=True)
    return {"what": "the same recipe as 1 process and as 2 under torchrun (gloo, CPU)", "images": n,
            "max_steps": steps, "one": out[1], "two": out[2],
            "deployed_metric_difference": round(out[2]["deployed_metric"] - out[1]["deployed_metric"], 4)}


def main() -> None:
    if sys.argv[1:2] == ["_one"]:
        recipe, out = Path(sys.argv[2]), Path(sys.argv[3])
        procs = int(sys.argv[4]) if len(sys.argv) > 4 else 0
        print(json.dumps(compress(recipe, out, procs)))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["rss", "load", "workers", "ddp"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=20, help="max_steps of each training")
    ap.add_argument("--batches", type=int, default=30, help="workers: batches per measurement")
    ap.add_argument("--decode-only", action="store_true", help="workers: read batches without training on them")
    ap.add_argument("--code", type=Path, help="load: import edgedistill from this folder (e.g. an export of main)")
    a = ap.parse_args()
    if a.what == "rss":
        result, name = bench_rss(a.sizes, a.steps), "stream_rss"
        earlier = HERE / "results" / "stream_rss.json"
        if earlier.exists():  # sizes measured before (same settings) stay in the table
            old = json.loads(earlier.read_text())
            if old.get("max_steps") == a.steps:
                kept = [r for r in old["rows"] if r["images"] not in a.sizes]
                result["rows"] = sorted(kept + result["rows"], key=lambda r: r["images"])
    elif a.what == "load":
        result, name = bench_load(a.sizes, a.code), "stream_load" + ("_other" if a.code else "")
    elif a.what == "workers":
        result = bench_workers(a.images, a.batches, train=not a.decode_only)
        name = "stream_workers" + ("_decode" if a.decode_only else "")
    else:
        result, name = bench_ddp(a.images, a.steps), "stream_ddp"
    path = HERE / "results" / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(textwrap.shorten(json.dumps(result), 400), "\n→", path)


if __name__ == "__main__":
    main()
