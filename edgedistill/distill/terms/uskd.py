"""USKD: Universal Self-Knowledge Distillation (Yang et al., ICCV 2023), teacher-free.

The student makes its own soft labels, learned from the official implementation (github.com/yzd-v/cls_KD,
mmcls/models/dis_losses/uskd.py):

- target class: the soft label is the student's own target probability, squared and re-centred on the
  batch, p̃ = q_y² + 1 − mean_batch(q_y²) (detached); L_t = −mean(p̃·log q_y);
- non-target classes: a *weak* linear head on an intermediate feature of the student, trained with
  label-smoothed labels (0.9 one-hot + 0.1/C), L_weak = −Σ target·log softmax(w); the classes are ranked by
  w_i/(1 − w_y) + log q_i/(1 − log q_y) (the official code adds the student's *log*-probabilities here),
  and the soft non-target labels follow Zipf's law over that rank, 1/rank, renormalized over the non-target
  classes; L_non = −Σ ẑ_i·log softmax(z_non-target)_i (the normalized non-target loss of NKD);
- total: alpha·L_t + beta·L_non + mu·L_weak (official defaults 1, 0.1, 0.005; its CIFAR-100 configs use
  0.1, 0.1, 0.1).

The official distiller keeps the classifier's own cross-entropy beside this loss, so a recipe uses
`[{name: ce}, {name: uskd}]`. The weak head is a trainable helper: trained with the student, never exported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from ...config import Strict
from .base import ORDER_LOGIT, Batch, Term, TermSetup, names_layers, register_term

if TYPE_CHECKING:
    import torch
    from torch import nn


class UskdSettings(Strict):
    """USKD's weights (official defaults) and the student layer that feeds the weak head."""

    alpha: float = Field(1.0, ge=0, description="weight of the target-class loss L_t")
    beta: float = Field(0.1, ge=0, description="weight of the soft non-target loss L_non")
    mu: float = Field(0.005, ge=0, description="weight of the weak head's label-smoothed cross-entropy L_weak")
    layer: str | None = Field(None, min_length=1, description="student module feeding the weak head; "
                              "'name:input' takes what enters it (default: the input of the last Linear)")


def pool(feature: torch.Tensor) -> torch.Tensor:
    """A feature as one vector per row: conv maps [N, C, H, W] and token sequences [N, T, H] are averaged."""
    if feature.dim() == 4:
        return feature.mean(dim=(2, 3))
    if feature.dim() == 3:
        return feature.mean(dim=1)
    return feature.flatten(1)


def uskd_loss(z: torch.Tensor, w: torch.Tensor, y: torch.Tensor, alpha: float, beta: float, mu: float) -> torch.Tensor:
    """alpha·L_t + beta·L_non + mu·L_weak for student logits `z`, weak-head logits `w` and class ids `y`."""
    import torch
    import torch.nn.functional as F

    z, w = z.float(), w.float()
    n, c = z.shape
    label = y.long().view(n, 1)
    log_q = F.log_softmax(z, dim=1)
    log_q_y = log_q.gather(1, label)
    # target class: the student's own probability, squared and centred on the batch
    q2 = log_q_y.exp().pow(2)
    soft_t = (q2 + 1.0 - q2.mean(0, keepdim=True)).detach()
    loss_t = -(soft_t * log_q_y).sum(1).mean()
    # the weak head learns label-smoothed labels
    smooth = torch.zeros_like(z).scatter_(1, label, 0.9) + 0.1 / c
    log_w = F.log_softmax(w, dim=1)
    loss_weak = -(smooth * log_w).sum(1).mean()
    # non-target classes: Zipf's law over the combined rank, renormalized without the target class
    with torch.no_grad():
        p_w = log_w.exp()
        score = p_w / (1 - p_w.gather(1, label) + 1e-6) + log_q / (1 - log_q_y + 1e-6)
        order = torch.argsort(score, dim=1, descending=True, stable=True)
        position = torch.argsort(order, dim=1, stable=True)  # 0 for the top-ranked class
        zipf = 1.0 / (position + 1).float()
        keep = torch.ones_like(z, dtype=torch.bool).scatter_(1, label, False)
        soft_non = zipf[keep].view(n, c - 1)
        soft_non = soft_non / soft_non.sum(1, keepdim=True)
    log_non = F.log_softmax(z[keep].view(n, c - 1), dim=1)
    loss_non = -(soft_non * log_non).sum(1).mean()
    return alpha * loss_t + beta * loss_non + mu * loss_weak


def default_layer(student: nn.Module) -> str | None:
    """The input of the student's last Linear (the classifier's input features), or None without one."""
    from torch import nn

    from ..features import INPUT_SUFFIX

    linears = [name for name, m in student.named_modules() if name and isinstance(m, nn.Linear)]
    return linears[-1] + INPUT_SUFFIX if linears else None


@register_term("uskd")
class UskdTerm(Term):
    """Teacher-free: soft target and Zipf non-target labels from the student itself and a weak head."""

    order = ORDER_LOGIT
    Settings = UskdSettings
    summary = "USKD: self-distillation with the student's own soft target and Zipf-ranked non-target labels (no teacher)"

    @classmethod
    def check(cls, spec: Any, cfg: Any) -> tuple[tuple, str, str] | None:
        if names_layers(spec):
            return ((), '"uskd" runs no teacher and reads one student layer, named by `layer`',
                    "remove student_layers/teacher_layers/evenly; set layer: <module name> (or 'name:input')")
        return None

    def __init__(self, spec: Any, setup: TermSetup) -> None:
        super().__init__(spec, setup)
        from ...errors import UserError
        from ..features import check_layers

        if setup.num_classes is None or setup.num_classes < 2:
            raise UserError(f"{setup.task.kind} has no class logits: uskd makes soft labels over classes",
                            where=setup.where, fix="use uskd on a classification task with two classes or more")
        self.num_classes = setup.num_classes
        if self.settings.layer is None:
            self.layer = default_layer(setup.student)
            if self.layer is None:
                raise UserError("uskd feeds its weak head from the input of the student's last Linear, and the "
                                "student has none", where=f"{setup.where}.layer",
                                fix="name a student module with layer: <name> (or '<name>:input')")
        else:
            self.layer = self.settings.layer
            check_layers(setup.student, [self.layer], f"{setup.where}.layer")
        self.head: nn.Module | None = None

    def record(self) -> tuple[list[str], list[str]]:
        return [self.layer], []

    def build(self, s_out: dict[str, torch.Tensor], t_out: dict[str, torch.Tensor]) -> None:
        from torch import nn

        self.head = nn.Linear(pool(s_out[self.layer]).shape[1], self.num_classes)

    def modules(self) -> nn.Module | None:
        return self.head

    def loss(self, b: Batch) -> torch.Tensor:
        if b.y.dim() != 1 or b.y.is_floating_point():
            from ...errors import UserError

            raise UserError("uskd needs one class id per row", where=self.where, fix="use uskd with class labels")
        s = self.settings
        w = self.head(pool(b.s_features[self.layer]))
        return uskd_loss(b.student, w, b.y, s.alpha, s.beta, s.mu)

    def report(self) -> dict[str, Any]:
        s = self.settings
        return {**super().report(), "layer": self.layer, "alpha": s.alpha, "beta": s.beta, "mu": s.mu,
                "head_params": sum(p.numel() for p in self.head.parameters()) if self.head is not None else 0}
