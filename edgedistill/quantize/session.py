"""ONNX Runtime session options chosen by measurement on the target, and carried to the app with the file.

Graph fusions change latency as much as quantization does, and not always for the better: on all-MiniLM's
dynamic-int8 file, turning off ORT's SkipLayerNormFusion made it about 17% faster on this project's x86
machines, while offline transformer fusion gave nothing in fp32 and slowed int8 (docs/text.md). So each
candidate set of options is timed on the same file, interleaved, and the fastest wins only when it beats
ORT's defaults by more than `margin`; the winner is written into the bundle manifest and snippet, because
an app that opens the file with default options would not get the measured speed.

Options are the two things an app in any language can set: `graph_optimization_level` and session config
entries (`SessionOptions.add_session_config_entry` / `AddSessionConfigEntry`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from ..target import Target

DISABLE_KEY = "optimization.disable_specified_optimizers"
DENORMAL_KEY = "session.set_denormal_as_zero"  # padded batches drive masked softmax into slow denormal floats
CANDIDATES: dict[str, dict[str, Any]] = {
    "default": {},
    "no_skip_layernorm_fusion": {"session_config": {DISABLE_KEY: "SkipLayerNormFusion"}},
    "flush_denormals": {"session_config": {DENORMAL_KEY: "1"}},
    "no_skip_layernorm_fusion+flush_denormals": {"session_config": {DISABLE_KEY: "SkipLayerNormFusion",
                                                                    DENORMAL_KEY: "1"}},
}


def choose_session_options(path: Path, target: Target, feed: Mapping[str, np.ndarray] | None = None, *,
                           candidates: Mapping[str, Mapping[str, Any]] | None = None, runs: int = 100,
                           threads: int | None = None, margin: float = 0.03) -> dict[str, Any]:
    """Time `path` under each candidate (interleaved, one worker per candidate) and pick the options to ship.

    Returns {"chosen", "options", "ratios" (latency / default's), "p50_ms"}. The default options stay unless
    another candidate's ratio is below 1 − margin: noise must not flip the choice."""
    from ..profile import interleaved_ratio, profile_models

    cands = dict(candidates or CANDIDATES)
    cands.setdefault("default", {})
    stats = profile_models({name: path for name in cands}, target, batch=1, threads=threads, runs=runs, warmup=10,
                           burst=10, feed=feed, op_profile_runs=0, model_options={n: dict(o) for n, o in cands.items()})
    base = stats["default"]
    ratios = {n: round(interleaved_ratio(base["samples_ms"], s["samples_ms"], int(base["burst"]))["ratio"], 4)
              for n, s in stats.items()}
    best = min(ratios, key=ratios.get)
    chosen = best if ratios[best] < 1.0 - margin else "default"
    return {"chosen": chosen, "options": dict(cands[chosen]), "ratios": ratios,
            "p50_ms": {n: round(s["p50_ms"], 4) for n, s in stats.items()}, "target": target.name}


SESSION_OPTION_KEYS = ("graph_optimization_level", "session_config")
LEVELS = ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_LAYOUT", "ORT_ENABLE_ALL")


def only_session_options(options: Any) -> dict[str, Any]:
    """The part of `options` that is ONNX Runtime session options, well-formed; everything else is dropped.

    Options travel in files (a bundle's manifest): what the profiler times — batch, shapes, providers,
    threads, runs — must never be set from there."""
    if not isinstance(options, Mapping):
        return {}
    out: dict[str, Any] = {}
    level = options.get("graph_optimization_level")
    if isinstance(level, str) and level in LEVELS:
        out["graph_optimization_level"] = level
    config = options.get("session_config")
    if isinstance(config, Mapping):
        clean = {k: v for k, v in config.items() if isinstance(k, str) and isinstance(v, str)}
        if clean:
            out["session_config"] = clean
    return out


def session_options(options: Mapping[str, Any] | None, threads: int | None = None):
    """An `onnxruntime.SessionOptions` with the shipped options applied (what the bundle snippet does)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
    options = options or {}
    if options.get("graph_optimization_level"):
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, options["graph_optimization_level"])
    for key, value in (options.get("session_config") or {}).items():
        opts.add_session_config_entry(str(key), str(value))
    return opts
