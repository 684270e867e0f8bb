"""One metric code path for torch models and exported files.

Both are turned into a `predict(named inputs) -> named outputs` function and scored by the task's `score`,
so the deployed number can only differ from the torch number because the file computes something different.
"""

from .metrics import evaluate_onnx, evaluate_torch, onnx_predictor, onnx_session, session_feed, torch_predictor

__all__ = ["evaluate_onnx", "evaluate_torch", "onnx_predictor", "onnx_session", "session_feed", "torch_predictor"]
