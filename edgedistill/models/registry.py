"""The model registry, spec validation and checkpoint loading."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import UserError, did_you_mean

if TYPE_CHECKING:  # recipe validation reads builders' signatures only, so it never needs torch
    from torch import nn

Builder = Callable[..., "nn.Module"]
MODELS: dict[str, Builder] = {}
# Filled by the data at build time, never by the recipe: builders may accept these keyword arguments.
_DATA_ARGS = ("input_shape", "num_classes")


class ModelConfig(BaseModel):
    """A model spec: `name` picks a registered builder (or `package.module:function`), other keys are its arguments."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(description="registered model name, or 'package.module:function'")


def register_model(name: str) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        MODELS[name] = fn
        return fn

    return deco


def _resolve(name: str, where: str) -> Builder:
    if name in MODELS:
        return MODELS[name]
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise UserError(f'cannot import model builder "{name}": {exc}', where=where,
                            fix="make the module importable (pip install it or set PYTHONPATH)") from exc
    raise UserError(f'unknown model "{name}"{did_you_mean(name, MODELS)}', where=where,
                    fix=f"use one of: {', '.join(sorted(MODELS))}, or 'package.module:function'")


def check_model_config(spec: dict[str, Any], where: str) -> None:
    """Fail at validation time, not after an hour of training, when a spec names unknown arguments."""
    builder = _resolve(spec["name"], f"{where}.name")
    params = inspect.signature(builder).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    allowed = [p for p in params if p not in _DATA_ARGS]
    for key in spec:
        if key != "name" and key not in params:
            raise UserError(f'unknown argument "{key}" for model "{spec["name"]}"{did_you_mean(key, allowed)}',
                            where=f"{where}.{key}", fix=f"allowed: {', '.join(allowed) or 'none'}")


def build_model(spec: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build a fresh module from a spec and the data's shape; pruned specs replay their pruning plan."""
    spec = dict(spec)
    plan = spec.pop("prune_plan", None)
    builder = _resolve(spec["name"], "model.name")
    params = inspect.signature(builder).parameters
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    data_args = {"input_shape": tuple(input_shape), "num_classes": num_classes}
    for key, value in data_args.items():
        if key in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
            kwargs.setdefault(key, value)
    model = builder(**kwargs)
    if plan is not None:
        from ..prune.plan import apply_plan

        apply_plan(model, plan, input_shape)
    return model


def load_checkpoint(model: nn.Module, path: str | Path, where: str = "teacher.checkpoint") -> None:
    """Load weights from safetensors, or from a torch state dict with `weights_only=True` (never a pickle)."""
    import torch

    from ..io import load_weights

    path = Path(path).expanduser()
    if not path.exists():
        raise UserError("checkpoint not found", where=f"{where} ({path})", fix="check the path")
    if path.suffix == ".safetensors":
        load_weights(model, path)
        _check_finite(model, path, where)
        return
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"cannot load checkpoint safely: {str(exc).splitlines()[0][:200]}", where=f"{where} ({path})",
                        fix="save a state_dict (torch.save(model.state_dict(), path)) or a .safetensors file") from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise UserError("checkpoint holds no state dict", where=f"{where} ({path})",
                        fix="save model.state_dict(), not the whole model")
    try:
        model.load_state_dict(obj, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise UserError(f"checkpoint does not match the model spec: {' '.join(first)[:300]}", where=f"{where} ({path})",
                        fix="make the recipe's model spec match the architecture the checkpoint was trained with") from exc
    _check_finite(model, path, where)


def _check_finite(model: nn.Module, path: Path, where: str) -> None:
    """A checkpoint saved from a diverged run: blame the file now, not the learning rate of the run that reads it."""
    from ..finite import describe, model_nonfinite

    bad = model_nonfinite(model)
    if bad:
        raise UserError(f"checkpoint holds NaN or infinite values in {len(bad)} tensor(s): {describe(bad)}",
                        where=f"{where} ({path})",
                        fix="the run that saved it diverged: use an earlier checkpoint, or train the model again")
