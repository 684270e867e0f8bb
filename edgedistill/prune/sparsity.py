"""Unstructured and N:M sparsity: magnitude masks, the cubic schedule of gradual pruning, 2:4 patterns.

These zero weights but keep every tensor's shape, so the exported file has the same size and, on runtimes
without sparse kernels (ONNX Runtime on CPU among them), the same latency. N:M patterns (2:4) are what
NVIDIA sparse tensor cores (Ampere and later, through TensorRT) can skip. The prune stage measures latency
either way and says so in the report.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import UserError

Masks = dict[str, torch.Tensor]  # parameter name -> bool mask (True = keep)


def cubic_sparsity(step: int, final: float, *, initial: float = 0.0, begin: int = 0, end: int, every: int = 1) -> float:
    """Zhu & Gupta (2017): s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³ for t in {t0, t0+Δt, …, t0+nΔt}.

    Sparsity rises fast while there are many redundant weights and slowly near the target. Between pruning
    steps (every Δt = `every` steps) it holds its last value; before `begin` it is `initial`, after `end` final.
    """
    if end <= begin:
        return final if step >= begin else initial
    t = min(begin + ((max(step, begin) - begin) // max(every, 1)) * max(every, 1), end)
    if t == begin:
        return initial
    return final + (initial - final) * (1.0 - (t - begin) / (end - begin)) ** 3


def prunable_weights(model: nn.Module, skip: list[nn.Module] | None = None) -> dict[str, nn.Parameter]:
    """Conv and Linear weights (not biases, norms or embeddings), minus `skip` (e.g. the output layer)."""
    skip_ids = {id(m) for m in skip or []}
    return {f"{name}.weight": m.weight for name, m in model.named_modules()
            if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d) and id(m) not in skip_ids}


def magnitude_masks(weights: dict[str, torch.Tensor], sparsity: float, scope: str = "layer") -> Masks:
    """Keep the largest |w|: per layer (each at `sparsity`) or globally (one threshold over all layers)."""
    if not 0.0 <= sparsity < 1.0:
        raise UserError(f"sparsity must be in [0, 1), got {sparsity}", where="prune.sparsity", fix="e.g. 0.8")
    if scope == "global":
        flat = torch.cat([w.detach().abs().flatten() for w in weights.values()])
        k = int(sparsity * flat.numel())
        thresh = torch.kthvalue(flat, k).values if k > 0 else flat.min() - 1
        return {n: w.detach().abs() > thresh for n, w in weights.items()}
    masks = {}
    for n, w in weights.items():
        k = int(sparsity * w.numel())
        mask = torch.ones_like(w, dtype=torch.bool)
        if k > 0:
            drop = torch.topk(w.detach().abs().flatten(), k, largest=False).indices
            mask.view(-1)[drop] = False
        masks[n] = mask
    return masks


def _grouped(w: torch.Tensor) -> torch.Tensor:
    """Weights laid out with the input (reduction) dimension last, as sparse tensor cores group them."""
    return w.permute(0, *range(2, w.dim()), 1) if w.dim() > 2 else w


def nm_mask(w: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """Keep the `n` largest |w| in every run of `m` consecutive input-channel weights (True = keep)."""
    g = _grouped(w.detach().abs())
    if g.shape[-1] % m:
        raise ValueError(f"input dimension {g.shape[-1]} is not a multiple of {m}")
    blocks = g.reshape(-1, m)
    keep = torch.zeros_like(blocks, dtype=torch.bool)
    keep.scatter_(1, torch.topk(blocks, n, dim=1).indices, True)
    keep = keep.reshape(g.shape)
    return keep.permute(0, w.dim() - 1, *range(1, w.dim() - 1)) if w.dim() > 2 else keep


def nm_masks(weights: dict[str, torch.Tensor], n: int, m: int) -> tuple[Masks, list[str]]:
    """N:M masks for every layer whose input dimension divides by M; the others are returned as skipped."""
    masks, skipped = {}, []
    for name, w in weights.items():
        if _grouped(w).shape[-1] % m:
            skipped.append(name)
        else:
            masks[name] = nm_mask(w, n, m)
    return masks, skipped


@torch.no_grad()
def apply_masks(weights: dict[str, nn.Parameter], masks: Masks) -> None:
    for name, mask in masks.items():
        weights[name].mul_(mask)


@contextmanager
def masked_training(model: nn.Module, weights: dict[str, nn.Parameter], masks: Masks) -> Iterator[None]:
    """While fine-tuning, pruned weights stay zero: re-zeroed before every forward pass (training and
    validation alike) and given no gradient. Masks are looked up at call time, so a schedule may change them."""

    def zero(module, _inputs, name):
        if name in masks:
            with torch.no_grad():
                module.weight.mul_(masks[name])

    handles = []
    for name, p in weights.items():
        module = model.get_submodule(name.removesuffix(".weight"))
        handles.append(module.register_forward_pre_hook(lambda mod, inp, name=name: zero(mod, inp, name)))
        handles.append(p.register_hook(lambda g, name=name: g * masks[name] if name in masks else g))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def sparsity_of(weights: dict[str, torch.Tensor]) -> float:
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    total = sum(w.numel() for w in weights.values())
    return zeros / max(total, 1)
