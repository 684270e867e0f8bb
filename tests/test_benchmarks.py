"""benchmarks/run.py keeps working: the quick vision workload runs the real toolchain end to end and writes
the JSON and Markdown the README's tables come from. (Its numbers are not checked: benchmarks are not
timed tests, and --quick models are tiny.)"""

from __future__ import annotations

import json
import subprocess
import sys

import onnx
import pytest

from .conftest import ROOT, SHARED_DATA

ROW_FIELDS = {"name", "onnx", "metric", "size_mb", "p50_ms_b1", "p90_ms_b1", "p50_ms_b32", "p90_ms_b32",
              "ratio_b1", "ratio_b32", "peak_rss_mb_b1", "macs_b1"}


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "mnist").exists(), reason="MNIST not found in ../shared/data")
def test_vision_quick_writes_every_row_from_real_files(tmp_path):
    out, work = tmp_path / "results", tmp_path / "work"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "vision", "--quick",
                           "--out", str(out), "--work", str(work), "--data-root", str(SHARED_DATA)],
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "vision_quick.json").read_text())
    rows = {r["name"]: r for r in result["rows"]}
    assert list(rows) == ["teacher_fp32", "teacher_ptq", "student_fp32", "student_ptq", "pipeline"]
    for name, row in rows.items():
        assert set(row) >= ROW_FIELDS, (name, ROW_FIELDS - set(row))
        onnx.checker.check_model(row["onnx"])  # the path recorded is the file that was measured
        assert 0.0 <= row["metric"] <= 1.0 and row["p50_ms_b1"] > 0 and row["macs_b1"] > 0
    assert rows["teacher_fp32"]["ratio_b1"] == 1.0
    ops = {n.op_type for n in onnx.load(rows["teacher_ptq"]["onnx"]).graph.node}
    assert "QuantizeLinear" in ops  # ORT's quantizer really ran on the teacher
    assert result["gemm_peak"]["gemm_int8"]["peak_ops_per_s"] > 0
    assert any("stage" in line for line in result["cost"])
    md = (out / "vision_quick.md").read_text()
    assert all(name in md for name in rows) and "python benchmarks/run.py vision --quick" in md
    # the teacher is cached: a second look-up finds the same file without training
    assert len(list((work / "teachers").glob("teacher-*.safetensors"))) == 1
