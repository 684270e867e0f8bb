"""ExecuTorch targets: real .pte files exported here, run in ExecuTorch's runtime, timed beside ONNX files, bundled,
verified, and their snippets checked against the manifest (Python: run without edgedistill)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgedistill.target import availability, load_target
from edgedistill.tasks.image_classification import image_task

from .conftest import run_cli, set_args

pytest.importorskip("executorch", reason="the [executorch] extra is not installed")


class _CumsumHead(nn.Module):
    """A small CNN with one op XNNPACK does not take (cumsum), so it must show up as a portable fallback."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return self.fc(h).cumsum(dim=1)


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 8 * 8, 10)).eval()


def test_executorch_target_is_available_here_and_unavailable_without_the_runtime():
    ok, why = availability(load_target("x86_executorch"))
    assert ok, why
    arm = load_target("arm64_executorch")
    assert arm.delegate == "xnnpack" and "pte" in arm.formats and not availability(arm)[0]
    code = ("import sys; sys.modules['executorch'] = None\n"
            "from edgedistill.target import availability, load_target\n"
            "print(availability(load_target('x86_executorch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "(False, 'executorch is not installed" in out.stdout


def test_executorch_target_fields_are_checked(tmp_path):
    from edgedistill.errors import UserError

    bad = tmp_path / "t.yaml"
    bad.write_text("name: t\nruntime: executorch\nbatch_sizes: [4]\n")
    with pytest.raises(UserError, match="batch_sizes must be \\[1\\]"):
        load_target(bad)
    bad.write_text("name: t\nruntime: onnxruntime\ndelegate: xnnpack\n")
    with pytest.raises(UserError, match="delegate applies to runtime: executorch only"):
        load_target(bad)


def test_executorch_stage_needs_an_executorch_target(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ndata: {name: digits}\nteacher: {model: {name: cnn}}\n"
                      "stages: [{kind: executorch}, {kind: export}]\ntargets: [x86_vnni]\n")
    proc = run_cli("validate", str(recipe))
    assert proc.returncode == 2 and "runtime: executorch" in proc.stderr and "x86_executorch" in proc.stderr


@pytest.mark.slow  # two exports through torch.export and the XNNPACK partitioner (~30 s on two cores)
def test_float_pte_matches_torch_int8_is_delegated_and_fallbacks_are_listed(tmp_path, digits):
    from edgedistill.evaluate import evaluate_torch
    from edgedistill.export.executorch import evaluate_pte, export_pte, pte_predictor, quantize_pt2e

    task = image_task((1, 8, 8), 10)
    model = _cnn()
    info = export_pte(model, tmp_path / "f.pte", task)
    assert info["portable_ops"] == {} and info["delegated_nodes"] > 0
    batch = task.feed(digits.test, slice(0, 16))
    got = pte_predictor(tmp_path / "f.pte", task)(batch)["logits"]
    ref = model(torch.from_numpy(batch["input"])).detach().numpy()
    assert got.shape == (16, 10) and np.abs(got - ref).max() < 1e-4
    assert evaluate_pte(tmp_path / "f.pte", digits.test, task) == pytest.approx(evaluate_torch(model, digits.test, task),
                                                                                 abs=1 / len(digits.test))
    q = quantize_pt2e(model, task, [task.feed(digits.train, slice(0, 64))])
    qinfo = export_pte(q, tmp_path / "q.pte", task)
    assert qinfo["portable_ops"] == {} and any("quantize" in op for op in qinfo["delegated_ops"])
    assert (tmp_path / "q.pte").stat().st_size < (tmp_path / "f.pte").stat().st_size
    fallback = export_pte(_CumsumHead().eval(), tmp_path / "c.pte", task)
    assert any("cumsum" in op for op in fallback["portable_ops"]), fallback


@pytest.mark.slow
def test_onnx_and_pte_are_timed_in_one_interleaved_run(tmp_path):
    from edgedistill.export import export_onnx
    from edgedistill.export.executorch import export_pte
    from edgedistill.profile import profile_models

    task = image_task((1, 8, 8), 10)
    model = _cnn()
    files = {"onnx": export_onnx(model, tmp_path / "m.onnx", task), "pte": tmp_path / "m.pte"}
    export_pte(model, files["pte"], task)
    stats = profile_models(files, load_target("x86_executorch"), runs=20, warmup=2, burst=5, rounds=2,
                           op_profile_runs=0)
    assert stats["onnx"]["providers"] == ["CPUExecutionProvider"]
    assert stats["pte"]["providers"][0] == "executorch" and stats["pte"]["threads"] == 1
    assert stats["onnx"]["runs"] == stats["pte"]["runs"] == 20 and len(stats["pte"]["pids"]) == 2


# ------------------------------------------------------------------------------------------- end to end
FAST_ET = [
    "teacher.train.epochs=6", "stages.0.train.epochs=8", "teacher.model.channels=[32,64,128]",
    "teacher.model.hidden=128", "stages.1.calibration.samples=64", "stages.2.calibration.samples=128",
    "profile.runs=20", "profile.warmup=2", "targets=[x86_vnni,x86_executorch]",
]


@pytest.fixture(scope="module")
def et_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("et") / "mobile_executorch"
    proc = run_cli("compress", "--recipe", "mobile_executorch", "--out", str(out), *set_args(FAST_ET))
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    assert "model.pte" in proc.stdout
    return out


@pytest.mark.slow
def test_recipe_ships_pte_beside_onnx_each_scored_and_timed_in_its_runtime(et_run):
    report = json.loads((et_run / "report.json").read_text())
    dep, pte = report["models"]["deployed"], report["models"]["deployed_executorch"]
    assert dep["metric_measured_on"] == "onnxruntime" and pte["metric_measured_on"] == "executorch"
    assert pte["path"] == "bundle/model.pte" and pte["delegate"] == "xnnpack" and pte["precision"] in ("fp32", "int8")
    assert 0.0 < pte["metric"] <= 1.0 and pte["portable_ops"] == {}
    assert set(pte["latency"]) == {"x86_executorch"}  # a .pte is timed on ExecuTorch targets only
    et, onnx = pte["latency"]["x86_executorch"], dep["latency"]["x86_executorch"]
    assert et["runtime"] == "executorch" and onnx["runtime"] == "onnxruntime"
    assert et["runs"] == onnx["runs"] and "ratio_vs_teacher" in et  # one interleaved run with the teacher
    stage = next(s for s in report["stages"] if s["kind"] == "executorch")["details"]["executorch"]
    assert set(stage["files"]) == {"fp32", "int8"} and stage["keep"]["policy"] == "fastest"
    assert stage["latency"]["measured"] and set(stage["latency"]["ratio_vs_onnx"]) == {"pte_fp32", "pte_int8"}
    manifest = json.loads((et_run / "bundle" / "manifest.json").read_text())
    import hashlib

    assert manifest["files"]["model.pte"]["sha256"] == hashlib.sha256((et_run / "bundle" / "model.pte").read_bytes()).hexdigest()
    assert manifest["runtimes"]["executorch"]["runtime_version"] == "1.5.1"
    card = (et_run / "bundle" / "MODEL_CARD.md").read_text()
    assert "measured by running `model.pte` in ExecuTorch's runtime" in card and "| x86_executorch | model.pte |" in card


@pytest.mark.slow
def test_int8_pte_agrees_with_the_float_student_on_test_images(et_run, digits):
    """Done-when: the int8 .pte picks the float student's class on >= 99% of the test images."""
    from edgedistill.evaluate import onnx_predictor
    from edgedistill.export.executorch import pte_predictor
    from edgedistill.tasks.image_classification import ImageClassification

    report = json.loads((et_run / "report.json").read_text())
    stage = next(s for s in report["stages"] if s["kind"] == "executorch")["details"]["executorch"]
    task = ImageClassification(None, digits)
    batch = task.feed(digits.test, slice(None))
    student = onnx_predictor(et_run / "compare" / "student.onnx")(batch)["logits"]  # the float student's export
    int8 = pte_predictor(et_run / stage["files"]["int8"]["file"], task)(batch)["logits"]
    agreement = float((student.argmax(1) == int8.argmax(1)).mean())
    assert len(batch["input"]) == 360 and agreement >= 0.99, agreement
    assert stage["files"]["int8"]["top1_agreement_vs_torch"] >= 0.99  # the stage's own check, on validation


@pytest.mark.slow
def test_verify_runs_both_models_and_catches_a_damaged_pte(et_run, tmp_path):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(et_run / "bundle", bundle)
    proc = run_cli("verify", str(bundle))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads((bundle / "manifest.json").read_text())
    from edgedistill.report.bundle_executorch import verify_runtimes
    from edgedistill.report.verify import integrity as _integrity

    assert verify_runtimes(bundle, manifest) == []
    wrong = {**manifest, "runtimes": {"executorch": {**manifest["runtimes"]["executorch"],
                                                     "inputs": [{"name": "input", "shape": [1, 3, 8, 8], "dtype": "float32"}]}}}
    wrong["integrity"] = _integrity(wrong)
    assert "differ from the manifest" in verify_runtimes(bundle, wrong)[0]
    raw = bytearray((bundle / "model.pte").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (bundle / "model.pte").write_bytes(bytes(raw))
    proc = run_cli("verify", str(bundle))
    assert proc.returncode == 1 and "model.pte" in proc.stdout


# The packages ExecuTorch's Python runtime imports (measured: a fresh venv needs exactly these; torch because the
# pybindings link libtorch). No edgedistill, no onnxruntime, no scikit-learn.
RUNTIME_ONLY = ("executorch", "torch", "torchgen", "functorch", "numpy", "typing_extensions", "sympy", "mpmath", "ruamel",
                "flatbuffers", "tabulate", "filelock", "networkx")


def _runtime_only_env(root: Path) -> Path:
    """A fresh virtual environment (no system site-packages) that sees only RUNTIME_ONLY, linked, not copied."""
    pkgs = root / "pkgs"
    pkgs.mkdir(parents=True)
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(root / "env")
    for name in RUNTIME_ONLY:
        spec = importlib.util.find_spec(name)
        src = Path(spec.submodule_search_locations[0]) if spec.submodule_search_locations else Path(spec.origin)
        (pkgs / src.name).symlink_to(src)
        if (src.parent / f"{name}.libs").exists():
            (pkgs / f"{name}.libs").symlink_to(src.parent / f"{name}.libs")
    site = next((root / "env" / "lib").glob("python*/site-packages"))
    (site / "runtime_only.pth").write_text(f"{pkgs}\n")
    return root / "env" / "bin" / "python"


@pytest.mark.slow
def test_python_snippet_runs_with_only_the_runtime(et_run, tmp_path):
    python = _runtime_only_env(tmp_path / "venv")
    env = {"PATH": os.environ.get("PATH", ""), "OMP_NUM_THREADS": "1"}
    missing = subprocess.run([str(python), "-I", "-c", "import importlib.util as u; "
                              "print([m for m in ('edgedistill', 'onnxruntime', 'sklearn') if u.find_spec(m)])"],
                             capture_output=True, text=True, env=env, timeout=60)
    assert missing.stdout.strip() == "[]", missing.stdout + missing.stderr
    snippet = et_run / "bundle" / "usage" / "executorch" / "predict.py"
    proc = subprocess.run([str(python), "-I", str(snippet)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    labels = (et_run / "bundle" / "labels.txt").read_text().splitlines()
    assert re.search(r"prediction for an all-zero input: \['(.+)'\]", proc.stdout).group(1) in labels


def _kotlin_swift_values(kt: str, swift: str) -> dict[str, dict]:
    """Every name, shape and constant the mobile snippets hard-code, parsed back out of the source."""
    def floats(s: str) -> list[float]:
        return [float(v.rstrip("f")) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?f?", s)]

    k = {"shape": [int(v) for v in re.search(r"longArrayOf\(([^)]*)\)", kt).group(1).replace("L", "").split(",")],
         "scale": float(re.search(r"val scale = ([\d.e-]+)f", kt).group(1)),
         "mean": floats(re.search(r"val mean = floatArrayOf\(([^)]*)\)", kt).group(1)),
         "std": floats(re.search(r"val std = floatArrayOf\(([^)]*)\)", kt).group(1)),
         "io": re.search(r'// Input "(\w+)" \((\w+)\), output "(\w+)" \((\w+), shape (\[[^\]]*\])\)', kt).groups(),
         "package": re.search(r'implementation\("([^"]+)"\)', kt).group(1)}
    s = {"shape": json.loads(re.search(r"let shape: \[Int\] = (\[[^\]]*\])", swift).group(1)),
         "scale": float(re.search(r"let scale: Float = ([\d.e-]+)", swift).group(1)),
         "mean": json.loads(re.search(r"let mean: \[Float\] = (\[[^\]]*\])", swift).group(1)),
         "std": json.loads(re.search(r"let std: \[Float\] = (\[[^\]]*\])", swift).group(1)),
         "io": re.search(r'// Input "(\w+)" \((\w+)\), output "(\w+)" \((\w+), shape (\[[^\]]*\])\)', swift).groups(),
         "resource": re.search(r'forResource: "(\w+)", ofType: "(\w+)"', swift).groups(),
         "branch": re.search(r'branch "swiftpm-([\w.]+)"', swift).group(1),
         "labels": json.loads(re.search(r"let labels: \[String\] = (\[.*\])", swift).group(1))}
    return {"kotlin": k, "swift": s}


@pytest.mark.slow
def test_kotlin_and_swift_snippets_match_the_manifest(et_run):
    bundle = et_run / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    entry = manifest["runtimes"]["executorch"]
    kt = (bundle / "usage" / "executorch" / "EdgeModel.kt").read_text()
    swift = (bundle / "usage" / "executorch" / "EdgeModel.swift").read_text()
    got = _kotlin_swift_values(kt, swift)
    inp, out = entry["inputs"][0], entry["outputs"][0]
    pre = manifest["preprocessing"]
    for lang in ("kotlin", "swift"):
        g = got[lang]
        assert g["shape"] == inp["shape"] == [1, 1, 8, 8]
        assert g["io"][:4] == (inp["name"], inp["dtype"], out["name"], out["dtype"]) == ("input", "float32", "logits",
                                                                                         "float32")
        assert json.loads(g["io"][4]) == out["shape"] == [1, 10]
        assert g["scale"] == pytest.approx(float(pre.get("scale", 1.0)))
        assert g["mean"] == pytest.approx([float(m) for m in pre.get("mean", [])] or [0.0])
        assert g["std"] == pytest.approx([float(m) for m in pre.get("std", [])] or [1.0])
    assert got["kotlin"]["package"] == entry["android"] == "org.pytorch:executorch-android:1.5.1"
    assert got["swift"]["branch"] == entry["runtime_version"] and got["swift"]["resource"] == ("model", "pte")
    assert got["swift"]["labels"] == manifest["class_labels"]
    assert {"usage/executorch/EdgeModel.kt", "usage/executorch/EdgeModel.swift",
            "usage/executorch/predict.py"} <= set(manifest["files"])


@pytest.mark.slow
def test_verify_without_executorch_says_so_instead_of_passing(et_run):
    code = ("import sys; sys.modules['executorch'] = None\n"
            f"sys.argv = ['edgedistill', 'verify', {str(et_run / 'bundle')!r}]\n"
            "from edgedistill.cli.main import main\n"
            "main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "model.pte" in proc.stderr and "pip install executorch==1.5.1" in proc.stderr and "intact" not in proc.stdout


@pytest.mark.slow
def test_cli_evaluate_scores_the_pte_in_executorch_as_the_report_did(et_run):
    report = json.loads((et_run / "report.json").read_text())
    proc = run_cli("evaluate", str(et_run / "bundle" / "model.pte"), "--data", "digits", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["measured_on"] == "executorch" and out["samples"] == 360
    assert out["metric"]["value"] == pytest.approx(report["models"]["deployed_executorch"]["metric"], abs=1e-12)
