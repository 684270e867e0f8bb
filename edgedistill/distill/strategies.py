"""Distillation strategies: which students are trained, in which order, and by which teachers.

- `kd`             one student, taught by the recipe's teacher;
- `born_again`     N generations of the same architecture, each taught by the previous one (Furlanello et al. 2018);
- `assistants`     teacher → assistant(s) → student (TAKD, Mirzadeh et al. 2020); assistants are given as model
                   specs, or as a count and derived by interpolating depth and width between teacher and student;
- `multi_teacher`  one student, taught by the recipe's teacher plus extra teachers, averaging their
                   probabilities or weighting them with fixed weights (MEAL V2 style).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from ..config import Strict, TeacherConfig
from ..errors import UserError

ExtraTeacher = TeacherConfig  # extra teachers are specified exactly like the recipe's teacher


class StrategyConfig(Strict):
    kind: Literal["kd", "born_again", "assistants", "multi_teacher"] = Field(
        "kd", description="kd, born_again, assistants (teacher-assistant chain) or multi_teacher")
    generations: int = Field(2, ge=1, le=20, description="born_again: number of generations")
    keep: Literal["last", "best"] = Field("last", description="born_again: keep the last generation or the best on validation")
    assistants: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=16)] | Annotated[int, Field(ge=1, le=16)] = Field(
        1, description="assistants: model specs, or how many to derive by interpolating teacher and student")
    teachers: list[ExtraTeacher] = Field(default_factory=list, description="multi_teacher: teachers besides the recipe's")
    weights: list[float] | None = Field(
        None, description="multi_teacher: fixed weight per teacher (recipe's teacher first); default: the average")

    def check(self) -> tuple[tuple, str, str] | None:
        if self.kind == "multi_teacher":
            if not self.teachers:
                return (("teachers",), "multi_teacher needs at least one extra teacher", "add strategy.teachers: [{model: ..., train: ...}]")
            if self.weights is not None:
                if len(self.weights) != 1 + len(self.teachers):
                    return (("weights",), f"{len(self.weights)} weights for {1 + len(self.teachers)} teachers",
                            "give one weight per teacher, the recipe's teacher first")
                if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                    return (("weights",), "weights must be non-negative and not all zero", "e.g. weights: [0.5, 0.5]")
        return None


@dataclass
class Step:
    """One student to train: its name, role and spec, and which earlier step teaches it (-1: the recipe's teacher)."""

    name: str
    role: str
    spec: dict[str, Any]
    teacher: int = -1


def _resample(values: list[int], n: int) -> np.ndarray:
    """Channel widths resampled to `n` layers, interpolating in log space."""
    pos = np.linspace(0, len(values) - 1, n) if len(values) > 1 else np.zeros(n)
    return np.exp(np.interp(pos, np.arange(len(values)), np.log(np.asarray(values, dtype=float))))


def interpolate_spec(teacher: dict[str, Any], student: dict[str, Any], f: float) -> dict[str, Any]:
    """A model `f` of the way from teacher (0) to student (1): depth linearly, widths geometrically."""
    if teacher.get("name") != student.get("name") or not isinstance(teacher.get("channels"), list | tuple) \
            or not isinstance(student.get("channels"), list | tuple):
        raise UserError(
            f'cannot derive assistants between "{teacher.get("name")}" and "{student.get("name")}" models',
            where="strategy.assistants",
            fix="interpolation needs teacher and student of the same kind with a `channels` list; give assistant specs explicitly")
    tc, sc = list(teacher["channels"]), list(student["channels"])
    depth = max(1, round(len(tc) + (len(sc) - len(tc)) * f))
    a, b = _resample(tc, depth), _resample(sc, depth)
    spec = {**student, "channels": [max(1, round(x)) for x in a ** (1 - f) * b**f]}
    th, sh = teacher.get("hidden", 0) or 0, student.get("hidden", 0) or 0
    if th or sh:
        spec["hidden"] = round(th ** (1 - f) * sh**f) if th and sh else (th if f < 0.5 else sh)
    return spec


def plan_steps(cfg: StrategyConfig, student_spec: dict[str, Any] | None, state_spec: dict[str, Any],
               teacher_spec: dict[str, Any]) -> list[Step]:
    """The students of the stage, in training order (the last one is the stage's result)."""
    if cfg.kind == "born_again":
        spec = student_spec or teacher_spec  # born-again networks share the teacher's architecture by default
        return [Step(f"generation {i + 1}", "generation", spec, i - 1) for i in range(cfg.generations)]
    final = student_spec or state_spec
    if cfg.kind == "assistants":
        if isinstance(cfg.assistants, int):
            specs = [interpolate_spec(teacher_spec, final, (i + 1) / (cfg.assistants + 1)) for i in range(cfg.assistants)]
        else:
            specs = [dict(s) for s in cfg.assistants]
        steps = [Step(f"assistant {i + 1}", "assistant", s, i - 1) for i, s in enumerate(specs)]
        return [*steps, Step("student", "student", final, len(steps) - 1)]
    return [Step("student", "student", final, -1)]
