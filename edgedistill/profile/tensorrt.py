"""Native TensorRT engines, where the tensorrt package and an NVIDIA GPU exist.

The builder itself lives in probe.py (so a Jetson can build its own engine over SSH: engines are specific
to the GPU and TensorRT version that built them). This module is the in-process entry point for writing an
`.engine` file next to the bundle, with a clear message where TensorRT cannot run.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..target import Target, tensorrt_status

__all__ = ["build_engine", "tensorrt_status"]


def build_engine(onnx_path: str | Path, out_path: str | Path, target: Target, *, batch: int | None = None) -> Path:
    """Build and save an engine for `target` (fp16, or int8 from the QDQ model's explicit scales)."""
    ok, why = tensorrt_status()
    if not ok:
        raise UserError(f"cannot build a TensorRT engine here: {why}", where=f"target {target.name}",
                        fix="build on the machine with the GPU (or profile it there with ssh_host)")
    from ..io import atomic_path
    from .probe import build_trt_engine

    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        build_trt_engine(str(onnx_path), target.precision, batch or target.batch_sizes[0], target.input_shapes,
                         save_to=str(tmp))
    return out_path
