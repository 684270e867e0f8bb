"""Built-in token models for small images: MLP-Mixer and a small vision transformer.

Both cut the image into non-overlapping patches, so they are a different *family* from the CNNs (no
convolutions past the patch embedding, features are token sequences B × N × dim): students and teachers
for cross-architecture distillation (`ofa`). Built from the recipe's arguments only, sized for 1×28×28
digits by default and for any C×H×W. The builders import torch when called (recipe validation stays
torch-free); the layers live in `_tokens.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ..errors import UserError
from .args import Depth, Heads, Patch, Ratio, Width
from .registry import register_model

if TYPE_CHECKING:
    from torch import nn


def _tokens(input_shape: tuple[int, ...], patch: int, name: str) -> int:
    """Patches per image; the image must hold at least one patch (a remainder is cropped, as a strided conv does)."""
    if len(input_shape) != 3:
        raise UserError(f"{name} takes images (C, H, W), the data's samples are {list(input_shape)}",
                        where="model.name", fix="use a text model for token ids, or image data")
    h, w = input_shape[1:]
    if patch > min(h, w):
        raise UserError(f"patch {patch} is larger than the {h}×{w} image", where="model.patch",
                        fix=f"use a patch of at most {min(h, w)} pixels, e.g. {max(1, min(h, w) // 7)}")
    return (h // patch) * (w // patch)


def _positive(value: int, field: str) -> None:
    if value < 1:
        raise UserError(f"{field} must be at least 1, got {value}", where=f"model.{field}", fix=f"set {field}: 1 or more")


@register_model("mixer")
def mixer(
    patch: Patch = 4,
    dim: Width = 64,
    depth: Depth = 4,
    token_hidden: Width = 32,
    channel_hidden: Width = 128,
    input_shape: tuple[int, ...] = (1, 28, 28),
    num_classes: int = 10,
) -> nn.Module:
    """MLP-Mixer (Tolstikhin et al. 2021): patch embedding, `depth` blocks of token-mixing and channel-mixing
    MLPs, LayerNorm, mean over tokens, linear head. 28×28 with patch 4 gives 49 tokens."""
    from ._tokens import MixerBlock, PatchEmbed, TokenNet

    for field, value in (("dim", dim), ("token_hidden", token_hidden), ("channel_hidden", channel_hidden)):
        _positive(value, field)
    n = _tokens(input_shape, patch, "mixer")
    blocks = [MixerBlock(n, dim, token_hidden, channel_hidden) for _ in range(depth)]
    return TokenNet(PatchEmbed(input_shape[0], dim, patch), blocks, dim, n, num_classes)


@register_model("vit")
def vit(
    patch: Patch = 4,
    dim: Width = 64,
    depth: Depth = 4,
    heads: Heads = 4,
    mlp_ratio: Ratio = 2.0,
    pool: Literal["cls", "mean"] = "cls",
    input_shape: tuple[int, ...] = (1, 28, 28),
    num_classes: int = 10,
) -> nn.Module:
    """A small vision transformer (Dosovitskiy et al. 2021): patch embedding, a learned position embedding,
    a class token (`pool: cls`) or the mean of the tokens (`pool: mean`), `depth` pre-norm blocks of
    `heads`-head self-attention and an MLP `mlp_ratio` × dim wide, LayerNorm, linear head."""
    from ._tokens import PatchEmbed, TokenNet, TransformerBlock

    _positive(dim, "dim")
    if dim % heads:
        raise UserError(f"dim {dim} is not divisible by heads {heads}", where="model.heads",
                        fix=f"pick heads that divide dim (e.g. {max(h for h in range(1, min(heads, dim) + 1) if dim % h == 0)})")
    n = _tokens(input_shape, patch, "vit")
    hidden = max(1, round(dim * mlp_ratio))
    blocks = [TransformerBlock(dim, heads, hidden) for _ in range(depth)]
    return TokenNet(PatchEmbed(input_shape[0], dim, patch), blocks, dim, n, num_classes,
                    cls_token=pool == "cls", pos_embed=True)
