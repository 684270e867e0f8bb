"""Training-free choice of the student: DisWOT (Dong et al., CVPR 2023).

Training every candidate student to find the best one costs as much as the candidates together; DisWOT
ranks them at initialisation by how similar they already are to the teacher, from a few training batches:

- semantic similarity: class×class Gram matrices of class-wise gradient maps. As in the official code
  (searcher/evo_search_nb201.py), the map of class c is the gradient of the cross-entropy with respect to
  row c of the classifier weights (a Grad-CAM-style class activation map of the penultimate features);
  G = A·Aᵀ with every row L2-normalised; D_sem = ‖G_t − G_s‖²_F / C (the ICKD distance).
- relational similarity: sample×sample Gram matrices of the features before the global pooling (the
  classifier's input when there is no pooling), rows L2-normalised; D_rel = ‖G_t − G_s‖²_F / N² (the SP
  distance).

The DisWOT score is −(D_sem + D_rel), averaged over the batches: higher is more teacher-like. Each candidate's
untrained export is timed on the recipe's first target in one profiler run (with the teacher), and the
best-scoring candidate within the latency budget is the stage's student. The result is saved in the stage
folder, so `--resume` does not search again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from ..config import Strict
from ..errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import nn

RESULT_FILE = "student_search.json"


class StudentSearch(Strict):
    """`student: {search: {...}}`: the candidates and how they are judged."""

    candidates: list[Any] = Field(description="student model specs (as `student:`), at least 2")
    batches: int = Field(4, ge=1, le=1000, description="training batches the score averages over")
    batch_size: int = Field(64, ge=2, le=100_000, description="rows per scoring batch (the relational Gram is batch×batch)")
    latency_budget_ms: float | None = Field(None, gt=0, description="keep candidates whose p50 latency is at most this")
    latency_ratio: float | None = Field(None, gt=0, description="keep candidates at most this × the teacher's p50 latency (same run)")
    runs: int = Field(50, ge=1, le=100_000, description="timed runs per candidate (a short profile)")


def search_spec(student: Any) -> dict[str, Any] | None:
    """The `search` mapping of a `student:` value, or None for a plain model spec."""
    if isinstance(student, dict) and "search" in student:
        return student["search"]
    return None


def check_search(student: dict[str, Any]) -> tuple[tuple, str, str] | None:
    """(field path under `student`, message, fix) for a search spec that cannot work, at validation time."""
    from pydantic import ValidationError

    from ..models import check_model_config

    if set(student) != {"search"}:
        extra = sorted(k for k in student if k != "search")
        return (("student", extra[0]), "`student: {search: ...}` takes no other keys",
                "move model arguments into each candidate")
    raw = student["search"]
    if not isinstance(raw, dict):
        return (("student", "search"), "search must be a mapping", "e.g. search: {candidates: [{name: cnn, channels: [8, 16]}, ...]}")
    try:
        cfg = StudentSearch.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        return (("student", "search", *err["loc"]), err["msg"], "see docs/distillation.md (Choosing a student without training)")
    if len(cfg.candidates) < 2:
        return (("student", "search", "candidates"), f"a search needs at least 2 candidates, got {len(cfg.candidates)}",
                "list two or more student specs, e.g. [{name: cnn, channels: [8, 16]}, {name: cnn, channels: [16, 32]}]")
    if cfg.latency_budget_ms is not None and cfg.latency_ratio is not None:
        return (("student", "search", "latency_ratio"), "give latency_budget_ms or latency_ratio, not both",
                "keep one budget: milliseconds on the first target, or a fraction of the teacher's latency")
    for k, spec in enumerate(cfg.candidates):
        if isinstance(spec, dict) and "search" in spec:
            return (("student", "search", "candidates", k), "a candidate is a model spec, not a search",
                    "write e.g. {name: cnn, channels: [8, 16]}")
        try:
            check_model_config(spec, f"student.search.candidates.{k}")
        except UserError as exc:
            return (("student", "search", "candidates", k), exc.message, exc.fix or "")
    return None


# ---------------------------------------------------------------- the score
def gram_rows(x: torch.Tensor) -> torch.Tensor:
    """x·xᵀ of the rows of `x` (flattened), each row of the Gram matrix L2-normalised (ICKD / SP)."""
    import torch.nn.functional as F

    x = x.reshape(x.shape[0], -1)
    return F.normalize(x @ x.t(), dim=1)


def semantic_distance(grad_t: torch.Tensor, grad_s: torch.Tensor) -> float:
    """D_sem = ‖G_t − G_s‖²_F / C for class-wise maps (C × anything): the ICKD distance of the paper's code."""
    diff = gram_rows(grad_t) - gram_rows(grad_s)
    return float((diff * diff).sum() / grad_t.shape[0])


def relational_distance(feat_t: torch.Tensor, feat_s: torch.Tensor) -> float:
    """D_rel = ‖G_t − G_s‖²_F / N² for per-sample features (N × anything): the SP distance."""
    diff = gram_rows(feat_t) - gram_rows(feat_s)
    n = feat_t.shape[0]
    return float((diff * diff).sum() / (n * n))


def diswot_score(semantic: float, relational: float) -> float:
    """The paper's combination: the negated sum of the two distances (higher = more similar to the teacher)."""
    return -(semantic + relational)


def _classifier(model: nn.Module, where: str) -> nn.Linear:
    from torch import nn

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UserError("the student search needs a linear classifier head in every model", where=where,
                        fix="use image/text classifiers with a final nn.Linear (e.g. cnn, resnet)")
    return linears[-1]


def _feature_module(model: nn.Module, head: nn.Module) -> tuple[nn.Module, str]:
    """Where the relational features are read: the input of the last global pooling, else of the classifier."""
    from torch import nn

    pools = [m for m in model.modules() if isinstance(m, nn.AdaptiveAvgPool1d | nn.AdaptiveAvgPool2d | nn.AdaptiveAvgPool3d)]
    return (pools[-1], "before global pooling") if pools else (head, "classifier input")


def maps_and_features(model: nn.Module, task: Any, batch: dict[str, torch.Tensor], y: torch.Tensor,
                      where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(classifier-weight gradient of the label cross-entropy: C × d, features: N × ...) of one batch."""
    import torch

    head = _classifier(model, where)
    feat_module, _ = _feature_module(model, head)
    seen: list[torch.Tensor] = []
    hook = feat_module.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0].detach()))
    flag = head.weight.requires_grad
    head.weight.requires_grad_(True)
    try:
        with torch.enable_grad():
            logits = task.primary(task.forward(model, batch))
            loss = torch.nn.functional.cross_entropy(logits, y)
            (grad,) = torch.autograd.grad(loss, [head.weight])
    finally:
        hook.remove()
        head.weight.requires_grad_(flag)
    return grad.detach(), seen[-1]


def score_batches(teacher: nn.Module, student: nn.Module, task: Any, batches: list[tuple[dict, Any]],
                  where: str) -> dict[str, float]:
    """Mean semantic and relational distances over the batches, and the DisWOT score.

    The teacher runs as in distillation (eval); the student as it starts training (train mode, its
    initial weights), as in the official code. The student's running statistics change, so callers score a
    throw-away copy."""
    teacher.eval()
    student.train()
    sem, rel = [], []
    for batch, y in batches:
        g_t, f_t = maps_and_features(teacher, task, batch, y, "teacher")
        g_s, f_s = maps_and_features(student, task, batch, y, where)
        sem.append(semantic_distance(g_t, g_s))
        rel.append(relational_distance(f_t, f_s))
    s, r = sum(sem) / len(sem), sum(rel) / len(rel)
    return {"semantic_distance": s, "relational_distance": r, "score": diswot_score(s, r)}


# ---------------------------------------------------------------- the stage's call
def _sample_batches(split: Any, task: Any, cfg: StudentSearch, seed: int) -> list[tuple[dict, Any]]:
    import numpy as np
    import torch

    n = len(split)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    size = min(cfg.batch_size, n)
    out = []
    for b in range(cfg.batches):
        rows = order[(b * size) % n:][:size]
        if len(rows) < size:
            rows = np.concatenate([rows, order[: size - len(rows)]])
        rows = np.sort(rows)
        batch = task.trim(task.to_torch(task.feed(split, rows)))
        out.append((batch, torch.as_tensor(np.asarray(split.targets)[rows]).long()))
    return out


def _budget(cfg: StudentSearch, teacher_ms: float | None) -> tuple[float | None, str]:
    if cfg.latency_budget_ms is not None:
        return cfg.latency_budget_ms, f"latency_budget_ms {cfg.latency_budget_ms}"
    if cfg.latency_ratio is not None:
        return cfg.latency_ratio * teacher_ms, f"latency_ratio {cfg.latency_ratio} × teacher p50 {teacher_ms:.4f} ms"
    return None, "none (no budget given)"


def choose(rows: list[dict[str, Any]], budget_ms: float | None, where: str) -> int:
    """Index of the best-scoring row whose p50 is within `budget_ms`; a UserError naming the fastest if none is."""
    fits = [i for i, r in enumerate(rows) if budget_ms is None or r["p50_ms"] <= budget_ms]
    if not fits:
        fastest = min(range(len(rows)), key=lambda i: rows[i]["p50_ms"])
        r = rows[fastest]
        raise UserError(f"no candidate fits the latency budget of {budget_ms:.4f} ms; the fastest is candidate "
                        f"{fastest} {r['spec']} at {r['p50_ms']:.4f} ms", where=where,
                        fix="raise the budget, or add smaller candidates")
    return max(fits, key=lambda i: rows[i]["score"])


def run_search(raw: dict[str, Any], state: Any, ctx: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score, time and pick; returns (the chosen spec, the report entry `student_search`).

    A finished search saved in the stage folder is reused under `--resume` (same settings)."""
    import torch

    from ..io import write_json
    from ..models import build_model

    cfg = StudentSearch.model_validate(raw)
    where = f"stages.{ctx.index - 1}.student.search"
    saved = Path(ctx.stage_dir) / RESULT_FILE
    settings = cfg.model_dump(mode="json")
    if ctx.resume and saved.exists():
        report = json.loads(saved.read_text())
        if report.get("settings") == settings:
            report["reused"] = True
            ctx.log(f"student search: reused {saved} (--resume)")
            return report["candidates"][report["pick"]]["spec"], report
    t0 = time.perf_counter()
    data, recipe, task = ctx.data, ctx.recipe.config, ctx.task
    batches = _sample_batches(data.train, task, cfg, recipe.seed)
    teacher = state.teacher
    flags = [p.requires_grad for p in teacher.parameters()]
    rows: list[dict[str, Any]] = []
    models: dict[str, Any] = {}
    for k, spec in enumerate(cfg.candidates):
        torch.manual_seed(recipe.seed)  # the initial weights run_distill gives its (first) student
        model = build_model(spec, data.input_shape, data.num_classes, where=f"{where}.candidates.{k}",
                            task=task, teacher=teacher)
        params = sum(p.numel() for p in model.parameters())
        models[f"candidate{k}"] = model
        parts = score_batches(teacher, model, task, batches, f"{where}.candidates.{k}")
        rows.append({"index": k, "spec": dict(spec), "params": int(params), **parts})
    for p, flag in zip(teacher.parameters(), flags, strict=True):
        p.requires_grad_(flag)
    score_s = time.perf_counter() - t0
    timing = _time_candidates(models, teacher, ctx, cfg)
    for k, row in enumerate(rows):
        row["p50_ms"] = timing["p50_ms"].get(f"candidate{k}")
    budget, budget_text = _budget(cfg, timing["p50_ms"].get("teacher"))
    if budget is not None and timing["target"] is None:
        raise UserError(f"the latency budget cannot be checked: no target is usable here ({timing['reason']})",
                        where=f"{where}.{'latency_budget_ms' if cfg.latency_budget_ms is not None else 'latency_ratio'}",
                        fix="list a target this machine runs first in `targets`, or remove the budget")
    if timing["target"] is None:
        pick = max(range(len(rows)), key=lambda i: rows[i]["score"])
    else:
        pick = choose(rows, budget, f"{where}.{'latency_budget_ms' if cfg.latency_budget_ms is not None else 'latency_ratio'}")
    report = {"settings": settings, "method": "DisWOT: score = -(semantic_distance + relational_distance)",
              "candidates": rows, "pick": pick, "picked_spec": rows[pick]["spec"],
              "budget_ms": budget, "budget": budget_text, "teacher_p50_ms": timing["p50_ms"].get("teacher"),
              "latency": {k: v for k, v in timing.items() if k != "p50_ms"},
              "score_seconds": round(score_s, 3), "seconds": round(time.perf_counter() - t0, 3), "reused": False}
    write_json(saved, report)
    ctx.log(f"student search: picked candidate {pick} {rows[pick]['spec']} (score {rows[pick]['score']:.4f})")
    return rows[pick]["spec"], report


def _time_candidates(models: dict[str, Any], teacher: Any, ctx: Any, cfg: StudentSearch) -> dict[str, Any]:
    """p50 of every untrained candidate and the teacher, exported as the pipeline exports, in one profiler run."""
    import tempfile

    from ..export import export_onnx
    from ..profile import profile_on_first_target

    recipe, task = ctx.recipe.config, ctx.task
    profile = recipe.profile.model_copy(update={"runs": cfg.runs, "warmup": min(recipe.profile.warmup, max(2, cfg.runs // 10))})
    samples = task.feed(ctx.data.val if len(ctx.data.val) else ctx.data.train, slice(None))
    with tempfile.TemporaryDirectory(prefix="edgedistill-search-") as tmp:
        files = {name: export_onnx(m, Path(tmp) / f"{name}.onnx", task) for name, m in {**models, "teacher": teacher}.items()}
        target, stats, reasons = profile_on_first_target(files, recipe.targets, profile, samples)
    if target is None:
        return {"target": None, "reason": "; ".join(reasons), "p50_ms": {}}
    any_stats = next(iter(stats.values()))
    return {"target": target.name, "batch": any_stats["batch"], "threads": any_stats["threads"], "runs": cfg.runs,
            "skipped_targets": reasons, "p50_ms": {k: round(float(s["p50_ms"]), 5) for k, s in stats.items()}}


def resolve_student(student: dict[str, Any] | None, state: Any, ctx: Any) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The stage's student spec: `student` itself, or the pick of its search (with the search's report)."""
    raw = search_spec(student)
    if raw is None:
        return student, None
    return run_search(raw, state, ctx)
