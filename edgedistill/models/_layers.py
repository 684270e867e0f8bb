"""The torch building blocks of the built-in models.

Kept apart from the builders in cnn.py so that validating a recipe (which only reads the builders'
signatures) does not import torch.
"""

from __future__ import annotations

from torch import nn


def block(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    """Conv 3×3 (no bias) → BatchNorm → ReLU."""
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*block(channels, channels), nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(x + self.body(x))
