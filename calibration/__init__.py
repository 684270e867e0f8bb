"""Calibration data for static quantization: sample selection and a streaming reader."""

from .reader import ArrayCalibrationReader, select_samples

__all__ = ["ArrayCalibrationReader", "select_samples"]
