"""The stage registry: the recipe schema is assembled from it, so a stage becomes valid YAML by registering.

Each stage is a config model, a plain `run(state, config, ctx) -> state` function, and the set of stage
kinds it may follow (checked when the recipe is validated, not after an hour of training).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from .state import ModelState, RunContext

START = "start"  # the pseudo-kind before the first stage (after the teacher is ready)

StageFn = Callable[[ModelState, BaseModel, RunContext], ModelState]


@dataclass(frozen=True)
class StageSpec:
    kind: str
    config: type[BaseModel]
    run: StageFn
    may_follow: frozenset[str]
    summary: str


STAGES: dict[str, StageSpec] = {}

# Stage modules are imported for registration only; each keeps its heavy imports inside `run`.
BUILTIN_STAGE_MODULES = (
    "edgedistill.distill.stage",
    "edgedistill.prune.stage",
    "edgedistill.vocab.stage",
    "edgedistill.quantize.stage",
    "edgedistill.export.stage",
    "edgedistill.export.executorch_stage",
)


def register_stage(kind: str, config: type[BaseModel], may_follow: set[str], summary: str) -> Callable[[StageFn], StageFn]:
    def deco(fn: StageFn) -> StageFn:
        STAGES[kind] = StageSpec(kind, config, fn, frozenset(may_follow), summary)
        return fn

    return deco


def load_stages() -> dict[str, StageSpec]:
    for name in BUILTIN_STAGE_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a stage module that exists but fails to import is a real bug
                raise
    return STAGES
