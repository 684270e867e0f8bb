"""Post-training quantization of an ONNX file with ONNX Runtime's own tools: static QDQ, dynamic, and fp16.

Everything here takes a float ONNX file and writes another file; the caller judges the result by running
that file. Node names in `nodes_to_exclude` are those of the pre-processed float file (`preprocess`).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from ..io import atomic_path
from ..progress import progress_callback
from .presets import Preset

# Ops whose float kernels dominate time and that ORT quantizes with weights: the units of fallback.
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def preprocess(float_path: Path, out_path: Path) -> Path:
    """ORT's recommended pre-pass (shape inference + graph cleanup) before quantization.

    `skip_symbolic_shape` because the symbolic shape pass fails on BERT-like graphs (see DESIGN.md)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with atomic_path(out_path) as tmp:
        quant_pre_process(str(float_path), str(tmp), skip_symbolic_shape=True)
    return out_path


def input_dtypes(path: Path) -> dict[str, np.dtype]:
    """Each graph input's numpy dtype (calibration feeds int64 token ids as int64, images as float32)."""
    import onnx
    from onnx import helper

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    return {i.name: np.dtype(helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))
            for i in graph.input if i.name not in inits}


def quantizable_nodes(path: Path, op_types: tuple[str, ...] = WEIGHTED_OPS) -> list[str]:
    """Names of the nodes of `op_types` in graph order (the candidates for staying in float)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type in op_types]


def quantize_static_qdq(
    pre_path: Path, out_path: Path, calib_x: dict[str, np.ndarray] | np.ndarray, calib_idx: np.ndarray, *,
    preset: Preset, per_channel: bool, method: str = "minmax", batch_size: int = 32,
    max_batches_in_memory: int = 8, percentile: float = 99.999, entropy_bins: int = 512,
    nodes_to_exclude: list[str] | None = None, cache_path: Path | None = None,
) -> Path:
    """Static int8 in QDQ format, calibrated on the selected samples, streamed in bounded windows.

    `calib_x` holds the named inputs (the file's input names; a bare array feeds the file's only input), each
    fed in the dtype the file declares, so integer inputs pass through untouched.

    Ranges come from `calibration.calibrate_ranges` (ORT's calibrators, windowed) and are cached at
    `cache_path`: later calls with other `nodes_to_exclude` reuse them, so accuracy-aware fallback does not
    re-run calibration for every candidate. (On ORT < 1.32, quantize_static calibrates inline instead.)"""
    from edgedistill.calibration import ArrayCalibrationReader, calibration_method

    calib = calibration_method(method)
    n_batches = -(-len(calib_idx) // batch_size)
    with progress_callback(f"calibrating ({method})", n_batches) as update:
        dtypes = input_dtypes(pre_path)
        if not isinstance(calib_x, dict):
            calib_x = {next(iter(dtypes)): calib_x}
        reader = ArrayCalibrationReader(calib_x, calib_idx, batch_size=batch_size, on_batch=update, dtypes=dtypes)
        return _quantize_static(pre_path, out_path, reader, calib, preset=preset, per_channel=per_channel,
                                method=method, max_batches_in_memory=max_batches_in_memory, percentile=percentile,
                                entropy_bins=entropy_bins, nodes_to_exclude=nodes_to_exclude, cache_path=cache_path)


def _quantize_static(pre_path: Path, out_path: Path, reader, calib, *, preset: Preset, per_channel: bool, method: str,
                     max_batches_in_memory: int, percentile: float, entropy_bins: int,
                     nodes_to_exclude: list[str] | None, cache_path: Path | None) -> Path:
    import onnxruntime.quantization as q

    from edgedistill.calibration import calibrate_ranges, calibration_window, can_cache

    extra = {"ActivationSymmetric": preset.activation_symmetric, "WeightSymmetric": preset.weight_symmetric,
             **preset.extra_options}
    kwargs: dict = {}
    window = calibration_window(len(reader), max_batches_in_memory)
    if can_cache():
        cache = cache_path or out_path.with_name(out_path.name + ".calibration.json")
        if not cache.exists():
            calibrate_ranges(pre_path, reader, method, cache, window=window, percentile=percentile,
                             entropy_bins=entropy_bins)
        kwargs, reader = {"calibration_cache_path": str(cache)}, None
    else:
        extra["CalibPercentile"] = percentile
        if window < len(reader):
            extra["CalibStridedMinMax"] = window  # despite the name, ORT strides every calibrator this way
    with atomic_path(out_path) as tmp, contextlib.redirect_stdout(io.StringIO()):  # ORT prints progress
        q.quantize_static(
            str(pre_path), str(tmp), reader, quant_format=q.QuantFormat.QDQ,
            activation_type=getattr(q.QuantType, preset.activation_type),
            weight_type=getattr(q.QuantType, preset.weight_type),
            per_channel=per_channel, reduce_range=preset.reduce_range,
            calibrate_method=calib, nodes_to_exclude=list(nodes_to_exclude or []),
            extra_options=extra, **kwargs,
        )
    if cache_path is None and kwargs:
        Path(kwargs["calibration_cache_path"]).unlink(missing_ok=True)
    return out_path


def quantize_dynamic_int8(pre_path: Path, out_path: Path, *, preset: Preset, per_channel: bool,
                          nodes_to_exclude: list[str] | None = None, op_types: list[str] | None = None) -> Path:
    """Dynamic int8: weights quantized offline, activations at run time (no calibration data).

    `op_types` limits it to some operator types (ORT's default list quantizes MatMul and the embedding Gather;
    ["MatMul"] leaves a table that is already int4 alone).

    Good for MatMul-heavy models (transformers); on convolutions ORT falls back to ConvInteger, which is
    often slower than float, so measure before shipping (the stage does)."""
    import onnxruntime.quantization as q

    with atomic_path(out_path) as tmp:
        q.quantize_dynamic(str(pre_path), str(tmp), per_channel=per_channel, reduce_range=preset.reduce_range,
                           weight_type=getattr(q.QuantType, preset.weight_type),
                           nodes_to_exclude=list(nodes_to_exclude or []), op_types_to_quantize=op_types,
                           extra_options={"WeightSymmetric": preset.weight_symmetric})
    return out_path


def convert_fp16(float_path: Path, out_path: Path, nodes_to_exclude: list[str] | None = None) -> Path:
    """Float16 weights and compute, float32 inputs and outputs (a drop-in file for the app team)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(float_path))
    half = convert_float_to_float16(model, keep_io_types=True, node_block_list=list(nodes_to_exclude or []) or None)
    with atomic_path(out_path) as tmp:
        onnx.save(half, str(tmp))
    return out_path
