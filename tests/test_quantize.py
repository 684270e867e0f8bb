"""PTQ through ONNX Runtime, per-target presets, fallback, keep policy and per-op report — on real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from edgedistill.calibration import select_samples

from edgedistill.config import TrainConfig
from edgedistill.evaluate import evaluate_onnx, onnx_predictor
from edgedistill.export import export_onnx
from edgedistill.models import build_model
from edgedistill.quantize.fallback import accuracy_fallback
from edgedistill.quantize.keep import decide, ratio_vs
from edgedistill.quantize.opreport import op_report
from edgedistill.quantize.presets import PRESETS
from edgedistill.quantize.ptq import (
    convert_fp16,
    preprocess,
    quantizable_nodes,
    quantize_dynamic_int8,
    quantize_static_qdq,
)
from edgedistill.tasks import build_task
from edgedistill.train import fit

from .conftest import run_cli


def _logits(path, x):
    return onnx_predictor(path)({"input": x})["logits"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits):
    """A small CNN trained for a few epochs on digits, exported and pre-processed once for the module."""
    d = tmp_path_factory.mktemp("quant")
    torch.manual_seed(0)
    model = build_model({"name": "cnn", "channels": [16, 32]}, digits.input_shape, 10)
    fit(model, digits.train, digits.val, lambda m, x, y, i: F.cross_entropy(m(x["input"]), y), TrainConfig(epochs=2),
        batch_size=64, task=build_task(None, digits))
    float_path = export_onnx(model.eval(), d / "float.onnx", digits.input_shape)
    return {"dir": d, "float": float_path, "pre": preprocess(float_path, d / "pre.onnx"),
            "idx": select_samples(digits.train.y, 128, "balanced")}


def _static(trained, digits, name, preset="x86_vnni", **kw) -> Path:
    kw.setdefault("per_channel", PRESETS[preset].per_channel)
    return quantize_static_qdq(trained["pre"], trained["dir"] / name, digits.train.x, trained["idx"],
                               preset=PRESETS[preset], **kw)


def _inits(path) -> dict[str, np.ndarray]:
    return {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


def _qdq(path) -> list[tuple[onnx.NodeProto, np.ndarray, np.ndarray]]:
    """(node, scale, zero-point) of every Q/DQ node whose parameters are initializers."""
    graph, inits = onnx.load(str(path)).graph, _inits(path)
    return [(n, inits[n.input[1]], inits[n.input[2]]) for n in graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in inits]


def test_tensorrt_preset_is_symmetric_int8_with_zero_points_of_zero(trained, digits):
    trt = _static(trained, digits, "trt.onnx", "tensorrt")
    qdq = _qdq(trt)
    activation_zps = [zp for n, _, zp in qdq if n.op_type == "QuantizeLinear"]
    assert activation_zps and qdq
    assert all(zp.dtype == np.int8 and not zp.any() for _, _, zp in qdq if zp.dtype != np.int32)
    # weights per channel: a weight DQ carries one scale per output channel
    assert any(scale.size > 1 for _, scale, _ in qdq)
    # the same model under the x86 preset uses u8 activations with non-zero zero-points (logits go negative),
    # so the check above can tell the two apart
    x86 = _qdq(_static(trained, digits, "x86.onnx", "x86_vnni"))
    assert any(zp.dtype == np.uint8 and zp.any() for _, _, zp in x86)
    agree = (_logits(trt, digits.test.x).argmax(1) == _logits(trained["float"], digits.test.x).argmax(1))
    assert agree.mean() > 0.95


def test_avx2_preset_keeps_weights_within_seven_bits(trained, digits):
    def weight_range(path):
        graph, inits = onnx.load(str(path)).graph, _inits(path)
        ws = [inits[n.input[0]] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
              and inits[n.input[0]].dtype == np.int8]
        return max(int(np.abs(w.astype(np.int32)).max()) for w in ws)

    assert weight_range(_static(trained, digits, "avx2.onnx", "x86_avx2")) <= 64
    assert weight_range(_static(trained, digits, "vnni.onnx", "x86_vnni")) > 64


def test_calibration_methods_change_the_activation_scales(trained, digits):
    scales = {}
    for method in ("minmax", "entropy", "percentile"):
        path = _static(trained, digits, f"{method}.onnx", method=method, percentile=99.0)
        scales[method] = {n.input[1]: s.item() for n, s, _ in _qdq(path) if n.op_type == "QuantizeLinear"}
        assert evaluate_onnx(path, digits.val, build_task(None, digits)) > 0.5  # each file is a working classifier
    assert scales["minmax"].keys() == scales["entropy"].keys() == scales["percentile"].keys()
    for other in ("entropy", "percentile"):
        diffs = [abs(scales["minmax"][k] - scales[other][k]) / scales["minmax"][k] for k in scales["minmax"]]
        assert max(diffs) > 0.01, other
    # clipping methods never widen a range beyond the observed min/max
    assert all(scales["percentile"][k] <= scales["minmax"][k] * 1.0001 for k in scales["minmax"])


def test_dynamic_quantization_uses_integer_kernels(trained, digits):
    dyn = quantize_dynamic_int8(trained["pre"], trained["dir"] / "dyn.onnx", preset=PRESETS["x86_vnni"],
                                per_channel=False)
    ops = {n.op_type for n in onnx.load(str(dyn)).graph.node}
    assert {"DynamicQuantizeLinear", "ConvInteger"} <= ops
    assert abs(evaluate_onnx(dyn, digits.test, build_task(None, digits)) - evaluate_onnx(trained["float"], digits.test, build_task(None, digits))) < 0.05


def test_fp16_file_runs_and_matches_float(trained, digits):
    half = convert_fp16(trained["pre"], trained["dir"] / "fp16.onnx")
    inits = _inits(half)
    assert any(v.dtype == np.float16 for v in inits.values())
    assert not any(v.dtype == np.float32 and v.size > 16 for v in inits.values())
    ref, got = _logits(trained["float"], digits.test.x), _logits(half, digits.test.x)
    np.testing.assert_allclose(got, ref, atol=2e-2, rtol=1e-2)
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.99


def _runs_in_float(path: Path, node_name: str) -> bool:
    """The node exists and its weight is a float initializer, not the output of a DequantizeLinear."""
    graph = onnx.load(str(path)).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    floats = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    node = next(n for n in graph.node if n.name == node_name)
    return producers.get(node.input[1]) != "DequantizeLinear" and node.input[1] in floats


def test_fallback_keeps_the_chosen_nodes_float_in_the_file(trained, digits):
    nodes = quantizable_nodes(trained["pre"])
    assert len(nodes) == 3  # two convs and the classifier

    def build(excluded, out):
        return _static(trained, digits, str(Path("fb") / out.name), nodes_to_exclude=excluded,
                       cache_path=trained["dir"] / "cal.json")

    (trained["dir"] / "fb").mkdir(exist_ok=True)

    def measure(p):
        return evaluate_onnx(p, digits.val, build_task(None, digits))

    # an impossible budget: the search walks its full length and still returns the best file it found
    result = accuracy_fallback(nodes, 1.0, -1.0, build, measure, trained["dir"] / "fb", max_float_nodes=2)
    assert not result.met_budget
    assert [len(s.float_nodes) for s in result.steps] == [0, 1, 2]
    assert {r["node"] for r in result.sensitivity} == set(nodes)
    assert result.best.metric == max(s.metric for s in result.steps) and result.best.path.exists()
    for step in result.steps:
        for node in nodes:
            assert _runs_in_float(step.path, node) == (node in step.float_nodes), (node, step.float_nodes)
    # a budget the all-int8 file already meets stops at once, with nothing left in float
    easy = accuracy_fallback(nodes, measure(trained["float"]), 1.0, build, measure, trained["dir"] / "fb",
                             max_float_nodes=2)
    assert easy.met_budget and easy.best.float_nodes == [] and len(easy.steps) == 1


def test_op_report_counts_int8_and_float_operators(trained, digits):
    feed = {"input": digits.val.x[:1]}
    q = op_report(_static(trained, digits, "ops.onnx"), feed)
    f = op_report(trained["float"], feed)
    assert q["file"]["int8_nodes"] >= 3 and q["file"]["convert_nodes"] > 0
    assert f["file"]["int8_nodes"] == 0 and f["file"]["float_nodes"] == f["file"]["nodes"]
    assert q["executed"]["kernels"].get("int8", 0) >= 3 and q["executed"]["share"]["int8"] > 0  # structure, not a time
    assert f["executed"]["share"]["float"] == pytest.approx(1.0)
    assert any(r["op"] in ("QLinearConv", "QGemm") for r in q["executed"]["top"])


def test_keep_policy_when_int8_really_is_slower(tmp_path, digits):
    """A 4-channel CNN on 8×8 images: Q/DQ overhead outweighs the int8 arithmetic. Measured, not assumed."""
    from edgedistill.config import Strict  # noqa: F401  (keeps the import graph identical to the stage's)
    from edgedistill.profile import profile_models
    from edgedistill.target import availability, load_target

    target = load_target("x86_avx2")
    if not availability(target)[0]:
        target = load_target("x86_vnni")
    if not availability(target)[0]:
        pytest.skip("no x86 CPU target usable here")
    torch.manual_seed(0)
    tiny = build_model({"name": "cnn", "channels": [4]}, digits.input_shape, 10).eval()
    fp = export_onnx(tiny, tmp_path / "tiny.onnx", digits.input_shape)
    q = quantize_static_qdq(preprocess(fp, tmp_path / "pre.onnx"), tmp_path / "tiny.int8.onnx", digits.train.x,
                            np.arange(64), preset=PRESETS["x86_vnni"], per_channel=True)
    stats = profile_models({"float": fp, "int8": q}, target, runs=200, warmup=20, burst=10,
                           feed={"input": digits.val.x[:1]}, op_profile_runs=0)
    measured = ratio_vs(stats, "float", "int8")
    assert measured["ratio"] > 0 and measured["bursts"] >= 10
    # the decision follows the measured ratio (usually int8 is slower here, but load can move it: not asserted)
    assert decide("fastest", fp, q, measured, "int8")["shipped"] == ("int8" if measured["ratio"] < 1.0 else "float")
    ratio = {**measured, "ratio": max(measured["ratio"], 1 / measured["ratio"])}  # int8 slower, whatever was measured
    fastest = decide("fastest", fp, q, ratio, "int8")
    assert fastest["shipped"] == "float" and fastest["quantized_faster"] is False
    assert "NOT faster" in fastest["reason"]
    assert decide("quantized", fp, q, ratio, "int8")["shipped"] == "int8"
    smallest = decide("smallest", fp, q, ratio, "int8")
    assert smallest["shipped"] == ("int8" if smallest["size_mb"]["int8"] <= smallest["size_mb"]["float"] else "float")
    # and if int8 were measured faster, `fastest` would keep it
    assert decide("fastest", fp, q, {**ratio, "ratio": 1 / ratio["ratio"]}, "int8")["shipped"] == "int8"


def test_bad_quantize_settings_fail_validation(tmp_path):
    proc = run_cli("validate", "mobile", "--set", "stages.1.preset=avx9000")
    assert proc.returncode == 2 and "preset" in proc.stderr and "x86_vnni" in proc.stderr
    proc = run_cli("validate", "mobile", "--set", "stages.1.method=qat", "--set", "stages.1.fallback.max_drop=0.01")
    assert proc.returncode == 2 and "fallback" in proc.stderr


def test_unmeasured_latency_names_the_real_cause(tmp_path):
    """measure_latency: false used to be reported as 'no usable target on this machine'."""
    a, b = tmp_path / "f.onnx", tmp_path / "q.onnx"
    a.write_bytes(b"0" * 400)
    b.write_bytes(b"0" * 100)
    off = decide("fastest", a, b, None, "int8", unmeasured="measure_latency: false")
    assert "latency was not measured (measure_latency: false)" in off["reason"] and "usable" not in off["reason"]
    assert "no usable target" in decide("fastest", a, b, None, "int8")["reason"]


def test_keep_max_drop_ships_float_when_quantization_cost_too_much(tmp_path):
    """An accuracy limit overrides every policy: a faster or smaller int8 file that lost more than allowed on
    validation never ships; within the limit the policy decides as before."""
    a, b = tmp_path / "f.onnx", tmp_path / "q.onnx"
    a.write_bytes(b"0" * 400)
    b.write_bytes(b"0" * 100)
    faster = {"ratio": 0.5, "bursts": 20}
    for policy in ("quantized", "fastest", "smallest"):
        over = decide(policy, a, b, faster, "int8", drop=0.003, max_drop=0.002)
        assert over["shipped"] == "float" and "lost 0.003" in over["reason"] and "keep_max_drop 0.002" in over["reason"]
        assert over["val_drop"] == 0.003 and over["max_drop"] == 0.002
        assert decide(policy, a, b, faster, "int8", drop=0.002, max_drop=0.002)["shipped"] == "int8"
        assert decide(policy, a, b, faster, "int8", drop=0.5)["shipped"] == "int8"  # no limit set
    # a quantized file that gained accuracy (negative drop) is never held back by the limit
    assert decide("quantized", a, b, faster, "int8", drop=-0.01, max_drop=0.0)["shipped"] == "int8"
