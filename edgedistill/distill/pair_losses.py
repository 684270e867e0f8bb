"""Task losses on labelled sentence pairs (STS gold scores), for a task stage after general distillation.

A pair batch is stacked: the student's output is [batch, 2, dim] (both sentences of each pair, see
`TextEmbedding.forward`), and the targets are the gold scores. The teacher's part of such a stage comes from
the output terms on the same batch (`embedding_mse`, `embedding_relation` on both sides); these terms add
what the teacher does not know, the human scores.

- `cosent` (Su 2022, CoSENT): log(1 + Σ_{y_i > y_j} exp(λ·(cos_j − cos_i))) over the batch's pairs of pairs:
  every pair scored higher must have the higher cosine; only the order of the scores matters, which is
  what a Spearman metric measures.
- `cosine_regression`: mean of (cos_i − (y_i − lo)/(hi − lo))², the cosine regressed onto the score
  rescaled to [0, 1] (sentence-transformers' CosineSimilarityLoss); `score_range: [lo, hi]`, STS: [0, 5].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

PairLoss = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]  # (outputs [b, 2, d], scores [b], term)
PAIR_LOSSES: dict[str, PairLoss] = {}


def register_pair_loss(name: str) -> Callable[[PairLoss], PairLoss]:
    def deco(fn: PairLoss) -> PairLoss:
        PAIR_LOSSES[name] = fn
        return fn

    return deco


def pair_cosines(s: torch.Tensor) -> torch.Tensor:
    """cos(first, second) per pair of a stacked [batch, 2, dim] output."""
    return F.cosine_similarity(s[:, 0], s[:, 1], dim=-1)


def cosent(cos: torch.Tensor, y: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """log(1 + Σ_{y_i > y_j} exp(scale·(cos_j − cos_i))); 0 when the batch has no two different scores."""
    y = y.reshape(-1)
    diff = scale * (cos[None, :] - cos[:, None])  # [i, j] = scale·(cos_j − cos_i)
    ordered = y[:, None] > y[None, :]
    terms = diff[ordered]
    return torch.logsumexp(torch.cat([terms.new_zeros(1), terms]), dim=0)


def cosine_regression(cos: torch.Tensor, y: torch.Tensor, lo: float = 0.0, hi: float = 5.0) -> torch.Tensor:
    """mean of (cos − (y − lo)/(hi − lo))²."""
    return F.mse_loss(cos, (y.reshape(-1).to(cos.dtype) - lo) / (hi - lo))


@register_pair_loss("cosent")
def cosent_term(s: torch.Tensor, y: torch.Tensor, term: Any) -> torch.Tensor:
    return cosent(pair_cosines(s), y, term.param("scale"))


@register_pair_loss("cosine_regression")
def cosine_regression_term(s: torch.Tensor, y: torch.Tensor, term: Any) -> torch.Tensor:
    lo, hi = term.param("score_range")
    return cosine_regression(pair_cosines(s), y, lo, hi)
