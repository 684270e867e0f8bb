"""Small synthetic ONNX models with a known cost, for tests, benchmarks and `doctor`-style smoke checks.

Built with onnx.helper (no torch), so they are cheap to make anywhere the profiler runs. `extra_ops`
appends a chain of element-wise operators: a model that is deliberately slower by a controllable amount,
with identical inputs and outputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def synthetic_mlp(path: str | Path, *, width: int = 256, depth: int = 3, extra_ops: int = 0, inputs: int = 64,
                  classes: int = 10, seed: int = 0, external_data: bool = False) -> Path:
    """x[batch, inputs] -> MatMul/Add/Relu x depth (+ extra Mul/Relu chain) -> logits[batch, classes]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    prev, dim = "x", inputs
    for i in range(depth):
        w = (rng.standard_normal((dim, width)) / np.sqrt(dim)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(width, np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"mm{i}"]),
                  helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"add{i}"]),
                  helper.make_node("Relu", [f"add{i}"], [f"h{i}"])]
        prev, dim = f"h{i}", width
    if extra_ops:
        inits.append(numpy_helper.from_array(np.asarray(1.0001, np.float32), "k"))
        for j in range(extra_ops):
            nodes += [helper.make_node("Mul", [prev, "k"], [f"e{j}"]),
                      helper.make_node("Relu", [f"e{j}"], [f"er{j}"])]
            prev = f"er{j}"
    wout = (rng.standard_normal((dim, classes)) / np.sqrt(dim)).astype(np.float32)
    inits.append(numpy_helper.from_array(wout, "wout"))
    nodes.append(helper.make_node("MatMul", [prev, "wout"], ["logits"]))
    graph = helper.make_graph(
        nodes, "synthetic_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", inputs])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgedistill")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if external_data:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=0)
    else:
        onnx.save_model(model, str(path))
    return path
