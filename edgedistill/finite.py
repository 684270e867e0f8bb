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


def model_nonfinite(model: Any, extra: Iterable[Any] = (), trainable_only: bool = False) -> list[str]:
    """`nonfinite` over a module's state dict (parameters and buffers) plus extra trained tensors.

    `trainable_only` skips frozen parameters (requires_grad=False): after every training step only what the
    step can change needs checking, and a frozen 30k-row word-embedding table would otherwise cost a quarter
    of the step."""
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad} if trainable_only else set()
    state = [(n, t) for n, t in model.state_dict().items() if n not in frozen]
    return nonfinite([*state, *((f"extra.{i}", p.detach()) for i, p in enumerate(extra))])


def describe(names: list[str], limit: int = 3) -> str:
    """'a, b, c and 4 more' for messages."""
    head = ", ".join(names[:limit])
    return head + (f" and {len(names) - limit} more" if len(names) > limit else "")
