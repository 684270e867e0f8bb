"""The `quantize` stage: int8 (static QDQ, dynamic, or QAT with the teacher) or fp16, judged on the file.

Flow: export the float student → quantize with the target's preset → score the quantized FILE in ONNX
Runtime → if it lost more than `fallback.max_drop`, keep the most sensitive nodes in float until it does
not → time quantized vs float side by side on the target → `keep` decides which file ships → per-op
report. Everything the decision rests on goes into the stage's details in report.json.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..config import Strict, TrainConfig
from ..stages import START, register_stage
from ..state import ModelState, RunContext, StageRecord
from .ptq import WEIGHTED_OPS


class CalibrationConfig(Strict):
    samples: int = Field(256, ge=1, description="training samples used for calibration (a cap: memory stays bounded)")
    method: Literal["minmax", "entropy", "percentile"] = Field("minmax", description="how activation ranges are set")
    selection: Literal["random", "balanced", "first"] = Field(
        "random", description="random, class-balanced (round robin over labels), or the first N samples")
    batch_size: int = Field(32, ge=1, le=65536, description="samples per calibration batch")
    max_batches_in_memory: int = Field(
        8, ge=1, le=65536, description="calibration streams windows of at most this many batches (bounds activation memory)")
    percentile: float = Field(99.999, gt=50, le=100, description="percentile method: share of |activations| kept")
    entropy_bins: int = Field(512, ge=256, le=8192, description="entropy method: histogram bins (128 levels)")


class QATConfig(Strict):
    """Quantized distillation: the fake-quantized student learns from the full-precision teacher."""

    temperature: float = Field(2.0, gt=0, le=100, description="KD temperature; low values suit low bit-widths")
    alpha: float = Field(0.9, ge=0, le=1, description="weight of the KD term; 1 − alpha goes to label cross-entropy")
    observe_epochs: int | None = Field(
        None, ge=1, description="epochs during which the quantization scales still move; then frozen (null: all)")
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=8, lr=1e-3), description="QAT training")


class FallbackConfig(Strict):
    """Accuracy-aware fallback: keep the most sensitive nodes in float until the quantized file meets the budget."""

    max_drop: float | None = Field(
        None, ge=0, description="largest metric drop of the quantized file vs the float file (val split); null: off")
    max_float_nodes: int = Field(4, ge=1, description="give up after this many nodes are back in float")
    op_types: list[str] = Field(default_factory=lambda: list(WEIGHTED_OPS),
                                description="node types that may fall back to float")


class QuantizeConfig(Strict):
    method: Literal["static", "dynamic", "qat", "fp16"] = Field(
        "static", description="static QDQ PTQ, dynamic int8, QAT with the teacher, or fp16 conversion")
    preset: str | None = Field(None, description="quantization preset; default: the first target's quant_preset")
    per_channel: bool | None = Field(None, description="per-channel weight scales; default from the preset")
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig, description="static PTQ: the calibration data")
    qat: QATConfig = Field(default_factory=QATConfig, description="method: qat settings")
    fallback: FallbackConfig = Field(default_factory=FallbackConfig, description="accuracy-aware fallback to float")
    nodes_to_exclude: list[str] = Field(default_factory=list, description="ONNX node names always kept in float")
    int4: list[Literal["MatMul", "Gather"]] = Field(
        default_factory=list, description="method dynamic: these op types get 4-bit block-wise weights instead "
        "(ORT MatMulNBits / GatherBlockQuantized; Gather = the embedding table); the rest stay int8")
    session_options: Literal["default", "auto"] = Field(
        "default", description="auto: time the shipped file under candidate ONNX Runtime session options on the "
        "target and ship the fastest (in the bundle manifest and snippet) when it beats the defaults by > 3%")
    keep: Literal["quantized", "fastest", "smallest"] = Field(
        "quantized", description="which file ships: the quantized one, the faster, or the smaller of float/quantized")
    keep_max_drop: float | None = Field(
        None, ge=0, description="never ship the quantized file if it lost more than this on the validation split "
        "against the float file (metric units, e.g. 0.002 = 0.2 point of accuracy); null: no limit")
    measure_latency: bool = Field(True, description="time quantized vs float on the first usable target")

    def check(self):
        from .presets import PRESETS

        if self.preset is not None and self.preset not in PRESETS:
            return (("preset",), f'unknown quantization preset "{self.preset}"', f"use one of: {', '.join(PRESETS)}")
        if self.method == "qat" and self.fallback.max_drop is not None:
            return (("fallback", "max_drop"), "fallback works on post-training quantization, not on QAT",
                    "remove fallback.max_drop, or use method: static")
        if self.int4 and self.method != "dynamic":
            return (("int4",), "4-bit weights are applied with dynamic int8 for the rest of the model",
                    "use method: dynamic, or remove int4")
        if len(set(self.int4)) != len(self.int4):
            return (("int4",), "an op type is listed twice", "list MatMul and/or Gather once")
        if self.method == "qat" and self.preset == "fp16":
            return (("preset",), "QAT trains for int8; the fp16 preset has no integer grid",
                    "use method: fp16, or an int8 preset")
        return None

    def check_recipe(self, recipe: Any):
        """Checks that need the whole recipe: QAT runs on the PT2E x86 path, which supports CNN image models.

        Measured with torchao 0.18: the same path fails for BERT inside the quantizer's linear annotation."""
        task = getattr(recipe, "task", None) or "image_classification"
        if isinstance(task, dict | BaseModel):  # a task section rather than a bare name
            task = (task.get("kind") if isinstance(task, dict) else getattr(task, "kind", None)) or ""
        if self.method == "qat" and task not in QAT_TASKS:
            return (("method",), f'QAT is not supported for the task "{task}" (the PT2E x86 quantizer handles '
                    "convolutional image models only; it fails on transformer layers)",
                    "use method: dynamic or static (post-training int8) for this model")
        return None


# Tasks whose models the QAT path supports (the data loaders' name for image classification included).
QAT_TASKS = ("image_classification", "classification")


def _effective_method(cfg: QuantizeConfig, precision: str) -> str:
    """An fp16 target turns post-training int8 into fp16 conversion (the target cannot run int8 well)."""
    if precision == "fp16" and cfg.method in ("static", "dynamic"):
        return "fp16"
    return cfg.method


@register_stage("quantize", QuantizeConfig, may_follow={START, "distill", "prune", "vocab"},
                summary="int8 (static QDQ / dynamic / QAT with the teacher) or fp16, with fallback and a keep policy")
def run_quantize(state: ModelState, cfg: QuantizeConfig, ctx: RunContext) -> ModelState:
    from edgedistill.calibration import calibration_window, select_samples

    from ..errors import UserError
    from ..evaluate import evaluate_onnx
    from ..export.onnx import copy_onnx, export_onnx
    from ..target import load_target
    from .fallback import accuracy_fallback
    from .opreport import op_report
    from .presets import get_preset
    from .ptq import convert_fp16, preprocess, quantizable_nodes, quantize_dynamic_int8, quantize_static_qdq

    t0 = time.perf_counter()
    recipe, data, sdir, task = ctx.recipe.config, ctx.data, ctx.stage_dir, ctx.task
    preset_name = cfg.preset or load_target(recipe.targets[0]).quant_preset
    preset = get_preset(preset_name, where=f"stage {ctx.index} (quantize): preset")
    method = _effective_method(cfg, preset.precision)
    if method == "qat" and preset.precision == "fp16":
        raise UserError(f'QAT trains for int8, but the preset "{preset_name}" is fp16',
                        where=f"stage {ctx.index} (quantize)", fix="use method: fp16, or set preset to an int8 one")
    precision = "fp16" if method == "fp16" else "int8"
    per_channel = preset.per_channel if cfg.per_channel is None else cfg.per_channel
    sign = 1.0 if task.metric.higher_is_better else -1.0

    def val_metric(path: Path) -> float:
        return evaluate_onnx(path, data.val, task)

    float_path = export_onnx(state.model, sdir / "float.onnx", task)
    pre = preprocess(float_path, sdir / "float.pre.onnx")
    float_metric = val_metric(float_path)
    cal = cfg.calibration
    calib_idx = select_samples(data.train.y, cal.samples, cal.selection, recipe.seed)
    details: dict[str, Any] = {"preset": preset_name, "preset_settings": preset.to_json(), "method": method,
                               "per_channel": per_channel, "float_val_metric": float_metric}
    if method == "static":
        n_batches = -(-len(calib_idx) // cal.batch_size)
        details["calibration"] = {"samples": len(calib_idx), "method": cal.method, "selection": cal.selection,
                                  "batches": n_batches,
                                  "window_batches": calibration_window(n_batches, cal.max_batches_in_memory)}

    def build(excluded: list[str], out: Path) -> Path:
        if method == "static":
            return quantize_static_qdq(pre, out, task.feed(data.train, slice(None)), calib_idx, preset=preset,
                                       per_channel=per_channel,
                                       method=cal.method, batch_size=cal.batch_size,
                                       max_batches_in_memory=cal.max_batches_in_memory, percentile=cal.percentile,
                                       entropy_bins=cal.entropy_bins,
                                       nodes_to_exclude=excluded, cache_path=sdir / "calibration.json")
        if method == "dynamic" and cfg.int4:
            return _int4_then_int8(pre, out, cfg.int4, preset, per_channel, excluded)
        if method == "dynamic":
            return quantize_dynamic_int8(pre, out, preset=preset, per_channel=per_channel, nodes_to_exclude=excluded)
        return convert_fp16(pre, out, nodes_to_exclude=excluded)

    model_out = state.model
    quant_path = sdir / f"model.{precision}.onnx"
    steps: list[Any] = []
    quant_metric: float | None = None
    if method == "qat":
        quant_path, model_out, details["qat"] = _run_qat(state, cfg, ctx, preset, per_channel, calib_idx, quant_path)
    elif cfg.fallback.max_drop is not None:
        fb = cfg.fallback
        nodes = quantizable_nodes(pre, tuple(fb.op_types))
        result = accuracy_fallback(nodes, sign * float_metric, fb.max_drop, build, lambda p: sign * val_metric(p),
                                   sdir / "fallback", fb.max_float_nodes, forced=cfg.nodes_to_exclude)
        copy_onnx(result.best.path, quant_path)
        quant_metric = sign * result.best.metric  # the copied file was scored during the search
        steps = result.steps
        details["fallback"] = {
            "budget": fb.max_drop, "met": result.met_budget, "candidates": nodes,
            "float_nodes": result.best.float_nodes,
            "steps": [{"float_nodes": s.float_nodes, "val_metric": sign * s.metric} for s in steps],
            "sensitivity": [{**r, "metric_if_float": sign * r["metric_if_float"]}
                            for r in result.sensitivity],
        }
        if not result.met_budget:
            ctx.log(f"quantize: the budget (drop ≤ {fb.max_drop}) was not met with {len(result.best.float_nodes)} "
                    f"float node(s); shipping the best file found ({sign * result.best.metric:.4f} on val)")
    else:
        build(list(cfg.nodes_to_exclude), quant_path)
    if quant_metric is None:
        quant_metric = val_metric(quant_path)
    details.update(quantized_val_metric=quant_metric, drop=round(sign * (float_metric - quant_metric), 6),
                   nodes_kept_float=details.get("fallback", {}).get("float_nodes", list(cfg.nodes_to_exclude)))

    ratio, timing = _time_it(cfg, ctx, float_path, quant_path, precision, steps, details)
    from .keep import decide

    decision = decide(cfg.keep, float_path, quant_path, ratio, precision,
                      unmeasured=(details.get("latency") or {}).get("reason") or "no usable target on this machine",
                      drop=details["drop"], max_drop=cfg.keep_max_drop)
    details["keep"] = decision
    ctx.log(f"quantize: {decision['reason']}")
    shipped = quant_path if decision["shipped"] == precision else float_path
    if shipped == float_path:  # the float file holds the pre-QAT weights: later stages must see those
        model_out = state.model
    details["op_report"] = {precision: op_report(quant_path, task.feed(data.val, slice(0, 1)),
                                                 threads=timing.get("threads", 1))}
    metric = quant_metric if shipped == quant_path else float_metric
    if cfg.session_options == "auto":
        details["session_options"] = _choose_options(shipped, ctx)
        ctx.log(f"quantize: session options: {details['session_options'].get('chosen', 'default')} "
                f"({details['session_options'].get('reason', '')})")
    record = StageRecord(
        index=ctx.index, kind="quantize", settings=cfg.model_dump(mode="json"), seconds=time.perf_counter() - t0,
        metric_after=metric, artifacts=[str(p.relative_to(ctx.run_dir)) for p in (float_path, quant_path)],
        details=details,
    )
    return ModelState(model_out, state.spec, state.teacher, state.teacher_spec, shipped, [*state.lineage, record])


def _int4_then_int8(pre: Path, out: Path, int4_ops: list[str], preset, per_channel: bool,
                    excluded: list[str]) -> Path:
    """4-bit weights for `int4_ops` (ORT's weight-only quantizer), then dynamic int8 for the other weighted
    ops (MatMul, the embedding Gather) that are still float."""
    from .ptq import quantize_dynamic_int8
    from .weight_only import quantize_int4

    rest = [op for op in ("MatMul", "Gather") if op not in int4_ops]
    stage1 = out.with_name(out.stem + ".int4.onnx") if rest else out
    quantize_int4(pre, stage1, ops=tuple(int4_ops))
    if not rest:
        return out
    return quantize_dynamic_int8(stage1, out, preset=preset, per_channel=per_channel, nodes_to_exclude=excluded,
                                 op_types=rest)


def _choose_options(path: Path, ctx: RunContext) -> dict[str, Any]:
    """Session options for the shipped file, measured on the first target this machine runs (see session.py)."""
    from ..profile.latency import recipe_feed
    from ..target import first_available
    from .session import choose_session_options

    recipe = ctx.recipe.config
    target, reasons = first_available(list(recipe.targets))
    if target is None:
        return {"chosen": "default", "options": {}, "measured": False, "reason": "; ".join(reasons)}
    samples = ctx.task.feed(ctx.data.val if len(ctx.data.val) else ctx.data.train, slice(None))
    result = choose_session_options(path, target, recipe_feed(samples, target, recipe.profile),
                                    runs=recipe.profile.runs, threads=recipe.profile.threads)
    result["measured"] = True
    result["reason"] = (f"{result['chosen']} measured fastest on {target.name} (latency vs default: "
                        + ", ".join(f"{k} {v:.3f}" for k, v in result["ratios"].items()) + ")")
    return result


def _time_it(cfg: QuantizeConfig, ctx: RunContext, float_path: Path, quant_path: Path, precision: str,
             steps: list, details: dict[str, Any]) -> tuple[dict | None, dict]:
    """Interleaved float vs quantized latency (plus each fallback step, to price every float node)."""
    from ..profile import latency_stats, profile_on_first_target
    from .keep import ratio_vs

    if not cfg.measure_latency:
        details["latency"] = {"measured": False, "reason": "measure_latency: false"}
        return None, {}
    files = {"float": float_path, precision: quant_path}
    files.update({f"step{i}": s.path for i, s in enumerate(steps)})
    recipe = ctx.recipe.config
    samples = ctx.task.feed(ctx.data.val if len(ctx.data.val) else ctx.data.train, slice(None))
    target, stats, reasons = profile_on_first_target(files, recipe.targets, recipe.profile, samples)
    if target is None:
        details["latency"] = {"measured": False, "reason": "; ".join(reasons)}
        return None, {}
    batch = stats["float"]["batch"]
    ratio = ratio_vs(stats, "float", precision)
    summary = {k: {m: round(v, 5) for m, v in latency_stats(s["samples_ms"], batch).items()
                   if m in ("p50_ms", "p90_ms", "mean_ms")} for k, s in stats.items()}
    details["latency"] = {"measured": True, "target": target.name, "batch": batch, "threads": stats["float"]["threads"],
                          "runs": stats["float"]["runs"], "float": summary["float"], precision: summary[precision],
                          "ratio_quantized_vs_float": ratio, "skipped_targets": reasons}
    if len(steps) > 1 and "fallback" in details:
        costs = []
        for i in range(1, len(steps)):
            node = steps[i].float_nodes[-1]
            r = ratio_vs(stats, f"step{i - 1}", f"step{i}")
            costs.append({"node": node, "latency_ratio": r["ratio"],
                          "p50_ms_delta": round(summary[f"step{i}"]["p50_ms"] - summary[f"step{i - 1}"]["p50_ms"], 5)})
        details["fallback"]["latency_cost"] = costs
    return ratio, {"threads": stats["float"]["threads"]}


def _run_qat(state: ModelState, cfg: QuantizeConfig, ctx: RunContext, preset, per_channel: bool, calib_idx,
             out: Path) -> tuple[Path, Any, dict[str, Any]]:
    """Fake-quantized student × full-precision teacher (Polino et al.), PT2E-converted and exported to QDQ."""
    import torch

    from ..export.onnx import parity
    from ..train import distillation_objective, fit
    from .qat import ObserveInTraining, convert, export_converted, fake_vs_file, float_weights_back, prepare_qat

    q, data, recipe, task = cfg.qat, ctx.data, ctx.recipe.config, ctx.task
    prepared = prepare_qat(state.model, data.input_shape, preset, per_channel,
                           torch.from_numpy(data.train.x[calib_idx]))
    wrapped = ObserveInTraining(prepared, q.observe_epochs)
    # the same objective as pruning recovery: the distillation loss registry over the task's named outputs
    compute_loss = distillation_objective(task, state.teacher.eval(), q.temperature, q.alpha)

    result = fit(wrapped, data.train, data.val, compute_loss, q.train,
                 batch_size=q.train.batch_size or recipe.data.batch_size, seed=recipe.seed, task=task,
                 label=f"stage {ctx.index} (quantize: qat)", checkpoint=ctx.stage_dir / "qat_state.pt",
                 resume=ctx.resume)
    converted = convert(prepared)
    export_converted(converted, out, data.input_shape)
    back = float_weights_back(state.model, prepared)
    if back is None:
        ctx.log("quantize: the QAT weights could not be mapped back onto the student's layers; "
                "the float student in the report is the pre-QAT one (the shipped file has the QAT weights)")
    info = {"temperature": q.temperature, "alpha": q.alpha, "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run, "fake_quant_val_metric": result.best_metric,
            "history": result.history, "resumed_from_epoch": result.resumed_from_epoch,
            "fake_quant_vs_file": fake_vs_file(prepared, out, task.feed(data.val, slice(0, 256)), task),
            "converted_vs_file": parity(converted, out, task.feed(data.val, slice(0, 256)), task),
            "float_student_has_qat_weights": back is not None}
    return out, back if back is not None else state.model, info
