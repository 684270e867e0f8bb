"""The `quantize` stage: post-training static int8 (QDQ) through ONNX Runtime, judged on the quantized file."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field

from ..config import Strict
from ..stages import START, register_stage
from ..state import ModelState, RunContext, StageRecord


class CalibrationConfig(Strict):
    samples: int = Field(256, ge=1, description="training samples used for calibration")
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    selection: Literal["random", "balanced"] = "random"
    batch_size: int = Field(32, ge=1)


class QuantizeConfig(Strict):
    method: Literal["static"] = "static"
    per_channel: bool | None = Field(None, description="per-channel weight scales; default from the target preset")
    preset: str | None = Field(None, description="quantization preset; default: the first target's preset")
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)


@register_stage("quantize", QuantizeConfig, may_follow={START, "distill", "prune"},
                summary="int8 post-training quantization (ONNX Runtime, QDQ)")
def run_quantize(state: ModelState, cfg: QuantizeConfig, ctx: RunContext) -> ModelState:
    from edgedistill.calibration import select_samples

    from ..evaluate import evaluate_onnx
    from ..export import export_onnx
    from ..target import load_target
    from .presets import PRESETS
    from .ptq import quantize_static_qdq

    t0 = time.perf_counter()
    preset_name = cfg.preset or load_target(ctx.recipe.config.targets[0]).quant_preset
    preset = PRESETS[preset_name]
    float_path = export_onnx(state.model, ctx.stage_dir / "float.onnx", ctx.data.input_shape)
    train = ctx.data.train
    idx = select_samples(train.y, cfg.calibration.samples, cfg.calibration.selection, ctx.recipe.config.seed)
    per_channel = preset["per_channel"] if cfg.per_channel is None else cfg.per_channel
    out = quantize_static_qdq(float_path, ctx.stage_dir / "model.int8.onnx", train.x, idx, preset=preset,
                              per_channel=per_channel, method=cfg.calibration.method,
                              batch_size=cfg.calibration.batch_size)
    metric = evaluate_onnx(out, ctx.data.val, ctx.data.task)
    record = StageRecord(
        index=ctx.index, kind="quantize", settings=cfg.model_dump(mode="json"), seconds=time.perf_counter() - t0,
        metric_after=metric, artifacts=[str(out.relative_to(ctx.run_dir))],
        details={"preset": preset_name, "per_channel": per_channel, "calibration_samples": len(idx),
                 "float_val_metric": evaluate_onnx(float_path, ctx.data.val, ctx.data.task)},
    )
    return ModelState(state.model, state.spec, state.teacher, state.teacher_spec, out, [*state.lineage, record])
