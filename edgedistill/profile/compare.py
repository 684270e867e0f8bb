"""Comparing two models' latency in a way that survives noisy shared machines.

Measured on this project's 2-core machines (benchmarks/bench_profiler.py, a model against an identical
copy, one core kept busy): timing A then A' gave ratios from 0.94 to 1.27. Interleaving the two (bursts
of 10, alternating, one fresh process each) and taking, burst by burst, the ratio of the fastest run in
B's burst to the fastest in A's, then the median over bursts, stayed within 0.98-1.01; the same with
burst medians ranged 0.91-1.03. Load only ever adds time, so a burst's fastest run is its cleanest view of
the model's cost, and pairing neighbouring bursts cancels slow drifts. The gate uses `ratio` (burst
minima); `ratio_median` (burst medians) is reported alongside.

Interleaving cannot cancel a bias that a worker process carries for its whole life (an identical file
timed 0.88x and 1.26x in single calls); the coordinator therefore splits the bursts over rounds of fresh
processes (probe.coordinate), and the median here runs over the bursts of all rounds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _bursts(samples_ms: Sequence[float], burst: int) -> np.ndarray:
    a = np.asarray(samples_ms, dtype=np.float64)
    n = len(a) // burst
    return a[: n * burst].reshape(n, burst) if n else a.reshape(1, -1)


def burst_medians(samples_ms: Sequence[float], burst: int) -> np.ndarray:
    return np.median(_bursts(samples_ms, burst), axis=1)


def burst_minima(samples_ms: Sequence[float], burst: int) -> np.ndarray:
    return _bursts(samples_ms, burst).min(axis=1)


def interleaved_ratio(base_ms: Sequence[float], other_ms: Sequence[float], burst: int) -> dict[str, float]:
    """`other / base` from interleaved bursts: median over bursts of the burst-minimum ratio, with its IQR."""
    a, b = burst_minima(base_ms, burst), burst_minima(other_ms, burst)
    n = min(len(a), len(b))
    r = b[:n] / a[:n]
    rm = burst_medians(other_ms, burst)[:n] / burst_medians(base_ms, burst)[:n]
    return {"ratio": float(np.median(r)), "q25": float(np.percentile(r, 25)), "q75": float(np.percentile(r, 75)),
            "ratio_median": float(np.median(rm)), "bursts": int(n)}
