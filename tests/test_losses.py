"""The Hinton KD loss against values computed by hand."""

from __future__ import annotations

import math

import torch

from edgedistill.distill.losses import hinton_kd, kd_kl


def _softmax(v, t):
    e = [math.exp(x / t) for x in v]
    return [x / sum(e) for x in e]


def test_kd_kl_matches_hand_computation_with_t_squared():
    s, t, temp = [1.0, 2.0, 0.5], [2.0, 0.0, 1.0], 2.0
    p, q = _softmax(t, temp), _softmax(s, temp)
    expected = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True)) * temp**2
    got = kd_kl(torch.tensor([s]), torch.tensor([t]), temp).item()
    assert math.isclose(got, expected, rel_tol=1e-5)


def test_kd_is_zero_when_logits_match_and_alpha_mixes_cross_entropy():
    logits = torch.tensor([[0.3, -1.0, 2.0], [1.0, 1.0, 0.0]])
    labels = torch.tensor([2, 0])
    assert kd_kl(logits, logits, 4.0).item() < 1e-7
    ce = torch.nn.functional.cross_entropy(logits, labels).item()
    assert math.isclose(hinton_kd(logits, logits, labels, 4.0, alpha=0.25).item(), 0.75 * ce, rel_tol=1e-5)
    student, teacher = torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[3.0, 0.0, 0.0]])
    full = hinton_kd(student, teacher, torch.tensor([1]), 3.0, alpha=1.0).item()
    assert math.isclose(full, kd_kl(student, teacher, 3.0).item(), rel_tol=1e-6)
