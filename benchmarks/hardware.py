"""Distance from the hardware limit: a model's multiply-accumulates counted from its ONNX graph, and this
CPU's int8 and fp32 GEMM peak measured with one large MatMulInteger / MatMul in ONNX Runtime.

A model's achieved operations per second (2 × MACs × batch / latency) over the measured peak says how much
of the machine a deployed file uses: small models on small inputs sit far below it (per-call overhead and
memory traffic dominate), which is why compression pays less there than MAC counts suggest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_CONVS = {"Conv", "ConvInteger", "QLinearConv"}
_GEMMS = {"Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"}


def count_macs(path: str | Path, batch: int = 1, sequence: int = 1) -> int:
    """Multiply-accumulates of one forward pass at `batch`, from Conv/Gemm/MatMul shapes (shape inference on a
    copy whose dynamic dimensions are fixed: first to `batch`, the second to `sequence` (a text model's
    tokens), others to 1)."""
    import onnx

    model = onnx.load(str(path))
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        for i, d in enumerate(dims):
            if not d.HasField("dim_value"):
                d.dim_value = batch if i == 0 else sequence if i == 1 else 1
    model = _infer_shapes(model)
    shapes: dict[str, list[int]] = {i.name: list(i.dims) for i in model.graph.initializer}
    for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        shapes[v.name] = [d.dim_value for d in v.type.tensor_type.shape.dim]
    macs = 0
    for n in model.graph.node:
        if n.op_type in _CONVS:
            w = shapes.get(n.input[3] if n.op_type == "QLinearConv" else n.input[1])
            out = shapes.get(n.output[0])
            if w and out:
                macs += int(np.prod(out)) * int(np.prod(w[1:]))
        elif n.op_type in _GEMMS:
            a = shapes.get(n.input[0])
            out = shapes.get(n.output[0])
            if a and out:
                trans_a = any(at.name == "transA" and at.i for at in n.attribute)
                k = a[-2] if trans_a else a[-1]
                macs += int(np.prod(out)) * int(k)
    return macs


def _infer_shapes(model):
    """ONNX Runtime's symbolic shape inference (it follows the Shape → Slice → Reshape chains of transformer
    exports, which onnx's own inference leaves unknown); onnx's where the symbolic one fails (contrib ops it
    does not know, e.g. GatherBlockQuantized)."""
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    _plain_gathers(model)
    try:
        inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception:  # any failure: fall back to onnx's inference
        inferred = None
    return inferred if inferred is not None else onnx.shape_inference.infer_shapes(model, data_prop=True)


def _plain_gathers(model) -> None:
    """Replace 4-bit embedding look-ups (com.microsoft GatherBlockQuantized, which shape inference does not
    know) by a plain Gather from a [rows, width] placeholder, in this counting copy only: same output shape."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    for i, node in enumerate(model.graph.node):
        if node.op_type != "GatherBlockQuantized" or node.input[2] not in inits:
            continue
        block = next((a.i for a in node.attribute if a.name == "block_size"), 128)
        rows, blocks = inits[node.input[2]].dims
        name = node.output[0] + "_shape_only"
        model.graph.initializer.append(numpy_helper.from_array(np.zeros((rows, blocks * block), np.float32), name))
        model.graph.node[i].CopyFrom(helper.make_node("Gather", [name, node.input[1]], [node.output[0]], axis=0))


def gemm_models(folder: Path, size: int = 1024) -> dict[str, Path]:
    """Two one-node models: u8×s8→i32 MatMulInteger and fp32 MatMul, A [size, size] as input, B a constant."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, a_type, op, b in (
        ("gemm_int8", TensorProto.UINT8, "MatMulInteger", rng.integers(-127, 128, (size, size), dtype=np.int8)),
        ("gemm_fp32", TensorProto.FLOAT, "MatMul", rng.standard_normal((size, size)).astype(np.float32)),
    ):
        y_type = TensorProto.INT32 if op == "MatMulInteger" else TensorProto.FLOAT
        graph = helper.make_graph(
            [helper.make_node(op, ["A", "B"], ["Y"])], name,
            [helper.make_tensor_value_info("A", a_type, [size, size])],
            [helper.make_tensor_value_info("Y", y_type, [size, size])],
            [numpy_helper.from_array(b, "B")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        path = folder / f"{name}_{size}.onnx"
        onnx.save(model, str(path))
        out[name] = path
    return out


def gemm_peak(target, folder: Path, *, size: int = 1024, runs: int = 20) -> dict[str, dict[str, float]]:
    """Operations per second of the two GEMMs on one thread, timed interleaved in one profiler call.

    The peak is taken from the fastest run (load on a shared machine only ever adds time); p50 is kept too."""
    from edgedistill.profile import profile_models

    stats = profile_models(gemm_models(folder, size), target, batch=size, threads=1, runs=runs,
                           warmup=3, burst=5, op_profile_runs=0)
    ops = 2.0 * size**3
    return {name: {"size": size, "min_ms": s["min_ms"], "p50_ms": s["p50_ms"],
                   "peak_ops_per_s": ops / (s["min_ms"] / 1e3), "p50_ops_per_s": ops / (s["p50_ms"] / 1e3)}
            for name, s in stats.items()}


def peak_line(peak: dict[str, dict[str, float]]) -> str:
    """The measured GEMM peaks, as the benchmark tables print them."""
    i8, f32 = peak["gemm_int8"]["peak_ops_per_s"], peak["gemm_fp32"]["peak_ops_per_s"]
    return (f"GEMM peak, one thread, {peak['gemm_int8']['size']}³: int8 (MatMulInteger) {i8 / 1e9:.1f} GOP/s, "
            f"fp32 (MatMul) {f32 / 1e9:.1f} GFLOP/s (fastest run)")


def against_peak(row: dict, suffix: str, ops: float, peak: dict[str, dict[str, float]]) -> str:
    """Record `ops` (achieved operations per second) in `row` under `suffix` as a fraction of both GEMM peaks,
    and say it: "X GOP/s = a% of int8 peak, b% of fp32 peak"."""
    i8, f32 = peak["gemm_int8"]["peak_ops_per_s"], peak["gemm_fp32"]["peak_ops_per_s"]
    row[f"achieved_ops_per_s_{suffix}"] = ops
    row[f"fraction_of_int8_peak_{suffix}"] = ops / i8
    row[f"fraction_of_fp32_peak_{suffix}"] = ops / f32
    return f"{ops / 1e9:.2f} GOP/s = {100 * ops / i8:.1f}% of int8 peak, {100 * ops / f32:.1f}% of fp32 peak"
