"""The bundle's snippets, used as an app team uses them.

- The Python snippet, in a fresh environment holding only onnxruntime (the manifest's version), numpy and
  pillow — no edgedistill, no torch — classifies real MNIST test images saved as PNG files and reproduces the
  accuracy the run reported.
- The Kotlin and Swift snippets carry exactly the manifest's preprocessing constants, names, dtype, shape,
  pinned runtime version and thread count (parsed from their source).
- The default (`mobile`) recipe's bundle ships model.ort, a pinned runtime and an honest precision.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from edgedistill.report.bundle import write_bundle
from edgedistill.report.shipped import onnx_precision
from edgedistill.target import load_target

from .conftest import FAST, SHARED_DATA, run_cli, set_args

# ../shared/data from the project root; a git worktree sits one level deeper, so look further up too
MNIST = next((p / "mnist" for p in (SHARED_DATA, *(d / "shared" / "data" for d in Path(__file__).resolve().parents))
              if (p / "mnist" / "t10k-images-idx3-ubyte.gz").exists()), SHARED_DATA / "mnist")
MNIST_RECIPE = f"""name: mnist_snippet
seed: 0
data: {{name: mnist, path: {MNIST}, val_fraction: 0.1, batch_size: 128}}
teacher:
  model: {{name: cnn, channels: [16, 32], hidden: 64}}
  train: {{epochs: 2, lr: 0.01}}
stages:
  - kind: distill
    student: {{name: cnn, channels: [8, 16]}}
    train: {{epochs: 2, lr: 0.01}}
  - kind: export
targets: [x86_vnni]
profile: {{runs: 20, warmup: 2}}
"""


# ------------------------------------------------------------------------------------------ Kotlin / Swift
def _export_cnn(path: Path, channels: int, hw: int) -> Path:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(channels, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * hw * hw, 10)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, channels, hw, hw),), str(path), dynamo=False,
                          input_names=["pixels"], output_names=["scores"],
                          dynamic_axes={"pixels": {0: "batch"}, "scores": {0: "batch"}})
    return path


def _report(threads: int) -> dict:
    lat = {"p50_ms": 0.05, "batch": 1, "threads": threads, "runs": 20, "cpu": "test"}
    m = {"params": 10, "size_mb": 0.01, "metric": 0.9, "latency": {"x86_vnni": lat}}
    return {"recipe": {"name": "t", "sha256": "ab" * 32}, "task": "classification",
            "metric": {"name": "accuracy", "higher_is_better": True},
            "models": {"deployed": {**m, "session_options": {"session_config": {"session.set_denormal_as_zero": "1"}}}},
            "targets": {"x86_vnni": {"available": True}}, "stages": []}


PREPROCESSING = {  # digits (levels 16, box), MNIST (mean/std), an RGB image folder
    "digits": (1, 8, {"layout": "NCHW", "image_size": [8, 8], "channels": 1, "scale": 1 / 16.0, "levels": 16,
                      "resample": "box", "ink": "light"}),
    "mnist": (1, 28, {"layout": "NCHW", "image_size": [28, 28], "channels": 1, "scale": 1 / 255.0, "mean": [0.1307],
                      "std": [0.3081], "ink": "light"}),
    "rgb": (3, 16, {"layout": "NCHW", "image_size": [16, 16], "channels": 3, "mode": "RGB", "scale": 1 / 255.0,
                    "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}),
}


def _kotlin_constants(text: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, value in re.findall(r"^\s*(?:const )?val ([A-Z_]+) = (.+?)(?:\s*//.*)?$", text, re.M):
        if value.startswith(("floatArrayOf(", "longArrayOf(", "listOf(")):
            inner = value[value.index("(") + 1:value.rindex(")")]
            out[name] = [json.loads(v.strip().rstrip("fL")) for v in inner.split(",") if v.strip()]
        else:
            out[name] = json.loads(value.rstrip("fL")) if not value.startswith('"') else json.loads(value)
    return out


def _swift_constants(text: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, value in re.findall(r"^\s*static let (\w+)(?:: [^=]+)? = (.+?)(?:\s*//.*)?$", text, re.M):
        out[name] = json.loads(value)
    return out


@pytest.mark.parametrize("kind", sorted(PREPROCESSING))
def test_kotlin_and_swift_carry_the_manifest_exactly(tmp_path, kind):
    channels, hw, pre = PREPROCESSING[kind]
    meta = {"task": "classification", "input_shape": [channels, hw, hw], "num_classes": 10,
            "class_labels": [f"class {i}" for i in range(10)], "preprocessing": pre}
    b = write_bundle(tmp_path / "run", _export_cnn(tmp_path / "m.onnx", channels, hw), dataset_meta=meta,
                     report=_report(threads=3), targets=[load_target("x86_vnni"), load_target("arm64_mobile")])
    m = json.loads((b / "manifest.json").read_text())
    img, inp, out = m["image_input"], m["inputs"][0], m["outputs"][0]
    want = {"ORT_VERSION": m["runtime"]["onnxruntime"], "THREADS": 3, "INPUT_NAME": inp["name"],
            "INPUT_DTYPE": inp["dtype"], "INPUT_SHAPE": [1, *m["input_shape"]], "OUTPUT_NAME": out["name"],
            "COLOR": img["color"], "WIDTH": img["width"], "HEIGHT": img["height"], "CHANNELS": img["channels"],
            "RESAMPLE": img["resample"], "LEVELS": img["levels"], "DIVIDE_BY": img["divide_by"], "MEAN": img["mean"],
            "STD": img["std"], "INK": img["ink"] or "", "LABELS": m["class_labels"]}
    kt = (b / "usage" / "EdgeModel.kt").read_text()
    assert _kotlin_constants(kt) == want
    assert f'onnxruntime-android:{m["runtime"]["onnxruntime"]}"' in kt and "latest.release" not in kt
    assert 'addConfigEntry("session.set_denormal_as_zero", "1")' in kt and "setIntraOpNumThreads(THREADS)" in kt
    swift = (b / "usage" / "EdgeModel.swift").read_text()
    camel = {"ORT_VERSION": "ortVersion", "THREADS": "threads", "INPUT_NAME": "inputName", "INPUT_DTYPE": "inputDtype",
             "INPUT_SHAPE": "inputShape", "OUTPUT_NAME": "outputName", "COLOR": "color", "WIDTH": "width",
             "HEIGHT": "height", "CHANNELS": "channels", "RESAMPLE": "resample", "LEVELS": "levels",
             "DIVIDE_BY": "divideBy", "MEAN": "mean", "STD": "std", "INK": "ink", "LABELS": "labels"}
    assert _swift_constants(swift) == {camel[k]: v for k, v in want.items()}
    assert f'exact: "{m["runtime"]["onnxruntime"]}"' in swift and f"'onnxruntime-objc', '{m['runtime']['onnxruntime']}'" in swift
    py = (b / "usage" / "predict.py").read_text()
    assert f"pip install onnxruntime=={m['runtime']['onnxruntime']}" in py and "THREADS = 3" in py
    # the manifest itself: precision of the shipped file, the runtime it was run with
    assert m["model"]["precision"] == {"model.onnx": "float32", "model.ort": "float32"} == {
        f: onnx_precision(b / "model.onnx") for f in ("model.onnx", "model.ort")}
    assert m["runtime"]["verified"] is True and {t["precision"] for t in m["targets"]} == {"float32"}


# ------------------------------------------------------------------------------------------------ Python
def _save_test_pngs(folder: Path) -> list[tuple[Path, int]]:
    """The evaluation split of MNIST (the last 2,000 test images, as edgedistill.data.mnist splits it) as PNGs."""
    from PIL import Image

    from edgedistill.data.mnist import read_idx

    images = read_idx(MNIST / "t10k-images-idx3-ubyte.gz")[8000:]
    labels = read_idx(MNIST / "t10k-labels-idx1-ubyte.gz")[8000:]
    folder.mkdir()
    out = []
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        path = folder / f"{i:04d}.png"
        Image.fromarray(img).save(path)
        out.append((path, int(label)))
    return out


def _clean_venv(where: Path, ort_version: str) -> Path:
    """A virtual environment without system site packages, holding onnxruntime, numpy and pillow from pip."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, capture_output=True, timeout=300)
    py = where / "bin" / "python"
    proc = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                           f"onnxruntime=={ort_version}", "numpy", "pillow"], capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        pytest.skip(f"pip could not install onnxruntime=={ort_version} numpy pillow here: {proc.stderr[-300:]}")
    return py


@pytest.mark.slow
@pytest.mark.skipif(not (MNIST / "t10k-images-idx3-ubyte.gz").exists(), reason="MNIST not in ../shared/data")
def test_python_snippet_reproduces_the_reported_accuracy_without_edgedistill(tmp_path):
    recipe = tmp_path / "mnist.yaml"
    recipe.write_text(MNIST_RECIPE)
    run = tmp_path / "run"
    proc = run_cli("compress", "--recipe", str(recipe), "--out", str(run))
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads((run / "report.json").read_text())
    manifest = json.loads((run / "bundle" / "manifest.json").read_text())
    pngs = _save_test_pngs(tmp_path / "png")
    assert len(pngs) == report["metric"]["samples"] == 2000
    (tmp_path / "labels.json").write_text(json.dumps([[str(p), y] for p, y in pngs]))
    py = _clean_venv(tmp_path / "venv", manifest["runtime"]["onnxruntime"])
    script = """
import importlib.util, json, sys
try:
    import edgedistill
    sys.exit("edgedistill is importable: not a clean environment")
except ImportError:
    pass
from PIL import Image
sys.path.insert(0, sys.argv[1])
import predict
pairs = json.load(open(sys.argv[2]))
hits, confidences = 0, []
for path, label in pairs:
    name, confidence = predict.predict_image(Image.open(path))
    hits += name == predict.LABELS[label]
    confidences.append(confidence)
print(json.dumps({"accuracy": hits / len(pairs), "min_conf": min(confidences), "max_conf": max(confidences)}))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    proc = subprocess.run([str(py), "-c", script, str(run / "bundle" / "usage"), str(tmp_path / "labels.json")],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["accuracy"] == pytest.approx(report["models"]["deployed"]["metric"], abs=1e-12), got
    assert got["accuracy"] > 0.2 and 0 < got["min_conf"] <= got["max_conf"] <= 1
    # importing the snippet wrote usage/__pycache__/: the bundle still verifies
    assert list((run / "bundle" / "usage" / "__pycache__").glob("predict*.pyc"))
    proc = run_cli("verify", str(run / "bundle"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------------- the default recipe
@pytest.mark.slow
def test_the_mobile_recipe_ships_model_ort_pinned_and_honest(tmp_path):
    out = tmp_path / "mobile"
    fast = [o for o in FAST if not o.startswith("targets=")]  # keep the recipe's own targets (arm64_mobile too)
    proc = run_cli("compress", "--recipe", "mobile", "--out", str(out), *set_args(fast))
    assert proc.returncode in (0, 1), proc.stderr
    b = out / "bundle"
    m = json.loads((b / "manifest.json").read_text())
    assert (b / "model.ort").is_file() and (b / "model.required_operators.config").is_file()
    assert m["model"]["mobile_file"] == "model.ort" and "model.ort" in m["files"]
    shipped = onnx_precision(b / "model.onnx")
    assert m["model"]["precision"] == {"model.onnx": shipped, "model.ort": shipped}
    assert {t["precision"] for t in m["targets"]} == {shipped}
    phone = next(t for t in m["targets"] if t["name"] == "arm64_mobile")
    assert not phone["available"] and "x86_64" in phone["measured_note"]
    card = (b / "MODEL_CARD.md").read_text()
    q = m["model"]["quantization"]
    assert q and q["shipped"] in ("float", "int8")
    if q["shipped"] == "float":
        assert shipped == "float32" and "int8 was built and measured, and **rejected**" in card
    else:
        assert shipped == "int8"
    version = m["runtime"]["onnxruntime"]
    assert f"ONNX Runtime **{version}**" in card
    threads = {s["threads"] for s in m["latency"].values()}
    assert threads == {m["runtime"]["threads"]}
    for name in ("predict.py", "EdgeModel.kt", "EdgeModel.swift"):
        assert version in (b / "usage" / name).read_text()
    assert np.isfinite(m["metric"]["value"])
