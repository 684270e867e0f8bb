"""The `export` stage: write the deployable ONNX file (unless an earlier stage already did) and check parity."""

from __future__ import annotations

import time

from pydantic import Field

from ..config import Strict
from ..errors import UserError
from ..stages import START, register_stage
from ..state import ModelState, RunContext, StageRecord


class ExportConfig(Strict):
    opset: int = Field(17, ge=11, le=23, description="ONNX opset of the exported file (legacy exporter)")
    parity_samples: int = Field(128, ge=1, description="real validation samples compared torch vs file (every output)")
    parity_atol: float = Field(1e-3, gt=0, description="max |torch − onnx| allowed for a float export")


@register_stage("export", ExportConfig, may_follow={START, "distill", "prune", "quantize", "vocab", "executorch"},
                summary="export ONNX and check parity against the torch model")
def run_export(state: ModelState, cfg: ExportConfig, ctx: RunContext) -> ModelState:
    from ..evaluate import evaluate_onnx
    from .onnx import copy_onnx, export_onnx, parity

    t0 = time.perf_counter()
    task = ctx.task
    out = ctx.stage_dir / "model.onnx"
    quantized = state.onnx is not None
    if quantized:
        copy_onnx(state.onnx, out)
    else:
        export_onnx(state.model, out, task, cfg.opset)
    check = parity(state.model, out, task.feed(ctx.data.val, slice(0, cfg.parity_samples)), task)
    check["checked_against"] = "torch student (float)"
    if not quantized and check["max_abs_diff"] > cfg.parity_atol:
        raise UserError(
            f"the exported file differs from the torch model by {check['max_abs_diff']:.3g} (limit {cfg.parity_atol})",
            where=f"stage {ctx.index} (export): {out}",
            fix="raise parity_atol if the difference is expected, or try another opset",
        )
    record = StageRecord(
        index=ctx.index, kind="export", settings=cfg.model_dump(mode="json"), seconds=time.perf_counter() - t0,
        metric_after=evaluate_onnx(out, ctx.data.val, task), artifacts=[str(out.relative_to(ctx.run_dir))],
        details={"parity": check, "quantized_input": quantized},
    )
    return ModelState(state.model, state.spec, state.teacher, state.teacher_spec, out, [*state.lineage, record])
