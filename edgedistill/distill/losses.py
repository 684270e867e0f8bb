"""Distillation losses.

Hinton et al. (2015): soften both distributions with temperature T, take KL(teacher ‖ student), multiply by
T² so the gradient scale does not shrink as T grows, and mix with cross-entropy on the labels by alpha.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(softmax(t/T) ‖ softmax(s/T)), averaged over the batch."""
    t = temperature
    log_p_student = F.log_softmax(student_logits / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / t, dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=-1).mean()
    return kl * t * t


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
