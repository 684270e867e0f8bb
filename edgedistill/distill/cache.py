"""Teacher-output cache: run the teacher once over the training data, store its outputs, read them after.

Later epochs, later students, born-again generations and teacher-assistant steps then cost no teacher
forward pass. Three storage modes:

- `dense`   all logits (exact; any temperature, any loss);
- `topk`    the k largest logits per sample (the rest count as probability 0; biased but small);
- `sampled` "Sparse Logit Sampling" (Anshumann et al. 2025): draw `samples` classes per example from the
  teacher's distribution at the stage's temperature and keep the counts; count/samples is an unbiased
  estimate of the teacher's probabilities, so the forward-KL gradient stays unbiased.

The key hashes the teacher's weights, the data, the augmentation settings (and epoch, when augmentation is
random) and the mode, so a changed teacher or data can never be served stale outputs. Files are
safetensors (no pickle), written atomically, and only by the main process.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from ..config import Strict
from ..io import atomic_path, write_json

if TYPE_CHECKING:  # CacheConfig is part of the recipe schema; validating a recipe must not import torch
    import torch
    from torch import nn

    from ..tasks import Task


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


def cache_key(teacher: nn.Module, inputs: dict[str, np.ndarray], settings: dict[str, Any]) -> str:
    """sha256 over the teacher's weights and buffers, the named inputs and the settings that change the outputs."""
    h = hashlib.sha256()
    for name, tensor in sorted(teacher.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for _, x in sorted(inputs.items()):
        h.update(str(x.shape).encode())
        h.update(np.ascontiguousarray(x).tobytes())
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:24]


def run_teacher(teacher: nn.Module, inputs: dict[str, torch.Tensor], task: Task, batch_size: int = 512) -> torch.Tensor:
    """The teacher's primary output (logits) over all `inputs`, in eval mode, without gradients."""
    import torch

    teacher.eval()
    n = len(next(iter(inputs.values())))
    with torch.no_grad():
        return torch.cat([task.primary(task.forward(teacher, task.trim({k: v[i : i + batch_size] for k, v in inputs.items()})))
                          for i in range(0, n, batch_size)])


def compress(logits: torch.Tensor, cfg: CacheConfig, temperature: float, seed: int) -> dict[str, torch.Tensor]:
    """The tensors stored for a mode (see the module docstring)."""
    import torch
    import torch.nn.functional as F

    if cfg.mode == "dense":
        return {"logits": logits.float().contiguous()}
    if cfg.mode == "topk":
        values, indices = logits.topk(min(cfg.k, logits.shape[1]), dim=1)
        return {"values": values.contiguous(), "indices": indices.contiguous()}
    probs = F.softmax(logits / temperature, dim=-1)
    draws = torch.multinomial(probs, cfg.samples, replacement=True, generator=torch.Generator().manual_seed(seed))
    weights = torch.zeros_like(probs).scatter_add_(1, draws, torch.full(draws.shape, 1.0 / cfg.samples))
    kept = min(cfg.samples, probs.shape[1])  # at most `samples` distinct classes per row
    w, idx = weights.topk(kept, dim=1)
    return {"indices": idx.contiguous(), "weights": w.contiguous()}


class TeacherOutputs:
    """Stored outputs for the whole training split, indexed by sample position."""

    def __init__(self, tensors: dict[str, torch.Tensor], num_classes: int) -> None:
        self.tensors, self.num_classes = tensors, num_classes

    def targets(self, idx: torch.Tensor) -> Targets:
        t = self.tensors
        if "logits" in t:
            return Targets("dense", t["logits"][idx], num_classes=self.num_classes)
        if "values" in t:
            return Targets("topk", t["values"][idx], t["indices"][idx], self.num_classes)
        return Targets("sampled", t["indices"][idx], t["weights"][idx], self.num_classes)

    @property
    def nbytes(self) -> int:
        return int(sum(v.numel() * v.element_size() for v in self.tensors.values()))


def load_or_build(teacher: nn.Module, inputs: dict[str, np.ndarray], cfg: CacheConfig, folder: Path, *, task: Task,
                  temperature: float, settings: dict[str, Any], seed: int, transform=None,
                  write: bool = True) -> tuple[TeacherOutputs, dict]:
    """Read the cache file for this (teacher, data, settings) or build it with one pass of the teacher.

    `transform` (e.g. logit standardization) is applied to the teacher's logits before storing; name it in
    `settings` so it is part of the key. Returns the outputs and a small dict for the report.
    """
    from safetensors.torch import load_file, save_file

    full = {**settings, "mode": cfg.mode, "k": cfg.k if cfg.mode == "topk" else None,
            "samples": cfg.samples if cfg.mode == "sampled" else None,
            "temperature": temperature if cfg.mode == "sampled" else None, "seed": seed if cfg.mode == "sampled" else None}
    key = cache_key(teacher, inputs, full)
    path = folder / f"teacher-{key}.safetensors"
    if path.exists():
        try:
            tensors = load_file(str(path))
            num_classes = int(json.loads((folder / f"teacher-{key}.json").read_text())["num_classes"])
            return TeacherOutputs(tensors, num_classes), {"key": key, "hit": True, "file": str(path)}
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            pass  # a damaged file is rebuilt below
    logits = run_teacher(teacher, task.to_torch(inputs), task)
    if transform is not None:
        logits = transform(logits)
    tensors = compress(logits, cfg, temperature, seed)
    if write:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp))
        write_json(folder / f"teacher-{key}.json", {"num_classes": logits.shape[1], "settings": full})
    out = TeacherOutputs(tensors, logits.shape[1])
    return out, {"key": key, "hit": False, "file": str(path), "bytes": out.nbytes}
