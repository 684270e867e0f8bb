"""What pruning bought, measured: MACs and parameters of the module, latency of the exported files.

Latencies are only comparable when measured side by side, so the unpruned and the pruned files are timed in
one `profile_models` call (fresh worker per model, interleaved bursts) on the recipe's first target this
machine can run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._tp import torch_pruning

LATENCY_KEYS = ("p50_ms", "p90_ms", "mean_ms", "std_ms", "cv", "runs", "batch", "threads")


def macs_params(model: nn.Module, example: torch.Tensor | dict[str, torch.Tensor]) -> tuple[int, int]:
    """Multiply-accumulates of one forward pass (Torch-Pruning's counter) and the parameter count."""
    tp = torch_pruning()
    macs, params = tp.utils.count_ops_and_params(model, example)
    return int(macs), int(params)


def compare_latency(files: Mapping[str, str | Path], recipe_cfg: Any, samples: Mapping[str, np.ndarray] | None = None
                    ) -> dict[str, Any]:
    """p50 etc. of each file on the first usable target, timed interleaved in one run on real `samples`
    (a split's named inputs).

    `recipe_cfg` is the validated recipe (`Recipe.config`): its `targets` and `profile` settings are used.
    Returns {"target": name, "<model>": {p50_ms, ...}} or {"skipped": reason} when no target is usable.
    """
    from ..profile import profile_on_first_target

    target, result, reasons = profile_on_first_target(files, recipe_cfg.targets, recipe_cfg.profile, samples)
    if target is None:
        return {"skipped": "; ".join(reasons)}
    out: dict[str, Any] = {"target": target.name}
    for name, stats in result.items():
        out[name] = {k: stats[k] for k in LATENCY_KEYS if k in stats}
    return out
