"""A sentence encoder: a transformer encoder plus mean pooling over the attention mask and L2 normalisation.

Pooling lives inside the module, so the exported ONNX graph returns a ready embedding (what
sentence-transformers' all-MiniLM-L6-v2 computes) and the app needs no post-processing.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn


class SentenceEncoder(nn.Module):
    """`forward(input_ids, attention_mask, token_type_ids=None) -> embedding` of shape (batch, hidden)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = getattr(encoder, "config", None)  # read by pruning, derivation and the exporter
        self._takes_token_types = "token_type_ids" in inspect.signature(encoder.forward).parameters

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and self._takes_token_types:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kwargs)[0]
        return mean_pool_normalize(hidden, attention_mask)


def mean_pool_normalize(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states the mask keeps, scaled to unit length (sentence-transformers' recipe)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return F.normalize(summed / counts, p=2, dim=1)
