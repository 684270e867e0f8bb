"""Calibration samples are chosen once, then streamed in batches, so memory stays bounded on big models.

ONNX Runtime's calibrators keep every intermediate output of every batch they are fed in one
`collect_data` call (the histogram calibrators, entropy and percentile, keep them all until the end: the
"entropy calibration on BERT ate my RAM" reports). The reader therefore exposes `__len__` and `set_range`,
which `calibrate_ranges` (or, on ONNX Runtime < 1.32, ORT's `CalibStridedMinMax` option) uses to call
`collect_data` once per window of batches and merge the results; only one window of activations is alive at
a time. `calibration_window` picks the window.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from edgedistill.errors import UserError

SELECTIONS = ("random", "balanced", "first")


def select_samples(y: np.ndarray, count: int, how: str = "random", seed: int = 0) -> np.ndarray:
    """Indices of `count` calibration samples, sorted (so memory-mapped reads stay sequential).

    random: uniformly without replacement. balanced: round robin over classes, so a rare class still sets
    the activation ranges it produces. first: the first `count` (reproducible across data orderings)."""
    rng = np.random.default_rng(seed)
    count = min(int(count), len(y))
    if count < 1:
        raise UserError("no calibration samples: the training split is empty or samples is 0",
                        where="calibration.samples", fix="use at least 1 sample (64 to 512 is typical)")
    if how == "random":
        return np.sort(rng.choice(len(y), size=count, replace=False))
    if how == "first":
        return np.arange(count)
    if how == "balanced":
        per_class = [rng.permutation(np.flatnonzero(y == c)).tolist() for c in np.unique(y)]
        picked: list[int] = []
        while len(picked) < count:
            for pool in per_class:
                if pool and len(picked) < count:
                    picked.append(pool.pop())
        return np.sort(np.asarray(picked))
    raise UserError(f'unknown sample selection "{how}"', where="calibration.selection",
                    fix=f"use one of: {', '.join(SELECTIONS)}")


class ArrayCalibrationReader(CalibrationDataReader):
    """Feeds ONNX Runtime's calibrators one batch at a time from in-memory or memory-mapped named arrays.

    `inputs` maps the model's input names to arrays (a bare array is the single input `input_name`);
    `dtypes` gives each input's dtype in the file (default: float32), so int64 token ids pass through
    untouched instead of being cast to float. Only the current batch is materialised, so the arrays may be
    `np.load(..., mmap_mode="r")` arrays far larger than RAM. `len()` counts batches; `set_range` limits the
    next pass to batches [start, end), which is how calibration streams windows."""

    def __init__(self, inputs: dict[str, np.ndarray] | np.ndarray, indices: np.ndarray, input_name: str = "input",
                 batch_size: int = 32, on_batch: Callable[[int], None] | None = None,
                 dtypes: dict[str, np.dtype] | None = None) -> None:
        if not isinstance(inputs, dict):
            inputs = {input_name: inputs}
        self.inputs, self.indices, self.batch_size = inputs, np.asarray(indices), int(batch_size)
        self.dtypes = {k: np.dtype((dtypes or {}).get(k, np.float32)) for k in inputs}
        self._range = (0, len(self))
        self._it: Iterator[dict] | None = None
        self.batches_served = 0  # how many batches were handed out in total (for tests and logs)
        self.on_batch = on_batch  # progress display: called with batches_served

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def _batches(self) -> Iterator[dict]:
        start, end = self._range
        for b in range(start, min(end, len(self))):
            rows = self.indices[b * self.batch_size : (b + 1) * self.batch_size]
            self.batches_served += 1
            if self.on_batch is not None:
                self.on_batch(self.batches_served)
            yield {k: np.ascontiguousarray(v[rows], dtype=self.dtypes[k]) for k, v in self.inputs.items()}

    def get_next(self) -> dict | None:
        if self._it is None:
            self._it = self._batches()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None

    def set_range(self, start_index: int, end_index: int) -> None:
        """Serve only batches [start_index, end_index) on the next pass (called by ORT between windows)."""
        self._range = (int(start_index), int(end_index))
        self._it = None


def strided_window(n_batches: int, max_batches: int) -> int | None:
    """The largest window of at most `max_batches` batches that divides `n_batches` evenly (ORT requires it).

    None when everything fits at once (no striding needed)."""
    if n_batches <= max_batches:
        return None
    return next(w for w in range(max_batches, 0, -1) if n_batches % w == 0)
