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


def test_fit_sequence_times_real_tokens_not_masked_padding():
    from edgedistill.profile.latency import fit_sequence

    ids = np.array([[101, 5, 6, 102, 0, 0], [101, 7, 8, 9, 10, 102]])
    feed = {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64), "token_type_ids": np.zeros_like(ids)}
    longer = fit_sequence(feed, 8)
    assert longer["input_ids"].tolist() == [[101, 5, 6, 102, 101, 5, 6, 102], [101, 7, 8, 9, 10, 102, 101, 7]]
    assert (longer["attention_mask"] == 1).all() and longer["token_type_ids"].shape == (2, 8)
    assert fit_sequence(feed, 3)["input_ids"].tolist() == [[101, 5, 6], [101, 7, 8]]
    image = {"input": np.ones((1, 3, 4, 4), np.float32)}
    assert fit_sequence(image, 8)["input"].shape == (1, 3, 4, 4)  # only token inputs change
