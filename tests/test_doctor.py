"""`edgedistill doctor`: every runtime, extra and target with a usable flag and a reason."""

from __future__ import annotations

import json

import pytest

from edgedistill.doctor import diagnose, render
from edgedistill.target import builtin_target_names

from .conftest import run_cli


def test_diagnose_covers_targets_providers_and_extras(tmp_path):
    extra = tmp_path / "pi.yaml"
    extra.write_text("name: pi\narch: aarch64\nssh_host: 127.0.0.1\nssh_port: 1\n")
    rep = diagnose(extra_targets=[str(extra)])
    names = [t["name"] for t in rep["targets"]]
    assert names == [*builtin_target_names(), "pi"]
    for item in [*rep["targets"], *rep["extras"], *rep["onnxruntime"]["providers"]]:
        assert isinstance(item["usable"], bool) and item["reason"]
    assert any(p["name"] == "CPUExecutionProvider" and p["usable"] for p in rep["onnxruntime"]["providers"])
    assert {e["name"] for e in rep["extras"]} >= {"onnxruntime", "tensorrt", "torch-pruning"}
    text = render(rep)
    assert "targets:" in text and "nvidia_trt_fp16" in text


def test_doctor_probe_reports_an_unreachable_device(tmp_path):
    extra = tmp_path / "pi.yaml"
    extra.write_text("name: pi\narch: aarch64\nssh_host: 127.0.0.1\nssh_port: 1\n")
    rep = diagnose(extra_targets=[str(extra)], probe_remote=True)
    pi = rep["targets"][-1]
    if rep["ssh_client"]["usable"]:
        assert pi["usable"] is False and "127.0.0.1" in pi["reason"]


@pytest.mark.slow  # each CLI start imports torch (~4 s here)
def test_cli_doctor():
    proc = run_cli("doctor", "--json")
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert doc["onnxruntime"]["version"] and doc["targets"]
    proc = run_cli("doctor")
    assert proc.returncode == 0 and "targets:" in proc.stdout
