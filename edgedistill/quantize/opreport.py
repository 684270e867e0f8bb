"""Per-operator report of a quantized file: how many operators, and what share of the time, run in int8 vs float.

Two views, because they disagree in instructive ways:
- `file`: node counts by op type in the ONNX file as shipped (QDQ: Q/DQ pairs around float ops);
- `executed`: what ONNX Runtime actually ran after its graph fusions (QLinearConv, QGemm, ... or float
  kernels where a Q/DQ pattern did not fuse), with each kernel's share of the time. It comes from ORT's
  own profiler through the profile package's trace reader (`probe.op_breakdown`), which classifies each
  kernel by its input types.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from .ptq import WEIGHTED_OPS

CONVERT = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}


def file_op_counts(path: Path) -> dict[str, Any]:
    """Node counts by op type in the file, and how many of the compute nodes are wrapped in Q/DQ (run in int8)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producers = {o: n for n in graph.node for o in n.output}
    constants = {i.name for i in graph.initializer}
    counts = Counter(n.op_type for n in graph.node)
    int8, floating = Counter(), Counter()
    for n in graph.node:
        if n.op_type in CONVERT or n.op_type in ("Identity", "Constant"):
            continue
        if n.op_type.startswith(("QLinear", "QGemm")) or n.op_type.endswith("Integer"):
            int8[n.op_type] += 1
            continue
        if runs_quantized(n, producers, constants):
            int8[n.op_type] += 1
        else:
            floating[n.op_type] += 1
    return {"nodes": sum(counts.values()), "by_op": dict(counts.most_common()),
            "convert_nodes": sum(counts[c] for c in CONVERT),
            "int8_nodes": sum(int8.values()), "float_nodes": sum(floating.values()),
            "int8_by_op": dict(int8.most_common()), "float_by_op": dict(floating.most_common())}


def executed_breakdown(path: Path, feed: dict, threads: int = 1, runs: int = 20) -> dict[str, Any]:
    """Kernel counts and time shares by precision from ONNX Runtime's profiler."""
    from ..profile import probe

    warm = 2
    with tempfile.TemporaryDirectory(prefix="edgedistill-ops-") as tmp:
        runner = probe.OrtRunner(str(path), {"threads": threads}, profile_prefix=str(Path(tmp) / "ort"))
        for _ in range(warm + runs):
            runner.run(feed)
        trace = runner.session.end_profiling()
        ops = probe.op_breakdown(trace, warm, top=10_000)
    kernels = Counter()
    for row in ops["top"]:
        kernels[row["precision"]] += row["nodes"]
    ops["kernels"] = dict(kernels)
    return ops


def runs_quantized(node, producers: dict, constants: set[str]) -> bool:
    """A QDQ node runs in int8 when all its data inputs come out of DequantizeLinear nodes.

    For weighted ops that is the activation AND the weight (a float weight after a DQ'd activation runs as a
    float kernel: that is what `nodes_to_exclude` leaves behind); the bias does not count."""
    data = list(node.input[:2]) if node.op_type in WEIGHTED_OPS else [i for i in node.input if i and i not in constants]
    fed = [producers.get(i) for i in data if i]
    return bool(fed) and all(p is not None and p.op_type == "DequantizeLinear" for p in fed)


def op_report(path: Path, feed: dict | None = None, threads: int = 1, runs: int = 20) -> dict[str, Any]:
    """Both views for one file; `feed` (real inputs) enables the executed view."""
    report: dict[str, Any] = {"file": file_op_counts(path)}
    if feed is not None:
        report["executed"] = executed_breakdown(path, feed, threads, runs)
    return report
