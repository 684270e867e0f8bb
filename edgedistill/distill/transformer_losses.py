"""Distillation losses for transformer encoders, as plain functions over tensors.

- `embedding_mse`, `embedding_cosine`: on the pooled sentence embedding (what an embedder ships).
- `embedding_relation`: the in-batch cosine-similarity matrices of student and teacher embeddings matched
  (MSE over all pairs of rows): the relation an STS or retrieval user consumes, not the vectors themselves.
- `hidden_mse`: hidden states matched through a layer mapping (TinyBERT's uniform one by default), with a
  learned linear projection per pair where the widths differ (`HiddenProjections`, trained with the
  student and never exported).
- `attention_kl`: MiniLM's self-attention distribution transfer, KL(A_t ‖ A_s) with A = softmax(QKᵀ/√d)
  per head (needs equal head counts).
- `value_relation_kl`: MiniLM's value-relation transfer, KL(VR_t ‖ VR_s), VR = softmax(VVᵀ/√d) per head.
- `minilmv2_relations`: MiniLMv2's multi-head self-attention relations: queries, keys and values of both
  models are each split into the same number of *relation heads* R (independent of either model's own
  head count and width), and KL(R_t ‖ R_s) is summed over the q-q, k-k and v-v relations.
- `logits_kl`: logits of a classifier (Hinton KD, the registry's `kd_kl`).

The attention-based losses take the query/key/value projections' outputs ([batch, seq, all_head_size],
recorded with `features.Recorder` on `attention_modules(...)`), so they work with any attention kernel
(SDPA never materialises the probabilities). Padding: keys outside `mask` get no probability and padded
query rows are left out of the mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .losses import forward_kl, kd_kl, register_logit_loss, register_output_loss

# ---------------------------------------------------------------- pooled embedding


@register_output_loss("embedding_mse")
def embedding_mse(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the [batch, dim] embeddings, mean over batch and dimensions."""
    return F.mse_loss(s, t)


@register_output_loss("embedding_cosine")
def embedding_cosine(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """1 − cos(s, t), batch mean (ignores the norm, which a normalised embedder throws away anyway)."""
    return (1.0 - F.cosine_similarity(s, t, dim=-1)).mean()


def cosine_matrix(x: torch.Tensor) -> torch.Tensor:
    """cos(x_i, x_j) for every pair of rows; leading axes are rows (a [batch, 2, dim] pair batch gives 2·batch)."""
    x = F.normalize(x.reshape(-1, x.shape[-1]), dim=-1)
    return x @ x.T


@register_output_loss("embedding_relation")
def embedding_relation(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """mean over i, j of (cos(s_i, s_j) − cos(t_i, t_j))²: the in-batch similarity structure, not the vectors."""
    return F.mse_loss(cosine_matrix(s), cosine_matrix(t))


def logits_kl(s: torch.Tensor, t: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """T² · KL(softmax(t/T) ‖ softmax(s/T)) for classification heads."""
    return kd_kl(s, t, temperature)


@register_logit_loss("logits_kl")
def logits_kl_term(s: torch.Tensor, p: torch.Tensor, y: torch.Tensor, t: float, skew: float = 0.0) -> torch.Tensor:
    """`logits_kl` as a recipe term: the teacher's probabilities at T come from the cache or a live pass."""
    return forward_kl(s, p, y, t)


# ---------------------------------------------------------------- hidden states


def uniform_mapping(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """TinyBERT's uniform mapping over hidden-state indices (0 = embeddings): student i ↔ teacher i·T/S."""
    if student_layers < 1 or teacher_layers < student_layers:
        raise UserError(f"cannot map {student_layers} student layers onto {teacher_layers} teacher layers",
                        where="losses.layer_map", fix="give an explicit layer_map: [[student, teacher], ...]")
    return [(i, i * teacher_layers // student_layers) for i in range(student_layers + 1)]


class HiddenProjections(nn.Module):
    """One linear map student width → teacher width per mapped pair whose widths differ (identity otherwise)."""

    def __init__(self, mapping: Sequence[tuple[int, int]], student_width: int, teacher_width: int) -> None:
        super().__init__()
        self.proj = nn.ModuleList(
            nn.Linear(student_width, teacher_width) if student_width != teacher_width else nn.Identity()
            for _ in mapping)

    def forward(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.proj[i](x)


def _masked_mean(per_token: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return per_token.mean()
    m = mask.to(per_token.dtype)
    return (per_token * m).sum() / m.sum().clamp_min(1.0)


def hidden_mse(s_states: Sequence[torch.Tensor], t_states: Sequence[torch.Tensor],
               mapping: Sequence[tuple[int, int]], mask: torch.Tensor | None = None,
               projections: HiddenProjections | None = None) -> torch.Tensor:
    """Mean over mapped pairs of the token-wise MSE (mean over dims, mean over unpadded tokens)."""
    total = 0.0
    for n, (si, ti) in enumerate(mapping):
        s = s_states[si] if projections is None else projections(n, s_states[si])
        t = t_states[ti]
        if s.shape != t.shape:
            raise UserError(f"hidden state {si} of the student is {list(s.shape)}, teacher's {ti} is {list(t.shape)}",
                            where="losses.hidden_mse", fix="projections are needed where widths differ")
        total = total + _masked_mean((s - t).pow(2).mean(-1), mask)
    return total / len(mapping)


# ---------------------------------------------------------------- attention and relations


def attention_modules(model: nn.Module, layer: int) -> tuple[str, str, str]:
    """Module names of one BERT layer's query, key and value projections (for `features.Recorder`)."""
    names = dict(model.named_modules())
    for prefix in ("", "bert.", "encoder.", "roberta.", "model."):
        base = f"{prefix}encoder.layer.{layer}.attention.self"
        if f"{base}.query" in names:
            return f"{base}.query", f"{base}.key", f"{base}.value"
    raise UserError(f"no attention projections for layer {layer}", where="losses.layer",
                    fix="attention losses need a BERT-like model with encoder.layer.N.attention.self.{query,key,value}")


def _split(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, L, a = x.shape
    if a % heads:
        raise UserError(f"width {a} does not split into {heads} heads", where="losses.relation_heads",
                        fix="pick a number of heads that divides both models' attention widths")
    return x.view(b, L, heads, a // heads).transpose(1, 2)  # [b, h, L, d]


def relation_log_probs(x: torch.Tensor, y: torch.Tensor, heads: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """log softmax(x_h y_hᵀ / √d) per head h: [batch, heads, seq, seq]; masked keys get −inf."""
    xh, yh = _split(x, heads), _split(y, heads)
    scores = xh @ yh.transpose(-1, -2) / math.sqrt(xh.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))
    return F.log_softmax(scores, dim=-1)


def _kl_rows(t_log: torch.Tensor, s_log: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Σ_keys p_t (log p_t − log p_s), mean over heads and unpadded query rows."""
    p = t_log.exp()
    kl = torch.where(p > 0, p * (t_log - s_log), torch.zeros_like(p)).sum(-1)  # [b, h, L]
    kl = kl.mean(1)  # over heads
    return _masked_mean(kl, mask)


def attention_kl(s_q: torch.Tensor, s_k: torch.Tensor, t_q: torch.Tensor, t_k: torch.Tensor, heads: int,
                 mask: torch.Tensor | None = None, student_heads: int | None = None) -> torch.Tensor:
    """MiniLM self-attention distribution transfer: KL(softmax(Q_tK_tᵀ/√d) ‖ softmax(Q_sK_sᵀ/√d)) per head."""
    if student_heads is not None and student_heads != heads:
        raise UserError(f"attention transfer needs equal head counts (student {student_heads}, teacher {heads})",
                        where="losses.attention_kl", fix="use minilmv2 relations, which work across head counts")
    return _kl_rows(relation_log_probs(t_q, t_k, heads, mask), relation_log_probs(s_q, s_k, heads, mask), mask)


def value_relation_kl(s_v: torch.Tensor, t_v: torch.Tensor, heads: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """MiniLM value-relation transfer: KL(softmax(V_tV_tᵀ/√d) ‖ softmax(V_sV_sᵀ/√d)) per head."""
    return _kl_rows(relation_log_probs(t_v, t_v, heads, mask), relation_log_probs(s_v, s_v, heads, mask), mask)


def minilmv2_relations(s_qkv: Sequence[torch.Tensor], t_qkv: Sequence[torch.Tensor], relation_heads: int,
                       mask: torch.Tensor | None = None, relations: Sequence[str] = ("qq", "kk", "vv")) -> torch.Tensor:
    """MiniLMv2: Σ over relations of KL(R_t ‖ R_s), each over `relation_heads` heads of both models' q/k/v."""
    index = {"q": 0, "k": 1, "v": 2}
    total = 0.0
    for rel in relations:
        a, b = index[rel[0]], index[rel[1]]
        total = total + _kl_rows(relation_log_probs(t_qkv[a], t_qkv[b], relation_heads, mask),
                                 relation_log_probs(s_qkv[a], s_qkv[b], relation_heads, mask), mask)
    return total
