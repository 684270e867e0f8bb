"""Transformer loss terms of the distill stage: recipe terms → recorded activations → `transformer_losses`.

`hidden_mse`, `attention_kl`, `value_relation_kl` and `minilmv2_relations` compare what happens *inside* a
Hugging Face encoder. Each term names encoder layers by index (0 = the first transformer layer; the
embeddings are not a layer), paired in order:

    {name: hidden_mse, weight: 1.0, student_layers: [0, 1, 2], teacher_layers: [1, 3, 5]}

Without layers, `hidden_mse` maps the student's layers uniformly onto the teacher's (TinyBERT: student
layer i ↔ teacher layer (i+1)·T/S − 1, e.g. 3 of 6 → 1, 3, 5) and the attention terms match the last layer
to the last layer (MiniLM). Activations are recorded with forward hooks (`features.Recorder`): each layer's
output hidden states and the query/key/value projections' outputs, so any attention kernel works (SDPA
never materialises the probabilities and needs no switch to eager attention). The formulas themselves
live in `transformer_losses.py` (the single implementation); the learned projections of `hidden_mse` are
trained with the student as extra parameters (saved in the in-stage checkpoint) and never exported.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TRANSFORMER_TERMS = ("hidden_mse", "attention_kl", "value_relation_kl", "minilmv2_relations")
# query/key/value projections inside one layer: BERT, RoBERTa, MiniLM, ...; DistilBERT; BART/Llama-style
QKV_SUFFIXES = (("attention.self.query", "attention.self.key", "attention.self.value"),
                ("attention.q_lin", "attention.k_lin", "attention.v_lin"),
                ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"))
HEAD_ATTRIBUTES = ("num_attention_heads", "n_heads", "num_heads")


def default_pairs(name: str, student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """hidden_mse: TinyBERT's uniform mapping over layer outputs; the attention terms: last to last (MiniLM)."""
    if name == "hidden_mse":
        return [(i, max(0, (i + 1) * teacher_layers // student_layers - 1)) for i in range(student_layers)]
    return [(student_layers - 1, teacher_layers - 1)]


def check_indices(layers: Sequence[int], count: int, who: str) -> tuple[str, str] | None:
    """(problem, fix) when an index is outside the model's layers."""
    bad = [i for i in layers if not 0 <= i < count]
    if bad:
        return (f"layer {bad[0]} does not exist: the {who} has {count} encoder layers (0..{count - 1})",
                f"use {who} layer indices in 0..{count - 1}")
    return None


# ---------------------------------------------------------------- validation: layer counts from the specs


def spec_layer_count(spec: dict[str, Any] | None, teacher_count: int | None) -> int | None:
    """The encoder layer count a model spec builds, read without building it (None: not known statically)."""
    if not isinstance(spec, dict):
        return None
    name = spec.get("name")
    if name == "hf":
        config = spec.get("config")
        if isinstance(config, dict):
            if isinstance(config.get("num_hidden_layers"), int):
                return config["num_hidden_layers"]
            try:
                from ..models.hf import transformers_module

                return int(transformers_module().AutoConfig.for_model(config.get("model_type", "")).num_hidden_layers)
            except Exception:  # an unknown model_type is the model check's to report
                return None
        try:
            from ..models.hf import model_dir

            folder = model_dir(spec.get("path"), spec.get("package"))
            value = json.loads((Path(folder) / "config.json").read_text()).get("num_hidden_layers")
            return value if isinstance(value, int) else None
        except Exception:  # a missing folder is the model check's to report
            return None
    layers = spec.get("layers")
    if isinstance(layers, list):
        return len(layers)
    if isinstance(layers, int) and not isinstance(layers, bool):
        return layers
    if layers in ("every_other", "every-other") and teacher_count:
        return (teacher_count + 1) // 2
    return None


def is_transformer_spec(spec: Any) -> bool:
    """Hugging Face builders (`hf`, and students derived from a Hugging Face teacher: `hf_derived`, `hf_*`)."""
    name = spec.get("name") if isinstance(spec, dict) else None
    return isinstance(name, str) and (name == "hf" or name.startswith("hf_"))


# ---------------------------------------------------------------- run time: modules, heads, terms


def layer_modules(model: Any, where: str) -> list[str]:
    """Names of the model's encoder layers, in order (the ModuleList of config.num_hidden_layers layers)."""
    from ..errors import UserError
    from ..models.derive import layer_stack

    try:
        stack, layers = layer_stack(model)
    except UserError:
        raise UserError(f"{type(model).__name__} has no transformer layer stack", where=where,
                        fix="transformer loss terms need a Hugging Face encoder (name: hf or hf_derived)") from None
    return [f"{stack}.{i}" if stack else str(i) for i in range(len(layers))]


def qkv_modules(model: Any, layer: str, where: str) -> tuple[str, str, str]:
    """Module names of one layer's query, key and value projections."""
    from ..errors import UserError

    names = {n for n, _ in model.named_modules()}
    for suffixes in QKV_SUFFIXES:
        found = tuple(f"{layer}.{s}" for s in suffixes)
        if all(n in names for n in found):
            return found  # type: ignore[return-value]
    raise UserError(f"no query/key/value projections in {layer}", where=where,
                    fix="attention terms need BERT-, DistilBERT- or BART-style self-attention; use hidden_mse instead")


def head_count(model: Any, layer: str) -> int | None:
    """The attention head count of one layer (the module's own attribute, which pruning keeps current)."""
    for _, module in model.get_submodule(layer).named_modules():
        for attr in HEAD_ATTRIBUTES:
            value = getattr(module, attr, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    value = getattr(getattr(model, "config", None), "num_attention_heads", None)
    return value if isinstance(value, int) else None


class TransformerTerm:
    """One recipe term: its layer pairs, the modules to record in each network, and the loss over them."""

    def __init__(self, term: Any, student: Any, teacher: Any, where: str) -> None:
        from torch import nn

        from ..errors import UserError

        self.name, self.weight, self.where = term.name, term.weight, where
        s_layers, t_layers = layer_modules(student, where), layer_modules(teacher, where)
        if term.student_layers is None:
            self.pairs = default_pairs(term.name, len(s_layers), len(t_layers))
        else:
            self.pairs = list(zip(term.student_layers, term.teacher_layers, strict=True))
        for k, (layers, who) in enumerate(((s_layers, "student"), (t_layers, "teacher"))):
            problem = check_indices([p[k] for p in self.pairs], len(layers), who)
            if problem:
                raise UserError(problem[0], where=f"{where}.{who}_layers", fix=problem[1])
        self.s_names: list[tuple[str, ...]] = []
        self.t_names: list[tuple[str, ...]] = []
        self.heads: list[tuple[int | None, int | None]] = []
        for si, ti in self.pairs:
            if term.name == "hidden_mse":
                self.s_names.append((s_layers[si],))
                self.t_names.append((t_layers[ti],))
            else:
                self.s_names.append(qkv_modules(student, s_layers[si], where))
                self.t_names.append(qkv_modules(teacher, t_layers[ti], where))
            self.heads.append((head_count(student, s_layers[si]), head_count(teacher, t_layers[ti])))
        if term.name in ("attention_kl", "value_relation_kl"):
            for s_heads, t_heads in self.heads:
                if s_heads != t_heads:
                    raise UserError(f"{term.name} needs equal attention head counts (student {s_heads}, teacher "
                                    f"{t_heads})", where=where,
                                    fix="use minilmv2_relations, which works across head counts")
        self.relation_heads = term.relation_heads or self.heads[0][1]
        self.projections: nn.Module = nn.ModuleList()

    def modules(self) -> tuple[list[str], list[str]]:
        """(student, teacher) module names to record."""
        return [n for names in self.s_names for n in names], [n for names in self.t_names for n in names]

    def build(self, s_out: dict[str, Any], t_out: dict[str, Any]) -> None:
        """Size the learned projections (hidden_mse) and check the relation heads, from one dry forward pass."""
        from ..errors import UserError
        from .transformer_losses import HiddenProjections

        if self.name == "hidden_mse":
            widths = {(s_out[s[0]].shape[-1], t_out[t[0]].shape[-1]) for s, t in zip(self.s_names, self.t_names, strict=True)}
            (sw, tw), = widths
            self.projections = HiddenProjections(self.pairs, sw, tw)
        if self.name == "minilmv2_relations":
            widths = {x.shape[-1] for names, out in ((self.s_names, s_out), (self.t_names, t_out))
                      for group in names for x in (out[n] for n in group)}
            bad = sorted(w for w in widths if w % self.relation_heads)
            if bad:
                raise UserError(f"{self.relation_heads} relation heads do not divide the attention width {bad[0]}",
                                where=f"{self.where}.relation_heads",
                                fix=f"pick relation heads that divide every width ({', '.join(map(str, sorted(widths)))})")

    def __call__(self, s_out: dict[str, Any], t_out: dict[str, Any], mask: Any) -> Any:
        from . import transformer_losses as tl

        if self.name == "hidden_mse":
            s_states = [s_out[s[0]] for s in self.s_names]
            t_states = [t_out[t[0]] for t in self.t_names]
            mapping = [(n, n) for n in range(len(self.pairs))]
            return self.weight * tl.hidden_mse(s_states, t_states, mapping, mask, self.projections)
        total = 0.0
        for s_names, t_names, (s_heads, t_heads) in zip(self.s_names, self.t_names, self.heads, strict=True):
            (sq, sk, sv), (tq, tk, tv) = [s_out[n] for n in s_names], [t_out[n] for n in t_names]
            if self.name == "attention_kl":
                total = total + tl.attention_kl(sq, sk, tq, tk, t_heads, mask, student_heads=s_heads)
            elif self.name == "value_relation_kl":
                total = total + tl.value_relation_kl(sv, tv, t_heads, mask)
            else:
                total = total + tl.minilmv2_relations((sq, sk, sv), (tq, tk, tv), self.relation_heads, mask)
        return self.weight * total / len(self.pairs)
