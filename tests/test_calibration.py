"""Calibration: sample selection, and a reader that streams bounded windows without changing the result."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from edgedistill.calibration import (
    ArrayCalibrationReader,
    calibration_window,
    can_cache,
    select_samples,
    strided_window,
)

from edgedistill.errors import UserError
from edgedistill.export import export_onnx
from edgedistill.models import build_model
from edgedistill.quantize.presets import PRESETS
from edgedistill.quantize.ptq import preprocess, quantize_static_qdq


def test_balanced_selection_covers_every_class_evenly(digits):
    y = digits.train.y
    idx = select_samples(y, 50, "balanced", seed=0)
    counts = np.bincount(y[idx], minlength=10)
    assert len(idx) == len(set(idx.tolist())) == 50
    assert counts.max() - counts.min() <= 1
    # random selection of the same size is not forced to be even, and is reproducible per seed
    r1, r2, r3 = (select_samples(y, 50, "random", seed=s) for s in (0, 0, 1))
    assert np.array_equal(r1, r2) and not np.array_equal(r1, r3)
    assert np.array_equal(select_samples(y, 5, "first"), np.arange(5))


def test_selection_caps_at_the_split_and_rejects_bad_input(digits):
    y = digits.train.y
    assert len(select_samples(y, 10**6, "random")) == len(y)
    with pytest.raises(UserError, match="selection"):
        select_samples(y, 10, "stratifed")
    with pytest.raises(UserError):
        select_samples(y[:0], 10, "random")


def test_reader_serves_windows_of_batches():
    x = np.arange(10 * 4, dtype=np.float32).reshape(10, 4)
    reader = ArrayCalibrationReader(x, np.arange(10), "input", batch_size=3)
    assert len(reader) == 4
    sizes = []
    while (batch := reader.get_next()) is not None:
        sizes.append(len(batch["input"]))
    assert sizes == [3, 3, 3, 1]
    reader.set_range(1, 3)
    got = [reader.get_next()["input"][0, 0] for _ in range(2)]
    assert got == [12.0, 24.0] and reader.get_next() is None
    assert strided_window(8, 8) is None and strided_window(12, 5) == 4 and strided_window(7, 3) == 1


def test_reported_window_is_the_one_calibration_uses():
    """10 batches, at most 8 in memory: the range cache takes windows of 8 (+2); ORT's inline striding needs 5."""
    assert calibration_window(10, 8) == (8 if can_cache() else 5)
    assert calibration_window(3, 8) == 3


def _scales(path) -> dict[str, np.ndarray]:
    graph = onnx.load(str(path)).graph
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    return {n.input[1]: inits[n.input[1]] for n in graph.node if n.op_type == "QuantizeLinear"}


@pytest.mark.parametrize("method", ["minmax", "entropy"])
def test_streaming_from_a_memory_map_gives_the_same_file(tmp_path, digits, method):
    """Windows of 2 batches (ORT merges them) must calibrate exactly like one pass over everything."""
    torch.manual_seed(0)
    model = build_model({"name": "cnn", "channels": [8, 16]}, digits.input_shape, 10)
    pre = preprocess(export_onnx(model, tmp_path / "f.onnx", digits.input_shape), tmp_path / "pre.onnx")
    np.save(tmp_path / "train.npy", digits.train.x)
    mapped = np.load(tmp_path / "train.npy", mmap_mode="r")
    idx = select_samples(digits.train.y, 96, "balanced")
    whole = quantize_static_qdq(pre, tmp_path / "whole.onnx", digits.train.x, idx, preset=PRESETS["x86_vnni"],
                                per_channel=True, method=method, batch_size=16, max_batches_in_memory=100)
    streamed = quantize_static_qdq(pre, tmp_path / "streamed.onnx", mapped, idx, preset=PRESETS["x86_vnni"],
                                   per_channel=True, method=method, batch_size=16, max_batches_in_memory=2)
    a, b = _scales(whole), _scales(streamed)
    assert a.keys() == b.keys() and len(a) >= 4
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5 if method == "minmax" else 0.05)
