"""Every distillation loss against values computed by hand (logit divergences, sparse targets, feature losses)."""

from __future__ import annotations

import math

import torch

from edgedistill.distill.cache import CacheConfig, Targets, compress
from edgedistill.distill.features import FEATURE_LOSSES, attention_map
from edgedistill.distill.losses import LOGIT_LOSSES, hinton_kd, kd_kl, standardize


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


# ---------------------------------------------------------------- the loss registry, term by term

S, TL, TEMP = [1.0, 2.0, 0.5], [2.0, 0.0, 1.0], 2.0


def _kl_list(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True) if pi > 0)


def _loss(name, s=S, t=TL, temp=TEMP, skew=0.0):
    p = torch.softmax(torch.tensor([t]) / temp, dim=-1)
    return LOGIT_LOSSES[name](torch.tensor([s]), p, torch.tensor([0]), temp, skew).item()


def test_reverse_kl_and_js_match_hand_computation():
    p, q = _softmax(TL, TEMP), _softmax(S, TEMP)
    assert math.isclose(_loss("rkl"), _kl_list(q, p) * TEMP**2, rel_tol=1e-5)
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]
    assert math.isclose(_loss("js"), 0.5 * (_kl_list(p, m) + _kl_list(q, m)) * TEMP**2, rel_tol=1e-5)
    assert math.isclose(_loss("kl"), _kl_list(p, q) * TEMP**2, rel_tol=1e-5)


def test_t_squared_scaling_is_applied_to_every_divergence():
    for name in ("kl", "rkl", "js", "skew_kl", "skew_rkl"):
        p = torch.softmax(torch.tensor([TL]) / 3.0, dim=-1)
        raw = LOGIT_LOSSES[name](torch.tensor([S]) * 1.0, p, torch.tensor([0]), 3.0, 0.3).item()
        # the same probabilities fed through T=1 (logits pre-divided by 3) give the unscaled divergence
        unscaled = LOGIT_LOSSES[name](torch.tensor([S]) / 3.0, p, torch.tensor([0]), 1.0, 0.3).item()
        assert math.isclose(raw, 9.0 * unscaled, rel_tol=1e-5), name


def test_skew_kl_matches_formula_and_its_limits():
    p, q = _softmax(TL, TEMP), _softmax(S, TEMP)
    a = 0.3
    mix = [a * pi + (1 - a) * qi for pi, qi in zip(p, q, strict=True)]
    assert math.isclose(_loss("skew_kl", skew=a), _kl_list(p, mix) * TEMP**2, rel_tol=1e-5)
    rmix = [a * qi + (1 - a) * pi for pi, qi in zip(p, q, strict=True)]
    assert math.isclose(_loss("skew_rkl", skew=a), _kl_list(q, rmix) * TEMP**2, rel_tol=1e-5)
    # a = 0: plain forward / reverse KL; a = 1: the target is the distribution itself, so zero
    assert math.isclose(_loss("skew_kl", skew=0.0), _loss("kl"), rel_tol=1e-6)
    assert math.isclose(_loss("skew_rkl", skew=0.0), _loss("rkl"), rel_tol=1e-6)
    assert abs(_loss("skew_kl", skew=1.0)) < 1e-6 and abs(_loss("skew_rkl", skew=1.0)) < 1e-6
    assert 0 < _loss("skew_kl", skew=0.5) < _loss("kl")


def test_standardize_zscores_each_row():
    z = standardize(torch.tensor([[1.0, 2.0, 3.0], [10.0, 10.0, 40.0]]))
    mean, std = 2.0, math.sqrt(2 / 3)
    assert torch.allclose(z[0], torch.tensor([(1 - mean) / std, 0.0, (3 - mean) / std]), atol=1e-4)
    # a shift and a positive scale of the logits do not change the standardized logits
    assert torch.allclose(standardize(torch.tensor([[5.0, 7.0, 9.0]]) * 3 + 1), z[:1], atol=1e-4)


def test_cross_entropy_term_uses_hard_labels_only():
    s = torch.tensor([[0.2, 1.5, -0.3]])
    got = LOGIT_LOSSES["ce"](s, None, torch.tensor([1]), 7.0, 0.0).item()
    assert math.isclose(got, -math.log(_softmax([0.2, 1.5, -0.3], 1.0)[1]), rel_tol=1e-6)


def test_topk_targets_renormalise_over_the_kept_classes():
    logits = torch.tensor([[3.0, 1.0, 0.0, 2.0]])
    stored = compress(logits, CacheConfig(mode="topk", k=2), 2.0, 0)
    probs = Targets("topk", stored["values"], stored["indices"], 4).probs(2.0)[0].tolist()
    e0, e3 = math.exp(3 / 2), math.exp(2 / 2)
    assert probs[1] == 0.0 and probs[2] == 0.0
    assert math.isclose(probs[0], e0 / (e0 + e3), rel_tol=1e-6) and math.isclose(probs[3], e3 / (e0 + e3), rel_tol=1e-6)


def test_sampled_sparse_targets_are_unbiased():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5]]).repeat(4000, 1)
    stored = compress(logits, CacheConfig(mode="sampled", samples=8), 1.5, seed=0)
    est = Targets("sampled", stored["indices"], stored["weights"], 5).probs(1.5)
    assert torch.allclose(est.sum(dim=1), torch.ones(4000), atol=1e-5)  # each row is a distribution
    assert (est > 0).sum(dim=1).max() <= 8  # at most `samples` classes kept per row
    true = torch.softmax(logits[0] / 1.5, dim=-1)
    # averaged over many rows the estimate converges to the teacher's probabilities (std error ~ 0.004)
    assert torch.allclose(est.mean(dim=0), true, atol=0.02)


# ---------------------------------------------------------------- feature losses


def test_mse_and_cosine_feature_losses():
    s, t = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.0, 1.0], [0.0, 4.0]])
    assert math.isclose(FEATURE_LOSSES["mse"](s, t).item(), (1 + 1 + 0 + 4) / 4, rel_tol=1e-6)
    # row 0: orthogonal (1 − 0), row 1: parallel (1 − 1)
    assert math.isclose(FEATURE_LOSSES["cosine"](s, t).item(), 0.5, rel_tol=1e-6)


def test_attention_transfer_matches_zagoruyko_formula():
    s = torch.tensor([[[[1.0, -2.0]], [[3.0, 0.0]]]])  # (1, 2, 1, 2)
    t = torch.tensor([[[[0.0, 1.0]], [[0.0, 1.0]]]])
    qs = [(1 + 9) / 2, (4 + 0) / 2]  # mean over channels of squares
    qt = [0.0, 1.0]
    ns = math.hypot(*qs)
    expected = math.hypot(qs[0] / ns - qt[0], qs[1] / ns - qt[1])
    assert torch.allclose(attention_map(s), torch.tensor([[qs[0] / ns, qs[1] / ns]]))
    assert math.isclose(FEATURE_LOSSES["attention"](s, t).item(), expected, rel_tol=1e-5)
    # different channel counts are fine; different spatial sizes are resized to the teacher's
    assert FEATURE_LOSSES["attention"](torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 2)).dim() == 0


def test_rkd_distance_and_angle():
    x = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    # distances 3, 4, 5 (mean 4); a scaled, shifted, rotated copy has the same normalised relations
    rot = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    y = (x @ rot) * 2.5 + 1.0
    assert FEATURE_LOSSES["rkd_distance"](x, y).item() < 1e-10
    assert FEATURE_LOSSES["rkd_angle"](x, y).item() < 1e-10
    # hand value: stretch one axis; distances become 3, 8, sqrt(73)
    z = x * torch.tensor([1.0, 2.0])
    d1 = torch.tensor([[0, 3, 4], [3, 0, 5], [4, 5, 0]], dtype=torch.float) / 4
    d2 = torch.tensor([[0, 3, 8], [3, 0, 73**0.5], [8, 73**0.5, 0]], dtype=torch.float) / ((3 + 8 + 73**0.5) / 3)
    expected = torch.nn.functional.smooth_l1_loss(d1, d2).item()
    assert math.isclose(FEATURE_LOSSES["rkd_distance"](x, z).item(), expected, rel_tol=1e-5)
    assert FEATURE_LOSSES["rkd_angle"](x, z).item() > 1e-3
