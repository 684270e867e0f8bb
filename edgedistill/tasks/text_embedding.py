"""`text_embedding`: token ids in, a sentence embedding out (`embedding`, mean-pooled and L2-normalised inside
the model, see models/pooling.py).

The metric is STS's: the Spearman rank correlation between the cosine similarity of the two sentences'
embeddings and the gold score, over a pair split (`a.*` and `b.*` inputs, scores as targets). Training data is
usually an unlabelled corpus, so this task has no label loss: it learns by distillation only (MSE or cosine
to the teacher's embedding).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
from pydantic import Field

from ..errors import UserError
from ..evaluate.ranking import cosine_rows, spearman
from .base import MetricSpec, Predict, TaskConfig, TensorSpec, register_task
from .text_base import TextTask

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..data import Dataset, Split

OUTPUT = "embedding"


class TextEmbeddingConfig(TaskConfig):
    kind: Literal["text_embedding"] = Field(
        "text_embedding", description="what the model does: picks inputs, outputs, loss and metric")


def is_pair_split(split: Split) -> bool:
    return any(k.startswith("a.") for k in split.inputs)


@register_task
class TextEmbedding(TextTask):
    kind = "text_embedding"
    Config = TextEmbeddingConfig
    report_name: ClassVar[str] = "text_embedding"
    hf_auto_class: ClassVar[str] = "AutoModel"
    metric = MetricSpec("spearman", True)
    default_distill_loss: ClassVar[str] = "embedding_mse"  # no labels: learn the teacher's embedding

    def __init__(self, cfg: TaskConfig | None, data: Dataset | None, *,
                 input_names: tuple[str, ...] | None = None) -> None:
        super().__init__(cfg or TextEmbeddingConfig(), data, input_names)
        self.outputs = (TensorSpec(OUTPUT, "float32", ("batch", "hidden")),)

    def forward(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Stacked pairs ([pairs, 2, seq], the `sts_pairs` training split) run as 2·pairs sentences in one
        pass and come back as [pairs, 2, dim]; one sentence a row as usual."""
        lead = tuple(batch[self.input_names[0]].shape[:-1])
        if len(lead) == 1:
            return super().forward(model, batch)
        out = super().forward(model, {n: batch[n].reshape(-1, batch[n].shape[-1]) for n in self.input_names})
        return {k: v.reshape(*lead, *v.shape[1:]) for k, v in out.items()}

    def label_loss(self, outputs: Mapping[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        raise UserError("text_embedding trains without labels", where="stages",
                        fix="distil it (the default loss is MSE to the teacher's embedding); drop label losses (ce)")

    def compute_metric(self, outputs: Mapping[str, np.ndarray], targets: np.ndarray) -> float:
        """Spearman of cos(a, b) against the gold scores; outputs hold `a.embedding` and `b.embedding`."""
        return spearman(cosine_rows(outputs[f"a.{OUTPUT}"], outputs[f"b.{OUTPUT}"]), targets)

    def score(self, predict: Predict, split: Split, batch_size: int = 256) -> float:
        if not is_pair_split(split):
            return float("nan")  # a corpus has no gold scores
        outs: dict[str, list[np.ndarray]] = {}
        for side in ("a", "b"):
            for i in range(0, len(split), batch_size):
                rows = slice(i, i + batch_size)
                feed = {n: np.ascontiguousarray(split.inputs[f"{side}.{n}"][rows]) for n in self.input_names}
                outs.setdefault(f"{side}.{OUTPUT}", []).append(np.asarray(predict(self.trim(feed))[OUTPUT]))
        return self.compute_metric({k: np.concatenate(v) for k, v in outs.items()}, split.targets)
