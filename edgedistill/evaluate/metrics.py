"""Metrics, and predictors for torch modules and ONNX files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..data import ArrayData

Predict = Callable[[np.ndarray], np.ndarray]


def accuracy(outputs: np.ndarray, y: np.ndarray) -> float:
    return float((outputs.argmax(axis=1) == y).mean()) if len(y) else float("nan")


# task → (metric name, higher_is_better, function)
METRICS: dict[str, tuple[str, bool, Callable[[np.ndarray, np.ndarray], float]]] = {
    "classification": ("accuracy", True, accuracy),
}


def score(predict: Predict, data: ArrayData, task: str = "classification", batch_size: int = 256) -> float:
    """Run `predict` over `data` in batches and compute the task's metric."""
    outs = [predict(data.x[i : i + batch_size]) for i in range(0, len(data), batch_size)]
    return METRICS[task][2](np.concatenate(outs), data.y)


def torch_predictor(model) -> Predict:
    import torch

    def predict(x: np.ndarray) -> np.ndarray:
        model.eval()
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(x))).float().numpy()

    return predict


def onnx_predictor(path: str | Path, providers: list[str] | None = None, threads: int = 0) -> Predict:
    """Predict with ONNX Runtime on the exported file itself."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), sess_options=opts, providers=providers or ["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    dtype = np.float16 if session.get_inputs()[0].type == "tensor(float16)" else np.float32

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: x.astype(dtype)})[0], dtype=np.float32)

    return predict


def evaluate_torch(model, data: ArrayData, task: str = "classification") -> float:
    return score(torch_predictor(model), data, task)


def evaluate_onnx(path: str | Path, data: ArrayData, task: str = "classification") -> float:
    return score(onnx_predictor(path), data, task)
