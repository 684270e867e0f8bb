"""Inputs read on demand: array-like columns that decode only the rows asked for.

A split's named inputs are numpy arrays for small built-in sets and `LazyColumn`s for sources larger than
memory (image folders, packed shards). Both answer `len`, `shape`, `dtype` and `col[rows]` (rows: an int, a
slice or an index array → a numpy array), so every consumer that reads rows (`task.feed`, the calibration
reader, `Task.score`) works on either without knowing which it has; only whole-array code must ask
`is_lazy`. A `take` of a lazy column is another lazy column over fewer rows (an index array, not data), so
splitting 40,000 images into train/val/test holds 40,000 integers, not 24 GB of pixels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np


class LazyColumn:
    """Rows decoded on demand. Subclasses implement `_rows(indices) -> array` and `fingerprint()`."""

    def __init__(self, n: int, sample_shape: tuple[int, ...], dtype: Any, index: np.ndarray | None = None) -> None:
        self.sample_shape, self.dtype = tuple(sample_shape), np.dtype(dtype)
        self.workers: int | None = None  # the recipe's data.workers (set by load_dataset); None: from the CPU count
        self.index = np.arange(n, dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)

    # -- the array protocol the rest of the code uses
    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.sample_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.sample_shape)

    def __getitem__(self, rows: Any) -> np.ndarray:
        if isinstance(rows, (int, np.integer)):
            return self._rows(self.index[[int(rows)]])[0]
        picked = self.index[rows]
        if not len(picked):
            return np.zeros((0, *self.sample_shape), dtype=self.dtype)
        return self._rows(picked)

    def take(self, rows: Any) -> LazyColumn:
        """The same source over `rows` of this column (no data is read)."""
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.index = self.index[rows]
        return out

    def __array__(self, dtype=None, copy=None):
        raise TypeError(f"{type(self).__name__} is read on demand; index rows instead of converting it whole")

    # -- what a source implements
    def _rows(self, indices: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def source_fingerprint(self) -> str:
        """A digest naming the source's samples (not this view's rows): files and their sizes/times."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        h = hashlib.sha256(self.source_fingerprint().encode())
        h.update(np.ascontiguousarray(self.index).tobytes())
        return h.hexdigest()


def is_lazy(x: Any) -> bool:
    return isinstance(x, LazyColumn)


def take_rows(x: Any, rows: Any) -> Any:
    """`x[rows]` for an array, a lazy view for a lazy column."""
    return x.take(rows) if is_lazy(x) else x[rows]


def files_fingerprint(paths: Sequence[Any]) -> str:
    """Names, sizes and modification times of files: changes when any file is replaced, added or removed."""
    import os

    h = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def column_digest(x: Any) -> bytes:
    """Bytes that identify a column's contents (for cache keys): the data of an array, a fingerprint of a lazy one."""
    if is_lazy(x):
        return x.fingerprint().encode()
    return np.ascontiguousarray(x).tobytes()


def rows_per_batch(split: Any, cap: int, budget_bytes: int = 16 << 20) -> int:
    """Rows per inference batch: `cap`, fewer when a batch of inputs would exceed `budget_bytes` (large images:
    the activations of a batch scale with its input, and a 224×224 batch of 512 needs gigabytes)."""
    per_row = sum(int(np.prod(v.shape[1:], dtype=np.int64)) * np.dtype(v.dtype).itemsize for v in split.inputs.values())
    return max(1, min(cap, budget_bytes // max(per_row, 1)))
