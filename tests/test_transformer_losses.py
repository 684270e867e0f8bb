"""Each transformer distillation loss against its formula, written out naively on small tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from edgedistill.distill import transformer_losses as tl
from edgedistill.errors import UserError

torch.manual_seed(0)


def _softmax_rows(x: torch.Tensor, y: torch.Tensor, valid: list[int]) -> torch.Tensor:
    """softmax over valid keys of x·yᵀ/√d for one head, the slow way."""
    d = x.shape[-1]
    L = x.shape[0]
    out = torch.zeros(L, L)
    for i in range(L):
        logits = torch.tensor([float(x[i] @ y[j]) / math.sqrt(d) if j in valid else -math.inf for j in range(L)])
        out[i] = torch.softmax(logits, 0)
    return out


def _kl_naive(p: torch.Tensor, q: torch.Tensor, valid: list[int]) -> float:
    """mean over valid query rows of Σ_j p log(p/q) (p=0 terms count as 0)."""
    rows = [sum(float(p[i, j] * (math.log(p[i, j]) - math.log(q[i, j]))) for j in range(p.shape[1]) if p[i, j] > 0)
            for i in valid]
    return sum(rows) / len(rows)


def _heads(x: torch.Tensor, h: int) -> list[torch.Tensor]:
    d = x.shape[-1] // h
    return [x[:, k * d:(k + 1) * d] for k in range(h)]


def test_embedding_losses_match_their_formulas():
    s, t = torch.randn(4, 6), torch.randn(4, 6)
    assert torch.isclose(tl.embedding_mse(s, t), ((s - t) ** 2).sum() / 24)
    cos = [(s[i] @ t[i]) / (s[i].norm() * t[i].norm()) for i in range(4)]
    assert torch.isclose(tl.embedding_cosine(s, t), torch.stack([1 - c for c in cos]).mean(), atol=1e-6)
    assert tl.embedding_cosine(t, t).abs() < 1e-6


def test_logits_kl_is_temperature_scaled_kl():
    s, t = torch.randn(3, 5), torch.randn(3, 5)
    T = 2.0
    p, log_q = F.softmax(t / T, -1), F.log_softmax(s / T, -1)
    want = (p * (p.log() - log_q)).sum(-1).mean() * T * T
    assert torch.isclose(tl.logits_kl(s, t, T), want, atol=1e-6)


def test_hidden_mse_with_mapping_mask_and_projection():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    s_states = [torch.randn(2, 4, 3) for _ in range(3)]  # student: embeddings + 2 layers, width 3
    t_states = [torch.randn(2, 4, 5) for _ in range(5)]  # teacher: embeddings + 4 layers, width 5
    mapping = tl.uniform_mapping(2, 4)
    assert mapping == [(0, 0), (1, 2), (2, 4)]
    proj = tl.HiddenProjections(mapping, 3, 5)
    got = tl.hidden_mse(s_states, t_states, mapping, mask, proj)
    want = 0.0
    for n, (si, ti) in enumerate(mapping):
        terms = [((proj.proj[n](s_states[si][b, i]) - t_states[ti][b, i]) ** 2).mean()
                 for b in range(2) for i in range(4) if mask[b, i]]
        want += torch.stack(terms).mean()
    assert torch.isclose(got, want / 3, atol=1e-6)
    got.backward()  # the projections learn with the student
    assert proj.proj[0].weight.grad is not None
    with pytest.raises(UserError):
        tl.hidden_mse(s_states, t_states, mapping, mask)  # widths differ and no projection


def test_attention_and_value_relation_transfer_match_minilm():
    h, L = 2, 4
    mask = torch.tensor([[1, 1, 1, 0]])
    valid = [0, 1, 2]
    s_q, s_k, s_v, t_q, t_k, t_v = (torch.randn(1, L, 8) for _ in range(6))
    want_att = sum(_kl_naive(_softmax_rows(tq, tk, valid), _softmax_rows(sq, sk, valid), valid)
                   for sq, sk, tq, tk in zip(_heads(s_q[0], h), _heads(s_k[0], h), _heads(t_q[0], h), _heads(t_k[0], h), strict=False)) / h
    got = tl.attention_kl(s_q, s_k, t_q, t_k, heads=h, mask=mask)
    assert got.item() == pytest.approx(want_att, rel=1e-4)
    want_vr = sum(_kl_naive(_softmax_rows(tv, tv, valid), _softmax_rows(sv, sv, valid), valid)
                  for sv, tv in zip(_heads(s_v[0], h), _heads(t_v[0], h), strict=False)) / h
    assert tl.value_relation_kl(s_v, t_v, heads=h, mask=mask).item() == pytest.approx(want_vr, rel=1e-4)
    assert tl.attention_kl(t_q, t_k, t_q, t_k, heads=h, mask=mask).abs() < 1e-6  # identical maps: zero
    with pytest.raises(UserError, match="head counts"):
        tl.attention_kl(s_q, s_k, t_q, t_k, heads=h, student_heads=4)


def test_minilmv2_relations_work_across_widths_and_head_counts():
    L, R = 3, 2
    s = [torch.randn(1, L, 4, requires_grad=True) for _ in range(3)]  # a student with width 4
    t = [torch.randn(1, L, 12) for _ in range(3)]  # a teacher with width 12 (any head count)
    valid = list(range(L))
    want = 0.0
    for a in range(3):  # q-q, k-k, v-v
        for sx, tx in zip(_heads(s[a][0].detach(), R), _heads(t[a][0], R), strict=False):
            want += _kl_naive(_softmax_rows(tx, tx, valid), _softmax_rows(sx, sx, valid), valid) / R
    got = tl.minilmv2_relations(s, t, relation_heads=R)
    assert got.item() == pytest.approx(want, rel=1e-4)
    got.backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in s)
    with pytest.raises(UserError, match="does not split"):
        tl.minilmv2_relations(s, t, relation_heads=3)  # 4 is not divisible by 3
