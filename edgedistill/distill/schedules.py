"""Temperature schedules: constant, linear, cosine, and the dynamic one that follows the teacher–student gap.

The dynamic schedule (after the Dynamic Temperature Scheduler) starts soft, at the stage's `temperature`,
and sharpens toward `end` as the student closes its gap to the teacher. The gap is the teacher–student
cross-entropy minus the teacher's entropy (i.e. KL(p ‖ q) at T = 1), smoothed over steps and measured
relative to its first value, so the schedule needs no knowledge of the loss scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from ..config import Strict

ScheduleKind = Literal["constant", "linear", "cosine", "dynamic"]


class TemperatureSchedule(Strict):
    kind: ScheduleKind = Field("constant", description="constant, linear, cosine, or dynamic (follows the teacher–student gap)")
    end: float = Field(1.0, gt=0, le=100, description="temperature at the end (linear/cosine) or once the gap has closed (dynamic)")
    smoothing: float = Field(0.9, ge=0, lt=1, description="dynamic: exponential smoothing of the measured gap")


def scheduled_temperature(kind: str, start: float, end: float, progress: float) -> float:
    """Temperature at `progress` ∈ [0, 1] of training for the time-based schedules."""
    progress = min(max(progress, 0.0), 1.0)
    if kind == "linear":
        return start + (end - start) * progress
    if kind == "cosine":
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return start


def gap_temperature(start: float, end: float, gap: float, first_gap: float) -> float:
    """Dynamic: `start` while the gap is as large as at the beginning, `end` when it has closed."""
    if first_gap <= 0:
        return end
    ratio = min(max(gap / first_gap, 0.0), 1.0)
    return end + (start - end) * ratio


@dataclass
class TemperatureState:
    """The current temperature and, for the dynamic schedule, the smoothed gap it follows."""

    start: float
    schedule: TemperatureSchedule
    value: float = 0.0
    gap: float | None = None
    first_gap: float | None = None

    def __post_init__(self) -> None:
        self.value = self.start

    def at_step(self, step: int, total: int) -> float:
        """Move to training step `step` of `total` (time-based schedules); returns the temperature to use."""
        if self.schedule.kind != "dynamic":
            self.value = scheduled_temperature(self.schedule.kind, self.start, self.schedule.end, step / max(1, total - 1))
        return self.value

    def state_dict(self) -> dict[str, float | None]:
        """What `--resume` must restore: the dynamic schedule's smoothed gap is history, not a function of the step."""
        return {"value": self.value, "gap": self.gap, "first_gap": self.first_gap}

    def load_state_dict(self, state: dict[str, float | None]) -> None:
        self.value, self.gap, self.first_gap = float(state["value"]), state["gap"], state["first_gap"]

    def observe_gap(self, gap: float) -> None:
        """Feed the batch's teacher–student gap (dynamic schedule only)."""
        if self.schedule.kind != "dynamic" or not math.isfinite(gap):
            return
        s = self.schedule.smoothing
        self.gap = gap if self.gap is None else s * self.gap + (1 - s) * gap
        if self.first_gap is None:
            self.first_gap = self.gap
        self.value = gap_temperature(self.start, self.schedule.end, self.gap, self.first_gap)
