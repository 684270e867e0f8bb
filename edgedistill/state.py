"""What flows between stages: the model, its teacher, the current exported file, and the lineage."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # keep `import edgedistill.recipe` (and so the CLI's start-up) free of torch
    from torch import nn

    from .data import Dataset
    from .tasks import Task


@dataclass
class StageRecord:
    """One finished stage: what ran, with which settings, how long, and the metric after it."""

    index: int
    kind: str
    settings: dict[str, Any]
    seconds: float = 0.0
    metric_after: float | None = None
    artifacts: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelState:
    """The student (always a plain torch module), how to rebuild it, the teacher, and the current artifact.

    `spec` is the model spec the student was built from (plus any pruning plan), so a checkpoint can be
    reloaded without pickles. `onnx` is set once a stage has produced an exported file (PTQ or export).
    """

    model: nn.Module
    spec: dict[str, Any]
    teacher: nn.Module
    teacher_spec: dict[str, Any]
    onnx: Path | None = None
    lineage: list[StageRecord] = field(default_factory=list)


@dataclass
class RunContext:
    """Everything a stage may read besides the state: the run's folders, the data and the resolved recipe."""

    run_dir: Path
    stage_dir: Path
    data: Dataset
    recipe: Any  # edgedistill.recipe.Recipe (not imported here to avoid a cycle)
    task: Task | None = None  # what every stage asks for named inputs/outputs, loss, metric and examples
    index: int = 0
    resume: bool = False
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.task is None:  # library callers may omit it: the recipe's task (or the data's) on this data
            from .tasks import build_task

            cfg = getattr(getattr(self.recipe, "config", None), "task", None)
            self.task = build_task(cfg, self.data)

    def log(self, message: str) -> None:
        """Messages for the summary; the CLI decides whether and where to print them."""
        self.notes.append(message)
