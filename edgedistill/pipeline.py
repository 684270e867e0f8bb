"""The pipeline runner: run directory, stage order, per-stage checkpoints and `--resume`.

Each stage writes `stages/<n>-<kind>/` with the student's weights (safetensors), its spec and `record.json`.
`record.json` is written last and carries the stage's content key, so on `--resume` a stage is skipped only
when it finished and nothing it depends on changed; once one stage re-runs, every later stage does too.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import jsonsafe, threads
from .crash import set_run_dir
from .data import Dataset, load_dataset
from .errors import UserError
from .io import load_weights, save_weights, write_json, write_text
from .models import build_model
from .models.probe import probe_recipe
from .progress import log_line
from .recipe import Recipe
from .rundir import claim
from .stages import load_stages
from .state import ModelState, RunContext, StageRecord
from .tasks import Task, build_task
from .train.distributed import barrier, is_main_process, rank
from .vocab.stage import student_data


@dataclass
class RunResult:
    run_dir: Path
    report: dict[str, Any]
    skipped_stages: list[str]
    notes: list[str]


def default_run_dir(recipe: Recipe) -> Path:
    return Path("runs") / recipe.name


def _stage_dir(run_dir: Path, index: int, kind: str) -> Path:
    return run_dir / "stages" / f"{index}-{kind}"


def _load_record(stage_dir: Path, key: str) -> StageRecord | None:
    path = stage_dir / "record.json"
    if not path.exists():
        return None
    try:
        saved = jsonsafe.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("key") != key:
        return None
    try:
        return StageRecord(**saved["record"])
    except (KeyError, TypeError):  # a damaged record: the stage runs again
        return None


def _stage_json(path: Path) -> dict:
    """A finished stage's own JSON file; a damaged one is bad input (the run folder was changed by hand)."""
    try:
        doc = jsonsafe.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise UserError(f"unreadable: {exc}", where=str(path), fix="restore the run folder, or start again with --overwrite") from None
    if not isinstance(doc, dict):
        raise UserError("expected a JSON object", where=str(path), fix="restore the run folder, or start again with --overwrite")
    return doc


def _save_stage(stage_dir: Path, key: str, record: StageRecord, model, spec: dict, onnx: Path | None,
                run_dir: Path) -> None:
    save_weights(model, stage_dir / "model.safetensors")
    write_json(stage_dir / "spec.json", spec)
    onnx_rel = str(onnx.relative_to(run_dir)) if onnx is not None else None
    write_json(stage_dir / "record.json", {"key": key, "record": record.to_json(), "onnx": onnx_rel})


def _prepare_stage_dir(stage_dir: Path, key: str, keep: bool) -> bool:
    """Make the stage folder ready to run; True when its in-stage checkpoints belong to this key.

    A folder left by an interrupted run of the same settings keeps its checkpoints (mid-stage resume);
    one left by other settings is emptied, so a stale checkpoint can never be resumed into.
    """
    key_file = stage_dir / "key"
    same = keep and key_file.exists() and key_file.read_text().strip() == key
    if not same:
        shutil.rmtree(stage_dir, ignore_errors=True)
    stage_dir.mkdir(parents=True, exist_ok=True)
    write_text(key_file, key)
    return same


def _restore(stage_dir: Path, data: Dataset, task: Task, teacher=None):
    spec = _stage_json(stage_dir / "spec.json")
    model = build_model(spec, data.input_shape, data.num_classes, where=str(stage_dir / "spec.json"), task=task,
                        teacher=teacher)
    load_weights(model, stage_dir / "model.safetensors")
    onnx = _stage_json(stage_dir / "record.json").get("onnx")
    run_dir = stage_dir.parent.parent
    if onnx is not None and (not isinstance(onnx, str) or not (run_dir / onnx).resolve().is_relative_to(run_dir.resolve())):
        raise UserError(f"onnx: {str(onnx)[:80]!r} is not a file inside the run folder", where=str(stage_dir / "record.json"),
                        fix="restore the run folder, or start again with --overwrite")
    return model.eval(), spec, onnx


def run_pipeline(recipe: Recipe, out_dir: str | Path | None = None, resume: bool = False,
                 overwrite: bool = False, threads_flag: int | None = None) -> RunResult:
    """Run every stage of `recipe`, then evaluate and profile the artifact and write the report and bundle.

    A folder holding an earlier run's results needs `resume` (continue it) or `overwrite` (replace it); a
    second run on a folder in use is refused (see rundir.py). `threads_flag` is `--threads` (see threads.py)."""
    if out_dir is not None and not str(out_dir).strip():  # Path("") is ".": it would run in the current folder
        raise UserError("--out is empty", where="--out", fix="name the run folder, or leave --out out (runs/<recipe name>)")
    run_dir = Path(out_dir) if out_dir is not None else default_run_dir(recipe)
    threads.apply(threads.resolve(threads_flag, recipe.config.threads))
    if not is_main_process():  # torchrun: other ranks train in lockstep but write only to a throwaway folder
        return _run(recipe, run_dir, resume)
    with claim(run_dir, resume=resume, overwrite=overwrite):
        set_run_dir(run_dir)
        return _run(recipe, run_dir, resume)


def _run(recipe: Recipe, run_dir: Path, resume: bool) -> RunResult:
    from .report.build import finish_run
    from .teacher import prepare_teacher

    cfg = recipe.config
    main_dir = run_dir
    if not is_main_process():
        run_dir = Path(tempfile.mkdtemp(prefix=f"edgedistill-rank{rank()}-"))
        if resume and (main_dir / "stages").exists():
            shutil.copytree(main_dir / "stages", run_dir / "stages", dirs_exist_ok=True)
    barrier()
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "recipe.yaml", recipe.raw_text)
    write_json(run_dir / "recipe.resolved.json", {"sha256": recipe.sha256, "source": recipe.source,
                                                 "resolved": recipe.resolved()})
    used = threads.chosen()
    log_line(f"run {recipe.name} → {main_dir} ({used.count} thread(s), from {used.source})")
    log_line(f"loading data ({cfg.data.name})")
    data = load_dataset(cfg.data)
    task = build_task(cfg.task, data)
    probe_recipe(recipe, data, task)  # a model that cannot take this data fails now, not after training
    stages = load_stages()
    skipped: list[str] = []
    notes: list[str] = []
    t_start = time.perf_counter()

    # stage 0: the teacher
    tdir = _stage_dir(run_dir, 0, "teacher")
    tkey = recipe.stage_key(-1)
    record = _load_record(tdir, tkey) if resume else None
    if record is not None:
        teacher, tspec, _ = _restore(tdir, data, task)
        skipped.append("0-teacher")
        log_line("stage 0-teacher: reused from the earlier run")
    else:
        log_line("stage 0-teacher: started")
        inside = _prepare_stage_dir(tdir, tkey, keep=resume)
        tspec = dict(cfg.teacher.model)
        teacher, record = prepare_teacher(cfg.teacher, data, task, seed=cfg.seed, batch_size=cfg.data.batch_size,
                                          stage_dir=tdir, resume=inside)
        _save_stage(tdir, tkey, record, teacher, tspec, None, run_dir)
        log_line(f"stage 0-teacher: done in {record.seconds:.1f} s{_metric_note(record)}")
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    start = copy.deepcopy(teacher)  # the first stage's "current model": trainable, unlike the teacher it copies
    for p in start.parameters():
        p.requires_grad_(True)
    state = ModelState(start, tspec, teacher, tspec, None, [record])
    rerun = "0-teacher" not in skipped  # a re-trained teacher invalidates every later stage
    s_data, s_task = data, task  # what the student is fed: re-tokenized once a vocab stage prunes its vocabulary

    for i, stage_cfg in enumerate(cfg.stages, start=1):
        spec = stages[stage_cfg.kind]
        sdir = _stage_dir(run_dir, i, stage_cfg.kind)
        key = recipe.stage_key(i - 1)
        record = None if (rerun or not resume) else _load_record(sdir, key)
        if record is not None:
            model, mspec, onnx_rel = _restore(sdir, s_data, s_task, teacher)
            state = ModelState(model, mspec, teacher, tspec, run_dir / onnx_rel if onnx_rel else None,
                               [*state.lineage, record])
            skipped.append(sdir.name)
            log_line(f"stage {sdir.name}: reused from the earlier run")
            s_data, s_task = student_data(sdir, recipe, s_data, s_task)
            continue
        log_line(f"stage {sdir.name}: started")
        inside = _prepare_stage_dir(sdir, key, keep=resume and not rerun)
        rerun = True
        ctx = RunContext(run_dir=run_dir, stage_dir=sdir, data=s_data, recipe=recipe, index=i, resume=inside,
                         task=s_task)
        state = spec.run(state, stage_cfg, ctx)
        s_data, s_task = student_data(sdir, recipe, s_data, s_task)
        notes.extend(ctx.notes)
        _save_stage(sdir, key, state.lineage[-1], state.model, state.spec, state.onnx, run_dir)
        log_line(f"stage {sdir.name}: done in {state.lineage[-1].seconds:.1f} s{_metric_note(state.lineage[-1])}")

    if state.onnx is None:
        raise UserError("no stage produced an exported file", where="stages", fix="end the recipe with an export stage")
    if not is_main_process():  # rank 0 measures and writes the report; the other ranks return the same one
        barrier()
        shutil.rmtree(run_dir, ignore_errors=True)
        return RunResult(main_dir, json.loads((main_dir / "report.json").read_text()), skipped, notes)
    log_line("evaluating and profiling the exported file")
    invocation = {"threads": used.to_json(), "resumed": resume, "reused_stages": skipped}
    report = finish_run(recipe, run_dir, data, state, total_seconds=time.perf_counter() - t_start, task=task,
                        student_data=s_data, student_task=s_task, invocation=invocation)
    log_line(f"done: report {run_dir / 'report.json'}")
    barrier()
    return RunResult(run_dir, report, skipped, notes)


def _metric_note(record: StageRecord) -> str:
    return f", {record.metric_after:.4g} on validation" if record.metric_after is not None else ""
