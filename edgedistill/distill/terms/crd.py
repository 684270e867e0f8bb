"""`crd`: Contrastive Representation Distillation (Tian, Krishnan & Isola, ICLR 2020), the relational term that
contrasts each row against `nce_k` other training rows held in memory banks (the machinery: ../contrast.py).

What is contrasted: by default each network's penultimate features, i.e. the input of its last `nn.Linear`
(recorded as "<name>:input"), or the layers `student_layer` / `teacher_layer` name. A task without class logits
(text_embedding) contrasts the two primary outputs (the sentence embeddings) instead, which the teacher cache
serves, so the teacher need not run live there.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pydantic import Field

from ...config import Strict
from .base import ORDER_FEATURE, TEACHER_ACTIVATIONS, TEACHER_OUTPUT, Batch, Term, TermSetup, register_term

if TYPE_CHECKING:
    import torch
    from torch import nn


class CRDSettings(Strict):
    """The official defaults (RepDistiller's train_student.py)."""

    feat_dim: int = Field(128, ge=1, le=65536, description="width of the shared embedding space")
    nce_k: int = Field(16384, ge=1, description="negatives per row (capped at the training rows − 1)")
    nce_t: float = Field(0.07, gt=0, le=100, description="temperature of exp(v·m / T)")
    nce_mom: float = Field(0.5, ge=0, lt=1, description="momentum of the memory update")
    student_layer: str | None = Field(None, description="student module to record (default: the input of its last nn.Linear)")
    teacher_layer: str | None = Field(None, description="teacher module to record (default: the input of its last nn.Linear)")


def penultimate(model: nn.Module, where: str) -> str:
    """The recorded name of the features the classifier reads: the input of the model's last nn.Linear."""
    from torch import nn

    from ...errors import UserError

    linears = [name for name, m in model.named_modules() if name and isinstance(m, nn.Linear)]
    if not linears:
        raise UserError("crd contrasts the penultimate features (the input of the last nn.Linear), but this "
                        "model has no nn.Linear", where=where,
                        fix="name the layer with student_layer / teacher_layer (a module name; add ':input' to "
                            "record what it receives)")
    return f"{linears[-1]}:input"


@register_term("crd")
class CRDTerm(Term):
    """Both directions of the CRD NCE loss between the student's and the teacher's (projected) features."""

    order = ORDER_FEATURE
    needs = frozenset({TEACHER_ACTIVATIONS})  # the instance narrows it to the outputs on tasks without logits
    Settings = CRDSettings
    summary = "contrastive representation distillation: NCE against memory banks of both networks"

    @classmethod
    def check(cls, spec: Any, cfg: Any) -> tuple[tuple, str, str] | None:
        for field in ("student_layers", "teacher_layers", "evenly"):
            if getattr(spec, field) is not None:
                return ((field,), f"crd contrasts one layer of each network and takes no {field}",
                        "name them with student_layer / teacher_layer (default: the input of each last nn.Linear)")
        return None

    def __init__(self, spec: Any, setup: TermSetup) -> None:
        super().__init__(spec, setup)
        from ...errors import UserError
        from ..features import check_layers

        st, where = self.settings, setup.where
        self.n_train = setup.n_train
        if setup.n_train < 2:
            raise UserError(f"crd contrasts each training row against others, but the split has {setup.n_train} row(s)",
                            where=where, fix="train on more rows, or drop crd")
        self.nce_k = min(st.nce_k, setup.n_train - 1)
        self.capped = self.nce_k < st.nce_k
        named = st.student_layer is not None or st.teacher_layer is not None
        self.on_outputs = not setup.num_classes and not named
        self.heads: Any = None
        self.s_name = self.t_name = None
        if self.on_outputs:  # no class logits (text_embedding): the embeddings themselves
            self.needs = frozenset({TEACHER_OUTPUT})
            cache = setup.cfg.cache
            if cache.enabled and cache.mode != "dense":
                raise UserError(f"crd contrasts the teacher's full output, not a {cache.mode} cache of it",
                                where=f"{where.rsplit('.losses', 1)[0]}.cache.mode", fix="use cache.mode: dense")
            self._build_heads(tuple(math.prod(setup.primary_shape(m)) for m in (setup.student, setup.teacher)))
            return
        self.s_name = st.student_layer or penultimate(setup.student, f"{where}.student_layer")
        self.t_name = st.teacher_layer or penultimate(setup.teacher, f"{where}.teacher_layer")
        check_layers(setup.student, [self.s_name], f"{where}.student_layer")
        check_layers(setup.teacher, [self.t_name], f"{where}.teacher_layer")

    def _build_heads(self, dims: tuple[int, int]) -> None:
        from ..contrast import CRDHeads

        st = self.settings
        self.heads = CRDHeads(dims[0], dims[1], st.feat_dim, self.n_train, self.nce_k, st.nce_t, st.nce_mom)

    def record(self) -> tuple[list[str], list[str]]:
        return ([self.s_name], [self.t_name]) if not self.on_outputs else ([], [])

    def build(self, s_out: dict[str, torch.Tensor], t_out: dict[str, torch.Tensor]) -> None:
        if not self.on_outputs:
            self._build_heads((int(s_out[self.s_name][0].numel()), int(t_out[self.t_name][0].numel())))

    def modules(self) -> nn.Module:
        return self.heads

    def _features(self, b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.on_outputs:
            return b.student, b.teacher_output()
        return b.s_features[self.s_name], b.t_features[self.t_name]

    def loss(self, b: Batch) -> torch.Tensor:
        from ...errors import UserError

        idx = b.idx.to(self.heads.memory.memory_s.device).long()
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.n_train):
            raise UserError(f"crd keeps one memory slot per training row ({self.n_train}), but a batch came with "
                            f"row index {int(idx.max())}", where=self.where,
                            fix="crd needs data whose batches carry their row index in the training split; drop crd")
        f_s, f_t = self._features(b)
        loss, v_s, v_t = self.heads(f_s, f_t, idx)
        self._last = (v_s.detach(), v_t.detach(), idx)
        return loss

    def observe(self, b: Batch, value: torch.Tensor) -> None:
        """The memory moves after the step's scores are taken (as in the official code)."""
        last = getattr(self, "_last", None)
        if last is not None:
            self.heads.memory.update(*last)
            self._last = None

    def state_dict(self) -> dict[str, Any]:
        """The memory banks and Z (buffers, not parameters): `--resume` continues with the same memory."""
        return {k: v.detach().clone() for k, v in self.heads.memory.state_dict().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.heads.memory.load_state_dict(state)

    def report(self) -> dict[str, Any]:
        st, z = self.settings, self.heads.memory.z.tolist()
        out = {"loss": self.name, "weight": self.weight, "contrasted": "outputs" if self.on_outputs else [self.s_name, self.t_name],
               "feat_dim": st.feat_dim, "nce_k": self.nce_k, "nce_t": st.nce_t, "nce_mom": st.nce_mom,
               "z": [round(v, 4) for v in z], "memory_floats": 2 * self.n_train * st.feat_dim,
               "head_params": sum(p.numel() for p in self.heads.parameters())}
        if self.capped:
            out["note"] = f"nce_k {st.nce_k} capped at the training rows − 1 ({self.nce_k})"
        return out
