"""Calibration data for static quantization: sample selection and a streaming reader."""

from .reader import SELECTIONS, ArrayCalibrationReader, select_samples, strided_window

__all__ = ["SELECTIONS", "ArrayCalibrationReader", "select_samples", "strided_window"]
