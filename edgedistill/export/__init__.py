"""Exporting torch modules to ONNX, and checking that the file computes what the module computes."""

from .onnx import export_onnx, parity

__all__ = ["export_onnx", "parity"]
