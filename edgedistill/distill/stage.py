"""The `distill` stage: train a student against the teacher with the Hinton KD loss."""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field

from ..config import Strict, TrainConfig
from ..models import build_model
from ..stages import START, register_stage
from ..state import ModelState, RunContext, StageRecord


class DistillConfig(Strict):
    student: dict[str, Any] | None = Field(
        None, description="model spec of a new student; omit to keep training the current model")
    temperature: float = Field(4.0, gt=0, le=100, description="softmax temperature T (loss scaled by T²)")
    alpha: float = Field(0.9, ge=0, le=1, description="weight of the KD term; 1 − alpha goes to label cross-entropy")
    train: TrainConfig = Field(default_factory=TrainConfig)


@register_stage("distill", DistillConfig, may_follow={START, "distill", "prune"},
                summary="train a student against the teacher (Hinton KD)")
def run_distill(state: ModelState, cfg: DistillConfig, ctx: RunContext) -> ModelState:
    import torch

    from .losses import hinton_kd
    from .trainer import fit

    t0 = time.perf_counter()
    data = ctx.data
    if cfg.student is not None:
        spec = dict(cfg.student)
        student = build_model(spec, data.input_shape, data.num_classes)
    else:
        spec, student = state.spec, state.model
    teacher = state.teacher.eval()

    def compute_loss(model, x, y, idx):
        with torch.no_grad():
            t_logits = teacher(x)
        return hinton_kd(model(x), t_logits, y, cfg.temperature, cfg.alpha)

    recipe = ctx.recipe.config
    result = fit(student, data.train, data.val, compute_loss, cfg.train,
                 batch_size=cfg.train.batch_size or recipe.data.batch_size, seed=recipe.seed, task=data.task,
                 label=f"stage {ctx.index} (distill)", checkpoint=ctx.stage_dir / "train_state.pt", resume=ctx.resume)
    record = StageRecord(
        index=ctx.index, kind="distill", settings=cfg.model_dump(mode="json"), seconds=time.perf_counter() - t0,
        metric_after=result.best_metric,
        details={"params": sum(p.numel() for p in student.parameters()), "best_epoch": result.best_epoch,
                 "epochs_run": result.epochs_run, "history": result.history,
                 "resumed_from_epoch": result.resumed_from_epoch},
    )
    return ModelState(student, spec, state.teacher, state.teacher_spec, None, [*state.lineage, record])
