"""Calibration samples are chosen once, then streamed in batches, so memory stays bounded on big models."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from onnxruntime.quantization import CalibrationDataReader


def select_samples(y: np.ndarray, count: int, how: str = "random", seed: int = 0) -> np.ndarray:
    """Indices of `count` calibration samples: uniformly at random, or class-balanced (round robin over classes)."""
    rng = np.random.default_rng(seed)
    count = min(count, len(y))
    if how == "random":
        return np.sort(rng.choice(len(y), size=count, replace=False))
    if how == "balanced":
        per_class = [rng.permutation(np.flatnonzero(y == c)).tolist() for c in np.unique(y)]
        picked: list[int] = []
        while len(picked) < count:
            for pool in per_class:
                if pool and len(picked) < count:
                    picked.append(pool.pop())
        return np.sort(np.asarray(picked))
    raise ValueError(f"unknown sample selection {how!r}")


class ArrayCalibrationReader(CalibrationDataReader):
    """Feeds ONNX Runtime's calibrators one batch at a time from an in-memory or memory-mapped array."""

    def __init__(self, x: np.ndarray, indices: np.ndarray, input_name: str, batch_size: int = 32) -> None:
        self.x, self.indices, self.input_name, self.batch_size = x, indices, input_name, batch_size
        self._it: Iterator[dict] | None = None

    def _batches(self) -> Iterator[dict]:
        for i in range(0, len(self.indices), self.batch_size):
            yield {self.input_name: np.ascontiguousarray(self.x[self.indices[i : i + self.batch_size]], dtype=np.float32)}

    def get_next(self) -> dict | None:
        if self._it is None:
            self._it = self._batches()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None
