"""`image_classification`: one float image tensor in (`input`, N×C×H×W), class logits out (`logits`).

This is what every stage hard-coded before tasks existed; it must keep giving the same numbers (and the
same report.json, whose "task" field stays "classification").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from ..data.base import INPUT
from .base import MetricSpec, Task, TaskConfig, TensorSpec, register_task

if TYPE_CHECKING:
    import torch

    from ..data import Dataset


class ImageClassificationConfig(TaskConfig):
    kind: Literal["image_classification"] = Field(
        "image_classification", description="what the model does: picks inputs, outputs, loss and metric")


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == y).mean()) if len(y) else float("nan")


@register_task
class ImageClassification(Task):
    kind = "image_classification"
    Config = ImageClassificationConfig
    report_name: ClassVar[str] = "classification"
    hf_auto_class: ClassVar[str] = "AutoModelForImageClassification"
    metric = MetricSpec("accuracy", True)

    def __init__(self, cfg: TaskConfig | None, data: Dataset | None, *, input_shape: tuple[int, ...] | None = None,
                 num_classes: int | None = None) -> None:
        super().__init__(cfg or ImageClassificationConfig(), data)
        shape = tuple(data.input_shape) if data is not None else tuple(input_shape or ())
        classes = data.num_classes if data is not None else int(num_classes or 0)
        self.inputs = (TensorSpec(INPUT, "float32", ("batch", *shape)),)
        self.outputs = (TensorSpec("logits", "float32", ("batch", classes)),)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape (C, H, W): what image model builders are given."""
        return tuple(int(d) for d in self.inputs[0].dims[1:])

    def check_outputs(self, outputs: Mapping[str, Any], batch: int) -> tuple[str, str] | None:
        problem = super().check_outputs(outputs, batch)
        if problem:
            return problem
        logits, classes = outputs["logits"], int(self.outputs[0].dims[1])
        if logits.dim() != 2 or logits.shape[0] != batch:
            return (f"the model's logits have shape {list(logits.shape)} for a batch of {batch}; expected "
                    f"[{batch}, {classes}]", "make the model return one row of class scores per sample")
        if logits.shape[1] != classes:
            return (f"the model outputs {logits.shape[1]} class scores per sample, but the data has {classes} classes",
                    f"build the model with {classes} outputs (num_classes / num_labels: {classes}; built-in and "
                    "Hugging Face builders take it from the data when the spec does not set it)")
        return None

    def label_loss(self, outputs: Mapping[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.cross_entropy(outputs["logits"], targets)

    def compute_metric(self, outputs: Mapping[str, np.ndarray], targets: np.ndarray) -> float:
        return accuracy(np.asarray(outputs["logits"], dtype=np.float32), targets)

    def bundle_meta(self) -> dict[str, Any]:
        d = self.data
        classes = int(self.outputs[0].dims[1])
        return {**super().bundle_meta(), "input_shape": list(self.input_shape), "num_classes": classes,
                "class_labels": d.class_labels if d else [str(i) for i in range(classes)],
                "preprocessing": d.preprocessing if d else {}}


    def snippets(self, spec: Mapping[str, Any], meta: Mapping[str, Any], mobile_file: str) -> dict[str, str]:
        from ..report.image_snippets import image_snippets

        return image_snippets(spec, meta, mobile_file)


def image_task(input_shape: tuple[int, ...], num_classes: int) -> ImageClassification:
    """An image-classification task without a dataset (library callers and tests with bare arrays)."""
    return ImageClassification(None, None, input_shape=tuple(input_shape), num_classes=num_classes)
