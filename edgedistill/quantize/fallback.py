"""Accuracy-aware fallback: keep the most sensitive nodes in float until the int8 file meets the budget.

Sensitivity of a node = how much of the lost metric comes back when only that node stays float
(quantize everything else, run the file). Nodes are then returned to float in order of sensitivity, one
more per step, each step a real quantized file scored in ONNX Runtime, until the drop against the float
file is within budget or `max_float_nodes` is reached. Every step's file is kept on disk and the best one
(highest metric, fewer float nodes on ties) is always returned, budget met or not, so a failed search
still leaves the best artifact it found.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Build = Callable[[list[str], Path], Path]  # (nodes kept float, output path) -> quantized file
Measure = Callable[[Path], float]  # file -> metric (higher is better; callers negate otherwise)


@dataclass
class Step:
    float_nodes: list[str]
    path: Path
    metric: float

    def to_json(self) -> dict[str, Any]:
        return {"float_nodes": self.float_nodes, "path": str(self.path), "metric": self.metric}


@dataclass
class FallbackResult:
    met_budget: bool
    best: Step
    steps: list[Step]
    sensitivity: list[dict[str, Any]] = field(default_factory=list)


def node_sensitivity(nodes: list[str], base_metric: float, build: Build, measure: Measure,
                     workdir: Path) -> list[dict[str, Any]]:
    """Metric recovered by keeping each node alone in float; most sensitive first."""
    rows = []
    for i, node in enumerate(nodes):
        path = build([node], workdir / f"sens-{i}.onnx")
        metric = measure(path)
        rows.append({"node": node, "metric_if_float": metric, "recovered": metric - base_metric})
        path.unlink(missing_ok=True)
    return sorted(rows, key=lambda r: -r["recovered"])


def accuracy_fallback(nodes: list[str], float_metric: float, max_drop: float, build: Build, measure: Measure,
                      workdir: Path, max_float_nodes: int, forced: list[str] | None = None) -> FallbackResult:
    """Greedy fallback over `nodes` (the quantizable ones) until `float_metric - metric <= max_drop`.

    `forced` nodes stay float in every candidate (the recipe's `nodes_to_exclude`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    forced = list(forced or [])
    first = build(forced, workdir / "step-0.onnx")
    steps = [Step(forced, first, measure(first))]
    if float_metric - steps[0].metric <= max_drop:
        return FallbackResult(True, steps[0], steps)
    candidates = [n for n in nodes if n not in forced]

    def build_with(extra: list[str], out: Path) -> Path:
        return build(forced + extra, out)

    ranking = node_sensitivity(candidates, steps[0].metric, build_with, measure, workdir)
    kept: list[str] = []
    for row in ranking[:max_float_nodes]:
        kept.append(row["node"])
        path = build_with(kept, workdir / f"step-{len(kept)}.onnx")
        steps.append(Step(forced + kept, path, measure(path)))
        if float_metric - steps[-1].metric <= max_drop:
            break
    best = max(steps, key=lambda s: (s.metric, -len(s.float_nodes)))
    return FallbackResult(float_metric - best.metric <= max_drop, best, steps, ranking)
