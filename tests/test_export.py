"""Export parity: the file computes what the module computes, and the check notices when it does not."""

from __future__ import annotations

import onnx
import torch

from edgedistill.data import DataConfig, load_dataset
from edgedistill.export import export_onnx, parity
from edgedistill.models import build_model
from edgedistill.tasks import build_task


def test_export_parity_on_real_digits(tmp_path):
    data = load_dataset(DataConfig(name="digits"))
    torch.manual_seed(0)
    model = build_model({"name": "cnn", "channels": [8, 16]}, data.input_shape, data.num_classes).eval()
    path = export_onnx(model, tmp_path / "m.onnx", data.input_shape)
    onnx.checker.check_model(str(path))
    assert not (tmp_path / "m.onnx.data").exists()  # one self-contained file
    task = build_task(None, data)
    check = parity(model, path, {"input": data.val.x[:64]}, task)
    assert check["max_abs_diff"] < 1e-4 and check["top1_agreement"] == 1.0
    with torch.no_grad():  # change the module after export: parity must notice
        model[1][-1].weight.mul_(-1.0)
    assert parity(model, path, {"input": data.val.x[:64]}, task)["max_abs_diff"] > 1e-2


def test_export_has_dynamic_batch(tmp_path):
    import numpy as np

    from edgedistill.evaluate import onnx_predictor

    model = build_model({"name": "resnet", "channels": [8]}, (1, 8, 8), 10).eval()
    path = export_onnx(model, tmp_path / "r.onnx", (1, 8, 8))
    for batch in (1, 7):
        assert onnx_predictor(path)({"input": np.zeros((batch, 1, 8, 8), np.float32)})["logits"].shape == (batch, 10)
