"""`ofa`: One-for-All KD (Hao et al., NeurIPS 2023) for a teacher and a student of different families.

Branches (projectors to class logits) on evenly spaced or named student stages, and the student's own head,
are each trained against the teacher's probabilities with the OFA loss (distill/ofa.py has the formula and
the projectors). Only the teacher's probabilities are read — never its internals — so a CNN teacher can
teach a mixer or a transformer and back. Use it with `ce` beside it, as the official code does:
`losses: [{name: ofa, weight: 1.0}, {name: ce, weight: 1.0}]`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from ...config import Strict
from .base import ORDER_LOGIT, TEACHER_PROBS, Batch, Term, TermSetup, register_term

if TYPE_CHECKING:
    import torch
    from torch import nn

DEFAULT_STAGES = 4  # the official code's --ofa-stage 1 2 3 4


class OFASettings(Strict):
    """OFA's own keys; defaults are the official code's (github.com/Hao840/OFAKD, train.py)."""

    eps: float = Field(1.0, gt=0, le=10, description="ε, the target enhancement exponent (1: the teacher's cross-entropy; the paper uses up to 1.5)")
    temperature: float = Field(1.0, gt=0, le=100, description="softmax temperature of the teacher and of every branch (the stage's `temperature` is not used)")
    branch_weight: float = Field(1.0, ge=0, description="weight of the summed branch losses against the head's")
    width: int | None = Field(None, ge=1, le=8192, description="projector width (default: the widest chosen student stage)")


@register_term("ofa")
class OFATerm(Term):
    """OFA loss at the student's head and at a projector branch on each chosen student stage."""

    order = ORDER_LOGIT
    needs = frozenset({TEACHER_PROBS})
    Settings = OFASettings
    summary = "One-for-All KD: OFA loss at the head and at projector branches on student stages (any teacher family)"

    @classmethod
    def check(cls, spec: Any, cfg: Any) -> tuple[tuple, str, str] | None:
        if spec.teacher_layers is not None:
            return (("teacher_layers",), "ofa reads only the teacher's probabilities, never its layers",
                    "remove teacher_layers (student_layers or evenly pick the student's branches)")
        if spec.student_layers is not None and spec.evenly is not None:
            return (("evenly",), "ofa takes either student_layers or evenly, not both",
                    "keep one: named branch layers, or the number of evenly spaced stages")
        if spec.student_layers is not None:
            if not spec.student_layers:
                return (("student_layers",), "student_layers is empty: ofa needs at least one branch",
                        "name student modules, or omit student_layers for 4 evenly spaced stages")
            if any(not isinstance(n, str) for n in spec.student_layers):
                return (("student_layers",), "ofa names student layers by module name",
                        "quote the names from model.named_modules(), e.g. student_layers: ['blocks.1', 'blocks.3']")
        if cfg.cache.enabled and cfg.cache.mode == "sampled":
            return (("name",), "ofa needs the teacher's probabilities at its own temperature; sampled targets are "
                    "drawn at the cache's", "use cache.mode: dense or topk")
        return None

    def __init__(self, spec: Any, setup: TermSetup) -> None:
        super().__init__(spec, setup)
        from ...errors import UserError
        from ..ofa import choose_stages

        if not setup.num_classes or getattr(setup.task, "default_distill_loss", None):
            raise UserError("ofa trains class-logit branches; this task has no class logits",
                            where=f"{setup.where}.name", fix="use ofa on classification tasks")
        from ...tasks.text_base import TextTask

        if isinstance(setup.task, TextTask):  # a token branch mixes a fixed number of tokens; text lengths vary
            raise UserError("ofa's branches are built for images (a fixed number of tokens per sample); text "
                            "batches vary in length", where=f"{setup.where}.name",
                            fix="for text students use logits_kl, hidden_mse or minilmv2_relations")
        self.num_classes = int(setup.num_classes)
        self.layers = choose_stages(setup.student, spec.student_layers, spec.evenly or DEFAULT_STAGES,
                                    setup.probe, setup.where)
        self.branches: nn.Module | None = None
        self.last: dict[str, float] = {}

    def record(self) -> tuple[list[str], list[str]]:
        return list(self.layers), []

    def build(self, s_out: dict[str, torch.Tensor], t_out: dict[str, torch.Tensor]) -> None:
        from ..ofa import Branches

        shapes = {n: tuple(s_out[n].shape) for n in self.layers}
        self.branches = Branches(self.layers, shapes, self.num_classes, self.settings.width)

    def modules(self) -> nn.Module | None:
        return self.branches

    def parts(self, b: Batch) -> list[torch.Tensor]:
        """The unweighted OFA losses: the head's first, then one per branch in stage order."""
        from ..ofa import ofa_loss

        s = self.settings
        p_t = b.teacher_probs(s.temperature)
        logits = [b.student, *self.branches(b.s_features)]
        return [ofa_loss(z, p_t, b.y, s.eps, s.temperature) for z in logits]

    def loss(self, b: Batch) -> torch.Tensor:
        head, *branches = self.parts(b)
        total = head + self.settings.branch_weight * sum(branches)
        self.last = {"head": float(head.detach()), "branches": float(sum(branches).detach())}
        return total

    def report(self) -> dict[str, Any]:
        params = sum(p.numel() for p in self.branches.parameters()) if self.branches is not None else 0
        return {**super().report(), "branches": list(self.layers), "projector_params": params,
                "eps": self.settings.eps, "temperature": self.settings.temperature, "last": self.last}
