"""Random translation of image batches, reproducible from (seed, epoch).

Augmentation is decided per epoch for the whole training split, so the teacher's outputs for an epoch can
be cached and reused by every later student that trains with the same seed and settings, and so every rank
under torchrun sees the same augmented sample.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ..config import Strict

if TYPE_CHECKING:  # AugmentConfig is part of the recipe schema; validating a recipe must not import torch
    import torch


class AugmentConfig(Strict):
    shift: int = Field(0, ge=0, le=16, description="random translation of images by up to this many pixels (0: off)")
    teacher_sees: Literal["augmented", "original"] = Field(
        "augmented", description="the view the teacher labels: the same augmented input as the student, or the "
        "original (for a teacher not trained with this augmentation, whose outputs on moved inputs are poor; "
        "its outputs are then computed once, not per epoch)")

    @property
    def active(self) -> bool:
        return self.shift > 0


def epoch_shifts(cfg: AugmentConfig, n: int, seed: int, epoch: int) -> torch.Tensor:
    """(n, 2) integer shifts (dy, dx) for every training sample in `epoch`."""
    import torch

    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randint(-cfg.shift, cfg.shift + 1, (n, 2), generator=g)


def apply_shifts(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Translate each image (N, C, H, W) by its (dy, dx), filling with zeros; other ranks pass through."""
    import torch
    import torch.nn.functional as F

    if x.dim() != 4 or not len(x):
        return x
    pad = int(shifts.abs().max())
    if pad == 0:
        return x
    h, w = x.shape[2], x.shape[3]
    padded = F.pad(x, (pad, pad, pad, pad))
    out = torch.empty_like(x)
    for dy, dx in torch.unique(shifts, dim=0).tolist():
        rows = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
        out[rows] = padded[rows, :, pad - dy : pad - dy + h, pad - dx : pad - dx + w]
    return out


class ShiftInputs:
    """The loader transform that moves a batch by its samples' shifts for the epoch (runs in the workers).

    The epoch's shifts are drawn for the whole split (n × 2 integers) once per worker and epoch, so a sample
    moves the same way whichever worker, rank or batch reads it. `keep_original` also returns the unmoved
    inputs as `teacher:<name>` (a live teacher that labels the original view)."""

    def __init__(self, cfg: AugmentConfig, n: int, seed: int, keep_original: bool = False) -> None:
        self.cfg, self.n, self.seed, self.keep_original = cfg, n, seed, keep_original
        self._epoch: int | None = None
        self._shifts = None

    def __call__(self, inputs: dict, idx, epoch: int | None) -> dict:
        if epoch is None:
            return inputs
        if self._epoch != epoch:
            self._epoch, self._shifts = epoch, epoch_shifts(self.cfg, self.n, self.seed, epoch)
        shifts = self._shifts[idx]
        moved = {k: apply_shifts(v, shifts) for k, v in inputs.items()}  # only image-shaped inputs move
        if self.keep_original:
            moved.update({f"{TEACHER_VIEW}{k}": v for k, v in inputs.items()})
        return moved


TEACHER_VIEW = "teacher:"  # prefix of the unmoved inputs a ShiftInputs transform keeps for the teacher


def split_views(x: dict) -> tuple[dict, dict]:
    """(student inputs, teacher inputs) of a batch; the teacher sees the student's view unless one was kept."""
    student = {k: v for k, v in x.items() if not k.startswith(TEACHER_VIEW)}
    teacher = {k[len(TEACHER_VIEW):]: v for k, v in x.items() if k.startswith(TEACHER_VIEW)}
    return student, teacher or student
