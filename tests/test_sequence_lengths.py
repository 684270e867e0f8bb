"""Targets can list token sequence lengths; the profiler's synthetic feed gives text inputs that length."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from edgedistill.profile.probe import synthetic_feed
from edgedistill.target import Target


def test_symbolic_token_axis_takes_the_sequence_length():
    inputs = [("input_ids", ["batch", "sequence"], "tensor(int64)"),
              ("attention_mask", ["batch", "sequence"], "tensor(int64)"),
              ("x", ["batch", 3], "tensor(float)")]
    feed = synthetic_feed(inputs, 2, sequence=7)
    assert feed["input_ids"].shape == feed["attention_mask"].shape == (2, 7)
    assert feed["input_ids"].dtype == np.int64 and feed["x"].shape == (2, 3)
    assert synthetic_feed(inputs, 2)["input_ids"].shape == (2, 1)  # without a length: 1, as before


def test_target_sequence_lengths_are_validated():
    assert Target(name="t", sequence_lengths=[128, 32]).sequence_lengths == [128, 32]
    assert Target(name="t").sequence_lengths == []
    with pytest.raises(ValidationError):
        Target(name="t", sequence_lengths=[0])
