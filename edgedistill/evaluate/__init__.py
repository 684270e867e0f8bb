"""One metric code path for torch models and exported files.

Both are turned into a `predict(x) -> outputs` function and scored by the same `score` function, so the
deployed number can only differ from the torch number because the file computes something different.
"""

from .metrics import METRICS, evaluate_onnx, evaluate_torch, onnx_predictor, score, torch_predictor

__all__ = ["METRICS", "evaluate_onnx", "evaluate_torch", "onnx_predictor", "score", "torch_predictor"]
