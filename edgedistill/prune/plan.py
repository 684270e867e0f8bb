"""Pruning plans: the architecture of a pruned model as plain JSON, so pruned checkpoints reload without pickles.

Torch-Pruning's own `torch.save(model)` pickles whole modules. Instead, the prune stage records, for every
pruning group it removed channels from, the group's root layer, whether its output or input channels were
cut, the channel count before, and the indices it kept. `apply_plan` replays those groups on a freshly built
model through the same dependency graph (so coupled layers -- residual adds, concatenations, norms -- shrink
together), then sets the few attributes a transformer attention block caches (head count, all_head_size).
After that the safetensors weights load with strict shapes. Replaying a plan on the *trained* unpruned model
gives the pruned trained model too, which is how a resumed prune stage gets back to where it was.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from ._tp import torch_pruning

PLAN_VERSION = 1
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64, "int32": torch.int32}


Example = torch.Tensor | dict[str, torch.Tensor]  # one input, or named inputs passed as keywords (text models)


def _tensor_spec(example: torch.Tensor) -> dict[str, Any]:
    dtype = str(example.dtype).removeprefix("torch.")
    if dtype not in _DTYPES:
        raise UserError(f"cannot record a pruning plan for inputs of dtype {dtype}", where="prune",
                        fix="feed the model float32 or int64 inputs")
    return {"shape": [1, *example.shape[1:]], "dtype": dtype}


def input_spec(example: Example) -> dict[str, Any]:
    """How to rebuild an example input for tracing: shape and dtype (values do not matter to the graph)."""
    if isinstance(example, dict):
        return {"inputs": {k: _tensor_spec(v) for k, v in example.items()}}
    return _tensor_spec(example)


def _ones_or_zeros(spec: dict[str, Any]) -> torch.Tensor:
    # ones: a valid token id and a full attention mask (an all-zero mask would hide every token from the trace)
    fill = torch.ones if spec["dtype"].startswith("int") else torch.zeros
    return fill(spec["shape"], dtype=_DTYPES[spec["dtype"]])


def example_input(plan: dict[str, Any], input_shape: tuple[int, ...] | None = None) -> Example:
    """An input shaped like the plan's recorded one (values do not matter to the traced graph)."""
    spec = plan.get("input") or {"shape": [1, *(input_shape or ())], "dtype": "float32"}
    if "inputs" in spec:
        return {k: _ones_or_zeros(v) for k, v in spec["inputs"].items()}
    return torch.zeros(spec["shape"], dtype=_DTYPES[spec["dtype"]])


def call(model: nn.Module, example: Example) -> Any:
    """Run `model` on an example: named inputs go in as keywords."""
    return model(**example) if isinstance(example, dict) else model(example)


def empty_plan(example: Example) -> dict[str, Any]:
    return {"version": PLAN_VERSION, "input": input_spec(example), "groups": [], "attrs": {}}


def merge_plans(first: dict[str, Any] | None, second: dict[str, Any]) -> dict[str, Any]:
    """Chain two plans (a prune stage after another): groups replay in order, later attributes win."""
    if not first:
        return second
    attrs = {k: dict(v) for k, v in first.get("attrs", {}).items()}
    for name, values in second.get("attrs", {}).items():
        attrs.setdefault(name, {}).update(values)
    return {"version": PLAN_VERSION, "input": first.get("input") or second.get("input"),
            "groups": [*first["groups"], *second["groups"]], "attrs": attrs}


def record_group(dg: Any, group: Any) -> dict[str, Any]:
    """Describe a Torch-Pruning group *before* it is pruned: root layer, direction, size, kept indices."""
    dep, idxs = group[0]
    module = dep.target.module
    out = dg.is_out_channel_pruning_fn(dep.handler)
    channels = dg.get_out_channels(module) if out else dg.get_in_channels(module)
    removed = {int(i) for i in idxs}
    return {"module": dg._module2name[module], "dim": "out" if out else "in", "channels": int(channels),
            "keep": [i for i in range(int(channels)) if i not in removed]}


def _module(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise UserError(f'the pruning plan names layer "{name}", which this model does not have',
                        where="spec.prune_plan", fix="rebuild the model from the spec it was pruned from") from None


def build_graph(model: nn.Module, example: Example, output_transform: Callable | None = None) -> Any:
    """Torch-Pruning's dependency graph, traced in eval mode so BatchNorm statistics are left untouched."""
    tp = torch_pruning()
    was_training = model.training
    model.eval()
    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=example, output_transform=output_transform,
                                                     verbose=False)
    finally:
        model.train(was_training)


def apply_plan(model: nn.Module, plan: dict[str, Any], input_shape: tuple[int, ...] | None = None) -> nn.Module:
    """Replay `plan` on `model` in place (and return it): the pruned architecture, ready for its weights."""
    if not isinstance(plan, dict) or plan.get("version") != PLAN_VERSION or "groups" not in plan:
        raise UserError("not a pruning plan this version understands", where="spec.prune_plan",
                        fix="re-run the prune stage to write a fresh plan")
    if plan["groups"]:
        dg = build_graph(model, example_input(plan, input_shape), output_transform=traced_output(model))
        for i, entry in enumerate(plan["groups"]):
            module = _module(model, entry["module"])
            pruner = dg.get_pruner_of_module(module)
            out = entry["dim"] == "out"
            have = dg.get_out_channels(module) if out else dg.get_in_channels(module)
            if have != entry["channels"]:
                raise UserError(f'pruning plan group {i} expects {entry["channels"]} channels at "{entry["module"]}", '
                                f"the model has {have}", where="spec.prune_plan",
                                fix="the plan belongs to another architecture: rebuild from the spec it was made for")
            kept = set(entry["keep"])
            idxs = [c for c in range(have) if c not in kept]
            if idxs:
                fn = pruner.prune_out_channels if out else pruner.prune_in_channels
                dg.get_pruning_group(module, fn, idxs).prune()
    for name, values in plan.get("attrs", {}).items():
        target = _module(model, name)
        for attr, value in values.items():
            setattr(target, attr, value)
    return model


def pruned_copy(model: nn.Module, plan: dict[str, Any]) -> nn.Module:
    """A pruned deep copy (the original stays intact, e.g. as the recovery teacher)."""
    return apply_plan(copy.deepcopy(model), plan)


def is_hf(model: nn.Module) -> bool:
    """A Hugging Face model, or a wrapper around one (the sentence encoder holds its transformer as `.encoder`)."""
    return any(type(m).__module__.startswith("transformers") for m in (model, *model.children()))


def traced_output(model: nn.Module) -> Callable[[Any], torch.Tensor] | None:
    """Hugging Face models return output objects (logits or last hidden state first); the tracer needs one tensor."""
    if is_hf(model):
        return lambda out: out if isinstance(out, torch.Tensor) else (
            out[0] if isinstance(out, tuple | list) else next(iter(out.values())))
    return None
