"""Latency-driven per-layer ratios: cut channels where the target's runtime actually gets faster.

MACs predict latency badly on real runtimes (memory-bound layers, vector widths, kernel choices), so each
prunable layer is probed instead: a copy of the model with only that layer cut by `probe_ratio` is exported
and timed on the recipe's target, interleaved with the unpruned file in one run. The latency saved per
channel removed ranks the layers; the same channel budget as uniform pruning (`ratio` of all prunable
channels) is then spread in proportion to it, capped at `max_layer_ratio`. Layers whose cut saves nothing
measurable keep their channels, and with them their accuracy.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .measure import compare_latency, macs_params
from .structured import prunable_layers, prune_structured


def spread(budget_ratio: float, channels: dict[str, int], weight: dict[str, float], cap: float) -> dict[str, float]:
    """Ratios r_i = min(k·w_i, cap) with Σ r_i·c_i = budget_ratio·Σ c_i (bisection on k).

    Falls back to the uniform ratio when no layer has a positive weight (nothing measurable to exploit).
    """
    total = sum(channels.values())
    target = budget_ratio * total
    if total == 0 or not any(w > 0 for w in weight.values()):
        return {n: budget_ratio for n in channels}
    if cap * sum(c for n, c in channels.items() if weight[n] > 0) <= target:
        return {n: (cap if weight[n] > 0 else 0.0) for n in channels}

    def removed(k: float) -> float:
        return sum(min(k * weight[n], cap) * c for n, c in channels.items())

    lo, hi = 0.0, 1.0
    while removed(hi) < target:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if removed(mid) < target else (lo, mid)
    return {n: round(min(hi * weight[n], cap), 4) for n in channels}


def latency_allocation(
    model: nn.Module,
    example: torch.Tensor,
    *,
    ratio: float,
    probe_ratio: float,
    round_to: int,
    max_layer_ratio: float,
    ignore: list[str],
    work_dir: Path,
    input_shape: tuple[int, ...],
    recipe_cfg: Any,
    samples: np.ndarray | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Per-layer ratios from measured latency; also returns the probe table for the report."""
    from ..export import export_onnx

    layers = {n: c for n, c in prunable_layers(model, example).items() if n not in ignore}
    work_dir.mkdir(parents=True, exist_ok=True)
    files = {"base": export_onnx(model, work_dir / "base.onnx", input_shape)}
    removed: dict[str, int] = {}
    macs: dict[str, int] = {"base": macs_params(model, example)[0]}
    for i, name in enumerate(layers):
        probe = copy.deepcopy(model)
        result = prune_structured(probe, example, ratio=0.0, layer_ratios={name: probe_ratio}, round_to=round_to,
                                  max_layer_ratio=1.0, ignore=ignore)
        after = result.channels.get(name, [layers[name], layers[name]])[1]
        removed[name] = layers[name] - after
        key = f"layer{i}"
        files[key] = export_onnx(probe, work_dir / f"{key}.onnx", input_shape)
        macs[key] = macs_params(probe, example)[0]
    timing = compare_latency(files, recipe_cfg, samples)
    if "skipped" in timing:
        return {n: ratio for n in layers}, {"skipped": timing["skipped"], "fallback": "uniform"}
    base = timing["base"]["p50_ms"]
    weight: dict[str, float] = {}
    table = []
    for i, name in enumerate(layers):
        p50 = timing[f"layer{i}"]["p50_ms"]
        saving = max(0.0, 1.0 - p50 / base)
        weight[name] = saving / removed[name] if removed[name] else 0.0
        table.append({"layer": name, "channels": layers[name], "probe_removed": removed[name],
                      "p50_ms": round(p50, 5), "latency_saving": round(1.0 - p50 / base, 4),
                      "macs_saving": round(1.0 - macs[f"layer{i}"] / macs["base"], 4)})
    ratios = spread(ratio, layers, weight, max_layer_ratio)
    for row in table:
        row["ratio"] = ratios[row["layer"]]
    return ratios, {"target": timing["target"], "base_p50_ms": round(base, 5), "probe_ratio": probe_ratio,
                    "layers": table}
