"""The one training objective every stage's fine-tuning uses: the task's label loss, or knowledge
distillation from a frozen reference over named outputs, built from the distillation loss registry.

Pruning recovery and QAT call this instead of their own KD code, so a loss added to the registry (or a task
with other outputs) works in every stage alike. Hinton KD: `alpha`·T²·KL(teacher ‖ student) + (1 − `alpha`)·
the task's label loss (cross-entropy for classification).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..tasks import Task
    from .loop import LossFn


def kd_loss(task: Task, student_out: dict[str, torch.Tensor], teacher_out: dict[str, torch.Tensor],
            targets: torch.Tensor, temperature: float, alpha: float, term: str = "kl") -> torch.Tensor:
    """alpha · LOGIT_LOSSES[term](student, teacher probabilities at T) + (1 − alpha) · label loss.

    A task without class logits (text_embedding) matches the teacher's output with its own default output loss
    (MSE to the teacher's embedding) instead; it has no labels to mix in."""
    import torch.nn.functional as F

    from ..distill import transformer_losses  # noqa: F401  (registers the output losses)
    from ..distill.losses import LOGIT_LOSSES, OUTPUT_LOSSES

    s, t = task.primary(student_out), task.primary(teacher_out)
    output_loss = getattr(task, "default_distill_loss", None)
    if output_loss:
        return OUTPUT_LOSSES[output_loss](s, t)
    soft = LOGIT_LOSSES[term](s, F.softmax(t / temperature, dim=-1), targets, temperature, 0.0)
    if alpha >= 1.0:
        return soft
    return alpha * soft + (1.0 - alpha) * task.label_loss(student_out, targets)


def distillation_objective(task: Task, reference: nn.Module | None, temperature: float, alpha: float) -> LossFn:
    """A `fit` loss: KD against the frozen `reference` (None: the task's label loss alone)."""
    import torch

    def compute_loss(model: nn.Module, x: dict[str, torch.Tensor], y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        out = task.forward(model, x)
        if reference is None:
            return task.label_loss(out, y)
        with torch.no_grad():
            ref = task.forward(reference, x)
        return kd_loss(task, out, ref, y, temperature, alpha)

    return compute_loss
