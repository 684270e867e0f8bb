"""The model registry, spec validation and checkpoint loading."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import UserError, did_you_mean

if TYPE_CHECKING:  # recipe validation reads builders' signatures only, so it never needs torch
    from torch import nn

Builder = Callable[..., "nn.Module"]
MODELS: dict[str, Builder] = {}
# Filled by the data at build time, never by the recipe: builders may accept these keyword arguments.
_DATA_ARGS = ("input_shape", "num_classes", "task")


class ModelConfig(BaseModel):
    """A model spec: `name` picks a builder (registered, a plugin's, or `module:function` from a module the user
    imported with --import); other keys are its arguments."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(description="registered model name, or 'module:function' from a module named with --import")


def register_model(name: str) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        MODELS[name] = fn
        return fn

    return deco


# ---------------------------------------------------------------- where builders may come from
#
# A recipe or a checkpoint folder may come from someone else, so naming code in it must never run that code.
# Builders come from the registry, from installed plugins (entry points in PLUGIN_GROUP), or from modules the
# user named outside the recipe (--import MODULE, or EDGEDISTILL_IMPORT); only then may a recipe say
# "MODULE:function". Anything else is refused before a single import happens.

PLUGIN_GROUP = "edgedistill.models"
IMPORT_ENV = "EDGEDISTILL_IMPORT"
_IMPORTED: set[str] = set()
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def env_imports() -> list[str]:
    return [m.strip() for m in os.environ.get(IMPORT_ENV, "").split(",") if m.strip()]


def import_modules(names: Iterable[str] = ()) -> None:
    """Import the modules the user named (--import, then EDGEDISTILL_IMPORT); their builders become usable."""
    for name in [*names, *env_imports()]:
        where = f"--import {name}" if name in names else f"{IMPORT_ENV}={os.environ.get(IMPORT_ENV, '')}"
        if not _MODULE_NAME.match(name):
            raise UserError(f'"{name}" is not a module name', where=where, fix="name a module, e.g. mypkg.models")
        if name in _IMPORTED:
            continue
        _search_current_directory()
        try:
            importlib.import_module(name)
        except Exception as exc:  # (the user's own module failed; say which and why)
            raise UserError(f'cannot import "{name}": {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ""}',
                            where=where, fix="run from the folder that holds the module, pip install it, or set "
                                             "PYTHONPATH to its folder") from exc
        _IMPORTED.add(name)


def _search_current_directory() -> None:
    """`--import mymodels` finds ./mymodels.py, as `python -m` would; the folder goes last on sys.path, so a
    file there never shadows an installed package (and only modules the user named are imported at all)."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)


def _plugin(name: str) -> Builder | None:
    """An installed plugin's builder: only the entry point with this exact name is loaded."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=PLUGIN_GROUP):
        if ep.name == name:
            return ep.load()
    return None


def _resolve(name: Any, where: str) -> Builder:
    if not isinstance(name, str) or not name:
        raise UserError("a model spec needs a name (a string)", where=where,
                        fix=f"use one of: {', '.join(sorted(MODELS))}")
    if name in MODELS:
        return MODELS[name]
    plugin = _plugin(name)
    if plugin is not None:
        return plugin
    if ":" in name:
        module_name, _, attr = name.partition(":")
        if module_name in env_imports() and module_name not in _IMPORTED:
            import_modules()
        if module_name not in _IMPORTED or not attr.isidentifier():
            raise UserError(f'model "{name}" names code in module "{module_name}", which you did not import; '
                            "a recipe alone never makes code importable", where=where,
                            fix=f"if you trust that module, add --import {module_name} to the command (or set "
                                f"{IMPORT_ENV}={module_name}); else use one of: {', '.join(sorted(MODELS))}")
        builder = getattr(sys.modules[module_name], attr, None)
        if not callable(builder):
            raise UserError(f'module "{module_name}" has no function "{attr}"', where=where,
                            fix="check the spelling of MODULE:function")
        return builder
    raise UserError(f'unknown model "{name}"{did_you_mean(name, MODELS)}', where=where,
                    fix=f"use one of: {', '.join(sorted(MODELS))}, or MODULE:function with --import MODULE")


def _annotation(builder: Builder, param: inspect.Parameter) -> Any:
    """A parameter's annotation as an object (string annotations evaluated in the builder's module), or None."""
    ann = param.annotation
    if ann is inspect.Parameter.empty:
        return None
    if isinstance(ann, str):
        try:
            ann = eval(ann, getattr(builder, "__globals__", {}))  # (an annotation from installed code)
        except Exception:  # (a TYPE_CHECKING-only name: no check for this argument)
            return None
    return ann


def _check_args(builder: Builder, spec: dict[str, Any], where: str) -> None:
    """Unknown arguments, and values that break the builder's annotated types and ranges, named by field."""
    from pydantic import TypeAdapter, ValidationError

    params = inspect.signature(builder).parameters
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    allowed = [p for p in params if p not in _DATA_ARGS]
    for key, value in spec.items():
        if key in ("name", "prune_plan"):
            continue
        if not isinstance(key, str) or (key not in params and not var_kw):
            raise UserError(f'unknown argument "{key}" for model "{spec["name"]}"{did_you_mean(key, allowed)}',
                            where=f"{where}.{key}", fix=f"allowed: {', '.join(allowed) or 'none'}")
        ann = _annotation(builder, params[key]) if key in params else None
        if ann is None:
            continue
        try:
            TypeAdapter(ann).validate_python(_plain(value), strict=True)
        except ValidationError as exc:
            err = exc.errors()[0]
            at = "".join(f"[{p}]" for p in err["loc"])
            raise UserError(f"{err['msg']} (got {value!r})"[:300], where=f"{where}.{key}{at}",
                            fix=f"see the arguments of model \"{spec['name']}\"") from None
        except Exception:  # (an annotation pydantic cannot check: leave it to the builder)
            continue


def _plain(value: Any) -> Any:
    """Tuples as lists, as they would arrive from YAML or JSON (strict checking tells the two apart)."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def check_model_config(spec: Any, where: str) -> None:
    """Fail at validation time, not after an hour of training, on an unknown builder, argument or value."""
    if not isinstance(spec, dict):
        raise UserError("a model spec must be a mapping, e.g. {name: cnn, channels: [16, 32]}", where=where,
                        fix="write the model as name: plus its arguments")
    _check_args(_resolve(spec.get("name"), f"{where}.name"), spec, where)


def build_model(spec: dict[str, Any], input_shape: tuple[int, ...], num_classes: int,
                where: str = "model", task: Any = None, teacher: nn.Module | None = None) -> nn.Module:
    """Build a fresh module from a spec and the data's shape; pruned specs replay their pruning plan.

    Builders that accept `task` get the run's task object (Hugging Face builders pick their Auto class and
    read the input names from it)."""
    from torch import nn

    check_model_config(spec, where)
    spec = dict(spec)
    plan = spec.pop("prune_plan", None)
    builder = _resolve(spec["name"], f"{where}.name")
    params = inspect.signature(builder).parameters
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    data_args = {"input_shape": tuple(input_shape), "num_classes": num_classes}
    if task is not None:
        data_args["task"] = task
    if teacher is not None and "teacher" in params:  # only builders that derive a student from it ask for it
        kwargs.setdefault("teacher", teacher)
    for key, value in data_args.items():
        if key in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
            kwargs.setdefault(key, value)
    model = builder(**kwargs)
    if not isinstance(model, nn.Module):
        raise UserError(f'model builder "{spec["name"]}" returned {type(model).__name__}, not a torch.nn.Module',
                        where=f"{where}.name", fix="the builder must return an nn.Module")
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
