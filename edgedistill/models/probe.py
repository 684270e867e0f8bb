"""The model probe: before any training, one small real batch goes through every model the recipe names.

A model that cannot take the data (a 3-channel first layer on 1-channel images, a wrong input size), that
returns nothing the task can read, or whose output width does not match the data's classes fails here as
a `UserError` naming the recipe field and the fix (exit code 2), instead of as a traceback after minutes
of training. `edgedistill validate` and `compress` both run it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import UserError

if TYPE_CHECKING:
    from torch import nn

    from ..data import Dataset
    from ..tasks import Task

PROBE_BATCH = 2


def recipe_model_specs(config: Any) -> Iterator[tuple[tuple, dict[str, Any]]]:
    """(recipe field path, model spec) of every model the recipe builds: the teacher, students, extra teachers,
    assistants."""
    yield ("teacher", "model"), config.teacher.model
    for i, stage in enumerate(config.stages):
        student = getattr(stage, "student", None)
        if isinstance(student, dict) and isinstance(student.get("search"), dict):  # each candidate of a search
            for k, spec in enumerate(student["search"].get("candidates") or []):
                yield ("stages", i, "student", "search", "candidates", k), spec
        elif isinstance(student, dict):
            yield ("stages", i, "student"), student
        strategy = getattr(stage, "strategy", None)
        if strategy is None:
            continue
        for k, extra in enumerate(getattr(strategy, "teachers", []) or []):
            yield ("stages", i, "strategy", "teachers", k, "model"), extra.model
        if isinstance(getattr(strategy, "assistants", None), list):
            for k, spec in enumerate(strategy.assistants):
                yield ("stages", i, "strategy", "assistants", k), spec


def _first_conv_channels(model: nn.Module) -> int | None:
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            return int(module.in_channels)
    return None


def probe_model(model: nn.Module, task: Task, data: Dataset, where: str) -> None:
    """Raise a UserError naming `where` if `model` cannot run on a small real batch or its outputs do not fit."""
    import torch

    from ..tasks import OutputError

    shapes = data.input_shapes()
    shown = ", ".join(f"{k} {list(v)}" for k, v in shapes.items())
    spec_hint = "the model spec"
    if len(shapes) == 1 and len(next(iter(shapes.values()))) == 3:  # an image: check the channels first
        want, have = _first_conv_channels(model), next(iter(shapes.values()))[0]
        if want is not None and want != have:
            raise UserError(
                f"the model's first convolution expects {want} input channel(s), but the {data.name} data has {have}",
                where=where,
                fix=f"build the model for {have}-channel input (e.g. num_channels: {have} in a Hugging Face config, "
                    f"in_channels: {have}), or use data with {want} channels")
    batch = task.to_torch(task.feed(data.train, slice(0, PROBE_BATCH)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = task.forward(model, batch)
    except OutputError as exc:
        raise UserError(f"the model's output is unusable for {task.kind}: {exc}", where=where,
                        fix=f"return a tensor ({task.output_names[0]}), a tuple or dict of tensors, or a Hugging Face "
                            f"output with .{task.output_names[0]}") from None
    except Exception as exc:  # any failure of the model on real inputs is a model/data mismatch
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise UserError(f"the model cannot run on the data ({data.name}: one sample is {shown}): {first}",
                        where=where, fix=f"make {spec_hint} accept inputs of that shape and dtype") from None
    finally:
        model.train(was_training)
    problem = task.check_outputs(outputs, PROBE_BATCH)
    if problem:
        message, fix = problem
        raise UserError(message, where=where, fix=fix)


def probe_recipe(recipe: Any, data: Dataset, task: Task, where: Callable[[tuple], str] | None = None) -> int:
    """Build every model the recipe names (random weights, RNG untouched) and probe it; returns how many."""
    import torch

    from . import build_model

    locate = where or getattr(recipe, "where", None) or (lambda loc: ".".join(map(str, loc)))
    if len(data.val) == 0:  # every stage scores its model on the validation split (evaluate alone needs none)
        raise UserError("the validation split is empty", where="data.val_fraction",
                        fix="set data.val_fraction above 0 (e.g. 0.15), or give a validation split (x_val/y_val)")
    count, teacher = 0, None
    for loc, spec in recipe_model_specs(recipe.config):
        with torch.random.fork_rng():  # the probe must not change any later random draw
            try:
                model = build_model(spec, data.input_shape, data.num_classes, task=task, teacher=teacher)
            except UserError as exc:
                raise UserError(exc.message, where=locate(loc), fix=exc.fix) from None
            except (MemoryError, OSError):
                raise  # the machine, not the spec: the CLI reports these as environment errors
            except Exception as exc:  # a builder that fails on the data's shape
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                raise UserError(f"the model could not be built for this data: {first}", where=locate(loc),
                                fix="check the model spec's arguments") from None
            probe_model(model, task, data, locate(loc))
        if loc == ("teacher", "model"):
            teacher = model  # students derived from the teacher (hf_derived) are built from it
        count += 1
    return count
