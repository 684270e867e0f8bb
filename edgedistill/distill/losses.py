"""Logit distillation losses, as a small registry of plain functions.

Every divergence takes the student's logits and the teacher's *probabilities* at temperature T (so a dense,
top-k or sampled teacher cache, or an average of several teachers, all look the same to it) and is scaled by
T² (Hinton et al. 2015), so the gradient scale does not shrink as T grows. Terms are combined as a weighted
sum chosen in the recipe (`losses: [{name: kl, weight: 0.9}, {name: ce, weight: 0.1}]`).

- `kl`       KL(p ‖ q), forward KL (Hinton KD)
- `rkl`      KL(q ‖ p), reverse KL (mode seeking; needs dense teacher probabilities)
- `js`       Jensen–Shannon: ½ KL(p ‖ m) + ½ KL(q ‖ m), m = (p + q)/2
- `skew_kl`  DistiLLM skew KL: KL(p ‖ a·p + (1−a)·q)   (a=0: forward KL, a=1: zero)
- `skew_rkl` DistiLLM skew reverse KL: KL(q ‖ a·q + (1−a)·p)   (a=0: reverse KL, a=1: zero)
- `ce`       cross-entropy on the hard labels (no temperature)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

# (student_logits, teacher_probs_at_T, labels, T, skew) -> scalar
LogitLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float, float], torch.Tensor]
LOGIT_LOSSES: dict[str, LogitLoss] = {}


def register_logit_loss(name: str) -> Callable[[LogitLoss], LogitLoss]:
    def deco(fn: LogitLoss) -> LogitLoss:
        LOGIT_LOSSES[name] = fn
        return fn

    return deco


def standardize(logits: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Logit standardization (Sun et al. 2024): z-score each row so only the logits' shape is matched, not their scale."""
    mean = logits.mean(dim=-1, keepdim=True)
    std = logits.std(dim=-1, keepdim=True, unbiased=False)
    return (logits - mean) / (std + eps)


def _kl(p: torch.Tensor, log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Σ p (log p − log q) per row, batch mean; 0·log 0 counts as 0 (sparse teachers)."""
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(dim=-1).mean()


def _safe_log(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p.clamp_min(1e-30))


@register_logit_loss("kl")
def forward_kl(s: torch.Tensor, p: torch.Tensor, y: torch.Tensor, t: float, skew: float = 0.0) -> torch.Tensor:
    """T² · KL(p ‖ softmax(s/T))."""
    return _kl(p, _safe_log(p), F.log_softmax(s / t, dim=-1)) * t * t


@register_logit_loss("rkl")
def reverse_kl(s: torch.Tensor, p: torch.Tensor, y: torch.Tensor, t: float, skew: float = 0.0) -> torch.Tensor:
    """T² · KL(softmax(s/T) ‖ p)."""
    log_q = F.log_softmax(s / t, dim=-1)
    return _kl(log_q.exp(), log_q, _safe_log(p)) * t * t


@register_logit_loss("js")
def jensen_shannon(s: torch.Tensor, p: torch.Tensor, y: torch.Tensor, t: float, skew: float = 0.0) -> torch.Tensor:
    """T² · (½ KL(p ‖ m) + ½ KL(q ‖ m)), m = (p + q) / 2."""
    log_q = F.log_softmax(s / t, dim=-1)
    q = log_q.exp()
    log_m = _safe_log(0.5 * (p + q))
    return 0.5 * (_kl(p, _safe_log(p), log_m) + _kl(q, log_q, log_m)) * t * t


@register_logit_loss("skew_kl")
def skew_kl(s: torch.Tensor, p: torch.Tensor, y: torch.Tensor, t: float, skew: float = 0.1) -> torch.Tensor:
    """DistiLLM: T² · KL(p ‖ a·p + (1−a)·q); a mixes some of the teacher into the target of the log."""
    q = F.softmax(s / t, dim=-1)
    mix = skew * p + (1.0 - skew) * q
    return _kl(p, _safe_log(p), _safe_log(mix)) * t * t


@register_logit_loss("skew_rkl")
def skew_reverse_kl(s: torch.Tensor, p: torch.Tensor, y: torch.Tensor, t: float, skew: float = 0.1) -> torch.Tensor:
    """DistiLLM: T² · KL(q ‖ a·q + (1−a)·p)."""
    log_q = F.log_softmax(s / t, dim=-1)
    q = log_q.exp()
    mix = skew * q + (1.0 - skew) * p
    return _kl(q, log_q, _safe_log(mix)) * t * t


@register_logit_loss("ce")
def label_ce(s: torch.Tensor, p: torch.Tensor, y: torch.Tensor, t: float, skew: float = 0.0) -> torch.Tensor:
    """Cross-entropy with the hard labels (the 1 − alpha part of Hinton KD)."""
    return F.cross_entropy(s, y)


# ---------------------------------------------------------------- the original two, kept for callers


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(softmax(t/T) ‖ softmax(s/T)), averaged over the batch."""
    return forward_kl(student_logits, F.softmax(teacher_logits / temperature, dim=-1), None, temperature)


def hinton_kd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 4.0,
    alpha: float = 0.9,
) -> torch.Tensor:
    """alpha · T²·KL + (1 − alpha) · cross-entropy(labels)."""
    soft = kd_kl(student_logits, teacher_logits, temperature)
    if alpha >= 1.0:
        return soft
    return alpha * soft + (1.0 - alpha) * F.cross_entropy(student_logits, labels)


# ---------------------------------------------------------------- output terms: the task's output itself
# (embedding_mse and embedding_cosine register from transformer_losses.py; `kd` and the shared objective import it)


OutputLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
OUTPUT_LOSSES: dict[str, OutputLoss] = {}


def register_output_loss(name: str) -> Callable[[OutputLoss], OutputLoss]:
    def deco(fn: OutputLoss) -> OutputLoss:
        OUTPUT_LOSSES[name] = fn
        return fn

    return deco

