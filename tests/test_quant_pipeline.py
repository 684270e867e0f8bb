"""The quantize stage end to end through the CLI: QAT with the teacher vs PTQ, fallback and keep in report.json."""

from __future__ import annotations

import json

import onnx
import pytest
from edgedistill.calibration import select_samples

from edgedistill.data import DataConfig, load_dataset
from edgedistill.evaluate import evaluate_onnx
from edgedistill.quantize.opreport import runs_quantized
from edgedistill.quantize.presets import PRESETS
from edgedistill.quantize.ptq import preprocess, quantize_static_qdq
from edgedistill.tasks import build_task

from .conftest import run_cli, set_args

SHORT = ["teacher.train.epochs=5", "stages.0.train.epochs=4", "profile.runs=60", "profile.warmup=10"]


def _quantize_details(report: dict) -> dict:
    return next(s for s in report["stages"] if s["kind"] == "quantize")["details"]


def _is_int8(path) -> bool:
    return any(n.op_type == "QuantizeLinear" for n in onnx.load(str(path)).graph.node)


@pytest.mark.slow
def test_qat_with_the_teacher_reaches_at_least_ptq_accuracy(tmp_path):
    out = tmp_path / "qat"
    proc = run_cli("compress", "--recipe", "digits_qat", "--out", str(out),
                   *set_args([*SHORT, "stages.1.qat.train.epochs=3", "stages.1.qat.observe_epochs=2"]))
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads((out / "report.json").read_text())
    details = _quantize_details(report)
    assert details["method"] == "qat" and details["qat"]["temperature"] == 2.0
    # the exported QDQ file computes what the fake-quantized model computed
    assert details["qat"]["fake_quant_vs_file"]["top1_agreement"] >= 0.99
    stage = out / "stages" / "2-quantize"
    qat_file = stage / "model.int8.onnx"
    assert _is_int8(qat_file) and _is_int8(out / "bundle" / "model.onnx")
    # PTQ of the very student QAT started from, with the same preset and calibration sample size
    data = load_dataset(DataConfig(name="digits"))
    ptq = quantize_static_qdq(preprocess(stage / "float.onnx", tmp_path / "pre.onnx"), tmp_path / "ptq.onnx",
                              data.train.x, select_samples(data.train.y, 256, "balanced"),
                              preset=PRESETS["x86_vnni"], per_channel=True)
    task = build_task(None, data)
    qat_acc, ptq_acc = evaluate_onnx(qat_file, data.test, task), evaluate_onnx(ptq, data.test, task)
    assert qat_acc >= ptq_acc, (qat_acc, ptq_acc)
    assert report["models"]["deployed"]["metric"] == qat_acc  # the shipped file is the QAT file, scored as a file


@pytest.mark.slow
def test_keep_max_drop_ships_the_float_file_when_int8_lost_too_much(tmp_path):
    """Calibration clipped at the 50.01st percentile makes the int8 file really lose accuracy; without a
    fallback, `keep: quantized` would ship it, but keep_max_drop holds it back and the float file (and the
    float student, for export's parity check) goes on."""
    out = tmp_path / "limit"
    proc = run_cli("compress", "--recipe", "digits_ptq", "--out", str(out),
                   *set_args([*SHORT, "stages.1.calibration.method=percentile", "stages.1.calibration.percentile=50.01",
                              "stages.1.keep=quantized", "stages.1.keep_max_drop=0.01"]))
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads((out / "report.json").read_text())
    details = _quantize_details(report)
    assert details["drop"] > 0.01, details["drop"]  # the clipped calibration really cost accuracy
    keep = details["keep"]
    assert keep["shipped"] == "float" and keep["max_drop"] == 0.01 and "keep_max_drop" in keep["reason"]
    assert not _is_int8(out / "bundle" / "model.onnx")
    digits = load_dataset(DataConfig(name="digits"))
    float_file = out / "stages" / "2-quantize" / "float.onnx"
    assert report["models"]["deployed"]["metric"] == pytest.approx(
        evaluate_onnx(float_file, digits.test, build_task(None, digits)))
    export = next(s for s in report["stages"] if s["kind"] == "export")["details"]
    assert export["parity"]["max_abs_diff"] < 1e-3  # the state after quantize is the float student


@pytest.mark.slow
def test_ptq_recipe_falls_back_reports_and_honours_keep(tmp_path):
    """Percentile calibration at the 50.01st percentile clips half of every activation range, so the int8
    file really loses accuracy on clean digits and fallback has to put nodes back in float; then
    `keep: fastest` decides on measured latency."""
    out = tmp_path / "ptq"
    proc = run_cli("compress", "--recipe", "digits_ptq", "--out", str(out),
                   *set_args([*SHORT, "stages.1.calibration.method=percentile", "stages.1.calibration.percentile=50.01",
                              "stages.1.fallback.max_drop=0.01"]))
    assert proc.returncode in (0, 1), proc.stderr
    details = _quantize_details(json.loads((out / "report.json").read_text()))
    fb = details["fallback"]
    steps = fb["steps"]
    assert len(steps) > 1, f"the outlier calibration should have cost accuracy: {steps}"
    assert details["float_val_metric"] - steps[0]["val_metric"] > fb["budget"]
    assert fb["met"] == (details["drop"] <= fb["budget"])
    assert details["quantized_val_metric"] == max(s["val_metric"] for s in steps)  # the best file is kept
    assert [r["node"] for r in fb["sensitivity"]][: len(fb["float_nodes"])] == fb["float_nodes"]
    # the nodes reported as float are float in the quantized file, the others are not
    stage_file = out / "stages" / "2-quantize" / "model.int8.onnx"
    graph = onnx.load(str(stage_file)).graph
    producers = {o: n for n in graph.node for o in n.output}
    constants = {i.name for i in graph.initializer}
    for node in graph.node:
        if node.name in fb["candidates"]:
            assert runs_quantized(node, producers, constants) != (node.name in fb["float_nodes"]), node.name
    # every node put back in float is priced in latency, measured with the other steps
    assert [c["node"] for c in fb["latency_cost"]] == steps[-1]["float_nodes"]
    latency = details["latency"]
    assert latency["measured"], latency
    ratio = latency["ratio_quantized_vs_float"]["ratio"]
    keep = details["keep"]
    assert keep["policy"] == "fastest"
    assert keep["shipped"] == ("int8" if ratio < 1.0 else "float")
    assert ("NOT faster" in keep["reason"]) == (ratio >= 1.0)
    assert _is_int8(out / "bundle" / "model.onnx") == (keep["shipped"] == "int8")
    counts = details["op_report"]["int8"]["file"]
    assert counts["convert_nodes"] > 0
