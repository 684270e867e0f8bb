"""Random augmentation of training batches, reproducible from (seed, epoch): translation of images, dropout of
tokens (or spans of tokens) of text.

Token dropout gives the student more than one view of each unlabelled sentence: every epoch, each token other
than the first and the last real one ([CLS], [SEP]) starts a dropped span of `token_span` tokens with
probability `token_dropout / token_span` (so about `token_dropout` of the tokens go), and the remaining tokens
close up, padding at the end (padding id 0, BERT's [PAD]). A sentence's draw depends only on (seed, epoch,
its row), never on the batch's padded length, so the teacher's per-epoch cache and the student see the same
tokens. With `teacher_sees: original` the student learns to embed the damaged sentence like the teacher
embeds the whole one (a denoising target; the teacher runs once).

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
    token_dropout: float = Field(0.0, ge=0.0, le=0.5, description="text: share of tokens dropped per epoch ([CLS]/[SEP] kept; 0: off)")
    token_span: int = Field(1, ge=1, le=16, description="text: tokens per dropped span (1: single tokens)")
    teacher_sees: Literal["augmented", "original"] = Field(
        "augmented", description="the view the teacher labels: the same augmented input as the student, or the "
        "original (for a teacher not trained with this augmentation, whose outputs on moved inputs are poor; "
        "its outputs are then computed once, not per epoch)")

    @property
    def active(self) -> bool:
        return self.shift > 0 or self.token_dropout > 0


def augment_inputs(cfg: AugmentConfig, x: dict[str, torch.Tensor], state: torch.Tensor) -> dict[str, torch.Tensor]:
    """The batch `x` augmented with its rows' epoch state (`epoch_shifts(...)[rows]`)."""
    if cfg.token_dropout > 0:
        return drop_tokens(x, state, cfg.token_dropout, cfg.token_span)
    return {k: apply_shifts(v, state) for k, v in x.items()}  # only image-shaped inputs move


def drop_tokens(x: dict[str, torch.Tensor], seeds: torch.Tensor, rate: float, span: int = 1) -> dict[str, torch.Tensor]:
    """Token (span) dropout of a right-padded [rows, seq] batch; `seeds` holds one seed per row."""
    import numpy as np
    import torch

    mask = x.get("attention_mask")
    ids = x["input_ids"]
    mask = (ids != 0) if mask is None else mask.bool()
    rows, width = ids.shape
    # numpy's generator: a row's first k draws are the same whatever the padded width (the cache sees the full one)
    u = torch.from_numpy(np.stack([np.random.default_rng(int(s)).random(width) for s in seeds.tolist()])) if rows else \
        torch.zeros(0, width, dtype=torch.float64)
    lengths = mask.sum(1)
    pos = torch.arange(width)[None, :]
    droppable = mask & (pos > 0) & (pos < (lengths - 1)[:, None])
    starts = (u < rate / span) & droppable
    drop = starts.clone()
    for k in range(1, span):
        drop[:, k:] |= starts[:, :-k]
    keep = mask & ~(drop & droppable)
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept tokens first, in their order
    valid = pos < keep.sum(1)[:, None]
    out = dict(x)
    for name, value in x.items():
        if value.dim() == 2 and value.shape == ids.shape:
            out[name] = torch.where(valid, torch.gather(value, 1, order), torch.zeros((), dtype=value.dtype))
    return out


def epoch_shifts(cfg: AugmentConfig, n: int, seed: int, epoch: int) -> torch.Tensor:
    """Every training sample's draw for `epoch`: (n, 2) shifts (dy, dx) of images, or (n,) seeds of token dropout."""
    import torch

    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    if cfg.token_dropout > 0:
        return torch.randint(0, 2**62, (n,), generator=g)
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
    """The loader transform that augments a batch with its samples' draws for the epoch (runs in the workers):
    image shifts, or token dropout of text.

    The epoch's draws are made for the whole split (n × 2 shifts, or n seeds) once per worker and epoch, so a
    sample changes the same way whichever worker, rank or batch reads it. `keep_original` also returns the unmoved
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
        moved = augment_inputs(self.cfg, inputs, self._shifts[idx])  # image shifts or token dropout
        if self.keep_original:
            moved.update({f"{TEACHER_VIEW}{k}": v for k, v in inputs.items()})
        return moved


TEACHER_VIEW = "teacher:"  # prefix of the unmoved inputs a ShiftInputs transform keeps for the teacher


def split_views(x: dict) -> tuple[dict, dict]:
    """(student inputs, teacher inputs) of a batch; the teacher sees the student's view unless one was kept."""
    student = {k: v for k, v in x.items() if not k.startswith(TEACHER_VIEW)}
    teacher = {k[len(TEACHER_VIEW):]: v for k, v in x.items() if k.startswith(TEACHER_VIEW)}
    return student, teacher or student
