"""Choosing and reporting on different pairs: a seeded, genre-stratified split of an evaluation file in two.

A recipe's choices (students, epochs, `keep_first`, early stopping) are made by a score, and a score used
for choosing is optimistic on the pairs it chose by. `data.dev_split: {selection: 0.5, seed: 0, stratify:
genre}` cuts the evaluation pairs (STS-B dev) into a *selection* half, which becomes the validation split
(early stopping, the best epoch, any recipe comparison) and a *report* half, which becomes the test split
(the final metric, the gates, the README). The training pairs are then all used for training: no share of
them is held out (`val_fraction` does not apply). Stratifying by genre (column 0 of an STS file: captions,
news, forums) keeps each half's mix of genres the file's, so the two halves measure the same thing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from ..config import Strict
from ..errors import UserError

if TYPE_CHECKING:
    from .text_files import SentencePairs


class DevSplitConfig(Strict):
    selection: float = Field(0.5, gt=0.0, lt=1.0, description="share of the evaluation pairs used for choices (validation, early stopping); the rest is the report half (test)")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of the split (the same seed gives the same halves)")
    stratify: Literal["genre", "none"] = Field("genre", description="keep each genre's share equal in both halves (genre: column 0 of an STS file), or split at random")


def split_rows(n: int, groups: list[str] | None, cfg: DevSplitConfig, where: str = "data.dev_split") -> tuple[np.ndarray, np.ndarray]:
    """(selection rows, report rows), each sorted: disjoint, together all n rows, deterministic for the seed.

    Stratified: every group is shuffled with its own draw from the seed and cut at round(share · size), so each
    group's share in the selection half is as close to `selection` as its size allows."""
    if n < 2:
        raise UserError(f"cannot split {n} evaluation pair(s) into a selection and a report half", where=where,
                        fix="give an evaluation file with at least two pairs, or remove dev_split")
    rng = np.random.default_rng(cfg.seed)
    if cfg.stratify == "genre" and groups is not None:
        labels = np.asarray(groups)
        parts = [np.flatnonzero(labels == g) for g in sorted(set(groups))]
    else:
        parts = [np.arange(n)]
    selection, report = [], []
    for rows in parts:
        rows = rows[rng.permutation(len(rows))]
        k = int(np.floor(len(rows) * cfg.selection + 0.5))
        selection.append(rows[:k])
        report.append(rows[k:])
    sel, rep = np.sort(np.concatenate(selection)), np.sort(np.concatenate(report))
    if not len(sel) or not len(rep):
        raise UserError(f"a selection share of {cfg.selection:g} leaves one half of the {n} pairs empty", where=where,
                        fix="use a selection share nearer 0.5, or more evaluation pairs")
    return sel, rep


def split_pairs(pairs: SentencePairs, cfg: DevSplitConfig) -> tuple[SentencePairs, SentencePairs]:
    """(selection half, report half) of an evaluation file's pairs."""
    sel, rep = split_rows(len(pairs), pairs.genres, cfg)
    return pairs.take(sel.tolist()), pairs.take(rep.tolist())
