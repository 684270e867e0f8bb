"""Does int8 pay, and does it hold? Latency ratios vs fp32 and accuracy of the quantized FILES, on digits and MNIST.

For each dataset (digits 8×8; MNIST 28×28 from ../shared/data/mnist when present) and each CNN size, a
model is trained briefly, exported to fp32 ONNX, then turned into: static int8 QDQ (x86_vnni preset,
minmax and entropy calibration), dynamic int8 and fp16. All files of one model are timed together on one
target (a fresh worker per file, interleaved bursts) and compared as the median of burst-wise ratios to
the fp32 file; accuracy is measured by running each file in ONNX Runtime on the test split.

    python benchmarks/bench_quantize.py [--runs 400] [--batches 1 32] [--epochs 3] [--out /tmp/bench_quantize]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from edgedistill.calibration import select_samples

from edgedistill.config import TrainConfig
from edgedistill.data import DataConfig, load_dataset
from edgedistill.evaluate import evaluate_onnx
from edgedistill.export import export_onnx
from edgedistill.io import file_size_mb
from edgedistill.models import build_model
from edgedistill.profile import interleaved_ratio, profile_models
from edgedistill.quantize.presets import PRESETS
from edgedistill.quantize.ptq import convert_fp16, preprocess, quantize_dynamic_int8, quantize_static_qdq
from edgedistill.target import default_target
from edgedistill.tasks import build_task
from edgedistill.train import fit

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist"


def variants(model, data, work: Path, tag: str) -> dict[str, Path]:
    """fp32 plus every quantized flavour of one trained model."""
    fp = export_onnx(model.eval(), work / f"{tag}-fp32.onnx", data.input_shape)
    pre = preprocess(fp, work / f"{tag}-pre.onnx")
    idx = select_samples(data.train.y, 256, "balanced")
    preset = PRESETS["x86_vnni"]
    files = {"fp32": fp}
    for method in ("minmax", "entropy"):
        files[f"int8 static {method}"] = quantize_static_qdq(pre, work / f"{tag}-int8-{method}.onnx", data.train.x, idx,
                                                             preset=preset, per_channel=True, method=method)
    files["int8 dynamic"] = quantize_dynamic_int8(pre, work / f"{tag}-int8-dyn.onnx", preset=preset, per_channel=False)
    files["fp16"] = convert_fp16(pre, work / f"{tag}-fp16.onnx")
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=400)
    ap.add_argument("--warmup", type=int, default=40)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="bench_quantize-"))
    work.mkdir(parents=True, exist_ok=True)
    target = default_target()
    datasets = [("digits", DataConfig(name="digits"))]
    if MNIST.exists():
        datasets.append(("mnist", DataConfig(name="mnist", path=str(MNIST))))
    else:
        print(f"(MNIST skipped: {MNIST} not found)")
    print(f"target {target.name}, {args.runs} runs per file per batch size, interleaved bursts of 10; "
          f"ratio = median over bursts of (variant p50 / fp32 p50)\n")
    rows = ["| data | student | variant | file KB | test acc | Δ acc vs fp32 | batch | p50 ms | p50 / fp32 |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, cfg in datasets:
        data = load_dataset(cfg)
        task = build_task(None, data)
        for channels in ([16, 32], [64, 128]):
            torch.manual_seed(0)
            model = build_model({"name": "cnn", "channels": channels}, data.input_shape, data.num_classes)
            fit(model, data.train, data.val, lambda m, x, y, i: F.cross_entropy(m(x["input"]), y),
                TrainConfig(epochs=args.epochs), batch_size=64, task=task, label=f"{name} {channels}")
            files = variants(model, data, work, f"{name}-{channels[0]}")
            acc = {k: evaluate_onnx(p, data.test, task) for k, p in files.items()}
            for batch in args.batches:
                stats = profile_models(files, target, batch=batch, runs=args.runs, warmup=args.warmup,
                                       feed={"input": data.test.x[:batch]}, op_profile_runs=0)
                for k, p in files.items():
                    r = interleaved_ratio(stats["fp32"]["samples_ms"], stats[k]["samples_ms"], 10)["ratio"]
                    rows.append(f"| {name} | cnn {channels} | {k} | {file_size_mb(p) * 1e3:.1f} | {acc[k]:.4f} | "
                                f"{acc[k] - acc['fp32']:+.4f} | {batch} | {stats[k]['p50_ms']:.4f} | {r:.2f} |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
