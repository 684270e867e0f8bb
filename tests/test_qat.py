"""QAT on torchao's PT2E path: the exported QDQ file computes what the converted torch model computes, stores
the preset's integer grids, and the recipe check refuses QAT where the path does not work."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from edgedistill.evaluate import onnx_predictor, torch_predictor
from edgedistill.models import build_model
from edgedistill.quantize.presets import PRESETS
from edgedistill.quantize.stage import QuantizeConfig
from edgedistill.tasks import build_task

from .conftest import run_cli


def _qat(digits, preset: str, steps: int = 30):
    """A small CNN, fake-quantized with the preset and trained a few steps (labels only: the path is under test)."""
    from edgedistill.quantize.qat import ObserveInTraining, prepare_qat

    torch.manual_seed(0)
    student = build_model({"name": "cnn", "channels": [8, 16]}, digits.input_shape, 10)
    x, y = torch.from_numpy(digits.train.x), torch.from_numpy(digits.train.y)
    prepared = prepare_qat(student, digits.input_shape, PRESETS[preset], PRESETS[preset].per_channel, x[:256])
    wrapped = ObserveInTraining(prepared, observe_epochs=None)
    opt = torch.optim.Adam(wrapped.parameters(), 3e-3)
    wrapped.train()
    for step in range(steps):
        idx = torch.arange(step * 64, step * 64 + 64) % len(x)
        loss = F.cross_entropy(wrapped(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    wrapped.eval()
    return student, prepared


def _weights_and_zero_points(path):
    model = onnx.load(str(path))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    weights = [inits[n.input[0]] for n in dq if n.input[0] in inits]
    q_zero_points = [inits[n.input[2]] for n in model.graph.node
                     if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits]
    return weights, q_zero_points


@pytest.mark.slow
def test_pt2e_file_computes_what_the_converted_model_computes(digits, tmp_path):
    from edgedistill.quantize.qat import convert, export_converted, fake_vs_file, float_weights_back

    student, prepared = _qat(digits, "x86_vnni")
    converted = convert(prepared)
    path = export_converted(converted, tmp_path / "qat.onnx", digits.input_shape)
    x, task = digits.val.x, build_task(None, digits)
    ref = torch_predictor(converted, task)({"input": x})["logits"]
    got = onnx_predictor(path)({"input": x})["logits"]
    assert ref.shape == got.shape == (len(x), 10)
    # the same integer arithmetic: at most a rounding step apart, and the same decisions on real samples
    assert np.abs(ref - got).max() <= 0.05 * (ref.max() - ref.min()), np.abs(ref - got).max()
    assert (ref.argmax(1) == got.argmax(1)).mean() >= 0.99
    assert fake_vs_file(prepared, path, {"input": x}, task)["top1_agreement"] >= 0.99
    # weights are stored as int8 integers (the file is smaller than float, not a float copy plus Q nodes)
    weights, zero_points = _weights_and_zero_points(path)
    assert weights and all(w.dtype == np.int8 for w in weights)
    assert not any(n.metadata_props for n in onnx.load(str(path)).graph.node)  # no exporter debug payload
    assert zero_points and all(z.dtype == np.uint8 for z in zero_points)  # u8 activations on x86_vnni
    # the trained weights go back into the student's own layers (BN folded into an exact identity)
    back = float_weights_back(student, prepared)
    assert back is not None
    assert (torch_predictor(back, task)({"input": x})["logits"].argmax(1) == ref.argmax(1)).mean() >= 0.95


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["x86_avx2", "tensorrt"])
def test_pt2e_file_holds_the_presets_grids(digits, tmp_path, preset):
    from edgedistill.quantize.qat import export_qdq

    _, prepared = _qat(digits, preset, steps=5)
    weights, zero_points = _weights_and_zero_points(export_qdq(prepared, tmp_path / "q.onnx", digits.input_shape))
    assert weights and zero_points
    if preset == "x86_avx2":  # 7-bit weights: VPMADDUBSW's 16-bit intermediate cannot saturate
        assert all(w.min() >= -64 and w.max() <= 63 for w in weights)
    else:  # TensorRT: symmetric int8 activations
        assert all(z.dtype == np.int8 and not z.any() for z in zero_points)


def test_qat_is_refused_at_validation_where_the_path_does_not_work():
    qat = QuantizeConfig(method="qat")
    for task in ("text_classification", "text_embedding", {"name": "text_classification"}):
        problem = qat.check_recipe(SimpleNamespace(task=task))
        assert problem is not None and problem[0] == ("method",) and "static" in problem[2]
    assert qat.check_recipe(SimpleNamespace(task="image_classification")) is None
    assert qat.check_recipe(SimpleNamespace()) is None  # recipes without a task are image classification
    assert QuantizeConfig(method="dynamic").check_recipe(SimpleNamespace(task="text_embedding")) is None
    assert run_cli("validate", "digits_qat").returncode == 0
