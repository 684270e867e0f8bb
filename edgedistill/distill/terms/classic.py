"""The terms that existed before the registry: logit divergences, output (embedding) terms, labelled-pair
terms, feature terms and transformer-internal terms, each family one class over its function registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import (
    ORDER_FEATURE,
    ORDER_LOGIT,
    ORDER_OUTPUT,
    ORDER_PAIR,
    ORDER_TRANSFORMER,
    TEACHER_ACTIVATIONS,
    TEACHER_OUTPUT,
    TEACHER_PROBS,
    Batch,
    Term,
    TermSetup,
    register_term,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

# the function registries these classes serve, by name (tests/test_terms.py checks both lists stay equal);
# named here so that validating a recipe needs no torch
LOGIT_NAMES = ("kl", "rkl", "js", "skew_kl", "skew_rkl", "logits_kl")
OUTPUT_NAMES = ("embedding_mse", "embedding_cosine", "embedding_relation")
PAIR_NAMES = ("cosent", "cosine_regression")
FEATURE_NAMES = ("mse", "cosine", "attention", "rkd_distance", "rkd_angle")
TRANSFORMER_NAMES = ("hidden_mse", "attention_kl", "value_relation_kl", "minilmv2_relations")


def registries() -> dict[str, dict[str, Any]]:
    """The loss-function registries, imported on first use (they import torch)."""
    from .. import transformer_losses as _transformer_losses  # noqa: F401  (registers output losses, logits_kl)
    from ..features import FEATURE_LOSSES
    from ..losses import LOGIT_LOSSES, OUTPUT_LOSSES
    from ..pair_losses import PAIR_LOSSES

    return {"logit": LOGIT_LOSSES, "output": OUTPUT_LOSSES, "pair": PAIR_LOSSES, "feature": FEATURE_LOSSES}


@register_term(*LOGIT_NAMES)
class LogitTerm(Term):
    """A divergence between the student's logits at T and the teachers' probabilities at T (losses.py)."""

    order = ORDER_LOGIT
    needs = frozenset({TEACHER_PROBS})
    uses_temperature = True
    summary = "logit divergence at T against the teachers' probabilities"

    def loss(self, b: Batch) -> torch.Tensor:
        return registries()["logit"][self.name](b.student_kd, b.teacher_probs(), b.y, b.temperature, self.spec.skew)


@register_term("ce")
class LabelTerm(Term):
    """Cross-entropy with the hard labels, on the raw (never standardized) logits; needs no teacher."""

    order = ORDER_LOGIT
    summary = "cross-entropy with the labels"

    def loss(self, b: Batch) -> torch.Tensor:
        return registries()["logit"]["ce"](b.student, None, b.y, b.temperature, self.spec.skew)


@register_term(*OUTPUT_NAMES)
class OutputTerm(Term):
    """The task's output (an embedding) against the teachers' raw outputs, compared as they are."""

    order = ORDER_OUTPUT
    needs = frozenset({TEACHER_OUTPUT})
    dense_teacher = True
    summary = "the student's output against the teachers' raw outputs"

    def __init__(self, spec: Any, setup: TermSetup) -> None:
        super().__init__(spec, setup)

        from ...errors import UserError

        widths = [setup.primary_shape(m) for m in (setup.student, setup.teacher)]
        if widths[0] != widths[1]:
            raise UserError(f"{self.name} compares the outputs directly, but the student's is "
                            f"{list(widths[0])} wide and the teacher's {list(widths[1])}",
                            where=setup.where.rsplit(".", 1)[0],
                            fix="keep the teacher's hidden size, or use hidden_mse (learned projections) and "
                                "minilmv2_relations, which work across widths")

    def loss(self, b: Batch) -> torch.Tensor:
        return registries()["output"][self.name](b.student, b.teacher_output())


@register_term(*PAIR_NAMES)
class PairTerm(Term):
    """Gold scores of stacked sentence pairs (a task stage on sts_pairs); needs no teacher."""

    order = ORDER_PAIR
    summary = "labelled sentence pairs: the student's cosine against the gold score"

    def loss(self, b: Batch) -> torch.Tensor:
        return registries()["pair"][self.name](b.student, b.y, self.spec)


@register_term(*FEATURE_NAMES)
class FeatureLossTerm(Term):
    """Activations of named (or evenly spaced) layers, through connectors when the shapes differ (features.py)."""

    order = ORDER_FEATURE
    needs = frozenset({TEACHER_ACTIVATIONS})
    summary = "features of named layers, with connectors"

    def __init__(self, spec: Any, setup: TermSetup) -> None:
        super().__init__(spec, setup)
        from ..features import FeatureTerm, check_layers, evenly_spaced

        where = setup.where
        if spec.evenly:
            s_names = evenly_spaced(setup.student, spec.evenly, setup.probe)
            t_names = evenly_spaced(setup.teacher, spec.evenly, setup.probe)
            n = min(len(s_names), len(t_names))
            s_names, t_names = s_names[-n:], t_names[-n:]
        else:
            s_names, t_names = list(spec.student_layers or []), list(spec.teacher_layers or [])
            check_layers(setup.student, s_names, f"{where}.student_layers")
            check_layers(setup.teacher, t_names, f"{where}.teacher_layers")
        self.term = FeatureTerm(spec.name, spec.weight, list(zip(s_names, t_names, strict=True)))

    def record(self) -> tuple[list[str], list[str]]:
        return [s for s, _ in self.term.pairs], [t for _, t in self.term.pairs]

    def build(self, s_out: dict[str, torch.Tensor], t_out: dict[str, torch.Tensor]) -> None:
        self.term.build_connectors(s_out, t_out)

    def modules(self) -> nn.Module:
        return self.term.connectors

    def contribution(self, b: Batch) -> torch.Tensor:
        return self.term(b.s_features, b.t_features)  # weighted and averaged over the pairs inside

    def report(self) -> dict[str, Any]:
        return {"loss": self.name, "weight": self.weight, "pairs": [list(p) for p in self.term.pairs],
                "connectors": len(self.term.connectors)}


@register_term(*TRANSFORMER_NAMES)
class TransformerLossTerm(Term):
    """Inside a Hugging Face encoder: hidden states, attention and value relations (transformer_terms.py)."""

    order = ORDER_TRANSFORMER
    needs = frozenset({TEACHER_ACTIVATIONS})
    summary = "hidden states / attention relations inside a Hugging Face encoder"

    def __init__(self, spec: Any, setup: TermSetup) -> None:
        super().__init__(spec, setup)
        from ..transformer_terms import TransformerTerm

        self.term = TransformerTerm(spec, setup.student, setup.teacher, setup.where)

    def record(self) -> tuple[list[str], list[str]]:
        return self.term.modules()

    def build(self, s_out: dict[str, torch.Tensor], t_out: dict[str, torch.Tensor]) -> None:
        self.term.build(s_out, t_out)

    def modules(self) -> nn.Module:
        return self.term.projections

    def contribution(self, b: Batch) -> torch.Tensor:
        return self.term(b.s_features, b.t_features, b.mask)

    def report(self) -> dict[str, Any]:
        return {"loss": self.name, "weight": self.weight, "pairs": [list(p) for p in self.term.pairs],
                "projection_params": sum(p.numel() for p in self.term.projections.parameters())}
