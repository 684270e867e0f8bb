"""Students derived from the teacher: a subset of its transformer layers, with their weights copied.

`{name: hf_derived, layers: [1, 3, 5]}` keeps those teacher layers (0-based, in that order) together with the
embeddings and everything outside the layer stack (pooling, classifier head), so the student starts from the
teacher's weights instead of from noise. The teacher is handed in by the stage that builds the student, like
the data's class count; a recipe cannot name it.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from ..errors import UserError
from .registry import register_model

if TYPE_CHECKING:
    from torch import nn


def layer_stack(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The transformer's list of layers: the ModuleList as long as `config.num_hidden_layers`."""
    from torch import nn

    config = getattr(model, "config", None)
    count = getattr(config, "num_hidden_layers", None)
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and count is not None and len(module) == count:
            return name, module
    raise UserError("cannot find the teacher's layer stack (a ModuleList of config.num_hidden_layers layers)",
                    where="student.name", fix="hf_derived works on Hugging Face transformer teachers")


def keep_layers(model: nn.Module, layers: list[int]) -> nn.Module:
    """A deep copy of `model` with only `layers` of its layer stack (weights copied, order as given)."""
    from torch import nn

    _, stack = layer_stack(model)
    total = len(stack)
    if not layers or any(not isinstance(i, int) or not 0 <= i < total for i in layers):
        raise UserError(f"layers must be a non-empty list of indices in 0..{total - 1}, got {layers}",
                        where="student.layers", fix=f"the teacher has {total} layers, e.g. layers: [1, 3, 5]")
    if len(set(layers)) != len(layers):
        raise UserError(f"a layer is listed twice: {layers}", where="student.layers", fix="list each layer once")
    student = copy.deepcopy(model)
    name, _ = layer_stack(student)
    parent_name, _, attr = name.rpartition(".")
    parent = student.get_submodule(parent_name) if parent_name else student
    old = getattr(parent, attr)
    setattr(parent, attr, nn.ModuleList([old[i] for i in layers]))
    configs = {id(m.config): m.config for m in student.modules() if getattr(m, "config", None) is not None}
    for cfg in configs.values():  # the wrapper and the inner model may hold the same config object
        cfg.num_hidden_layers = len(layers)
    for i, layer in enumerate(getattr(parent, attr)):
        for m in layer.modules():  # newer transformers number their attention layers for the KV cache
            if hasattr(m, "layer_idx"):
                m.layer_idx = i
    for p in student.parameters():
        p.requires_grad_(True)
    return student


@register_model("hf_derived")
def hf_derived(layers: int | str | list[int], intermediate_size: int | None = None, heads: int | None = None,
               hidden_size: int | None = None, freeze_word_embeddings: bool = False,
               vocab_size: int | None = None, teacher: nn.Module | None = None) -> nn.Module:
    """The teacher with only `layers` of its transformer layers (weights copied), optionally narrowed.

    `layers`: a list of teacher indices, a number N (the first N) or "every_other" (ending at the top layer).
    `intermediate_size` / `heads` / `hidden_size` narrow the copy by structured pruning (weights of what stays
    are kept). `freeze_word_embeddings` keeps the teacher's word-embedding table fixed while distilling: fewer
    trained parameters, and a later `vocab` stage keeps exactly the teacher's rows. `vocab_size` is written by
    the `vocab` stage into the saved spec (a recipe does not set it): the table is cut to that many rows so
    the pruned weights load back on `--resume`."""
    from .hf_derive import keep_layers as keep_resolved
    from .hf_derive import narrow

    if teacher is None:
        raise UserError("hf_derived needs a teacher to copy layers from", where="student.name",
                        fix="use hf_derived only as a distillation student")
    student, _ = keep_resolved(teacher, layers if isinstance(layers, int | str) else list(layers))
    inner = hf_inside(student)
    if intermediate_size is not None or heads is not None or hidden_size is not None:
        narrow(inner, intermediate_size=intermediate_size, heads=heads, hidden_size=hidden_size)
    table = inner.get_input_embeddings()
    if vocab_size is not None:
        if not 1 <= vocab_size <= table.num_embeddings:
            raise UserError(f"vocab_size {vocab_size} is not in 1..{table.num_embeddings}", where="student.vocab_size",
                            fix="leave vocab_size to the vocab stage")
        inner.resize_token_embeddings(vocab_size)
        table = inner.get_input_embeddings()
    if freeze_word_embeddings:
        table.weight.requires_grad_(False)
    return student


def hf_inside(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside a task wrapper (the sentence encoder's `.encoder`), or the model itself."""
    inner = getattr(model, "encoder", None)
    return inner if hasattr(inner, "get_input_embeddings") else model
