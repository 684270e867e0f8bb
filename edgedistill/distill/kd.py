"""Train one student against one or more teachers with the recipe's weighted sum of loss terms.

This is where the pieces meet: teacher outputs (cached or live, possibly augmented per epoch), the
temperature schedule, logit terms, feature terms with their recorders and connectors, and `fit`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from ..train import distributed as dd
from ..train import fit
from . import transformer_losses as _transformer_losses  # noqa: F401  (registers the output losses)
from .augment import ShiftInputs, split_views
from .cache import Targets, TeacherOutputs, count_calls, load_or_build
from .features import FEATURE_LOSSES, FeatureTerm, Recorder, check_layers, evenly_spaced
from .losses import LOGIT_LOSSES, OUTPUT_LOSSES, standardize
from .pair_losses import PAIR_LOSSES
from .schedules import TemperatureState
from .transformer_terms import TRANSFORMER_TERMS, TransformerTerm


def _feature_terms(cfg, student: nn.Module, teacher: nn.Module, probe, task=None) -> list[FeatureTerm]:
    terms = []
    for i, term in enumerate(cfg.loss_terms(task)):
        if term.name not in FEATURE_LOSSES:
            continue
        where = f"losses.{i}"
        if term.evenly:
            s_names, t_names = evenly_spaced(student, term.evenly, probe), evenly_spaced(teacher, term.evenly, probe)
            n = min(len(s_names), len(t_names))
            s_names, t_names = s_names[-n:], t_names[-n:]
        else:
            s_names, t_names = list(term.student_layers or []), list(term.teacher_layers or [])
            check_layers(student, s_names, f"{where}.student_layers")
            check_layers(teacher, t_names, f"{where}.teacher_layers")
        terms.append(FeatureTerm(term.name, term.weight, list(zip(s_names, t_names, strict=True))))
    return terms


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
    terms = cfg.loss_terms(task)
    logit_terms = [t for t in terms if t.name in LOGIT_LOSSES]
    output_terms = [t for t in terms if t.name in OUTPUT_LOSSES]
    pair_terms = [t for t in terms if t.name in PAIR_LOSSES]  # gold scores of stacked pairs: no teacher
    if logit_terms and getattr(task, "default_distill_loss", None):
        raise UserError(f'{task.kind} has no class logits: the loss terms {", ".join(t.name for t in logit_terms)} '
                        "do not apply", where=f"stages.{ctx.index - 1}.losses",
                        fix="use embedding_mse or embedding_cosine (the default), or feature terms")
    needs_teacher = any(t.name != "ce" for t in logit_terms) or bool(output_terms)
    temp = TemperatureState(cfg.temperature, cfg.temperature_schedule)
    transform = standardize if cfg.standardize else None
    aug = cfg.augment
    n_train = len(train)
    probe_batch = task.trim(task.to_torch({k: v[: min(4, n_train)] for k, v in train.inputs.items()}))

    def probe(model: nn.Module) -> object:
        return task.forward(model, probe_batch)

    # features: recorders on both networks, connectors sized by one dry forward pass; transformer terms record
    # layer outputs and q/k/v projections the same way, and size their hidden-state projections from that pass
    feature_terms = _feature_terms(cfg, student, teachers[0], probe, task)
    inner_terms = [TransformerTerm(term, student, teachers[0], f"stages.{ctx.index - 1}.losses.{i}")
                   for i, term in enumerate(terms) if term.name in TRANSFORMER_TERMS]
    s_names = [s for ft in feature_terms for s, _ in ft.pairs] + [n for it in inner_terms for n in it.modules()[0]]
    t_names = [t for ft in feature_terms for _, t in ft.pairs] + [n for it in inner_terms for n in it.modules()[1]]
    s_rec = Recorder(student, s_names) if s_names else None
    t_rec = Recorder(teachers[0], t_names) if t_names else None
    connectors = nn.ModuleList()
    if s_names:
        was_training = student.training
        student.eval()
        with torch.no_grad():
            probe(student)
            probe(teachers[0])
        student.train(was_training)
        for ft in feature_terms:
            ft.build_connectors(s_rec.outputs, t_rec.outputs)
            connectors.append(ft.connectors)
        for it in inner_terms:
            it.build(s_rec.outputs, t_rec.outputs)
            connectors.append(it.projections)

    if output_terms:  # an embedding is compared as it is: a narrower student needs hidden_mse's projections
        was_training = student.training
        student.eval()
        with torch.no_grad():
            widths = [tuple(task.primary(probe(m)).shape[1:]) for m in (student, teachers[0])]
        student.train(was_training)
        if widths[0] != widths[1]:
            raise UserError(f"{output_terms[0].name} compares the outputs directly, but the student's is "
                            f"{list(widths[0])} wide and the teacher's {list(widths[1])}",
                            where=f"stages.{ctx.index - 1}.losses",
                            fix="keep the teacher's hidden size, or use hidden_mse (learned projections) and "
                                "minilmv2_relations, which work across widths")

    # teacher outputs: cached (once, or once per epoch with augmentation) or live
    cache_dir = Path(cfg.cache.dir).expanduser() if cfg.cache.dir else ctx.run_dir / "cache"
    # teacher_sees: original → the teacher labels the unmoved input, so one pass over the data serves every epoch
    # (validation refuses it with feature terms, which compare activations position by position)
    moved = aug.active and aug.teacher_sees == "augmented"
    live_reason = None
    recorded = bool(feature_terms or inner_terms)
    if not needs_teacher and not recorded:
        live_reason = "no teacher term"
    elif not cfg.cache.enabled:
        live_reason = "cache.enabled is false"
    elif moved and cfg.cache.augmented == "live":
        live_reason = "random augmentation with cache.augmented: live"
    live = [live_reason is not None] * len(teachers)
    if recorded:
        live[0] = True  # feature and transformer terms need the teacher's activations for every step
    counters = [count_calls(t) for t in teachers]
    outputs: list[TeacherOutputs | None] = [None] * len(teachers)
    cache_events: list[dict[str, Any]] = []
    epoch_state: dict[str, Any] = {"epoch": None}
    # augmentation runs in the loader's workers; a live teacher that labels the original view gets it kept
    shift = ShiftInputs(aug, n_train, seed, keep_original=not moved and any(live)) if aug.active else None
    if not dd.is_main_process():  # other ranks keep their copy in their own scratch run folder, never rank 0's
        cache_dir = ctx.run_dir / "cache"

    def load_outputs(epoch: int | None) -> None:
        for k, teacher in enumerate(teachers):
            if live[k] or not needs_teacher:
                continue
            settings = {"augment": aug.model_dump() if moved else None, "epoch": epoch, "seed": seed if moved else None,
                        "standardize": cfg.standardize}
            outputs[k], info = load_or_build(teacher, train, cfg.cache, cache_dir, task=task,
                                             temperature=cfg.temperature, settings=settings, seed=seed,
                                             transform=transform, input_transform=ShiftInputs(aug, n_train, seed)
                                             if moved else None, epoch=epoch)
            cache_events.append({"teacher": k, "epoch": epoch, **info})

    if not moved:
        load_outputs(None)

    def on_step(epoch: int, step: int, total: int) -> None:
        temp.at_step(step, total)
        if aug.active and epoch_state["epoch"] != epoch:
            epoch_state["epoch"] = epoch
            if not all(live) and moved:
                load_outputs(epoch)

    def teacher_targets(k: int, x: dict[str, torch.Tensor], idx: torch.Tensor) -> Targets:
        if outputs[k] is not None and not live[k]:
            return outputs[k].targets(idx)
        with torch.no_grad():
            logits = task.primary(task.forward(teachers[k].eval(), x))
        return Targets("dense", transform(logits) if transform else logits)

    total_w = sum(weights)

    def teacher_probs(targets: list[Targets], t: float) -> torch.Tensor:
        return sum(w / total_w * tg.probs(t) for w, tg in zip(weights, targets, strict=True))

    def compute_loss(model: nn.Module, x: dict[str, torch.Tensor], y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        x, x_teacher = split_views(x)  # both already augmented as the recipe asks, in the loader
        s = task.primary(task.forward(model, x))
        t = temp.value
        loss = s.new_zeros(())
        if needs_teacher or recorded:
            targets = [teacher_targets(k, x_teacher, idx) for k in range(len(teachers))]
            s_kd = standardize(s) if cfg.standardize else s
            if logit_terms:
                p = teacher_probs(targets, t)
            for term in logit_terms:
                logits = s if term.name == "ce" else s_kd
                loss = loss + term.weight * LOGIT_LOSSES[term.name](logits, p, y, t, term.skew)
            if output_terms:  # the teachers' raw outputs (dense targets hold them), weighted like their probabilities
                ref = sum(w / total_w * tg.a for w, tg in zip(weights, targets, strict=True))
                for term in output_terms:
                    loss = loss + term.weight * OUTPUT_LOSSES[term.name](s, ref)
            for ft in feature_terms:
                loss = loss + ft(s_rec.outputs, t_rec.outputs)
            mask = x.get("attention_mask")
            for it in inner_terms:
                loss = loss + it(s_rec.outputs, t_rec.outputs, mask)
            if cfg.temperature_schedule.kind == "dynamic" and logit_terms:
                with torch.no_grad():
                    temp.observe_gap(LOGIT_LOSSES["kl"](s_kd, teacher_probs(targets, 1.0), y, 1.0, 0.0).item())
        else:
            for term in logit_terms:
                loss = loss + term.weight * LOGIT_LOSSES[term.name](s, None, y, t, term.skew)
        for term in pair_terms:
            loss = loss + term.weight * PAIR_LOSSES[term.name](s, y, term)
        return loss

    before = [p.detach().clone() for p in connectors.parameters()]
    try:
        result = fit(student, train, data.val, compute_loss, cfg.train, batch_size=batch_size, seed=seed,
                     task=task, label=f"stage {ctx.index} (distill, {name})", checkpoint=checkpoint,
                     resume=ctx.resume, extra_params=list(connectors.parameters()), on_step=on_step,
                     state={"temperature": temp}, transform=shift)
    finally:
        for rec in (s_rec, t_rec):
            if rec is not None:
                rec.remove()
        for _, handle in counters:
            handle.remove()
    if not (moved or live_reason or all(live)):
        cache_use = "once"
    elif moved and not all(live):
        cache_use = "per_epoch"
    else:
        cache_use = "off"
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
        "teacher_forward_calls": [c[0] for c, _ in counters],
        "cache": {"use": cache_use, "mode": cfg.cache.mode if cache_use != "off" else None,
                  "reason": live_reason or ("feature terms need the teacher's activations" if recorded else None),
                  "hits": sum(e["hit"] for e in cache_events), "misses": sum(not e["hit"] for e in cache_events),
                  "key_count": len({e["key"] for e in cache_events}),
                  # caches found but refused (a shard not matching its recorded digest, ...) and built again
                  "rebuilt": [e["rebuilt"] for e in cache_events if "rebuilt" in e],
                  "keys": sorted({e["key"] for e in cache_events})[:4]},  # per-epoch caches have one key per epoch
        "features": [{"loss": ft.loss, "weight": ft.weight, "pairs": [list(p) for p in ft.pairs],
                      "connectors": len(ft.connectors)} for ft in feature_terms],
        "transformer_terms": [{"loss": it.name, "weight": it.weight, "pairs": [list(p) for p in it.pairs],
                               "projection_params": sum(p.numel() for p in it.projections.parameters())}
                              for it in inner_terms],
        "connector_params": sum(p.numel() for p in connectors.parameters()),
        # how far training moved the connectors (they train with the student, but are never part of it)
        "connector_update_norm": float(sum((p.detach() - b).norm() ** 2 for p, b in zip(connectors.parameters(), before, strict=True)) ** 0.5),
        "world_size": result.world_size,
        "train_rows_read": result.rows_read,  # by this process: under torchrun, rank 0's share of the epochs
    }

