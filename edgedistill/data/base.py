"""The dataset structure, its config, and the registry of loaders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field

from ..config import Strict
from ..errors import UserError, did_you_mean


class DataConfig(Strict):
    """The recipe's `data:` section."""

    name: str = Field(description="dataset loader: digits, mnist, npz")
    path: str | None = Field(None, description="file or folder for loaders that read from disk")
    val_fraction: float = Field(0.15, ge=0.0, lt=0.5, description="share of the training data held out for validation")
    test_fraction: float = Field(0.2, gt=0.0, lt=0.9, description="share held out for the final test (digits only)")
    train_limit: int | None = Field(None, ge=1, description="use at most this many training samples")
    test_limit: int | None = Field(None, ge=1, description="use at most this many test samples")
    batch_size: int = Field(64, ge=1, le=65536, description="training batch size")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of the split")


@dataclass
class ArrayData:
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def head(self, n: int | None) -> ArrayData:
        return self if n is None else ArrayData(self.x[:n], self.y[:n])


@dataclass
class Dataset:
    """Splits plus what an app team needs to feed the model the same way."""

    name: str
    task: str
    train: ArrayData
    val: ArrayData
    test: ArrayData
    num_classes: int
    class_labels: list[str]
    preprocessing: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    def split(self, name: str) -> ArrayData:
        if name not in ("train", "val", "test"):
            raise UserError(f'unknown split "{name}"', fix="use one of: train, val, test")
        return getattr(self, name)


Loader = Callable[[DataConfig], Dataset]
DATASETS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    def deco(fn: Loader) -> Loader:
        DATASETS[name] = fn
        return fn

    return deco


def load_dataset(cfg: DataConfig) -> Dataset:
    if cfg.name not in DATASETS:
        raise UserError(
            f'unknown dataset "{cfg.name}"{did_you_mean(cfg.name, DATASETS)}',
            where="data.name",
            fix=f"use one of: {', '.join(sorted(DATASETS))}",
        )
    ds = DATASETS[cfg.name](cfg)
    if cfg.train_limit:
        ds.train = ds.train.head(cfg.train_limit)
    if cfg.test_limit:
        ds.test = ds.test.head(cfg.test_limit)
    from .check import check_dataset

    return check_dataset(ds, f"data ({cfg.name}{':' + cfg.path if cfg.path else ''})")


def parse_data_spec(spec: str) -> DataConfig:
    """Parse the CLI's `--data` string: `digits`, or `NAME:PATH` such as `mnist:../shared/data/mnist`."""
    name, _, path = spec.partition(":")
    return DataConfig(name=name, path=path or None)


def stratified_split(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[ArrayData, ArrayData]:
    """Deterministic stratified split: (rest, held_out)."""
    if fraction <= 0:
        return ArrayData(x, y), ArrayData(x[:0], y[:0])
    from sklearn.model_selection import train_test_split

    try:
        xa, xb, ya, yb = train_test_split(x, y, test_size=fraction, random_state=seed, stratify=y)
    except ValueError:  # a class too rare to appear on both sides: split without stratification
        try:
            xa, xb, ya, yb = train_test_split(x, y, test_size=fraction, random_state=seed)
        except ValueError as exc:
            raise UserError(f"cannot hold out {fraction:g} of {len(y)} samples: {exc}", where="data",
                            fix="use more data, or a different val_fraction/test_fraction") from exc
    return ArrayData(xa, ya), ArrayData(xb, yb)
