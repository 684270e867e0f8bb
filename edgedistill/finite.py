"""Which tensors of a model hold NaN or infinite values.

A diverged run must never save (or name as "good") weights that are not finite, and a loaded checkpoint
with NaN weights must be blamed on the checkpoint, not on the learning rate of the run that reads it.
Parameters and buffers are both checked: BatchNorm's running statistics can overflow while the loss stays
finite, and they poison every later evaluation and the exported file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def nonfinite(tensors: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> list[str]:
    """Names of the floating-point tensors that contain NaN or ±inf (empty when all are finite)."""
    import torch

    items = tensors.items() if isinstance(tensors, Mapping) else tensors
    return [name for name, t in items
            if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())]


def model_nonfinite(model: Any, extra: Iterable[Any] = ()) -> list[str]:
    """`nonfinite` over a module's state dict (parameters and buffers) plus extra trained tensors."""
    return nonfinite([*model.state_dict().items(), *((f"extra.{i}", p.detach()) for i, p in enumerate(extra))])


def describe(names: list[str], limit: int = 3) -> str:
    """'a, b, c and 4 more' for messages."""
    head = ", ".join(names[:limit])
    return head + (f" and {len(names) - limit} more" if len(names) > limit else "")
