"""Latency of ONNX files in ONNX Runtime.

Milliseconds from separate runs on a shared machine are not comparable, so models that will be compared
are timed in one process with interleaved bursts: a burst of A, a burst of B, a burst of A, ... Each model
still gets its own warm-up and its own full set of samples for the percentiles.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..progress import track
from ..target import Target

ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
               "tensor(int32)": np.int32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(bool)": np.bool_}


def latency_stats(samples_ms: Sequence[float]) -> dict[str, float]:
    """Percentiles, mean, std, coefficient of variation and throughput (runs per second) of a sample."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no latency samples")
    mean = float(a.mean())
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": mean,
        "std_ms": float(a.std()),
        "min_ms": float(a.min()),
        "cv": float(a.std() / mean) if mean > 0 else 0.0,
    }


def make_session(path: str | Path, target: Target, threads: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or target.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    providers = [(p, target.provider_options.get(p, {})) for p in target.providers]
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers)


def synthetic_feed(session, batch: int, shapes: Mapping[str, Sequence[int]] | None = None, seed: int = 0) -> dict:
    """Random inputs of the session's declared shapes, symbolic dimensions set to `batch` (first) or `shapes`."""
    rng = np.random.default_rng(seed)
    feed = {}
    for inp in session.get_inputs():
        if shapes and inp.name in shapes:
            shape = list(shapes[inp.name])
        else:
            shape = [d if isinstance(d, int) else batch for d in inp.shape]
            if shape:
                shape[0] = batch
        dtype = ONNX_DTYPES.get(inp.type, np.float32)
        if np.issubdtype(dtype, np.integer):
            feed[inp.name] = rng.integers(0, 2, size=shape).astype(dtype)
        else:
            feed[inp.name] = rng.standard_normal(shape).astype(dtype)
    return feed


def profile_models(
    paths: Mapping[str, str | Path],
    target: Target,
    *,
    batch: int = 1,
    threads: int | None = None,
    runs: int = 100,
    warmup: int = 10,
    burst: int = 10,
    feed: Mapping[str, np.ndarray] | None = None,
) -> dict[str, dict[str, Any]]:
    """Time each model `runs` times (after `warmup`), interleaving bursts of `burst` runs across the models."""
    sessions = {name: make_session(p, target, threads) for name, p in paths.items()}
    feeds = {name: dict(feed) if feed else synthetic_feed(s, batch) for name, s in sessions.items()}
    for name, s in sessions.items():
        for _ in range(warmup):
            s.run(None, feeds[name])
    samples: dict[str, list[float]] = {name: [] for name in sessions}
    n_bursts = -(-runs // burst)
    for _ in track(range(n_bursts), f"profiling on {target.name}", total=n_bursts):
        for name, s in sessions.items():
            for _ in range(burst):
                t0 = time.perf_counter()
                s.run(None, feeds[name])
                samples[name].append((time.perf_counter() - t0) * 1e3)
    return {
        name: {**latency_stats(v[:runs]), "batch": batch, "threads": threads or target.threads, "runs": len(v[:runs])}
        for name, v in samples.items()
    }
