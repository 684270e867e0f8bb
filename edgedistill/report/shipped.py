"""What a bundle really ships, read from the files and the run's own measurements, never from the request.

The target asks for a precision (int8 for x86_vnni) but the quantize stage may measure int8 slower and ship
float (`keep: fastest`); the manifest and card must say what the file *is*, per file, and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
             "MatMulInteger", "ConvInteger", "QLinearAdd", "QLinearMul", "QGemm"}
LOW_BIT_OPS = {"MatMulNBits": "int4 weights", "GatherBlockQuantized": "int4 weights"}


def onnx_precision(onnx_file: Path) -> str:
    """"int8" when the graph computes with quantized tensors, "int4 weights" for block-quantized weights,
    else the element type most of the weights are stored in ("float32", "float16")."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    model = onnx.load(str(onnx_file), load_external_data=False)
    ops = {n.op_type for n in model.graph.node}
    for op, word in LOW_BIT_OPS.items():
        if op in ops:
            return word
    if ops & QUANT_OPS:
        return "int8"
    counts: dict[str, int] = {}
    for t in model.graph.initializer:
        n = 1
        for d in t.dims:
            n *= d
        name = str(tensor_dtype_to_np_dtype(t.data_type))
        counts[name] = counts.get(name, 0) + n
    floats = {k: v for k, v in counts.items() if k.startswith("float")}
    return max(floats, key=floats.get) if floats else "float32"


def quantization_decision(report: Mapping[str, Any]) -> dict[str, Any] | None:
    """The last quantize stage's keep decision (what was asked, what shipped, why), as the report records it."""
    for stage in reversed(report.get("stages") or []):
        details = ((stage or {}).get("details") or {}) if isinstance(stage, Mapping) else {}
        keep, timed = details.get("keep"), details.get("latency") or {}
        if isinstance(keep, Mapping) and keep.get("shipped"):
            return {"policy": keep.get("policy"), "shipped": keep.get("shipped"),
                    "quantized_faster": keep.get("quantized_faster"), "reason": keep.get("reason"),
                    # the float-vs-quantized timing ran on this target only (the first usable one)
                    "timed_on": timed.get("target") if isinstance(timed, Mapping) and timed.get("measured") else None}
    return None


def measured_threads(report: Mapping[str, Any]) -> int | None:
    """The intra-op thread count the shipped file's latency was measured with (the first target's)."""
    for stats in ((report.get("models") or {}).get("deployed") or {}).get("latency", {}).values():
        threads = stats.get("threads") if isinstance(stats, Mapping) else None
        if isinstance(threads, int) and threads > 0:
            return threads
    return None
