"""Tasks: named inputs and outputs through export, parity, calibration and scoring, for models that take
several inputs of different dtypes and return several outputs in any container."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgedistill.data import Dataset, Split
from edgedistill.evaluate import onnx_predictor, torch_predictor
from edgedistill.export import export_onnx, parity
from edgedistill.tasks import MetricSpec, Task, TensorSpec, build_task, unwrap_outputs


class TwoInTwoOut(nn.Module):
    """Pixels (float) plus a token mask (int64, variable length) in; logits and an embedding out, as a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.tok = nn.Embedding(5, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, pixels: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        img = self.conv(pixels).mean(dim=(2, 3))
        emb = img + self.tok(mask).mean(dim=1)
        return {"logits": self.head(emb), "embedding": emb}


class PairTask(Task):
    kind = "pair_test"
    report_name: ClassVar[str] = "classification"
    metric = MetricSpec("accuracy", True)
    inputs = (TensorSpec("pixels", "float32", ("batch", 1, 6, 6)), TensorSpec("mask", "int64", ("batch", "sequence")))
    outputs = (TensorSpec("logits", "float32", ("batch", 3)), TensorSpec("embedding", "float32", ("batch", 4)))

    def compute_metric(self, outputs, targets):
        return float((outputs["logits"].argmax(1) == targets).mean())


def _split(n: int, seq: int, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    return Split({"pixels": rng.standard_normal((n, 1, 6, 6)).astype(np.float32),
                  "mask": rng.integers(0, 5, (n, seq)).astype(np.int64)}, (np.arange(n) % 3).astype(np.int64))


def test_multi_input_multi_output_export_has_named_dynamic_io_and_parity_on_every_output(tmp_path):
    torch.manual_seed(0)
    model, task = TwoInTwoOut().eval(), PairTask(None, None)
    path = export_onnx(model, tmp_path / "m.onnx", task)
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["pixels", "mask"]
    assert [o.name for o in graph.output] == ["logits", "embedding"]
    assert graph.input[1].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert [d.dim_param for d in graph.input[1].type.tensor_type.shape.dim] == ["batch", "sequence"]
    for n, seq in ((1, 2), (7, 9)):  # other batch sizes and sequence lengths than the export example's
        batch = task.feed(_split(n, seq), slice(None))
        check = parity(model, path, batch, task)
        assert set(check["outputs"]) == {"logits", "embedding"}
        assert check["max_abs_diff"] < 1e-5 and check["top1_agreement"] == 1.0
    with torch.no_grad():  # change one output's weights: the check must see it on that output only
        model.head.weight.mul_(-1.0)
    check = parity(model, path, task.feed(_split(8, 3), slice(None)), task)
    assert check["outputs"]["logits"] > 1e-3 and check["outputs"]["embedding"] < 1e-5


def test_one_metric_path_for_torch_and_onnx(tmp_path):
    torch.manual_seed(0)
    model, task = TwoInTwoOut().eval(), PairTask(None, None)
    path = export_onnx(model, tmp_path / "m.onnx", task)
    split = _split(40, 4, seed=1)
    assert task.score(torch_predictor(model, task), split) == task.score(onnx_predictor(path), split)


def test_unwrap_reads_tensors_tuples_dicts_and_hf_outputs():
    t = torch.ones(2, 3)
    assert unwrap_outputs(t, ("logits",))["logits"] is t
    assert set(unwrap_outputs((t, t + 1), ("logits", "embedding"))) == {"logits", "embedding"}
    assert unwrap_outputs({"out": t}, ("logits",))["logits"] is t  # the first tensor stands in for the first name
    assert unwrap_outputs("text", ("logits",)) == {}
    transformers = pytest.importorskip("transformers")
    out = transformers.modeling_outputs.ImageClassifierOutputWithNoAttention(logits=t)
    assert unwrap_outputs(out, ("logits",))["logits"] is t


def test_calibration_feeds_integer_inputs_untouched():
    from edgedistill.calibration import ArrayCalibrationReader

    split = _split(10, 4)
    reader = ArrayCalibrationReader(split.inputs, np.arange(10), batch_size=4,
                                    dtypes={"pixels": np.float32, "mask": np.int64})
    first = reader.get_next()
    assert first["mask"].dtype == np.int64 and np.array_equal(first["mask"], split.inputs["mask"][:4])
    assert first["pixels"].dtype == np.float32 and len(reader) == 3


def test_image_task_is_todays_behaviour(digits):
    task = build_task(None, digits)
    assert task.kind == "image_classification" and task.report_name == "classification"
    assert [s.to_json() for s in task.inputs] == [{"name": "input", "dtype": "float32", "shape": ["batch", 1, 8, 8]}]
    assert [s.to_json() for s in task.outputs] == [{"name": "logits", "dtype": "float32", "shape": ["batch", 10]}]
    assert isinstance(digits, Dataset) and digits.train.inputs.keys() == {"input"}
