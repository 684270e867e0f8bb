"""Model builders that tests name as `tests.builders:function` (PYTHONPATH at the project root, and
`--import tests.builders` or EDGEDISTILL_IMPORT=tests.builders, as a user would).

Each stands for a model someone else wrote: it returns what that model returns (a Hugging Face output
object, a dict, something unusable), not what edgedistill would prefer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def hf_resnet(num_classes: int = 10, channels: int = 1):
    """A tiny Hugging Face ResNet classifier built from its config (returns ImageClassifierOutput objects)."""
    from transformers import ResNetConfig, ResNetForImageClassification

    cfg = ResNetConfig(num_channels=channels, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                       layer_type="basic", num_labels=num_classes)
    return ResNetForImageClassification(cfg)


class _Flat(nn.Module):
    """A linear classifier for 28×28 images: it cannot take 8×8 digits."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(28 * 28, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def flat28() -> nn.Module:
    return _Flat()


class _Words(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> str:
        return "a prediction"


def returns_text() -> nn.Module:
    """A model whose output is not a tensor, a tuple, a dict or an output object."""
    return _Words()


@contextmanager
def interrupt_at_call(module: nn.Module, at: int | None) -> Iterator[list[int]]:
    """Count `module`'s forward calls and raise KeyboardInterrupt (what Ctrl-C raises) at call `at` (None:
    never), so a test can cut a run at a deterministic step; yields the call list."""
    calls: list[int] = []

    def hook(module, inputs):
        calls.append(1)
        if len(calls) == at:
            raise KeyboardInterrupt

    handle = module.register_forward_pre_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()
