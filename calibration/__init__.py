"""Calibration data for static quantization: sample selection, a streaming reader, windowed range collection."""

from .ranges import calibrate_ranges, calibration_method, calibration_window, can_cache
from .reader import SELECTIONS, ArrayCalibrationReader, select_samples, strided_window

__all__ = ["SELECTIONS", "ArrayCalibrationReader", "calibrate_ranges", "calibration_method", "calibration_window",
           "can_cache", "select_samples", "strided_window"]
