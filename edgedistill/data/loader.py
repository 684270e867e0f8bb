"""Batches of a split through torch's `DataLoader`: decoding and augmentation run in worker processes.

The trainer decides *which* rows form each batch (its shuffled order, this rank's share, the resume point) and
hands the loader a plan of `Batch` items; the loader's workers read those rows (an image folder decodes them
here), apply the caller's transform (the recipe's augmentation) and return tensors. The main process only
trains. In-memory splits use no workers (indexing an array is cheaper than handing it to a process).

The loader gets its own seeded generator, so creating one never draws from torch's global random state (a
run with and without workers, or resumed mid-epoch, trains on the same random numbers).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from .base import Split

# transform(inputs, idx, epoch) -> inputs: runs in the worker, on the batch's tensors
Transform = Callable[[dict[str, torch.Tensor], torch.Tensor, "int | None"], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Batch:
    """One planned batch: its rows (sample indices into the split), the epoch and the global step."""

    rows: np.ndarray
    epoch: int | None = None
    step: int = 0


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count: containers and taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_workers(split: Split) -> int:
    """Workers for a split: none for in-memory data; for streamed data the recipe's `data.workers`, else one
    per available CPU but one (at least 1, at most 8)."""
    if not split.streamed:
        return 0
    asked = [c.workers for c in split.inputs.values() if getattr(c, "workers", None) is not None]
    return int(asked[0]) if asked else max(1, min(8, available_cpus() - 1))


class _Rows(torch.utils.data.Dataset):
    """`dataset[Batch]` → the batch's tensors; runs in a worker (or in the main process with 0 workers)."""

    def __init__(self, split: Split, transform: Transform | None) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, item: Batch) -> dict[str, Any]:
        try:
            rows = item.rows
            inputs = {k: torch.from_numpy(np.ascontiguousarray(v[rows])) for k, v in self.split.inputs.items()}
            idx = torch.from_numpy(np.asarray(rows, dtype=np.int64))
            if self.transform is not None:
                inputs = self.transform(inputs, idx, item.epoch)
            return {"inputs": inputs, "targets": torch.from_numpy(np.asarray(self.split.targets[rows])),
                    "idx": idx, "epoch": item.epoch, "step": item.step}
        except UserError as exc:  # carried back whole: the DataLoader would re-raise it as a bare RuntimeError
            return {"error": (exc.message, exc.where, exc.fix)}


def batches(split: Split, plan: Iterable[Batch], *, workers: int | None = None, transform: Transform | None = None,
            seed: int = 0, prefetch: int = 2) -> Iterator[dict[str, Any]]:
    """The planned batches of `split`, read by `workers` processes (None: `default_workers`), in plan order."""
    n_workers = default_workers(split) if workers is None else int(workers)
    loader = torch.utils.data.DataLoader(
        _Rows(split, transform), sampler=list(plan), batch_size=None,
        num_workers=n_workers, generator=torch.Generator().manual_seed(seed),
        prefetch_factor=prefetch if n_workers else None, persistent_workers=False,
    )
    for got in loader:
        if "error" in got:
            message, where, fix = got["error"]
            raise UserError(message, where=where, fix=fix)
        yield got


def in_order(n: int, batch_size: int, epoch: int | None = None) -> Iterator[Batch]:
    """Rows 0..n-1 in batches (a pass over a split: teacher outputs, evaluation)."""
    for start in range(0, n, batch_size):
        yield Batch(np.arange(start, min(n, start + batch_size)), epoch, start // batch_size)
