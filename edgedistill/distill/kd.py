"""Train one student against one or more teachers with the recipe's weighted sum of loss terms.

The stage composes three things and branches on none of them: the registered terms (terms/: what each
needs, its helpers, its state), the teacher-target provider (targets.py: cache, live or per-epoch
augmented), and the temperature schedule (schedules.py). `fit` does the training loop.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from ..train import fit
from .augment import split_views
from .features import Recorder
from .losses import forward_kl, standardize
from .schedules import TemperatureState
from .targets import TeacherTargets
from .terms import TERMS, Batch, Term, TermSetup
from .terms.base import TEACHER_ACTIVATIONS, TEACHER_OUTPUT, TEACHER_PROBS


def build_terms(cfg: Any, setup: TermSetup, task: Any, index: int) -> list[Term]:
    """The stage's terms, in summing order (a fixed order per family, then the recipe's)."""
    specs = cfg.loss_terms(task)
    terms = []
    for i, spec in enumerate(specs):
        where = f"stages.{index - 1}.losses.{i}"
        terms.append(TERMS[spec.name](spec, TermSetup(**{**setup.__dict__, "where": where})))
    return sorted(terms, key=lambda t: t.order)  # stable: the recipe's order within a family


def _dry_pass(student: nn.Module, teacher: nn.Module | None, probe: Any) -> None:
    """One forward pass that fills the recorders; the teacher runs only when something is recorded inside it."""
    was_training = student.training
    student.eval()
    with torch.no_grad():
        probe(student)
        if teacher is not None:
            probe(teacher)
    student.train(was_training)


def train_student(
    name: str,
    student: nn.Module,
    teachers: list[nn.Module],
    weights: list[float],
    cfg: Any,
    ctx: Any,
    *,
    seed: int,
    checkpoint: Path | None,
    train: Any = None,
) -> dict[str, Any]:
    """Distill `teachers` into `student` (in place, best validation epoch kept); returns the step's report entry.

    `train` is the split to train on (a stage's own `data:`); validation always uses the recipe's data."""
    t0 = time.perf_counter()
    data, recipe, task = ctx.data, ctx.recipe.config, ctx.task
    train = data.train if train is None else train
    batch_size = cfg.train.batch_size or recipe.data.batch_size
    specs = cfg.loss_terms(task)
    if getattr(task, "default_distill_loss", None):
        logit = [s.name for s in specs if TERMS[s.name].uses_temperature or s.name == "ce"]
        if logit:
            raise UserError(f'{task.kind} has no class logits: the loss terms {", ".join(logit)} do not apply',
                            where=f"stages.{ctx.index - 1}.losses",
                            fix="use embedding_mse or embedding_cosine (the default), or feature terms")
    temp = TemperatureState(cfg.temperature, cfg.temperature_schedule)
    n_train = len(train)
    probe_batch = task.trim(task.to_torch({k: v[: min(4, n_train)] for k, v in train.inputs.items()}))

    def probe(model: nn.Module) -> object:
        return task.forward(model, probe_batch)

    setup = TermSetup(student=student, teacher=teachers[0], task=task, probe=probe,
                      num_classes=getattr(data, "num_classes", None), n_train=n_train, cfg=cfg, where="")
    terms = build_terms(cfg, setup, task, ctx.index)
    needs = frozenset().union(*(t.needs for t in terms))
    # recorders on both networks; connectors and projections sized by one dry forward pass
    s_names = [n for t in terms for n in t.record()[0]]
    t_names = [n for t in terms for n in t.record()[1]]
    s_rec = Recorder(student, s_names) if s_names else None
    t_rec = Recorder(teachers[0], t_names) if t_names else None
    if s_names or t_names:
        _dry_pass(student, teachers[0] if t_names else None, probe)
        for term in terms:
            term.build(s_rec.outputs if s_rec else {}, t_rec.outputs if t_rec else {})
    helpers = nn.ModuleList([m for t in terms if (m := t.modules()) is not None])
    provider = TeacherTargets(teachers, cfg, ctx, train, seed=seed, task=task,
                              needs_outputs=bool(needs & {TEACHER_PROBS, TEACHER_OUTPUT}),
                              needs_activations=TEACHER_ACTIVATIONS in needs)
    follows_gap = cfg.temperature_schedule.kind == "dynamic" and any(t.uses_temperature for t in terms)

    def on_step(epoch: int, step: int, total: int) -> None:
        temp.at_step(step, total)
        provider.on_step(epoch)
        for term in terms:
            term.on_step(step, total)

    def compute_loss(model: nn.Module, x: dict[str, torch.Tensor], y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        x, x_teacher = split_views(x)  # both already augmented as the recipe asks, in the loader
        s = task.primary(task.forward(model, x))
        targets = provider.targets(x_teacher, idx)
        b = Batch(x=x, y=y, idx=idx, student=s, student_kd=standardize(s) if cfg.standardize and targets else s,
                  temperature=temp.value, s_features=s_rec.outputs if s_rec else {},
                  t_features=t_rec.outputs if t_rec else {}, targets=targets, weights=weights)
        loss = s.new_zeros(())
        parts = []
        for term in terms:
            part = term.contribution(b)
            parts.append(part)
            loss = loss + part
        if targets is not None and follows_gap:  # the dynamic schedule follows KL(p ‖ q) at T = 1
            with torch.no_grad():
                temp.observe_gap(forward_kl(b.student_kd, b.teacher_probs(1.0), y, 1.0).item())
        for term, part in zip(terms, parts, strict=True):
            term.observe(b, part)
        return loss

    params = list(helpers.parameters())
    before = [p.detach().clone() for p in params]
    state: dict[str, Any] = {"temperature": temp}
    state.update({f"term{i}": t for i, t in enumerate(terms) if t.state_dict()})
    try:
        result = fit(student, train, data.val, compute_loss, cfg.train, batch_size=batch_size, seed=seed,
                     task=task, label=f"stage {ctx.index} (distill, {name})", checkpoint=checkpoint,
                     resume=ctx.resume, extra_params=params, on_step=on_step, state=state, transform=provider.shift)
    finally:
        for rec in (s_rec, t_rec):
            if rec is not None:
                rec.remove()
        provider.close()
    reports = [t.report() for t in terms]
    return {
        "params": sum(p.numel() for p in student.parameters()),
        "train_rows": n_train,
        "val_metric": result.best_metric,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "history": result.history,
        "resumed_from_epoch": result.resumed_from_epoch,
        "seconds": round(time.perf_counter() - t0, 3),
        "temperature_final": temp.value,
        "teacher_forward_calls": provider.forward_calls(),
        "cache": provider.report(),
        "terms": reports,
        "features": [r for r in reports if "connectors" in r],
        "transformer_terms": [r for r in reports if "projection_params" in r],
        "connector_params": sum(p.numel() for p in params),
        # how far training moved the helpers (they train with the student, but are never part of it)
        "connector_update_norm": float(sum((p.detach() - b).norm() ** 2 for p, b in zip(params, before, strict=True)) ** 0.5),
        "world_size": result.world_size,
        "train_rows_read": result.rows_read,  # by this process: under torchrun, rank 0's share of the epochs
    }
