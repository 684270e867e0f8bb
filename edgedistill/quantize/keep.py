"""Quantization has to pay: time the quantized file against the float file on the target, then let `keep` decide.

int8 is often *not* faster (tiny models, where Q/DQ overhead beats the cheaper arithmetic; dynamic
quantization of convolutions; badly placed Q/DQ). So the two files are timed side by side in one run with
interleaved bursts (`edgedistill.profile.profile_models`), compared as the median of burst-wise ratios,
and the recipe's policy picks what ships. The decision and its numbers always go into the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..io import file_size_mb

if TYPE_CHECKING:

    pass

KeepPolicy = Literal["quantized", "fastest", "smallest"]


def ratio_vs(stats: dict[str, dict[str, Any]], base: str, other: str) -> dict[str, float]:
    """`other / base` latency as the median of burst-wise ratios (robust to load on shared machines)."""
    from ..profile import interleaved_ratio

    return interleaved_ratio(stats[base]["samples_ms"], stats[other]["samples_ms"], int(stats[base]["burst"]))


def decide(policy: KeepPolicy, float_path: Path, quant_path: Path, ratio: dict[str, float] | None,
           precision: str, unmeasured: str = "no usable target on this machine", *,
           drop: float | None = None, max_drop: float | None = None) -> dict[str, Any]:
    """Which file ships under `policy`, and a sentence that says why in plain words.

    `ratio` is quantized/float latency (None when it was not timed: `fastest` then keeps the quantized file and
    says that speed was not measured, and why: `unmeasured`, e.g. measure_latency was switched off).
    `drop` is what quantization cost on the validation split (positive = worse); with `max_drop` set, a
    quantized file that lost more than that never ships, whatever the policy: speed or size bought with
    accuracy the recipe did not allow is not a win."""
    sizes = {"float": file_size_mb(float_path), precision: file_size_mb(quant_path)}
    faster = None if ratio is None else ratio["ratio"] < 1.0
    if ratio is None:
        speed = f"latency was not measured ({unmeasured})"
    elif faster:
        speed = f"{precision} is faster than float: {ratio['ratio']:.2f}× the float latency"
    else:
        speed = f"{precision} is NOT faster than float on this target: {ratio['ratio']:.2f}× the float latency"
    if max_drop is not None and drop is not None and drop > max_drop:
        ship, why = "float", (f"keep: the float file ships because {precision} lost {drop:.4g} on validation "
                              f"(keep_max_drop {max_drop:g}); {speed}")
    elif policy == "fastest" and faster is False:
        ship, why = "float", f"keep: fastest ships the float file because {speed}"
    elif policy == "smallest" and sizes["float"] < sizes[precision]:
        ship, why = "float", f"keep: smallest ships the float file ({sizes['float']:.3f} MB < {sizes[precision]:.3f} MB)"
    else:
        ship = precision
        why = (f"keep: {policy} ships the {precision} file ({sizes[precision]:.3f} MB vs {sizes['float']:.3f} MB "
               f"float); {speed}")
    return {"policy": policy, "shipped": ship, "quantized_faster": faster, "reason": why,
            "size_mb": {k: round(v, 6) for k, v in sizes.items()},
            "latency_ratio": ratio, "val_drop": drop, "max_drop": max_drop}
