"""Predictors for torch modules and ONNX files, both `predict(named inputs) -> named outputs`.

The task computes the metric from named outputs (`Task.score`), so a torch model and its exported file
are scored by the same function and can only differ because the file computes something different.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..tasks import Batch, Predict, Task

if TYPE_CHECKING:
    from ..data import Split

ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
              "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


def torch_predictor(model, task: Task) -> Predict:
    """Named float outputs of a torch module (eval mode, no gradients), through the task's forward."""
    import torch

    def predict(batch: Batch) -> dict[str, np.ndarray]:
        model.eval()
        with torch.inference_mode():
            out = task.forward(model, task.to_torch(batch))
        return {k: v.float().numpy() for k, v in out.items()}

    return predict


def session_feed(session, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map named arrays onto an ONNX Runtime session's inputs, in the dtypes the file declares.

    Inputs are matched by name; a file whose names differ (someone else's export) is fed by position."""
    names = [i.name for i in session.get_inputs()]
    by_name = all(n in batch for n in names)
    values = [batch[n] for n in names] if by_name else list(batch.values())[: len(names)]
    return {i.name: np.ascontiguousarray(v, dtype=ORT_DTYPES.get(i.type, v.dtype))
            for i, v in zip(session.get_inputs(), values, strict=False)}


def onnx_session(path: str | Path, providers: list[str] | None = None, threads: int = 0):
    import onnxruntime as ort

    from ..threads import current

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    threads = threads or current()  # the run's choice: ORT's default (every core, spinning) stalls a shared box
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers or ["CPUExecutionProvider"])


def onnx_predictor(path: str | Path, providers: list[str] | None = None, threads: int = 0,
                   output_names: tuple[str, ...] | None = None) -> Predict:
    """Predict with ONNX Runtime on the exported file itself; outputs keyed by the file's output names
    (or by `output_names`, in order, for a file whose names differ from the task's)."""
    session = onnx_session(path, providers, threads)
    file_names = [o.name for o in session.get_outputs()]
    keys = file_names
    if output_names and not set(output_names) <= set(file_names):
        keys = [*output_names, *file_names[len(output_names):]][: len(file_names)]

    def predict(batch: Batch) -> dict[str, np.ndarray]:
        got = session.run(None, session_feed(session, batch))
        return {k: np.asarray(v, dtype=np.float32) if np.issubdtype(np.asarray(v).dtype, np.floating) else np.asarray(v)
                for k, v in zip(keys, got, strict=True)}

    return predict


def evaluate_torch(model, data: Split, task: Task) -> float:
    return task.score(torch_predictor(model, task), data)


def evaluate_onnx(path: str | Path, data: Split, task: Task) -> float:
    return task.score(onnx_predictor(path, output_names=task.output_names), data)
