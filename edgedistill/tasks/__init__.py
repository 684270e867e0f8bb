"""Tasks: one object per kind of model (image classification, ...) that every stage asks for its named
inputs and outputs, how to call a model, the loss, the metric and example inputs (see base.py)."""

from .base import (
    DEFAULT_AXES,
    TASKS,
    Batch,
    MetricSpec,
    OutputError,
    Predict,
    Task,
    TaskConfig,
    TensorSpec,
    build_task,
    load_tasks,
    normalize_task_section,
    register_task,
    unwrap_outputs,
)

__all__ = [
    "DEFAULT_AXES",
    "TASKS",
    "Batch",
    "MetricSpec",
    "OutputError",
    "Predict",
    "Task",
    "TaskConfig",
    "TensorSpec",
    "build_task",
    "load_tasks",
    "normalize_task_section",
    "register_task",
    "unwrap_outputs",
]
