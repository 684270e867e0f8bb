"""The dataset structure, its config, and the registry of loaders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from ..config import Strict
from ..errors import UserError, did_you_mean
from .dev_split import DevSplitConfig
from .stream import is_lazy, take_rows


class DataConfig(Strict):
    """The recipe's `data:` section."""

    name: str = Field(description="dataset loader: digits, image_folder, mnist, npz, packed, sts, text_corpus, text_labelled")
    path: str | None = Field(None, description="file or folder for loaders that read from disk")
    test_path: str | None = Field(None, description="the evaluation split: a file (text loaders: STS pairs or labelled text) or a folder of class folders (image_folder)")
    tokenizer: str | None = Field(None, description="text loaders: tokenizer folder (a model directory works) or a model package name")
    max_length: int = Field(128, ge=2, le=8192, description="text loaders: tokens per text (truncated; padded to the longest)")
    text_field: str = Field("text", description="text_labelled: the column / JSON key holding the text")
    label_field: str = Field("label", description="text_labelled: the column / JSON key holding the label")
    image_size: int | list[int] = Field(32, description="image_folder: images are resized to this size (pixels; N or [height, width], 4..1024)")
    image_mode: Literal["grayscale", "rgb"] = Field("rgb", description="image_folder: images are converted to 1 (grayscale) or 3 (rgb) channels")
    val_fraction: float = Field(0.15, ge=0.0, lt=0.5, description="share of the training data held out for validation")
    test_fraction: float = Field(0.2, gt=0.0, lt=0.9, description="share held out for the final test when no test file/folder is given (digits, image_folder, text_labelled)")
    train_limit: int | None = Field(None, ge=1, description="use at most this many training samples")
    test_limit: int | None = Field(None, ge=1, description="use at most this many test samples")
    batch_size: int = Field(64, ge=1, le=65536, description="training batch size")
    workers: int | None = Field(None, ge=0, le=256, description="DataLoader worker processes that decode and augment streamed data (image folders, packed shards); default: the CPUs this process may use, less one (max 8); in-memory sets use none")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of the split")
    dev_split: DevSplitConfig | None = Field(
        None, description="sts: split the evaluation pairs into a selection half (validation, early stopping, "
                          "choices) and a report half (test: metric, gates), e.g. {selection: 0.5, seed: 0, stratify: genre}")

    @field_validator("image_size")
    @classmethod
    def _image_size(cls, v: int | list[int]) -> int | list[int]:
        sizes = [v] if isinstance(v, int) else v
        if len(sizes) not in (1, 2) or not all(4 <= s <= 1024 for s in sizes):
            raise ValueError("give one size or [height, width], each 4..1024 pixels")
        return v

    def image_hw(self) -> tuple[int, int]:
        """`image_size` as (height, width)."""
        s = self.image_size
        return (s, s) if isinstance(s, int) else (s[0], s[-1])


INPUT = "input"  # the name of the single input of an image split


class Split:
    """One split: named input arrays (any dtype; all with the same number of rows) and the targets.

    An input may be a `LazyColumn` (rows decoded on read) instead of an array; targets are always in memory.

    Targets are what the task's loss and metric compare against (class labels, scores, ...); unlabelled
    data carries an empty-width placeholder. `Split(x, y)` with one array is an image split whose input is
    named "input"; `x` and `y` read the single input and the targets."""

    def __init__(self, inputs: dict[str, np.ndarray] | np.ndarray, targets: np.ndarray) -> None:
        self.inputs = dict(inputs) if isinstance(inputs, dict) else {INPUT: inputs}
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def x(self) -> np.ndarray:
        """The single input array (image tasks); a multi-input split has no single `x`."""
        if len(self.inputs) != 1:
            raise TypeError(f"this split has {len(self.inputs)} inputs ({', '.join(self.inputs)}); read split.inputs")
        return next(iter(self.inputs.values()))

    @property
    def y(self) -> np.ndarray:
        return self.targets

    def take(self, rows: Any) -> Split:
        """The rows `rows` (a slice or an index array) of every input and of the targets."""
        return Split({k: take_rows(v, rows) for k, v in self.inputs.items()}, self.targets[rows])

    @property
    def streamed(self) -> bool:
        """True when some input is read on demand (an image folder, packed shards) rather than held in memory."""
        return any(is_lazy(v) for v in self.inputs.values())

    def head(self, n: int | None) -> Split:
        return self if n is None else self.take(slice(0, n))


ArrayData = Split  # the name used before splits had named inputs


@dataclass
class Dataset:
    """Splits plus what an app team needs to feed the model the same way."""

    name: str
    task: str  # the task kind this data suits (its loader knows), used when no recipe names one
    train: ArrayData
    val: ArrayData
    test: ArrayData
    num_classes: int
    class_labels: list[str]
    preprocessing: dict[str, Any] = field(default_factory=dict)
    tokenizer: Any = None  # text data: the tokenizer its inputs were made with (the bundle ships it)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape, for single-input (image) data; () when the data has several named inputs."""
        if len(self.train.inputs) != 1:
            return ()
        return tuple(self.train.x.shape[1:])

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each named input's per-sample shape."""
        return {k: tuple(v.shape[1:]) for k, v in self.train.inputs.items()}

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
    for split in (ds.train, ds.val, ds.test):  # streamed columns carry the worker count their loaders use
        for col in split.inputs.values():
            if is_lazy(col):
                col.workers = cfg.workers
    from .check import check_dataset

    return check_dataset(ds, f"data ({cfg.name}{':' + cfg.path if cfg.path else ''})")


def parse_data_spec(spec: str) -> DataConfig:
    """Parse the CLI's `--data` string: `digits`, or `NAME:PATH` such as `mnist:../shared/data/mnist`."""
    name, _, path = spec.partition(":")
    return DataConfig(name=name, path=path or None)


def stratified_split(
    x: np.ndarray | dict[str, np.ndarray], y: np.ndarray, fraction: float, seed: int, stratify: bool = True,
) -> tuple[Split, Split]:
    """Deterministic (stratified by `y` unless told otherwise) split: (rest, held_out)."""
    whole = Split(x, y)
    if fraction <= 0:
        return whole, whole.take(slice(0, 0))
    from sklearn.model_selection import train_test_split

    try:
        rest, held = train_test_split(np.arange(len(y)), test_size=fraction, random_state=seed,
                                      stratify=y if stratify else None)
    except ValueError:  # a class too rare to appear on both sides: split without stratification
        try:
            rest, held = train_test_split(np.arange(len(y)), test_size=fraction, random_state=seed)
        except ValueError as exc:
            raise UserError(f"cannot hold out {fraction:g} of {len(y)} samples: {exc}", where="data",
                            fix="use more data, or a different val_fraction/test_fraction") from exc
    return whole.take(rest), whole.take(held)
