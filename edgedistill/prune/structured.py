"""Structured pruning on Torch-Pruning's dependency graph: channels, filters, attention heads, FFN neurons.

Torch-Pruning traces the model, groups every layer whose channels are coupled (a residual add ties the
convolutions on both branches, a BatchNorm follows its convolution, a concatenation maps indices), ranks the
channels of each group by an importance criterion, and physically slices the weights. We add what a
deployment needs around it: the output layer is never cut, channel counts are rounded to a multiple
(`round_to`, 8 by default, for vector units), transformers lose whole heads and FFN neurons but keep their
hidden size, and every group cut is recorded in a JSON plan (see `plan.py`) so the result reloads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import UserError
from ._tp import torch_pruning
from .plan import Example, build_graph, call, empty_plan, is_hf, record_group, traced_output

if TYPE_CHECKING:
    from ..tasks import Task

IMPORTANCE = ("l1", "l2", "bn_scale", "taylor")


@dataclass
class StructuredResult:
    plan: dict[str, Any]
    channels: dict[str, list[int]] = field(default_factory=dict)  # layer -> [before, after]
    heads: dict[str, list[int]] = field(default_factory=dict)  # attention block -> [before, after]


def make_importance(name: str) -> Any:
    """The Torch-Pruning criterion behind each recipe name (magnitude L1/L2, BN scale, first-order Taylor)."""
    tp = torch_pruning()
    if name == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    if name == "l2":
        return tp.importance.MagnitudeImportance(p=2)
    if name == "bn_scale":
        return tp.importance.BNScaleImportance()
    if name == "taylor":
        return tp.importance.TaylorImportance()
    raise UserError(f'unknown importance "{name}"', where="prune.importance", fix=f"use one of: {', '.join(IMPORTANCE)}")


def output_layers(model: nn.Module, example: Example) -> list[nn.Module]:
    """The last Linear/Conv layer to run: its outputs are the model's classes, so it must keep every one."""
    order: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda mod, _i, _o: order.append(mod))
             for m in model.modules() if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            call(model, example)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return order[-1:]


def _attention_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """BERT-style self-attention blocks: query/key/value projections and a cached head count."""
    return {name: m for name, m in model.named_modules()
            if all(isinstance(getattr(m, a, None), nn.Linear) for a in ("query", "key", "value"))
            and hasattr(m, "num_attention_heads")}


def _hf_frozen(model: nn.Module) -> list[nn.Module]:
    """Layers whose outputs are the residual stream (hidden size): kept whole so only heads and FFN shrink."""
    frozen: list[nn.Module] = []
    for name, m in model.named_modules():
        if not isinstance(m, nn.Linear | nn.Embedding):
            continue
        leaf = name.rsplit(".", 1)[-1]
        parent = name.rsplit(".", 2)[-2] if name.count(".") >= 1 else ""
        # BERT: attention.output.dense and output.dense write the residual stream; intermediate.dense is the FFN.
        if isinstance(m, nn.Embedding) or (leaf == "dense" and parent == "output") or "pooler" in name:
            frozen.append(m)
    return frozen


def _taylor_gradients(model: nn.Module, batches: list[tuple[Any, torch.Tensor]], task: Task) -> None:
    """First-order Taylor importance needs weight gradients of the task loss on real samples."""
    model.zero_grad(set_to_none=True)
    was_training = model.training
    model.eval()  # frozen BatchNorm statistics: the gradients only score channels, they are never applied
    try:
        for x, y in batches:
            inputs = x if isinstance(x, dict) else {task.input_names[0]: x}
            task.label_loss(task.forward(model, inputs), y).backward()
    finally:
        model.train(was_training)


def prune_structured(
    model: nn.Module,
    example: Example,
    *,
    ratio: float,
    importance: str = "l2",
    scope: str = "layer",
    round_to: int = 8,
    layer_ratios: dict[str, float] | None = None,
    max_layer_ratio: float = 0.9,
    ignore: list[str] | None = None,
    head_ratio: float = 0.0,
    grad_batches: list[tuple[dict[str, torch.Tensor], torch.Tensor]] | None = None,
    task: Task | None = None,
    on_group: Callable[[dict[str, Any]], None] | None = None,
) -> StructuredResult:
    """Remove channels from `model` in place; returns the plan that replays it.

    `ratio` is the fraction of channels removed in each layer (`scope="layer"`) or across all layers ranked
    together (`scope="global"`); `layer_ratios` overrides it per root layer by module name.
    """
    tp = torch_pruning()
    names = dict(model.named_modules())
    ignored = output_layers(model, example)
    for name in ignore or []:
        if name not in names:
            raise UserError(f'no layer named "{name}" to ignore', where="prune.ignore",
                            fix=f"layer names look like: {', '.join(list(prunable_layers(model, example))[:6])}")
        ignored.append(names[name])
    attn: dict[str, nn.Module] = {}
    num_heads: dict[nn.Module, int] = {}
    if is_hf(model):
        ignored += _hf_frozen(model)
        attn = _attention_blocks(model)
        for block in attn.values():
            for proj in (block.query, block.key, block.value):
                num_heads[proj] = block.num_attention_heads
    ratio_dict: dict[nn.Module, float] = {}
    for name, r in (layer_ratios or {}).items():
        if name not in names:
            raise UserError(f'no layer named "{name}"', where="prune.layer_ratios",
                            fix=f"prunable layers: {', '.join(prunable_layers(model, example))}")
        ratio_dict[names[name]] = float(r)
    if round_to > 1 and scope == "layer":
        # Torch-Pruning rounds the kept count *down* to the multiple (15.5 kept -> 8) and skips a layer rounded
        # to zero. Round to the *nearest* multiple instead (at least one), by handing it an exact ratio.
        frozen = {id(m) for m in ignored}
        for name, width in prunable_layers(model, example).items():
            module = names[name]
            r = ratio_dict.get(module, ratio)
            if id(module) in frozen or r <= 0 or width <= round_to:
                continue
            kept = min(width, max(round_to, math.floor(width * (1 - r) / round_to + 0.5) * round_to))  # ties keep more
            ratio_dict[module] = 1 - (kept + 0.5) / width  # +0.5: int() inside Torch-Pruning lands on `kept`
    if importance == "taylor":
        if not grad_batches:
            raise UserError("Taylor importance needs training batches", where="prune.importance", fix="use l2")
        if task is None:  # library callers with one image tensor: today's image classification
            from ..tasks.image_classification import image_task

            task = image_task(tuple(example.shape[1:]), 0)
        _taylor_gradients(model, grad_batches, task)

    before = {n: _width(m) for n, m in names.items() if _width(m) is not None}
    heads_before = {n: b.num_attention_heads for n, b in attn.items()}
    was_training = model.training
    model.eval()
    pruner = tp.pruner.MetaPruner(
        model, example, importance=make_importance(importance), global_pruning=scope == "global",
        pruning_ratio=ratio, pruning_ratio_dict=ratio_dict or None, max_pruning_ratio=max_layer_ratio,
        ignored_layers=ignored, round_to=round_to if round_to > 1 else None, output_transform=traced_output(model),
        num_heads=num_heads, prune_num_heads=bool(num_heads) and head_ratio > 0, prune_head_dims=False,
        head_pruning_ratio=head_ratio,
    )
    plan = empty_plan(example)
    for group in pruner.step(interactive=True):
        entry = record_group(pruner.DG, group)
        group.prune()
        plan["groups"].append(entry)
        if on_group:
            on_group(entry)
    model.train(was_training)
    model.zero_grad(set_to_none=True)

    heads: dict[str, list[int]] = {}
    for name, block in attn.items():  # attention caches its head layout; keep it in step with the new widths
        n = pruner.num_heads.get(block.query, block.num_attention_heads)
        values = {"num_attention_heads": int(n), "attention_head_size": block.query.out_features // int(n),
                  "all_head_size": block.query.out_features}
        for attr, value in values.items():
            setattr(block, attr, value)
        plan["attrs"][name] = values
        heads[name] = [heads_before[name], int(n)]
    after = {n: _width(m) for n, m in model.named_modules() if _width(m) is not None}
    channels = {n: [before[n], after[n]] for n in before if n in after and before[n] != after[n]}
    return StructuredResult(plan, channels, heads)


def _width(m: nn.Module) -> int | None:
    if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d):
        return m.out_channels
    if isinstance(m, nn.Linear):
        return m.out_features
    return None


def prunable_layers(model: nn.Module, example: Example) -> dict[str, int]:
    """Root layers of the pruning groups (name -> output channels), what `layer_ratios` keys refer to.

    One name per group: layers coupled by a residual add share a group and so share one ratio.
    """
    dg = build_graph(model, example, traced_output(model))
    skip = output_layers(model, example)
    out: dict[str, int] = {}
    for group in dg.get_all_groups(ignored_layers=skip, root_module_types=[nn.Conv1d, nn.Conv2d, nn.Conv3d,
                                                                           nn.Linear]):
        module = group[0].dep.target.module
        out[dg._module2name[module]] = int(dg.get_out_channels(module))
    return out
