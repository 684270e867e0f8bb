"""Built-in convolutional networks for small images (digits, MNIST, CIFAR-sized inputs).

The builders import torch when called, so registering them (and validating a recipe) stays free of torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .args import Channels, Depth, Dropout, Width
from .registry import register_model

if TYPE_CHECKING:
    from torch import nn


@register_model("cnn")
def cnn(
    channels: Channels = (32, 64),
    hidden: Width = 0,
    dropout: Dropout = 0.0,
    input_shape: tuple[int, ...] = (1, 28, 28),
    num_classes: int = 10,
) -> nn.Module:
    """Conv-BN-ReLU blocks, 2×2 max-pooling while the image is at least 4 pixels, global average pool, linear head."""
    from torch import nn

    from ._layers import block

    layers: list[nn.Module] = []
    cin, size = input_shape[0], min(input_shape[1:])
    for cout in channels:
        layers += block(cin, cout)
        if size >= 4:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        cin = cout
    head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if dropout:
        head.append(nn.Dropout(dropout))
    if hidden:
        head += [nn.Linear(cin, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes)]
    else:
        head.append(nn.Linear(cin, num_classes))
    return nn.Sequential(nn.Sequential(*layers), nn.Sequential(*head))


@register_model("resnet")
def resnet(
    channels: Channels = (16, 32),
    blocks: Depth = 1,
    input_shape: tuple[int, ...] = (1, 28, 28),
    num_classes: int = 10,
) -> nn.Module:
    """A small ResNet: per stage a stride-2 (or stride-1 for tiny inputs) conv then `blocks` residual blocks."""
    from torch import nn

    from ._layers import _Residual, block

    layers: list[nn.Module] = []
    cin, size = input_shape[0], min(input_shape[1:])
    for cout in channels:
        stride = 2 if size >= 4 else 1
        layers += block(cin, cout, stride)
        layers += [_Residual(cout) for _ in range(blocks)]
        size //= stride
        cin = cout
    return nn.Sequential(nn.Sequential(*layers),
                         nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)))
