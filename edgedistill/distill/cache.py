"""Teacher-output cache: run the teacher once over the training data, store its outputs, read them after.

Later epochs, later students, born-again generations and teacher-assistant steps then cost no teacher
forward pass. Three storage modes:

- `dense`   all logits (exact; any temperature, any loss);
- `topk`    the k largest logits per sample (the rest count as probability 0; biased but small);
- `sampled` "Sparse Logit Sampling" (Anshumann et al. 2025): draw `samples` classes per example from the
  teacher's distribution at the stage's temperature and keep the counts; count/samples is an unbiased
  estimate of the teacher's probabilities, so the forward-KL gradient stays unbiased.

The key hashes the teacher's weights, the data (the bytes of an in-memory split; the file names, sizes and
modification times of a streamed one), the augmentation settings (and epoch, when augmentation is random) and
the mode, so a changed teacher or data can never be served stale outputs.

On disk a cache is a folder `teacher-<key>/`: `.npy` shards of at most `SHARD_ROWS` rows per stored tensor,
written by one pass of the teacher over the stream (one batch in memory at a time) and read back
memory-mapped by sample index, so neither building nor reading it holds the whole cache in memory. Its
`manifest.json` records the sha256 of every shard when it is written; every open re-hashes the shards and a
cache whose contents differ (edited logits, a truncated shard, a missing file) is deleted and rebuilt, never
served. (A digest detects damage and edits; someone who can rewrite both the shards and the manifest can
still forge a cache, so keep `cache.dir` writable only by the runs that use it.) The folder is built under a
temporary name and renamed into place, so a killed run leaves no half-written cache.

Size per million samples: dense 4·C bytes per sample (C classes: 4 GB for C = 1000), topk 12·k bytes (k=4:
48 MB), sampled 12·samples bytes (16 draws: 192 MB).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from ..config import Strict
from ..io import write_json

if TYPE_CHECKING:  # CacheConfig is part of the recipe schema; validating a recipe must not import torch
    import torch
    from torch import nn

    from ..data import Split
    from ..tasks import Task

SHARD_ROWS = 65536  # rows per shard file: small enough to rewrite, large enough to keep file counts low
MANIFEST = "manifest.json"


class CacheConfig(Strict):
    enabled: bool = Field(True, description="store teacher outputs on disk and reuse them (off: run the teacher every step)")
    mode: Literal["dense", "topk", "sampled"] = Field("dense", description="dense logits, top-k logits, or sampled sparse targets")
    k: int = Field(4, ge=1, le=1_000_000, description="topk: logits kept per sample")
    samples: int = Field(16, ge=1, le=65536, description="sampled: classes drawn per sample (with replacement)")
    dir: str | None = Field(None, description="cache folder; defaults to <run dir>/cache")
    augmented: Literal["per_epoch", "live"] = Field(
        "per_epoch", description="with random augmentation: cache each epoch's augmented outputs, or run the teacher live")


@dataclass
class Targets:
    """Teacher outputs for a batch: dense logits, top-k (values, indices), or sampled (indices, weights)."""

    kind: str
    a: torch.Tensor
    b: torch.Tensor | None = None
    num_classes: int = 0

    def probs(self, temperature: float) -> torch.Tensor:
        """Teacher probabilities at `temperature` (sampled targets were drawn at the cache's temperature)."""
        import torch
        import torch.nn.functional as F

        if self.kind == "dense":
            return F.softmax(self.a / temperature, dim=-1)
        if self.kind == "topk":
            full = torch.full((self.a.shape[0], self.num_classes), float("-inf"), dtype=self.a.dtype)
            return F.softmax(full.scatter(1, self.b, self.a) / temperature, dim=-1)
        return torch.zeros(self.a.shape[0], self.num_classes).scatter_add(1, self.a, self.b)


def count_calls(module: nn.Module) -> tuple[list[int], Any]:
    """A one-element counter of `module`'s forward calls, and the hook handle to remove when done.

    It is a forward pre-hook, so it counts every call however it is made (the report shows it, and tests use
    it to prove that a cache hit runs no teacher forward pass).
    """
    counter = [0]

    def hook(mod, inputs):
        counter[0] += 1

    return counter, module.register_forward_pre_hook(hook)


def cache_key(teacher: nn.Module, inputs: dict[str, Any], settings: dict[str, Any]) -> str:
    """sha256 over the teacher's weights and buffers, the named inputs and the settings that change the outputs."""
    from ..data.stream import column_digest

    h = hashlib.sha256()
    for name, tensor in sorted(teacher.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for _, x in sorted(inputs.items()):
        h.update(str(tuple(x.shape)).encode())
        h.update(column_digest(x))
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:24]


def compress(logits: torch.Tensor, cfg: CacheConfig, temperature: float, seed: int | torch.Generator) -> dict[str, torch.Tensor]:
    """The tensors stored for a mode (see the module docstring). `seed` may be a generator carried across batches."""
    import torch
    import torch.nn.functional as F

    if cfg.mode == "dense":
        return {"logits": logits.float().contiguous()}
    if cfg.mode == "topk":
        values, indices = logits.topk(min(cfg.k, logits.shape[1]), dim=1)
        return {"values": values.contiguous(), "indices": indices.contiguous()}
    probs = F.softmax(logits / temperature, dim=-1)
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    draws = torch.multinomial(probs, cfg.samples, replacement=True, generator=gen)
    weights = torch.zeros_like(probs).scatter_add_(1, draws, torch.full(draws.shape, 1.0 / cfg.samples))
    kept = min(cfg.samples, probs.shape[1])  # at most `samples` distinct classes per row
    w, idx = weights.topk(kept, dim=1)
    return {"indices": idx.contiguous(), "weights": w.contiguous()}


def file_digest(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks (constant memory whatever the shard size)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class TeacherOutputs:
    """Stored outputs for a whole split, memory-mapped from shards and read by sample index."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder, self.num_classes = folder, int(manifest["num_classes"])
        self.rows, self.shard_rows = int(manifest["rows"]), int(manifest["shard_rows"])
        self.arrays = {name: [np.load(folder / f, mmap_mode="r", allow_pickle=False) for f in files]
                       for name, files in manifest["files"].items()}

    def _gather(self, name: str, idx: np.ndarray) -> np.ndarray:
        shards = self.arrays[name]
        which, row = np.divmod(idx, self.shard_rows)
        out = np.empty((len(idx), *shards[0].shape[1:]), dtype=shards[0].dtype)
        for s in np.unique(which):
            mask = which == s
            out[mask] = shards[int(s)][row[mask]]
        return out

    def targets(self, idx: torch.Tensor) -> Targets:
        import torch

        i = np.asarray(idx, dtype=np.int64)
        get = lambda name: torch.from_numpy(self._gather(name, i))  # noqa: E731
        if "logits" in self.arrays:
            return Targets("dense", get("logits"), num_classes=self.num_classes)
        if "values" in self.arrays:
            return Targets("topk", get("values"), get("indices"), self.num_classes)
        return Targets("sampled", get("indices"), get("weights"), self.num_classes)

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for shards in self.arrays.values() for a in shards))


def open_verified(folder: Path, key: str) -> tuple[TeacherOutputs | None, str | None]:
    """The cache in `folder` if its manifest names `key` and every shard still has its recorded digest;
    otherwise (None, why) — a missing cache is (None, None)."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return None, ("no manifest" if folder.exists() else None)
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("key") != key:
            return None, "the manifest names another key"
        for name, files in manifest["files"].items():
            for f, digest in zip(files, manifest["digests"][name], strict=True):
                path = folder / f
                if Path(f).name != f or path.is_symlink() or not path.is_file():
                    return None, f"shard {f} is missing or not a regular file"
                if file_digest(path) != digest:
                    return None, f"shard {f} does not match its recorded digest"
        return TeacherOutputs(folder, manifest), None
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError, RecursionError) as exc:
        return None, f"unreadable ({type(exc).__name__})"


class _ShardWriter:
    """Appends rows of one tensor to `.npy` shards (header first, then raw rows), one batch in memory at a time."""

    def __init__(self, folder: Path, name: str, total: int) -> None:
        self.folder, self.name, self.total = folder, name, total
        self.files: list[str] = []
        self.file = None
        self.left = 0

    def _open(self, dtype: np.dtype, row_shape: tuple[int, ...]) -> None:
        start = len(self.files) * SHARD_ROWS
        rows = min(SHARD_ROWS, self.total - start)
        fname = f"{self.name}-{len(self.files):05d}.npy"
        self.files.append(fname)
        self.file = open(self.folder / fname, "wb")  # noqa: SIM115 - closed when the shard is full
        np.lib.format.write_array_header_1_0(self.file, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                         "fortran_order": False, "shape": (rows, *row_shape)})
        self.left = rows

    def write(self, a: np.ndarray) -> None:
        a = np.ascontiguousarray(a)
        while len(a):
            if self.left == 0:
                self._open(a.dtype, a.shape[1:])
            part, a = a[: self.left], a[self.left :]
            self.file.write(part.tobytes())
            self.left -= len(part)
            if self.left == 0:
                self.file.close()


def build(folder: Path, key: str, logit_batches, cfg: CacheConfig, *, rows: int, temperature: float, seed: int,
          settings: dict[str, Any]) -> TeacherOutputs:
    """Write the cache for `key` from teacher logits arriving in sample order, then rename it into place."""
    import torch

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    writers: dict[str, _ShardWriter] = {}
    gen = torch.Generator().manual_seed(seed)
    num_classes, written = 0, 0
    try:
        for logits in logit_batches:
            num_classes = int(logits.shape[1])
            for name, t in compress(logits, cfg, temperature, gen).items():
                writers.setdefault(name, _ShardWriter(tmp, name, rows)).write(t.numpy())
            written += len(logits)
        if written != rows:
            raise RuntimeError(f"the teacher pass gave {written} rows for a split of {rows}")
        files = {n: w.files for n, w in writers.items()}
        write_json(tmp / MANIFEST, {"key": key, "num_classes": num_classes, "rows": rows, "shard_rows": SHARD_ROWS,
                                    "files": files, "settings": settings,
                                    "digests": {n: [file_digest(tmp / f) for f in fs] for n, fs in files.items()}})
        shutil.rmtree(folder, ignore_errors=True)  # a damaged cache of this key (verified and refused before)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return TeacherOutputs(folder, json.loads((folder / MANIFEST).read_text()))


InputTransform = Callable[[dict[str, "torch.Tensor"], "torch.Tensor", "int | None"], dict[str, "torch.Tensor"]]


def teacher_logits(teacher: nn.Module, split: Split, task: Task, *, epoch: int | None = None,
                   input_transform: InputTransform | None = None, workers: int | None = None,
                   batch_size: int | None = None):
    """The teacher's primary output (logits) over `split` in sample order, one batch at a time (eval, no grad).

    The split is read through the loader, so a streamed split is decoded (and augmented) in its workers. Under
    torchrun each rank reads and runs only its share of every batch (rows rank, rank+world, ...) and the
    shares are gathered, so every rank gets the whole batch for 1/world of the decoding and teacher cost."""
    import torch

    from ..data.loader import Batch, batches, in_order
    from ..data.stream import rows_per_batch
    from ..train import distributed as dd

    teacher.eval()
    world, rank = dd.world_size(), dd.rank()
    batch_size = batch_size or rows_per_batch(split, 512)
    plan = [Batch(b.rows[rank::world], b.epoch, b.step) for b in in_order(len(split), batch_size, epoch)]
    totals = [len(b.rows) for b in in_order(len(split), batch_size, epoch)]
    got_iter = batches(split, [b for b in plan if len(b.rows)], workers=workers, transform=input_transform)
    for step, share in enumerate(plan):
        local = None
        if len(share.rows):
            got = next(got_iter)
            with torch.no_grad():
                local = task.primary(task.forward(teacher, task.trim(got["inputs"]))).float()
        yield local if world == 1 else dd.gather_interleaved(local, totals[step])


def load_or_build(teacher: nn.Module, split: Split, cfg: CacheConfig, folder: Path, *, task: Task,
                  temperature: float, settings: dict[str, Any], seed: int, transform=None,
                  input_transform: InputTransform | None = None, epoch: int | None = None,
                  workers: int | None = None) -> tuple[TeacherOutputs, dict]:
    """Open the verified cache for this (teacher, data, settings) or build it with one pass of the teacher.

    `transform` (e.g. logit standardization) is applied to the teacher's logits before storing, and
    `input_transform` (augmentation for `epoch`) to its inputs; name both in `settings` so they are part of the
    key. Returns the outputs and a small dict for the report (`rebuilt` says why a present cache was refused).
    """
    full = {**settings, "mode": cfg.mode, "k": cfg.k if cfg.mode == "topk" else None,
            "samples": cfg.samples if cfg.mode == "sampled" else None,
            "temperature": temperature if cfg.mode == "sampled" else None, "seed": seed if cfg.mode == "sampled" else None}
    from ..train import distributed as dd

    key = cache_key(teacher, split.inputs, full)
    path = folder / f"teacher-{key}"
    out, refused = open_verified(path, key)
    # under torchrun the teacher pass is shared by all ranks: when any rank lacks the cache, all take part
    if not dd.any_rank(out is None):
        return out, {"key": key, "hit": True, "file": str(path)}
    logits = teacher_logits(teacher, split, task, epoch=epoch, input_transform=input_transform, workers=workers)
    if out is not None:  # this rank has it; another rank did not: do its share of the pass, keep its own copy
        for _ in logits:
            pass
        return out, {"key": key, "hit": True, "file": str(path)}
    if transform is not None:
        logits = (transform(t) for t in logits)
    out = build(path, key, logits, cfg, rows=len(split), temperature=temperature, seed=seed, settings=full)
    info = {"key": key, "hit": False, "file": str(path), "bytes": out.nbytes}
    if refused:
        info["rebuilt"] = refused
    return out, info
