"""TAID: Temporally Adaptive Interpolated Distillation (Shing et al., ICLR 2025).

The student is not asked to match the teacher at once: its target is an interpolation, in logit space,
between its own (detached) logits and the teacher's, p_t = softmax((1 − t)·sg(z_s) + t·z_t), and t rises
from `t_start` towards 1 during training. A large capacity gap makes plain KD chase a distribution the
student cannot reach (mode averaging / collapse); the intermediate targets keep the step small.

t rises adaptively, following the official implementation (github.com/SakanaAI/TAID, src/distil_losses/
taid.py): after each step, with J the step's loss and J' the previous one,
    m ← β·m + (1 − β)·(J' − J)/J'              (momentum of the relative improvement)
    t ← min(t_end, max(t_linear, t + α·sigmoid(m)·(1 − t)))
where t_linear = t_start + (t_end − t_start)·step/total is a floor that guarantees t reaches t_end by the
end of training. The first step only records J. Like the official code, J is the cross-entropy H(p_t, q_s)
(= KL(p_t ‖ q_s) + H(p_t), the same gradient); the loss this term adds is the KL. TAID works at T = 1: the
stage's temperature is not used.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator
from pydantic_core.core_schema import ValidationInfo

from ...config import Strict
from .base import ORDER_LOGIT, TEACHER_OUTPUT, Batch, Term, TermSetup, names_layers, register_term

if TYPE_CHECKING:
    import torch


class TaidSettings(Strict):
    """TAID's schedule of the interpolation factor t (defaults: the paper's and the official scripts')."""

    t_start: float = Field(0.4, ge=0, le=1, description="t at the first step")
    t_end: float = Field(1.0, ge=0, le=1, description="the largest t; the linear floor reaches it at the last step")
    alpha: float = Field(5e-4, gt=0, le=1, description="step size of the adaptive increase")
    beta: float = Field(0.99, ge=0, lt=1, description="momentum of the loss's relative change")

    @field_validator("t_end")
    @classmethod
    def _after_start(cls, value: float, info: ValidationInfo) -> float:
        start = info.data.get("t_start")
        if start is not None and value < start:
            raise ValueError(f"t_end ({value}) must not be below t_start ({start}): t only rises")
        return value


def taid_target(z_s: torch.Tensor, z_t: torch.Tensor, t: float) -> torch.Tensor:
    """p_t = softmax((1 − t)·sg(z_s) + t·z_t): no gradient flows through the target."""
    import torch.nn.functional as F

    return F.softmax((1.0 - t) * z_s.detach() + t * z_t.detach(), dim=-1)


def taid_losses(z_s: torch.Tensor, z_t: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(KL(p_t ‖ q_s), H(p_t, q_s)), batch means, q_s = softmax(z_s)."""
    import torch
    import torch.nn.functional as F

    z_s, z_t = z_s.float(), z_t.float()  # under autocast: the softmaxes in full precision, as the official code
    p = taid_target(z_s, z_t, t)
    log_q = F.log_softmax(z_s, dim=-1)
    cross = -(p * log_q).sum(-1)
    entropy = -(torch.special.xlogy(p, p)).sum(-1)
    return (cross - entropy).mean(), cross.mean()


def _sigmoid(x: float) -> float:
    """Without overflow for a large negative momentum (a loss that jumped up by orders of magnitude)."""
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@register_term("taid")
class TaidTerm(Term):
    """KL(p_t ‖ q_s) against the interpolated target, t adapted from the loss's relative change."""

    order = ORDER_LOGIT
    needs = frozenset({TEACHER_OUTPUT})  # the teachers' dense logits: the interpolation is in logit space
    dense_teacher = True
    uses_temperature = False
    Settings = TaidSettings
    summary = "TAID: KL to an interpolation of the student's detached logits and the teacher's, t rising adaptively"

    @classmethod
    def check(cls, spec: Any, cfg: Any) -> tuple[tuple, str, str] | None:
        if names_layers(spec):
            return ((), '"taid" compares the model outputs and takes no layers', "remove student_layers/teacher_layers/evenly")
        return None

    def __init__(self, spec: Any, setup: TermSetup) -> None:
        super().__init__(spec, setup)
        if setup.num_classes is None:
            from ...errors import UserError

            raise UserError(f"{setup.task.kind} has no class logits: taid interpolates logits",
                            where=setup.where, fix="use taid on a classification task, or an embedding term here")
        s = self.settings
        self.t, self.momentum, self.prev_loss = float(s.t_start), 0.0, math.inf
        self.progress, self._signal = 0.0, None

    def on_step(self, step: int, total: int) -> None:
        self.progress = step / max(total, 1)  # the official floor uses the global step over all training steps

    def loss(self, b: Batch) -> torch.Tensor:
        kl, cross = taid_losses(b.student_kd, b.teacher_output(), self.t)  # both z-scored when the stage standardizes
        self._signal = float(cross.detach())
        return kl

    def observe(self, b: Batch, value: torch.Tensor) -> None:
        if self._signal is not None:
            self.update(self._signal)
            self._signal = None

    def update(self, loss: float) -> None:
        """The official adaptive rule, after a step whose loss (cross-entropy to p_t) was `loss`."""
        s = self.settings
        if math.isinf(self.prev_loss):
            self.prev_loss = loss
            return
        relative = (self.prev_loss - loss) / (self.prev_loss + 1e-15)
        self.momentum = s.beta * self.momentum + (1 - s.beta) * relative
        floor = s.t_start + (s.t_end - s.t_start) * self.progress
        step = s.alpha * _sigmoid(self.momentum) * (1.0 - self.t)
        self.t = min(s.t_end, max(floor, self.t + step))
        self.prev_loss = loss

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t, "momentum": self.momentum, "prev_loss": self.prev_loss}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t, self.momentum, self.prev_loss = float(state["t"]), float(state["momentum"]), float(state["prev_loss"])

    def report(self) -> dict[str, Any]:
        s = self.settings
        return {**super().report(), "t_start": s.t_start, "t_end": s.t_end, "alpha": s.alpha, "beta": s.beta,
                "t_final": self.t, "momentum": self.momentum}
