"""Spearman and macro-F1 against reference computations written out the slow, obvious way (no scipy)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from edgedistill.evaluate.ranking import cosine_rows, macro_f1, rankdata, spearman


def _reference_ranks(values):
    """Rank = 1 + number strictly smaller + (number equal − 1) / 2, for each value."""
    return [1 + sum(w < v for w in values) + (sum(w == v for w in values) - 1) / 2 for v in values]


def _reference_spearman(x, y):
    rx, ry = _reference_ranks(list(x)), _reference_ranks(list(y))
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))


def test_ranks_average_ties():
    assert rankdata(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


@pytest.mark.parametrize("seed", range(5))
def test_spearman_matches_reference_with_ties(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, size=40).astype(float)  # many ties, like STS-B's gold scores
    y = x + rng.normal(0, 2, size=40)
    assert spearman(x, y) == pytest.approx(_reference_spearman(x, y), abs=1e-12)


def test_spearman_without_ties_is_the_textbook_formula():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    y = np.array([2.0, 1.0, 4.0, 3.0, 5.0])
    d2 = sum((a - b) ** 2 for a, b in zip(_reference_ranks(list(x)), _reference_ranks(list(y)), strict=True))
    assert spearman(x, y) == pytest.approx(1 - 6 * d2 / (5 * (25 - 1)))
    assert spearman(x, x ** 3) == pytest.approx(1.0)  # monotone, not linear
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert math.isnan(spearman(x, np.ones(5)))


def test_cosine_rows():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    b = np.array([[0.0, 3.0], [2.0, 2.0], [-1.0, 0.0]])
    np.testing.assert_allclose(cosine_rows(a, b), [0.0, 1.0, -1.0], atol=1e-12)


def test_macro_f1_matches_per_class_counting():
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 0, 0, 0, 1, 1, 2, 2, 2])
    per_class = []
    for c in (0, 1, 2):
        tp = sum(p == c and t == c for p, t in zip(pred, y, strict=True))
        precision = tp / sum(p == c for p in pred)
        recall = tp / sum(t == c for t in y)
        per_class.append(2 * precision * recall / (precision + recall))
    assert macro_f1(pred, y) == pytest.approx(sum(per_class) / 3)
    # an always-majority classifier has 60% accuracy but a low macro-F1: why unbalanced classes report it
    majority = np.zeros_like(y)
    assert macro_f1(majority, y) == pytest.approx((2 * 6 / (2 * 6 + 4)) / 3)


def test_macro_f1_perfect_and_all_pairs():
    for labels in itertools.product(range(3), repeat=3):
        y = np.array(labels)
        assert macro_f1(y, y) == 1.0
