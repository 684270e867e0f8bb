"""Argument types for model builders: the builder's own signature says what a valid value is.

Recipe validation checks every model spec against these annotations (strictly: "16" is not 16) without
importing torch, so a string channel list or `dropout: 1.5` is refused by `validate`, not after training.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

Channels = Annotated[list[Annotated[int, Field(ge=1, le=8192)]], Field(min_length=1, max_length=64)]
Width = Annotated[int, Field(ge=0, le=65536)]  # 0 switches the layer off
Depth = Annotated[int, Field(ge=0, le=64)]
Dropout = Annotated[float, Field(ge=0, lt=1)]
Patch = Annotated[int, Field(ge=1, le=1024)]  # side of a square image patch, in pixels
Heads = Annotated[int, Field(ge=1, le=256)]
Ratio = Annotated[float, Field(gt=0, le=64)]
