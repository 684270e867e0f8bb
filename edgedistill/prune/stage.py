"""The `prune` stage: structured channel pruning, gradual unstructured or N:M sparsity, then recovery by KD.

Whatever the method, the stage exports the unpruned and the pruned model and times both files interleaved
on the recipe's first usable target, so the report shows what pruning bought on the runtime that ships --
including when it bought nothing (unstructured and N:M sparsity need sparse kernels to pay off).
"""

from __future__ import annotations

import copy
import json
import math
import time
from typing import Any, Literal

from pydantic import Field

from ..config import Strict, TrainConfig
from ..errors import UserError
from ..stages import START, register_stage
from ..state import ModelState, RunContext, StageRecord
from .pattern import parse_pattern

NOTE_STRUCTURED = ("Structured pruning removed whole channels, so the exported file is smaller and does fewer MACs; "
                   "whether it is faster is measured below on the target, not assumed.")
NOTE_SPARSE = ("Unstructured and N:M sparsity only reduce latency on runtimes with sparse kernels (for 2:4, TensorRT "
               "on NVIDIA Ampere or newer GPUs). ONNX Runtime on CPU multiplies the zeros like any other weight, so "
               "the exported file keeps its size and MACs; the latency measured below shows the effect either way.")


class ScheduleConfig(Strict):
    """Gradual magnitude pruning (Zhu & Gupta 2017): when sparsity rises during the fine-tuning steps."""

    initial: float = Field(0.0, ge=0, lt=1, description="sparsity at the first pruning step")
    begin: float = Field(0.0, ge=0, lt=1, description="fraction of fine-tuning steps before pruning starts")
    end: float = Field(0.75, gt=0, le=1, description="fraction of fine-tuning steps at which the target is reached")
    updates: int = Field(10, ge=1, description="number of pruning steps n between begin and end")


class RecoverConfig(Strict):
    """Fine-tuning after pruning with the distillation loss (Hinton KD) against a frozen model."""

    teacher: Literal["unpruned", "teacher", "none"] = Field(
        "unpruned", description="logits to match: the model before this stage, the recipe's teacher, or labels only")
    temperature: float = Field(4.0, gt=0, le=100, description="softmax temperature T of the recovery KD loss (scaled by T²)")
    alpha: float = Field(0.9, ge=0, le=1, description="weight of the KD term; 1 − alpha goes to the label loss")
    train: TrainConfig = Field(default_factory=TrainConfig, description="recovery fine-tuning")


class PruneConfig(Strict):
    method: Literal["structured", "unstructured", "nm"] = Field(
        "structured", description="structured: remove channels/heads; unstructured: gradual magnitude; nm: N:M")
    ratio: float = Field(0.5, ge=0, lt=1, description="structured: fraction of channels removed")
    importance: Literal["l1", "l2", "bn_scale", "taylor"] = Field("l2", description="channel ranking criterion")
    scope: Literal["layer", "global"] = Field(
        "layer", description="rank channels (or weights) within each layer, or across all layers together")
    round_to: int = Field(8, ge=1, le=1024, description="kept channel counts are multiples of this (1 disables)")
    allocation: Literal["uniform", "latency"] = Field(
        "uniform", description="latency: per-layer ratios from latency measured on the recipe's first target")
    probe_ratio: float = Field(0.5, gt=0, lt=1, description="allocation=latency: cut used to probe each layer")
    layer_ratios: dict[str, float] = Field(default_factory=dict, description="module name -> ratio (overrides)")
    max_layer_ratio: float = Field(0.9, gt=0, le=1, description="no layer loses more than this fraction")
    ignore: list[str] = Field(default_factory=list, description="module names never pruned (output layer always)")
    head_ratio: float = Field(0.0, ge=0, lt=1, description="transformers: fraction of attention heads removed")
    taylor_batches: int = Field(4, ge=1, description="importance=taylor: training batches for the gradients")
    sparsity: float = Field(0.5, ge=0, lt=1, description="unstructured: target fraction of zero weights")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig, description="unstructured: the cubic sparsity schedule")
    pattern: str = Field("2:4", description="nm: keep N of every M weights along the input dimension")
    recover: RecoverConfig | None = Field(default_factory=RecoverConfig,
                                          description="fine-tuning after pruning; null skips it (not unstructured)")

    def check(self):
        """Combinations that cannot work, caught at validation time."""
        if self.method == "unstructured" and self.recover is None:
            return (("recover",), "gradual magnitude pruning prunes during fine-tuning, so it needs recover",
                    "remove `recover: null`, or use method: nm for one-shot masks")
        if self.allocation == "latency" and self.method != "structured":
            return (("allocation",), "latency-driven ratios apply to structured pruning only", "use allocation: uniform")
        if self.allocation == "latency" and self.scope == "global":
            return (("allocation",), "latency-driven ratios are per layer; they cannot combine with scope: global",
                    "use scope: layer")
        if self.schedule.begin >= self.schedule.end:
            return (("schedule", "begin"), "schedule.begin must come before schedule.end", "e.g. begin: 0.0, end: 0.75")
        for name, r in self.layer_ratios.items():
            if not 0 <= r < 1:
                return (("layer_ratios", name), f"a ratio must be in [0, 1), got {r}", "e.g. 0.5")
        if self.method == "nm":
            try:
                parse_pattern(self.pattern)
            except UserError as exc:
                return (("pattern",), exc.message, exc.fix)
        return None


def _resumed_epochs(checkpoint) -> int:
    """Epochs already finished by an interrupted fine-tuning run (the trainer's checkpoint, weights_only)."""
    import torch

    if not checkpoint.exists():
        return 0
    return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"]) + 1


@register_stage("prune", PruneConfig, may_follow={START, "distill", "prune"},
                summary="structured / gradual / N:M pruning with KD recovery; latency measured on the target")
def run_prune(state: ModelState, cfg: PruneConfig, ctx: RunContext) -> ModelState:
    import torch

    from ..evaluate import evaluate_torch
    from ..export import export_onnx
    from ..io import file_size_mb, write_json
    from ..train import distillation_objective, fit
    from .allocate import latency_allocation
    from .measure import compare_latency, macs_params
    from .plan import apply_plan, merge_plans
    from .sparsity import (
        apply_masks,
        cubic_sparsity,
        magnitude_masks,
        masked_training,
        nm_masks,
        prunable_weights,
        sparsity_of,
    )
    from .structured import output_layers, prune_structured

    t0 = time.perf_counter()
    data, recipe = ctx.data, ctx.recipe.config
    task, where = ctx.task, f"stage {ctx.index} (prune)"
    unpruned = state.model.eval()
    model = copy.deepcopy(unpruned)
    # one real row: a tensor for single-input models, named tensors (passed as keywords) for text models
    example = task.to_torch(task.feed(data.train, slice(0, 1)))
    if len(example) == 1:
        example = next(iter(example.values()))
    macs_before, params_before = macs_params(model, example)
    metric_before = evaluate_torch(model, data.val, task)
    batch_size = (cfg.recover.train.batch_size if cfg.recover else None) or recipe.data.batch_size
    checkpoint = ctx.stage_dir / "train_state.pt"
    details: dict[str, Any] = {"method": cfg.method}
    spec = dict(state.spec)

    reference = None
    if cfg.recover is not None and cfg.recover.teacher != "none":
        reference = unpruned if cfg.recover.teacher == "unpruned" else state.teacher.eval()
    # the one objective (distillation loss registry over the task's named outputs), as QAT uses
    loss = distillation_objective(task, reference, cfg.recover.temperature, cfg.recover.alpha) if cfg.recover else None

    def recover(label: str, hook_loss=None) -> dict[str, Any]:
        result = fit(model, data.train, data.val, hook_loss or loss, cfg.recover.train, batch_size=batch_size,
                     seed=recipe.seed, task=task, label=f"{where}: {label}", checkpoint=checkpoint, resume=ctx.resume)
        return {"teacher": cfg.recover.teacher, "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                "best_val_metric": result.best_metric, "history": result.history,
                "resumed_from_epoch": result.resumed_from_epoch}

    if cfg.method == "structured":
        plan_file = ctx.stage_dir / "plan.json"
        if ctx.resume and plan_file.exists():  # latency probes are noisy: replay the cut an interrupted run made
            saved = json.loads(plan_file.read_text())
            plan, details["allocation"] = saved["plan"], saved["allocation"]
            apply_plan(model, plan)
            details["channels"] = saved["channels"]
        else:
            ratios: dict[str, float] = {}
            if cfg.allocation == "latency":
                ratios, details["allocation"] = latency_allocation(
                    model, example, ratio=cfg.ratio, probe_ratio=cfg.probe_ratio, round_to=cfg.round_to,
                    max_layer_ratio=cfg.max_layer_ratio, ignore=cfg.ignore, work_dir=ctx.stage_dir / "probes",
                    input_shape=data.input_shape, recipe_cfg=recipe, samples=task.feed(data.test, slice(None)))
            else:
                details["allocation"] = {"mode": cfg.allocation}
            ratios.update(cfg.layer_ratios)
            grad_batches = None
            if cfg.importance == "taylor":
                gen = torch.Generator().manual_seed(recipe.seed)
                order = torch.randperm(len(data.train), generator=gen).numpy()
                rows = [order[i * batch_size:(i + 1) * batch_size] for i in range(cfg.taylor_batches)]
                grad_batches = [(task.to_torch(task.feed(data.train, r)), torch.from_numpy(data.train.y[r]))
                                for r in rows]
            result = prune_structured(
                model, example, ratio=cfg.ratio, importance=cfg.importance, scope=cfg.scope, round_to=cfg.round_to,
                layer_ratios=ratios, max_layer_ratio=cfg.max_layer_ratio, ignore=cfg.ignore, head_ratio=cfg.head_ratio,
                grad_batches=grad_batches, task=task)
            plan = result.plan
            details["channels"] = result.channels
            if result.heads:
                details["attention_heads"] = result.heads
            write_json(plan_file, {"plan": plan, "allocation": details["allocation"], "channels": result.channels})
        spec["prune_plan"] = merge_plans(spec.get("prune_plan"), plan)
        details["plan_groups"] = len(plan["groups"])
        details["val_metric_before_recovery"] = evaluate_torch(model, data.val, task)
        if cfg.recover is not None:
            details["recovery"] = recover("recovery")
    else:
        weights = prunable_weights(model, skip=output_layers(model, example))
        if cfg.method == "unstructured":
            steps_per_epoch = math.ceil(len(data.train) / batch_size)
            total = cfg.recover.train.epochs * steps_per_epoch
            begin, end = int(cfg.schedule.begin * total), max(int(cfg.schedule.end * total), 1)
            every = max(1, (end - begin) // cfg.schedule.updates)
            sched = {"step": (_resumed_epochs(checkpoint) if ctx.resume else 0) * steps_per_epoch, "sparsity": None}
            masks: dict[str, torch.Tensor] = {}

            def gradual_loss(m, x, y, idx):
                s = cubic_sparsity(sched["step"], cfg.sparsity, initial=cfg.schedule.initial, begin=begin, end=end,
                                   every=every)
                if s != sched["sparsity"]:  # a pruning step: re-rank the surviving weights by magnitude
                    masks.clear()
                    masks.update(magnitude_masks(weights, s, cfg.scope))
                    sched["sparsity"] = s
                sched["step"] += 1
                return loss(m, x, y, idx)

            with masked_training(model, weights, masks):
                details["recovery"] = recover("gradual magnitude pruning", gradual_loss)
            # the best validation epoch may predate the last pruning step: bring it to the target
            apply_masks(weights, magnitude_masks(weights, cfg.sparsity, cfg.scope))
            details["schedule"] = {"total_steps": total, "begin_step": begin, "end_step": end, "every": every,
                                   "initial": cfg.schedule.initial, "final": cfg.sparsity}
        else:
            n, m = parse_pattern(cfg.pattern)
            masks, skipped = nm_masks(weights, n, m)
            apply_masks(weights, masks)
            details["pattern"] = cfg.pattern
            details["nm_layers"] = sorted(masks)
            details["nm_skipped_layers"] = skipped  # input dimension not a multiple of M
            details["val_metric_before_recovery"] = evaluate_torch(model, data.val, task)
            if cfg.recover is not None:
                with masked_training(model, weights, masks):
                    details["recovery"] = recover("N:M recovery")
                apply_masks(weights, masks)
        details["sparsity"] = round(sparsity_of(weights), 6)

    model.eval()
    macs_after, params_after = macs_params(model, example)
    files = {"unpruned": export_onnx(unpruned, ctx.stage_dir / "unpruned.onnx", task),
             "pruned": export_onnx(model, ctx.stage_dir / "pruned.onnx", task)}
    latency = compare_latency(files, recipe, task.feed(data.test, slice(None)))
    if "skipped" not in latency:
        latency["p50_ratio"] = round(latency["pruned"]["p50_ms"] / latency["unpruned"]["p50_ms"], 4)
    metric_after = evaluate_torch(model, data.val, task)
    details.update({
        "macs_before": macs_before, "macs_after": macs_after, "params_before": params_before,
        "params_after": params_after, "size_mb_before": round(file_size_mb(files["unpruned"]), 6),
        "size_mb_after": round(file_size_mb(files["pruned"]), 6), "val_metric_before": metric_before,
        "latency": latency, "latency_note": NOTE_STRUCTURED if cfg.method == "structured" else NOTE_SPARSE,
    })
    record = StageRecord(index=ctx.index, kind="prune", settings=cfg.model_dump(mode="json"),
                         seconds=time.perf_counter() - t0, metric_after=metric_after,
                         artifacts=[str(files["pruned"].relative_to(ctx.run_dir))], details=details)
    ctx.log(f"{where}: MACs {macs_before:,} -> {macs_after:,}, params {params_before:,} -> {params_after:,}, "
            f"p50 ratio {latency.get('p50_ratio', 'n/a')}")
    return ModelState(model, spec, state.teacher, state.teacher_spec, None, [*state.lineage, record])
