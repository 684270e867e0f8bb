"""Post-training quantization of an ONNX file with ONNX Runtime's quantization tools."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path


def quantize_static_qdq(
    float_path: Path, out_path: Path, calib_x: np.ndarray, calib_idx: np.ndarray, *,
    preset: dict[str, Any], per_channel: bool, method: str = "minmax", batch_size: int = 32,
) -> Path:
    """Static int8 in QDQ format, calibrated on the selected samples (streamed in batches)."""
    import onnxruntime.quantization as q
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgedistill.calibration import ArrayCalibrationReader

    pre = out_path.with_name(out_path.stem + ".pre.onnx")
    quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
    import onnx

    input_name = onnx.load(str(pre), load_external_data=False).graph.input[0].name
    reader = ArrayCalibrationReader(calib_x, calib_idx, input_name, batch_size)
    methods = {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
               "percentile": q.CalibrationMethod.Percentile}
    with atomic_path(out_path) as tmp:
        q.quantize_static(
            str(pre), str(tmp), reader, quant_format=q.QuantFormat.QDQ,
            activation_type=getattr(q.QuantType, preset["activation_type"]),
            weight_type=getattr(q.QuantType, preset["weight_type"]),
            per_channel=per_channel, reduce_range=preset.get("reduce_range", False),
            calibrate_method=methods[method],
        )
    pre.unlink(missing_ok=True)
    return out_path
