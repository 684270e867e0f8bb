"""`text_classification`: token ids in, class logits out (`logits`); accuracy or macro-F1.

Macro-F1 (the unweighted mean of per-class F1) is the honest number when classes are unbalanced: a model
that always answers the majority class scores its share in accuracy but near 1/classes of that in macro-F1.
`task.metric` picks the primary metric; the other is logged alongside.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from ..evaluate.ranking import macro_f1
from .base import MetricSpec, TaskConfig, TensorSpec, register_task
from .text_base import TextTask

if TYPE_CHECKING:
    import torch

    from ..data import Dataset


class TextClassificationConfig(TaskConfig):
    kind: Literal["text_classification"] = Field(
        "text_classification", description="what the model does: picks inputs, outputs, loss and metric")
    metric: Literal["accuracy", "macro_f1"] = Field(
        "accuracy", description="text_classification: primary metric (macro_f1 for unbalanced classes)")


@register_task
class TextClassification(TextTask):
    kind = "text_classification"
    Config = TextClassificationConfig
    report_name: ClassVar[str] = "text_classification"
    hf_auto_class: ClassVar[str] = "AutoModelForSequenceClassification"

    def __init__(self, cfg: TaskConfig | None, data: Dataset | None, *, num_classes: int | None = None,
                 input_names: tuple[str, ...] | None = None) -> None:
        cfg = cfg or TextClassificationConfig()
        super().__init__(cfg, data, input_names)
        classes = data.num_classes if data is not None else int(num_classes or 0)
        self.outputs = (TensorSpec("logits", "float32", ("batch", classes)),)
        self.metric = MetricSpec(getattr(cfg, "metric", "accuracy"), True)

    @property
    def num_classes(self) -> int:
        return int(self.outputs[0].dims[1])

    def label_loss(self, outputs: Mapping[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.cross_entropy(outputs["logits"], targets)

    def compute_metric(self, outputs: Mapping[str, np.ndarray], targets: np.ndarray) -> float:
        pred = np.asarray(outputs["logits"]).argmax(axis=1)
        if self.metric.name == "macro_f1":
            return macro_f1(pred, targets, self.num_classes)
        return float((pred == targets).mean()) if len(targets) else float("nan")

    def bundle_meta(self) -> dict[str, Any]:
        d = self.data
        return {**super().bundle_meta(), "num_classes": self.num_classes,
                "class_labels": d.class_labels if d else [str(i) for i in range(self.num_classes)]}
