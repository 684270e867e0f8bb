"""What a distillation term is: one registered class per method, composed by the stage without branches.

A term declares what it needs from a training step (`needs`: the teacher's probabilities or raw outputs,
activations recorded inside either network), owns its settings (`Settings`, validated with the recipe's
file:line errors), its trainable helpers (connectors, projectors, memories: trained with the student, never
exported), its per-step hook and its state (saved in the checkpoint for `--resume`). The stage
(`kd.train_student`) only asks each term for `record()`, `build()`, `parameters()`, `on_step()`,
`contribution()` and `observe()`; the teacher-target provider (`targets.py`) decides once whether the
teacher's outputs come from the cache, a live forward pass or per-epoch augmented caches.

Adding a method = one class with `@register_term("name")` in a module of this package, and its test. The
module must not import torch at import time (recipe validation lists the registered names without it):
import it inside the methods.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError

from ...config import Strict

if TYPE_CHECKING:  # term modules never import torch at import time: validating a recipe must stay torch-free
    import torch
    from torch import nn

# what a term may ask of a step (Term.needs)
TEACHER_PROBS = "teacher_probs"  # the teachers' (weighted) probabilities at the step's temperature
TEACHER_OUTPUT = "teacher_output"  # the teachers' raw primary output (an embedding, dense logits)
TEACHER_ACTIVATIONS = "teacher_activations"  # modules recorded inside teacher 0: forces a live teacher

# the order terms are summed in (a fixed order keeps a recipe's loss bit-identical whatever order it lists them)
ORDER_LOGIT, ORDER_OUTPUT, ORDER_FEATURE, ORDER_TRANSFORMER, ORDER_PAIR, ORDER_OTHER = 0, 10, 20, 30, 40, 50


class NoSettings(Strict):
    """A term with no settings of its own beyond the common LossTerm fields."""


@dataclass
class TermSetup:
    """What a term may look at when it is built (once per trained student)."""

    student: nn.Module
    teacher: nn.Module  # teacher 0 (the one whose activations can be recorded)
    task: Any
    probe: Callable[[nn.Module], object]  # one dry forward pass of a model on a few training rows
    num_classes: int | None
    n_train: int  # rows of the training split (memories are sized by it; `Batch.idx` indexes it)
    cfg: Any  # the stage's DistillConfig
    where: str  # "stages.N.losses.i", for errors

    def primary_shape(self, model: nn.Module) -> tuple[int, ...]:
        """The per-row shape of `model`'s primary output, from one dry pass with the student in eval mode (a
        term sizing its helpers from the outputs; the student's mode is restored after)."""
        import torch

        was_training = self.student.training
        self.student.eval()
        with torch.no_grad():
            out = self.task.primary(self.probe(model))
        self.student.train(was_training)
        return tuple(out.shape[1:])


@dataclass
class Batch:
    """One training step as every term sees it. Teacher quantities are computed once, on first use."""

    x: dict[str, torch.Tensor]  # the student's (possibly augmented) inputs
    y: torch.Tensor  # labels (class ids, gold pair scores, ...)
    idx: torch.Tensor  # row indices in the training split
    student: torch.Tensor  # the student's primary output (class logits or an embedding)
    student_kd: torch.Tensor  # the same, z-scored when the stage standardizes logits
    temperature: float
    s_features: dict[str, torch.Tensor] = field(default_factory=dict)  # recorded student modules
    t_features: dict[str, torch.Tensor] = field(default_factory=dict)  # recorded teacher modules
    targets: list[Any] | None = None  # the teachers' cache.Targets for this batch (None: no teacher term)
    weights: list[float] = field(default_factory=lambda: [1.0])  # teacher mixing weights
    _probs: dict[float, torch.Tensor] = field(default_factory=dict)

    @property
    def mask(self) -> torch.Tensor | None:
        return self.x.get("attention_mask")

    def teacher_probs(self, temperature: float | None = None) -> torch.Tensor:
        """The teachers' probabilities at `temperature` (default: the step's), weighted over teachers."""
        t = self.temperature if temperature is None else temperature
        if t not in self._probs:
            total = sum(self.weights)
            self._probs[t] = sum(w / total * tg.probs(t) for w, tg in zip(self.weights, self.targets, strict=True))
        return self._probs[t]

    def teacher_output(self) -> torch.Tensor:
        """The teachers' raw outputs (dense targets hold them), weighted like their probabilities."""
        total = sum(self.weights)
        return sum(w / total * tg.a for w, tg in zip(self.weights, self.targets, strict=True))


def names_layers(spec: Any) -> bool:
    """Whether a loss term's spec picks layers (student_layers, teacher_layers or evenly): the check every
    output-only term makes before refusing them."""
    return spec.student_layers is not None or spec.teacher_layers is not None or bool(spec.evenly)


class Term:
    """One weighted term of the loss; subclasses register under one or more recipe names."""

    names: ClassVar[tuple[str, ...]] = ()  # the recipe names this class was registered under
    order: ClassVar[int] = ORDER_OTHER
    needs: ClassVar[frozenset[str]] = frozenset()
    dense_teacher: ClassVar[bool] = False  # refuses top-k / sampled teacher caches
    uses_temperature: ClassVar[bool] = False  # a logit divergence at T (the dynamic schedule follows its gap)
    Settings: ClassVar[type[Strict]] = NoSettings
    summary: ClassVar[str] = ""

    def __init__(self, spec: Any, setup: TermSetup) -> None:
        self.spec, self.name, self.weight, self.where = spec, spec.name, spec.weight, setup.where
        self.settings = self.Settings(**(spec.model_extra or {}))

    # ---- validation, before anything is built (no models): a problem is (field path in the term, message, fix)
    @classmethod
    def check(cls, spec: Any, cfg: Any) -> tuple[tuple, str, str] | None:
        return None

    @classmethod
    def check_settings(cls, spec: Any) -> tuple[tuple, str, str] | None:
        """The term's own settings (the LossTerm keys beyond the common ones) against its `Settings` model."""
        extra = dict(spec.model_extra or {})
        known = list(cls.Settings.model_fields)
        for key in extra:
            if key not in known:
                common = [k for k in type(spec).model_fields if k != "name"]
                close = difflib.get_close_matches(key, known + common, n=1, cutoff=0.6)
                hint = f'did you mean "{close[0]}"? ' if close else ""
                options = ", ".join(known) if known else "none"
                return ((key,), f'"{spec.name}" has no setting "{key}" ({options} of its own)',
                        f"{hint}see docs/distillation.md for {spec.name}'s settings")
        try:
            cls.Settings(**extra)
        except ValidationError as exc:
            err = exc.errors()[0]
            return (tuple(err["loc"]), f'{spec.name}: {err["msg"].removeprefix("Value error, ")}',
                    f"see docs/distillation.md for {spec.name}'s settings")
        return None

    # ---- building (after the teacher targets are decided)
    def record(self) -> tuple[list[str], list[str]]:
        """(student, teacher) module names whose outputs this term reads from `Batch.s_features/t_features`."""
        return [], []

    def build(self, s_out: dict[str, torch.Tensor], t_out: dict[str, torch.Tensor]) -> None:
        """Size connectors or projectors from one dry forward pass (called only when something is recorded)."""

    def modules(self) -> nn.Module | None:
        """Trainable helpers (connectors, projectors): trained with the student, saved for resume, never exported."""
        return None

    def parameters(self) -> list[nn.Parameter]:
        m = self.modules()
        return list(m.parameters()) if m is not None else []

    # ---- training
    def on_step(self, step: int, total: int) -> None:
        """Called before each optimizer step (schedules that depend on progress)."""

    def loss(self, b: Batch) -> torch.Tensor:
        raise NotImplementedError

    def contribution(self, b: Batch) -> torch.Tensor:
        """What this term adds to the step's loss."""
        return self.weight * self.loss(b)

    def observe(self, b: Batch, value: torch.Tensor) -> None:
        """Called after the step's loss with this term's contribution (adaptive schedules, memories)."""

    def state_dict(self) -> dict[str, Any]:
        """History that `--resume` must restore (not a function of the step, not a parameter)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def report(self) -> dict[str, Any]:
        return {"loss": self.name, "weight": self.weight}


TERMS: dict[str, type[Term]] = {}


def register_term(*names: str) -> Callable[[type[Term]], type[Term]]:
    """Register a Term class under recipe names (a generic class may serve several, e.g. the logit divergences)."""

    def deco(cls: type[Term]) -> type[Term]:
        for name in names:
            TERMS[name] = cls
        cls.names = (*cls.__dict__.get("names", ()), *names)
        return cls

    return deco
