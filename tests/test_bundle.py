"""The app team's bundle: built from a real exported model, checked byte for byte, runnable from its snippet."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgedistill.io import sha256_file
from edgedistill.profile.synthetic import synthetic_mlp
from edgedistill.report.bundle import verify_bundle, write_bundle
from edgedistill.target import load_target

from .conftest import run_cli

META = {"task": "classification", "input_shape": [1, 8, 8], "num_classes": 10,
        "class_labels": [f"digit {i}" for i in range(10)],
        "preprocessing": {"layout": "NCHW", "image_size": [8, 8], "channels": 1, "scale": 1 / 16, "mean": [0.5],
                          "std": [0.25]}}


def _export_cnn(path: Path) -> Path:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 8 * 8, 10)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path


def _report() -> dict:
    lat = {"p50_ms": 0.05, "p90_ms": 0.06, "p99_ms": 0.08, "mean_ms": 0.055, "std_ms": 0.01, "batch": 1,
           "threads": 1, "runs": 100, "throughput_per_s": 18000.0, "peak_rss_mb": 60.0, "cpu": "test cpu",
           "samples_ms": [0.05] * 100}
    m = {"params": 5000, "size_mb": 0.02, "metric": 0.97, "latency": {"x86_vnni": lat}}
    return {"schema_version": 1, "recipe": {"name": "mobile", "sha256": "ab" * 32, "resolved": {}},
            "task": "classification", "metric": {"name": "accuracy", "higher_is_better": True, "split": "test",
                                                 "samples": 360},
            "models": {"teacher": {**m, "metric": 0.98}, "student": m,
                       "deployed": {**m, "path": "bundle/model.onnx", "metric_measured_on": "onnxruntime"}},
            "targets": {"x86_vnni": {"available": True, "reason": "available"},
                        "arm64_mobile": {"available": False, "reason": "needs an aarch64 CPU"}},
            "stages": [{"kind": "distill", "seconds": 3.2, "metric_after": 0.97}], "gates": [], "passed": True}


@pytest.fixture
def bundle(tmp_path) -> Path:
    src = _export_cnn(tmp_path / "exported.onnx")
    return write_bundle(tmp_path / "run", src, dataset_meta=META, report=_report(),
                        targets=[load_target("x86_vnni"), load_target("arm64_mobile")])


def test_bundle_contents(bundle):
    names = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert names == {"model.onnx", "model.ort", "model.required_operators.config", "manifest.json", "MODEL_CARD.md",
                     "labels.txt", "usage/predict.py", "usage/EdgeModel.kt", "usage/EdgeModel.swift"}
    m = json.loads((bundle / "manifest.json").read_text())
    assert set(m["files"]) == names - {"manifest.json"}
    for rel, info in m["files"].items():
        assert info["sha256"] == sha256_file(bundle / rel) and info["bytes"] == (bundle / rel).stat().st_size
    assert m["recipe"] == {"name": "mobile", "sha256": "ab" * 32}
    assert m["metric"]["value"] == 0.97 and m["metric"]["measured_on"] == "onnxruntime"
    assert m["latency"]["x86_vnni"]["p50_ms"] == 0.05 and "samples_ms" not in m["latency"]["x86_vnni"]
    assert {"edgedistill", "torch", "onnxruntime", "onnx"} <= set(m["versions"])
    assert m["class_labels"][3] == "digit 3" and m["preprocessing"]["mean"] == [0.5]
    assert (bundle / "labels.txt").read_text().splitlines() == META["class_labels"]
    arm = next(t for t in m["targets"] if t["name"] == "arm64_mobile")
    assert arm["available"] is False and "aarch64" in arm["reason"]
    assert "Flatten" in (bundle / "model.required_operators.config").read_text()
    card = (bundle / "MODEL_CARD.md").read_text()
    assert "0.9700" in card and "x86_vnni" in card and "aarch64" in card and "digit 0" in card


def test_manifest_shapes_match_the_onnx_graph(bundle):
    m = json.loads((bundle / "manifest.json").read_text())
    graph = onnx.load(str(bundle / "model.onnx")).graph
    for spec, vi in ((m["inputs"], graph.input), (m["outputs"], graph.output)):
        assert [s["name"] for s in spec] == [v.name for v in vi]
        for s, v in zip(spec, vi, strict=True):
            dims = [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
            assert s["shape"] == dims
    assert m["inputs"] == [{"name": "input", "shape": ["batch", 1, 8, 8], "dtype": "float32"}]
    assert m["outputs"] == [{"name": "logits", "shape": ["batch", 10], "dtype": "float32"}]
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.shape for i in sess.get_inputs()] == [s["shape"] for s in m["inputs"]]


def test_ort_format_model_matches_onnx(bundle):
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    a = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    b = ort.InferenceSession(str(bundle / "model.ort"), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    np.testing.assert_allclose(a[0], b[0], rtol=1e-4, atol=1e-5)


def test_verify_catches_every_single_flipped_byte(bundle):
    assert verify_bundle(bundle) == (True, [])
    for f in sorted(p for p in bundle.rglob("*") if p.is_file()):
        data = bytearray(f.read_bytes())
        original = bytes(data)
        data[len(data) // 2] ^= 0x01
        f.write_bytes(bytes(data))
        ok, problems = verify_bundle(bundle)
        f.write_bytes(original)
        assert not ok, f"flipping a byte of {f.name} went unnoticed"
        assert any(f.name in p or "manifest.json" in p for p in problems), problems
    assert verify_bundle(bundle) == (True, [])


def test_verify_reports_missing_files_and_unloadable_models(bundle):
    (bundle / "labels.txt").unlink()
    ok, problems = verify_bundle(bundle)
    assert not ok and problems == ["labels.txt: missing"]


def test_verify_lists_files_that_are_not_in_the_manifest(bundle):
    """An app team ships the whole folder: a file slipped in after the bundle was written is damage too."""
    (bundle / "usage" / "extra.py").write_text("import os; os.system('echo hi')\n")
    (bundle / ".hidden").write_bytes(b"x")
    (bundle / "link.onnx").symlink_to(bundle / "model.onnx")
    ok, problems = verify_bundle(bundle)
    assert not ok
    assert sorted(p.split(":")[0] for p in problems) == [".hidden", "link.onnx", "usage/extra.py"]
    assert all("unexpected file" in p for p in problems)


def test_verify_shapes_the_feed_from_the_model_not_the_manifest(bundle):
    """A manifest claiming a huge input shape used to be allocated (MemoryError traceback); now it is a finding."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["inputs"][0]["shape"] = [10**12, 1, 8, 8]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    ok, problems = verify_bundle(bundle)
    assert not ok and any("input shapes" in p and "differ from the manifest" in p for p in problems), problems


def test_verify_refuses_manifest_paths_outside_the_bundle(bundle):
    import hashlib

    outside = bundle.parent / "outside.txt"
    outside.write_text("not part of the bundle")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["../outside.txt"] = {"sha256": hashlib.sha256(outside.read_bytes()).hexdigest(), "bytes": 22}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    ok, problems = verify_bundle(bundle)
    assert not ok and "../outside.txt: points outside the bundle" in problems


def test_verify_reports_a_malformed_manifest_instead_of_crashing(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    for inputs, files in (([{"nam": "input"}], None), ([{"name": "input", "shape": [1], "dtype": "floaty"}], None),
                          (None, {**manifest["files"], "model.onnx": "not a mapping"})):
        broken = {**manifest, "inputs": inputs, "files": files or manifest["files"]}
        (bundle / "manifest.json").write_text(json.dumps(broken))
        ok, problems = verify_bundle(bundle)
        assert not ok and any("integrity" in p for p in problems)
        assert any("malformed" in p or "does not match" in p or "differ" in p for p in problems), problems


def test_python_snippet_runs_against_the_bundle(bundle, tmp_path):
    from PIL import Image

    png = tmp_path / "seven.png"
    Image.fromarray(np.full((20, 30), 200, dtype=np.uint8)).save(png)  # any size: the snippet resizes
    proc = subprocess.run([sys.executable, str(bundle / "usage" / "predict.py"), str(png)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    path, label, confidence = proc.stdout.strip().split("\t")
    assert path == str(png) and label.startswith("digit ") and 0.1 <= float(confidence) <= 1.0
    kt, swift = (bundle / "usage" / "EdgeModel.kt").read_text(), (bundle / "usage" / "EdgeModel.swift").read_text()
    for text in (kt, swift):
        assert '"input"' in text and "16.0" in text
    assert "longArrayOf(1L, 1L, 8L, 8L)" in kt and 'forResource: "model", ofType: "ort"' in swift


def test_external_data_travels_with_the_model(tmp_path):
    src = synthetic_mlp(tmp_path / "src" / "weights.onnx", external_data=True)
    meta = {"task": "classification", "input_shape": [64], "num_classes": 10, "class_labels": [],
            "preprocessing": {}}
    b = write_bundle(tmp_path / "run", src, dataset_meta=meta, report=_report(), targets=[load_target("x86_vnni")])
    m = json.loads((b / "manifest.json").read_text())
    assert m["model"]["external_data"] == ["model.onnx.data"] and "model.onnx.data" in m["files"]
    assert not (b / "model.ort").exists()
    assert verify_bundle(b) == (True, [])
    data = b / "model.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[100] ^= 0x80
    data.write_bytes(bytes(raw))
    ok, problems = verify_bundle(b)
    assert not ok and any("model.onnx.data" in p for p in problems)


@pytest.mark.slow  # each CLI start imports torch (~4 s here)
def test_cli_verify_exit_codes(bundle, tmp_path):
    proc = run_cli("verify", str(bundle))
    assert proc.returncode == 0, proc.stderr
    model = bundle / "model.onnx"
    raw = bytearray(model.read_bytes())
    raw[-5] ^= 0xFF
    model.write_bytes(bytes(raw))
    proc = run_cli("verify", str(bundle))
    assert proc.returncode == 1 and "model.onnx" in proc.stdout
    proc = run_cli("verify", str(tmp_path / "nothing"))
    assert proc.returncode == 2 and "manifest.json" in proc.stderr and "Traceback" not in proc.stderr


def test_engine_targets_without_tensorrt_get_no_engine_and_say_why(tmp_path):
    from edgedistill.profile.tensorrt import tensorrt_status

    if tensorrt_status()[0]:
        pytest.skip("TensorRT is present: the GPU tests build a real engine instead")
    src = _export_cnn(tmp_path / "exported.onnx")
    out = write_bundle(tmp_path / "run", src, dataset_meta=META, report=_report(),
                       targets=[load_target("x86_vnni"), load_target("nvidia_trt_int8")])
    assert not list(out.glob("*.engine"))
    entries = {t["name"]: t for t in json.loads((out / "manifest.json").read_text())["targets"]}
    assert entries["nvidia_trt_int8"]["engine"] is None and "TensorRT" in entries["nvidia_trt_int8"]["engine_note"]
    assert "engine" not in entries["x86_vnni"]


def test_verify_ignores_bytecode_caches_and_nothing_else(bundle):
    """Importing usage/predict.py writes usage/__pycache__/: that is not damage; anything else there is."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    proc = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, '.'); import predict"], cwd=bundle / "usage", capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert list((bundle / "usage" / "__pycache__").glob("*.pyc"))
    assert verify_bundle(bundle) == (True, [])
    (bundle / "usage" / "__pycache__" / "notes.txt").write_text("not bytecode")
    ok, problems = verify_bundle(bundle)
    assert not ok and problems == ["usage/__pycache__/notes.txt: unexpected file (not in the manifest; added after "
                                   "the bundle was written)"]


@pytest.mark.parametrize("kind", ["fifo", "socket", "empty_dir", "manifest_link"])
def test_verify_calls_special_files_and_links_damage(bundle, kind):
    import os
    import socket

    if kind == "fifo":
        os.mkfifo(bundle / "usage" / "pipe")  # reading it would block forever: it must never be opened
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(bundle / "sock"))
        s.close()
    elif kind == "empty_dir":
        (bundle / "empty").mkdir()
    else:  # a manifest that is a link to a (valid) manifest outside the bundle
        outside = bundle.parent / "elsewhere.json"
        (bundle / "manifest.json").rename(outside)
        (bundle / "manifest.json").symlink_to(outside)
    ok, problems = verify_bundle(bundle)
    assert not ok, problems
    assert len(problems) == 1 and ("manifest.json" in problems[0] if kind == "manifest_link" else
                                   problems[0].split(":")[0] in ("usage/pipe", "sock", "empty")), problems


@pytest.mark.parametrize("dtype", ["V99999999999", "float64", "<U100000000"])
def test_verify_calls_an_absurd_or_wrong_dtype_damage(bundle, dtype):
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["inputs"][0]["dtype"] = dtype
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    ok, problems = verify_bundle(bundle)
    assert not ok and any("dtype" in p for p in problems), problems


def test_verify_calls_an_absurd_model_shape_damage(tmp_path):
    """A (re-checksummed) model whose input has 10^12 elements is reported, never allocated."""
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["input"], ["logits"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 10**6, 10**6])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10**6, 10**6])])
    src = tmp_path / "huge.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    meta = {"task": "classification", "input_shape": [10**6, 10**6], "num_classes": 10, "class_labels": [],
            "preprocessing": {}}
    b = write_bundle(tmp_path / "run", src, dataset_meta=meta, report=_report(), targets=[load_target("x86_vnni")])
    ok, problems = verify_bundle(b)
    assert not ok and any("too large" in p for p in problems), problems


def _reseal(bundle: Path, manifest: dict) -> None:
    """Rewrite the manifest with a matching integrity hash (as a careful forger would)."""
    from edgedistill.report.verify import integrity

    manifest["integrity"] = integrity(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_profile_takes_only_session_options_from_a_verified_bundle(bundle):
    from edgedistill.report.bundle import shipped_session_options

    manifest = json.loads((bundle / "manifest.json").read_text())
    options = {"session_config": {"session.set_denormal_as_zero": "1"}, "graph_optimization_level": "ORT_ENABLE_ALL"}
    manifest["model"]["session_options"] = {**options, "batch": 64, "shapes": {"input": [64, 1, 8, 8]},
                                            "providers": ["CUDAExecutionProvider"], "threads": 16, "runs": 1}
    _reseal(bundle, manifest)
    assert shipped_session_options(bundle / "model.onnx") == options  # the rest is not a session option
    manifest["model"]["session_options"]["graph_optimization_level"] = "ORT_NOT_A_LEVEL"
    _reseal(bundle, manifest)
    assert shipped_session_options(bundle / "model.onnx") == {"session_config": options["session_config"]}
    (bundle / "labels.txt").write_text("tampered\n")  # checksums no longer verify: nothing is applied
    assert shipped_session_options(bundle / "model.onnx") == {}


def test_the_profiler_takes_only_session_options_per_model(tmp_path):
    """Even a caller passing a manifest's whole entry cannot change the batch or providers a model is timed with."""
    from edgedistill.profile import profile_models

    model = synthetic_mlp(tmp_path / "m.onnx", width=16, depth=1)
    stats = profile_models({"m": model}, load_target("x86_avx2"), batch=1, runs=20, warmup=1, rounds=1,
                           op_profile_runs=0, model_options={"m": {"runtime": "tensorrt", "batch": 64,
                                                               "providers": ["NoSuchProvider"]}})
    assert stats["m"]["batch"] == 1 and stats["m"]["providers"] == ["CPUExecutionProvider"]  # it ran, on ORT's CPU
