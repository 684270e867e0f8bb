"""After the stages: measure the teacher, the student and the deployed file the same way, and write it all down.

All three models are exported and scored by ONNX Runtime through one code path, and profiled together in
one process with interleaved bursts, so their latencies can be compared. The deployed metric always comes
from running the shipped file.
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data import Dataset
from ..io import file_size_mb, sha256_file, write_json
from ..state import ModelState

if TYPE_CHECKING:
    import torch

    from ..recipe import GatesConfig, Recipe
    from ..tasks import Task

SCHEMA_VERSION = 1


def environment() -> dict[str, Any]:
    import onnxruntime
    import torch

    from .. import __version__
    from ..target import cpu_flags, cpu_name

    return {"python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "edgedistill": __version__, "platform": sys.platform, "machine": platform.machine(),
            "cpu": cpu_name(), "cpu_flags": cpu_flags()}


def _params(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def latency_key(target: str, batch: int, first_batch: int, sequence: int | None = None,
                first_sequence: int | None = None) -> str:
    """The contract keys latency by target name (its first batch size and sequence length); other batch sizes
    get `<target>@b<N>`, other sequence lengths `<target>@s<L>` (both: `<target>@b<N>s<L>`)."""
    suffix = (f"b{batch}" if batch != first_batch else "") + (f"s{sequence}" if sequence != first_sequence else "")
    return f"{target}@{suffix}" if suffix else target


def session_options_of(state: ModelState) -> dict[str, Any]:
    """The ONNX Runtime session options the last stage that chose them picked for the shipped file ({} = defaults)."""
    for record in reversed(state.lineage):
        chosen = (record.details or {}).get("session_options")
        if chosen:
            return dict(chosen.get("options") or {})
    return {}


def first_latency(entry: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The first latency entry (first usable target, first batch and sequence length) of a model in the report."""
    return next(iter((entry.get("latency") or {}).items()), None)


def evaluate_gates(gates_cfg: GatesConfig, models: dict[str, dict], higher_is_better: bool) -> list[dict[str, Any]]:
    """The run's own gates: the deployed file against the teacher and against absolute limits."""
    deployed, teacher = models["deployed"], models["teacher"]
    out = []
    if gates_cfg.accuracy_drop is not None:
        drop = teacher["metric"] - deployed["metric"] if higher_is_better else deployed["metric"] - teacher["metric"]
        out.append({"name": "accuracy_drop", "limit": gates_cfg.accuracy_drop, "value": round(drop, 6),
                    "passed": drop <= gates_cfg.accuracy_drop, "against": "teacher"})
    if gates_cfg.min_metric is not None:
        ok = deployed["metric"] >= gates_cfg.min_metric if higher_is_better else deployed["metric"] <= gates_cfg.min_metric
        out.append({"name": "min_metric", "limit": gates_cfg.min_metric, "value": deployed["metric"], "passed": ok})
    if gates_cfg.max_latency_ratio is not None:
        first = first_latency(deployed)
        ratio = first[1].get("ratio_vs_teacher") if first else None
        if ratio is None:
            out.append({"name": "max_latency_ratio", "limit": gates_cfg.max_latency_ratio, "value": None,
                        "passed": True, "skipped": True, "reason": "no target of the recipe runs on this machine"})
        else:
            out.append({"name": "max_latency_ratio", "limit": gates_cfg.max_latency_ratio, "value": ratio,
                        "passed": ratio <= gates_cfg.max_latency_ratio, "target": first[0], "against": "teacher"})
    if gates_cfg.max_size_mb is not None:
        out.append({"name": "max_size_mb", "limit": gates_cfg.max_size_mb, "value": deployed["size_mb"],
                    "passed": deployed["size_mb"] <= gates_cfg.max_size_mb})
    return out


def finish_run(recipe: Recipe, run_dir: Path, data: Dataset, state: ModelState, total_seconds: float,
               task: Task, student_data: Dataset | None = None, student_task: Task | None = None,
               invocation: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate and profile teacher, student and shipped file side by side; write report.json and the bundle.

    `student_data`/`student_task`: the student's own tokenization when a vocab stage pruned its vocabulary
    (the teacher is scored on `data`, the student and the shipped file on theirs; same texts, same metric).
    `invocation`: how this command ran (threads, the stages it reused from an earlier run), for the report."""
    from ..export import export_onnx
    from ..export.onnx import copy_onnx
    from ..profile import interleaved_ratio, profile_models
    from ..profile.latency import fit_sequence, real_feed
    from ..target import availability, load_target
    from . import runtimes
    from .bundle import write_bundle
    from .html import write_html

    cfg = recipe.config
    s_data, s_task = student_data or data, student_task or task
    compare = run_dir / "compare"
    compare.mkdir(parents=True, exist_ok=True)
    files = {
        "teacher": export_onnx(state.teacher, compare / "teacher.onnx", task),
        "student": export_onnx(state.model, compare / "student.onnx", s_task),
        "deployed": copy_onnx(state.onnx, compare / "deployed.onnx")[0],
    }
    split = data.split(cfg.evaluate.split)
    splits = {"teacher": (split, task), "student": (s_data.split(cfg.evaluate.split), s_task),
              "deployed": (s_data.split(cfg.evaluate.split), s_task)}
    metric_name, higher = task.metric.name, task.metric.higher_is_better
    models: dict[str, dict[str, Any]] = {
        "teacher": {"params": _params(state.teacher)},
        "student": {"params": _params(state.model)},
        "deployed": {"path": "bundle/model.onnx", "params": _params(state.model), "metric_measured_on": "onnxruntime"},
    }
    extra = runtimes.extra_artifacts(state, run_dir, compare)  # e.g. the ExecuTorch .pte, scored in its runtime
    for name, (path, entry) in extra.items():
        files[name], splits[name] = path, splits["deployed"]
        models[name] = {**entry, "params": _params(state.model)}
    for name, path in files.items():
        models[name].update(size_mb=round(file_size_mb(path), 6), metric=runtimes.score_file(path, *splits[name]),
                            latency={})
    models["student"]["metric_measured_on"] = models["teacher"]["metric_measured_on"] = "onnxruntime"

    shipped_options = session_options_of(state)
    if shipped_options:
        models["deployed"]["session_options"] = shipped_options
    targets: dict[str, dict[str, Any]] = {}
    target_list = [load_target(t) for t in cfg.targets]
    for target in target_list:
        usable, reason = availability(target)
        if usable and target.runtime == "executorch" and runtimes.EXECUTORCH_MODEL not in files:
            usable, reason = False, "the recipe has no executorch stage, so there is no .pte to time"
        targets[target.name] = {"available": usable, "reason": reason, "quant_preset": target.quant_preset,
                                "spec": target.model_dump(mode="json")}  # lets `check` re-profile custom targets
        if not usable:
            continue
        batches = [cfg.profile.batch] if cfg.profile.batch else target.batch_sizes
        tokens = any("sequence" in s.dims for s in task.inputs)  # text: the target may ask for token lengths
        lengths = cfg.profile.sequence_lengths or target.sequence_lengths
        seqs: list[int | None] = list(lengths) if tokens and lengths else [None]
        samples = s_task.feed(s_data.test, slice(None))  # the student's ids are valid in the teacher's table too
        for batch, seq in ((b, s) for b in batches for s in seqs):
            feed = real_feed(samples if seq is None else fit_sequence(samples, seq), batch)
            timed = runtimes.files_for_target(files, target, batch)
            options = {**runtimes.model_options(timed, s_task), **({"deployed": shipped_options} if shipped_options else {})}
            result = profile_models(timed, target, batch=batch, threads=cfg.profile.threads, runs=cfg.profile.runs,
                                    warmup=cfg.profile.warmup, burst=cfg.profile.burst, rounds=cfg.profile.rounds,
                                    feed=feed, sequence=seq, model_options=options or None)
            base = result.get("teacher") or {}
            for name, stats in result.items():
                stats["runtime"] = runtimes.runtime_of(timed[name], target)
                if base.get("samples_ms") and stats.get("samples_ms") and name != "teacher":
                    stats["ratio_vs_teacher"] = round(interleaved_ratio(base["samples_ms"], stats["samples_ms"],
                                                                        int(base["burst"]))["ratio"], 5)
                models[name]["latency"][latency_key(target.name, batch, batches[0], seq, seqs[0])] = stats

    gates = evaluate_gates(cfg.gates, models, higher)
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "recipe": {"name": recipe.name, "sha256": recipe.sha256, "resolved": recipe.resolved(), "source": recipe.source},
        "environment": environment(),
        "task": task.report_name or task.kind,
        "metric": {"name": metric_name, "higher_is_better": higher, "split": cfg.evaluate.split,
                   "samples": len(split)},
        "models": models,
        "targets": targets,
        "stages": [{"kind": r.kind, "index": r.index, "seconds": round(r.seconds, 3), "metric_after": r.metric_after,
                    "settings": r.settings, "artifacts": r.artifacts, "details": r.details} for r in state.lineage],
        "gates": gates,
        "passed": all(g["passed"] for g in gates),
        "total_seconds": round(total_seconds, 3),
    }
    if invocation is not None:
        report["invocation"] = invocation
    dataset_meta = {**s_task.bundle_meta(), **({"session_options": shipped_options} if shipped_options else {})}
    bdir = write_bundle(run_dir, state.onnx, dataset_meta=dataset_meta, report=report, snippets=s_task.snippets,
                        targets=target_list, extras=runtimes.bundle_extras(files, models))
    # what `check` compares the artifact against: the report's numbers belong to exactly these bytes
    models["deployed"]["sha256"] = sha256_file(bdir / "model.onnx")
    if (bdir / "model.onnx.data").exists():
        models["deployed"]["data_sha256"] = sha256_file(bdir / "model.onnx.data")
    if runtimes.EXECUTORCH_MODEL in models:
        models[runtimes.EXECUTORCH_MODEL]["sha256"] = sha256_file(bdir / "model.pte")
    if invocation is not None:  # this command's wall time, imports and data loading included
        from .. import STARTED

        invocation["wall_seconds"] = round(time.monotonic() - STARTED, 3)
    write_json(run_dir / "report.json", report)
    write_html(report, run_dir / "report.html")
    return report
