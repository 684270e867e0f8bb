"""What the two text tasks share: token inputs named by the data's tokenizer, keyword calls, tokenizer in the bundle.

Inputs are the tokenizer's arrays (input_ids, attention_mask, and token_type_ids when the tokenizer makes them),
int64 with dynamic batch and sequence axes. Hugging Face models take them as keywords, so the order of the
inputs never matters to the torch call; the exporter fixes it in the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import Task, TaskConfig, TensorSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..data import Dataset, Split

TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def token_inputs(data: Dataset | None, names: tuple[str, ...] | None = None) -> tuple[TensorSpec, ...]:
    """One int64 (batch, sequence) spec per tokenizer output the data carries (plain or `a.`-prefixed)."""
    if names is None:
        found = [] if data is None else [k.split(".", 1)[-1] for k in data.train.inputs]
        names = tuple(dict.fromkeys(n for n in found if n in TOKEN_INPUTS)) or TOKEN_INPUTS[:2]
    return tuple(TensorSpec(n, "int64", ("batch", "sequence")) for n in names)


def trim_padding(batch: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the trailing sequence columns that are padding in every row (numpy arrays or torch tensors alike).

    Each attention mask (`attention_mask`, or `a.attention_mask` in a pair split) trims the token inputs of its
    own prefix; columns a row still attends to are always kept, so the masked forward pass is unchanged.
    Left-padded batches keep their length (nothing trails)."""
    out = dict(batch)
    for key, mask in batch.items():
        if not key.endswith("attention_mask") or getattr(mask, "ndim", 0) < 2:
            continue
        prefix = key[: -len("attention_mask")]
        width = mask.shape[-1]  # [rows, seq], or [pairs, 2, seq] for stacked pairs
        used = np.flatnonzero(np.asarray(mask).reshape(-1, width).any(axis=0))
        length = max(int(used[-1]) + 1 if len(used) else 1, 1)
        if length == width:
            continue
        for name in TOKEN_INPUTS:
            value = batch.get(prefix + name)
            if value is not None and value.ndim == mask.ndim and value.shape[-1] == width:
                out[prefix + name] = value[..., :length]
    return out


class TextTask(Task):
    """Base of the text tasks (not registered itself)."""

    hf_auto_class = "AutoModel"

    def __init__(self, cfg: TaskConfig, data: Dataset | None, input_names: tuple[str, ...] | None = None) -> None:
        super().__init__(cfg, data)
        self.inputs = token_inputs(data, input_names)

    def call(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> Any:
        """Keywords: Hugging Face models (and the sentence encoder) name their token inputs."""
        return model(**{n: batch[n] for n in self.input_names})

    def example_inputs(self, batch: int = 1, **axes: int) -> dict[str, np.ndarray]:
        """Real-looking tokens: ids 1 (never the padding id 0 alone) with a full attention mask."""
        out = super().example_inputs(batch, **axes)
        for name, arr in out.items():
            if name in ("input_ids", "attention_mask"):
                out[name] = np.ones_like(arr)
        return out

    def trim(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Token inputs cut to the batch's longest row (what `padding: longest` gives the app per batch)."""
        return trim_padding(batch)

    def feed(self, split: Split, rows: Any) -> dict[str, np.ndarray]:
        """A pair split feeds its first sentences (calibration, profiling and parity need one sentence a row)."""
        prefix = "" if self.input_names[0] in split.inputs else "a."
        return {n: np.ascontiguousarray(split.inputs[prefix + n][rows]) for n in self.input_names}

    @property
    def tokenizer(self) -> Any:
        return getattr(self.data, "tokenizer", None)

    @property
    def vocab_size(self) -> int | None:
        return len(self.tokenizer) if self.tokenizer is not None else None

    def bundle_meta(self) -> dict[str, Any]:
        pre = dict(self.data.preprocessing) if self.data is not None else {}
        return {**super().bundle_meta(), "preprocessing": pre}

    def snippets(self, spec: Mapping[str, Any], meta: Mapping[str, Any], mobile_file: str) -> dict[str, str]:
        """usage/predict.py: tokenize with the bundled tokenizer, run the file, read the output."""
        from ..report.text_snippet import text_python_snippet

        return {"predict.py": text_python_snippet(spec, meta)}
