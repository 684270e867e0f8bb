"""The `executorch` stage: the student as ExecuTorch `.pte` files (XNNPACK), float and static int8, judged on the files.

Flow: export the float student to a .pte → quantize it with the PT2E XNNPACK quantizer, calibrated on the recipe's
training data → lower both to XNNPACK → score both FILES in ExecuTorch's runtime on the validation split (and
their top-1 agreement with the torch student) → time them side by side with the run's ONNX file on the recipe's
ExecuTorch target (one run, interleaved bursts, a fresh process per file) → `keep` picks which .pte ships (the
same policy as the quantize stage) → the ops left on portable kernels are listed.

The ONNX file is untouched (`state.onnx`); the shipped .pte is named in this stage's details, where
`report.build` and the bundle find it. After a QAT quantize stage, the student here is the float model with
the QAT-trained weights, quantized again by the XNNPACK quantizer (post-training, on the trained weights).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..config import Strict
from ..stages import START, register_stage
from ..state import ModelState, RunContext, StageRecord

Precision = Literal["fp32", "int8"]


class PteCalibration(Strict):
    """int8 .pte: the samples the XNNPACK quantizer's min/max observers see (its config fixes the method)."""

    samples: int = Field(256, ge=1, description="training samples run through the observers (a cap)")
    selection: Literal["random", "balanced", "first"] = Field(
        "balanced", description="random, class-balanced (round robin over labels), or the first N samples")
    batch_size: int = Field(32, ge=1, le=65536, description="samples read per batch (each runs at batch 1)")


class ExecuTorchConfig(Strict):
    delegate: Literal["xnnpack"] | None = Field(None, description="backend the .pte is lowered to; default: the "
                                                "recipe's first executorch target's delegate (xnnpack)")
    precisions: list[Precision] = Field(default_factory=lambda: ["fp32", "int8"],
                                        description=".pte files to build and measure (the keep policy picks one)")
    per_channel: bool = Field(True, description="int8: per-channel weight scales (XNNPACK's symmetric config)")
    calibration: PteCalibration = Field(default_factory=PteCalibration,
                                        description="int8: training samples that set the activation ranges")
    keep: Literal["quantized", "fastest", "smallest"] = Field(
        "fastest", description="which .pte ships: int8, the faster (timed in ExecuTorch), or the smaller")
    keep_max_drop: float | None = Field(
        None, ge=0, description="never ship the int8 .pte if it lost more than this on validation vs the fp32 .pte")
    measure_latency: bool = Field(True, description="time the .pte files against the ONNX file on the target")

    def check(self):
        if not self.precisions or len(set(self.precisions)) != len(self.precisions):
            return (("precisions",), "list fp32 and/or int8, each once", "e.g. precisions: [fp32, int8]")
        return None

    def check_recipe(self, recipe: Any):
        """The recipe must list a target that runs the .pte (runtime: executorch): that is where it is timed and
        what the bundle's numbers are for."""
        from ..errors import UserError
        from ..target import load_target

        try:
            runtimes = [load_target(t).runtime for t in getattr(recipe, "targets", [])]
        except UserError:
            return None  # the recipe check names the bad target itself
        if "executorch" not in runtimes:
            return (("kind",), "an executorch stage needs a target with runtime: executorch in the recipe's targets",
                    "add x86_executorch (timed here) and/or arm64_executorch (phones) to targets")
        return None


def executorch_targets(names: list[str]) -> list[Any]:
    from ..target import load_target

    return [t for t in (load_target(n) for n in names) if t.runtime == "executorch"]


@register_stage("executorch", ExecuTorchConfig, may_follow={START, "distill", "prune", "quantize"},
                summary="ExecuTorch .pte (XNNPACK), float and int8, scored and timed on the files")
def run_executorch(state: ModelState, cfg: ExecuTorchConfig, ctx: RunContext) -> ModelState:
    from edgedistill.calibration import select_samples

    from ..errors import UserError
    from .executorch import evaluate_pte, export_pte, pte_predictor, quantize_pt2e, require_executorch

    t0 = time.perf_counter()
    where = f"stage {ctx.index} (executorch)"
    require_executorch(where)
    recipe, data, sdir, task = ctx.recipe.config, ctx.data, ctx.stage_dir, ctx.task
    targets = executorch_targets(list(recipe.targets))
    delegate = cfg.delegate or (targets[0].delegate if targets else None) or "xnnpack"
    paths: dict[str, Path] = {}
    files: dict[str, dict[str, Any]] = {}
    try:
        for precision in cfg.precisions:
            path = sdir / f"model.{precision}.pte"
            if precision == "int8":
                cal = cfg.calibration
                idx = select_samples(data.train.y, cal.samples, cal.selection, recipe.seed)
                batches = (task.feed(data.train, idx[i:i + cal.batch_size]) for i in range(0, len(idx), cal.batch_size))
                model = quantize_pt2e(state.model, task, batches, per_channel=cfg.per_channel)
                info = export_pte(model, path, task, delegate=delegate)
                info["calibration"] = {"samples": len(idx), "selection": cal.selection}
            else:
                info = export_pte(state.model, path, task, delegate=delegate)
            paths[precision], files[precision] = path, info
    except UserError:
        raise
    except Exception as exc:  # torch.export / the quantizer / the partitioner refused this model
        raise UserError(f"ExecuTorch export failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}",
                        where=where, fix="use a model torch.export can capture (no data-dependent control flow), "
                        "or remove the executorch stage") from exc
    from ..evaluate import torch_predictor

    val = data.val if len(data.val) else data.test
    for precision, path in paths.items():
        files[precision].update(file=str(path.relative_to(ctx.run_dir)), size_mb=round(path.stat().st_size / 1e6, 6),
                                val_metric=evaluate_pte(path, val, task))
        agree = top1_agreement(torch_predictor(state.model, task), pte_predictor(path, task), val, task)
        if agree is not None:
            files[precision]["top1_agreement_vs_torch"] = agree
    timing = _time_files(cfg, ctx, state, paths, targets)
    shipped = _keep(cfg, paths, files, timing, task.metric.higher_is_better)
    for precision, info in files.items():
        if info["portable_ops"]:
            ctx.log(f"executorch: {precision} .pte runs {info['portable_nodes']} node(s) on portable kernels, not "
                    f"{delegate}: {', '.join(info['portable_ops'])}")
    ctx.log(f"executorch: {shipped['reason']}")
    details = {"executorch": {"delegate": delegate, "shipped": files[shipped["shipped"]]["file"],
                              "precision": shipped["shipped"], "files": files, "keep": shipped, "latency": timing}}
    record = StageRecord(index=ctx.index, kind="executorch", settings=cfg.model_dump(mode="json"),
                         seconds=time.perf_counter() - t0, metric_after=files[shipped["shipped"]]["val_metric"],
                         artifacts=[info["file"] for info in files.values()], details=details)
    return ModelState(state.model, state.spec, state.teacher, state.teacher_spec, state.onnx, [*state.lineage, record])


def top1_agreement(reference, candidate, split: Any, task: Any, batch_size: int = 256) -> float | None:
    """Share of samples where two predictors pick the same class (classification tasks; None otherwise)."""

    if task.metric.name != "accuracy":
        return None
    primary, same, total = task.output_names[0], 0, 0
    for i in range(0, len(split), batch_size):
        batch = task.feed(split, slice(i, i + batch_size))
        a, b = reference(batch)[primary], candidate(batch)[primary]
        same += int((a.argmax(1) == b.argmax(1)).sum())
        total += len(a)
    return round(same / total, 6) if total else None


def _time_files(cfg: ExecuTorchConfig, ctx: RunContext, state: ModelState, paths: dict[str, Path],
                targets: list[Any]) -> dict[str, Any]:
    """The .pte files and the run's ONNX file (in ONNX Runtime) timed in one interleaved run on the first
    usable ExecuTorch target; ratios are per file against the ONNX file."""
    from ..profile import profile_models
    from ..profile.latency import real_feed
    from ..quantize.keep import ratio_vs
    from ..target import availability

    if not cfg.measure_latency:
        return {"measured": False, "reason": "measure_latency: false"}
    reasons = []
    target = None
    for t in targets:
        ok, why = availability(t)
        if ok:
            target = t
            break
        reasons.append(f"{t.name}: {why}")
    if target is None:
        return {"measured": False, "reason": "; ".join(reasons) or "no executorch target"}
    onnx = state.onnx
    if onnx is None:  # no quantize stage yet: the float ONNX file is the reference
        from .onnx import export_onnx

        onnx = export_onnx(state.model, ctx.stage_dir / "reference.onnx", ctx.task)
    files = {"onnx": onnx, **{f"pte_{p}": path for p, path in paths.items()}}
    prof = ctx.recipe.config.profile
    samples = ctx.task.feed(ctx.data.val if len(ctx.data.val) else ctx.data.train, slice(None))
    names = {"input_names": list(ctx.task.input_names)}
    stats = profile_models(files, target, batch=1, threads=prof.threads, runs=prof.runs, warmup=prof.warmup,
                           burst=prof.burst, rounds=prof.rounds, feed=real_feed(samples, 1), op_profile_runs=0,
                           model_options={n: names for n in files if n.startswith("pte_")})
    return {"measured": True, "target": target.name, "threads": stats["onnx"]["threads"], "runs": stats["onnx"]["runs"],
            "p50_ms": {n: round(s["p50_ms"], 5) for n, s in stats.items()},
            "ratio_vs_onnx": {n: round(ratio_vs(stats, "onnx", n)["ratio"], 5) for n in files if n != "onnx"},
            "ratio_int8_vs_fp32": ratio_vs(stats, "pte_fp32", "pte_int8") if len(paths) == 2 else None,
            "fastest": min(stats, key=lambda n: 1.0 if n == "onnx" else ratio_vs(stats, "onnx", n)["ratio"]),
            "skipped_targets": reasons}


def _keep(cfg: ExecuTorchConfig, paths: dict[str, Path], files: dict[str, dict], timing: dict[str, Any],
          higher_is_better: bool) -> dict[str, Any]:
    from ..quantize.keep import decide

    if len(paths) == 1:
        only = next(iter(paths))
        return {"policy": cfg.keep, "shipped": only, "reason": f"keep: only the {only} .pte was built"}
    sign = 1.0 if higher_is_better else -1.0
    drop = round(sign * (files["fp32"]["val_metric"] - files["int8"]["val_metric"]), 6)
    ratio = timing.get("ratio_int8_vs_fp32") if timing.get("measured") else None
    decision = decide(cfg.keep, paths["fp32"], paths["int8"], ratio, "int8",
                      unmeasured=timing.get("reason", "not timed"), drop=drop, max_drop=cfg.keep_max_drop)
    decision["shipped"] = "fp32" if decision["shipped"] == "float" else "int8"
    decision["reason"] = decision["reason"].replace(" file", " .pte")
    return decision
