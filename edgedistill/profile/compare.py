"""Comparing two models' latency in a way that survives noisy shared machines.

Measured here: 300 runs of A then 300 of B gave B/A between 0.81 and 1.47 with the other core busy, while
the median of burst-wise ratios from interleaved bursts stayed within 0.97–1.02. So a comparison is the
median over bursts of (median of B's burst / median of A's burst), bursts taken alternately.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def burst_medians(samples_ms: Sequence[float], burst: int) -> np.ndarray:
    a = np.asarray(samples_ms, dtype=np.float64)
    n = len(a) // burst
    return np.median(a[: n * burst].reshape(n, burst), axis=1) if n else np.asarray([np.median(a)])


def interleaved_ratio(base_ms: Sequence[float], other_ms: Sequence[float], burst: int) -> dict[str, float]:
    """`other / base` as the median of burst-wise ratios, with its spread (IQR) and the burst count."""
    a, b = burst_medians(base_ms, burst), burst_medians(other_ms, burst)
    n = min(len(a), len(b))
    r = b[:n] / a[:n]
    return {"ratio": float(np.median(r)), "q25": float(np.percentile(r, 25)), "q75": float(np.percentile(r, 75)),
            "bursts": int(n)}
