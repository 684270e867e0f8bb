"""Activation ranges computed once with ONNX Runtime's own calibrators, window by window, then cached.

Why not let `quantize_static` calibrate: it feeds the whole reader to one `collect_data` call (histogram
calibrators then hold every activation of every batch), and it does not pass the histogram size through,
so its entropy calibration runs with 128 bins for 128 quantized levels — no clipping at all, the same
ranges as min/max. Here the calibrator gets `num_bins` (entropy needs far more bins than levels to find a
clipping threshold), is fed one window of batches at a time (it merges ranges / histograms across calls),
and the ranges go to a JSON cache that `quantize_static(calibration_cache_path=...)` reads. The cache is
then reused by every fallback candidate, so calibration runs once per stage.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from edgedistill.errors import UserError

from .reader import ArrayCalibrationReader, strided_window

if TYPE_CHECKING:
    from onnxruntime.quantization import CalibrationMethod

METHODS = ("minmax", "entropy", "percentile")


def calibration_method(name: str) -> CalibrationMethod:
    """ONNX Runtime's `CalibrationMethod` for a recipe's `calibration.method` name."""
    from onnxruntime.quantization import CalibrationMethod

    table = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}
    if name not in table:
        raise UserError(f'unknown calibration method "{name}"', where="calibration.method",
                        fix=f"use one of: {', '.join(METHODS)}")
    return table[name]


def calibrate_ranges(model_path: Path, reader: ArrayCalibrationReader, method: str, cache_path: Path, *,
                     window: int, percentile: float = 99.999, entropy_bins: int = 512) -> Path:
    """Collect activation ranges of `model_path` over `reader` in windows of `window` batches; write the cache."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    calibrate_method = calibration_method(method)
    extra = {"percentile": percentile} if method == "percentile" else {}
    if method == "entropy":
        extra.update(num_bins=entropy_bins, num_quantized_bins=128)
    # ORT's histogram calibrators print progress on stdout; keep stdout for the CLI's own output
    with tempfile.TemporaryDirectory(prefix="edgedistill-calib-") as tmp, contextlib.redirect_stdout(io.StringIO()):
        calibrator = create_calibrator(Path(model_path), None, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=calibrate_method, extra_options=extra)
        for start in range(0, len(reader), window):
            reader.set_range(start, start + window)
            calibrator.collect_data(reader)
        ranges = calibrator.compute_data()
        del calibrator
    save_tensors_data(ranges, cache_path)
    return cache_path


def can_cache() -> bool:
    """ONNX Runtime ≥ 1.32 takes precomputed ranges (`calibration_cache_path`); older versions calibrate inline."""
    import inspect

    from onnxruntime.quantization import quantize_static

    return "calibration_cache_path" in inspect.signature(quantize_static).parameters


def calibration_window(n_batches: int, max_batches: int) -> int:
    """Batches per calibration window, as static quantization will actually use it.

    With a range cache (`can_cache`), `calibrate_ranges` takes windows of `max_batches` (the last one may be
    shorter); otherwise ORT strides inline and needs a window that divides `n_batches` (`strided_window`)."""
    if can_cache():
        return min(max_batches, n_batches)
    return strided_window(n_batches, max_batches) or n_batches
