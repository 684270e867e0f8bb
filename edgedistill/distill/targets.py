"""The teacher-target provider: where a step's teacher outputs come from, decided once per trained student.

- **cache, once**: one pass of each teacher over the training split serves every epoch (the default);
- **cache, per epoch**: random augmentation that the teacher must see (`teacher_sees: augmented`) gets one
  cache per epoch, built from the same augmented inputs the student gets;
- **live**: the teacher runs on every batch — when the cache is off, when `cache.augmented: live`, when no
  term needs the teacher at all (then it never runs), and always for teacher 0 when a term reads activations
  recorded inside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..train import distributed as dd
from .augment import ShiftInputs
from .cache import Targets, TeacherOutputs, count_calls, load_or_build


class TeacherTargets:
    """Teacher outputs for each step, and what the report says about where they came from."""

    def __init__(self, teachers: list[nn.Module], cfg: Any, ctx: Any, train: Any, *, seed: int, task: Any,
                 needs_outputs: bool, needs_activations: bool) -> None:
        self.teachers, self.cfg, self.train, self.seed, self.task = teachers, cfg, train, seed, task
        self.needs_outputs = needs_outputs
        self.needed = needs_outputs or needs_activations
        aug = cfg.augment
        # teacher_sees: original → the teacher labels the unmoved input, so one pass over the data serves every
        # epoch (validation refuses it with feature terms, which compare activations position by position)
        self.moved = aug.active and aug.teacher_sees == "augmented"
        self.live_reason = None
        if not self.needed:
            self.live_reason = "no teacher term"
        elif not cfg.cache.enabled:
            self.live_reason = "cache.enabled is false"
        elif self.moved and cfg.cache.augmented == "live":
            self.live_reason = "random augmentation with cache.augmented: live"
        self.live = [self.live_reason is not None] * len(teachers)
        self.recorded = needs_activations
        if needs_activations:
            self.live[0] = True  # activations recorded inside the teacher are needed for every step
        self.transform = standardize_fn(cfg)
        self.cache_dir = Path(cfg.cache.dir).expanduser() if cfg.cache.dir else ctx.run_dir / "cache"
        if not dd.is_main_process():  # other ranks keep their copy in their own scratch run folder, never rank 0's
            self.cache_dir = ctx.run_dir / "cache"
        self.counters = [count_calls(t) for t in teachers]
        self.outputs: list[TeacherOutputs | None] = [None] * len(teachers)
        self.events: list[dict[str, Any]] = []
        self._epoch: int | None = None
        # augmentation runs in the loader's workers; a live teacher that labels the original view gets it kept
        self.shift = (ShiftInputs(aug, len(train), seed, keep_original=not self.moved and any(self.live))
                      if aug.active else None)
        if not self.moved:
            self._load(None)

    def _load(self, epoch: int | None) -> None:
        cfg, aug, n = self.cfg, self.cfg.augment, len(self.train)
        for k, teacher in enumerate(self.teachers):
            if self.live[k] or not self.needs_outputs:
                continue
            settings = {"augment": aug.model_dump() if self.moved else None, "epoch": epoch,
                        "seed": self.seed if self.moved else None, "standardize": cfg.standardize}
            self.outputs[k], info = load_or_build(
                teacher, self.train, cfg.cache, self.cache_dir, task=self.task, temperature=cfg.temperature,
                settings=settings, seed=self.seed, transform=self.transform,
                input_transform=ShiftInputs(aug, n, self.seed) if self.moved else None, epoch=epoch)
            self.events.append({"teacher": k, "epoch": epoch, **info})

    def on_step(self, epoch: int) -> None:
        """A new epoch of augmented inputs needs its own cache."""
        if self.cfg.augment.active and self._epoch != epoch:
            self._epoch = epoch
            if not all(self.live) and self.moved:
                self._load(epoch)

    def targets(self, x_teacher: dict[str, torch.Tensor], idx: torch.Tensor) -> list[Targets] | None:
        """Every teacher's targets for the batch (a live teacher also fills the recorders inside it)."""
        if not self.needed:
            return None
        return [self._one(k, x_teacher, idx) for k in range(len(self.teachers))]

    def _one(self, k: int, x: dict[str, torch.Tensor], idx: torch.Tensor) -> Targets:
        if self.outputs[k] is not None and not self.live[k]:
            return self.outputs[k].targets(idx)
        with torch.no_grad():
            logits = self.task.primary(self.task.forward(self.teachers[k].eval(), x))
        return Targets("dense", self.transform(logits) if self.transform else logits)

    def close(self) -> None:
        for _, handle in self.counters:
            handle.remove()

    def report(self) -> dict[str, Any]:
        if not (self.moved or self.live_reason or all(self.live)):
            use = "once"
        elif self.moved and not all(self.live):
            use = "per_epoch"
        else:
            use = "off"
        events = self.events
        return {"use": use, "mode": self.cfg.cache.mode if use != "off" else None,
                "reason": self.live_reason or ("feature terms need the teacher's activations" if self.recorded else None),
                "hits": sum(e["hit"] for e in events), "misses": sum(not e["hit"] for e in events),
                "key_count": len({e["key"] for e in events}),
                # caches found but refused (a shard not matching its recorded digest, ...) and built again
                "rebuilt": [e["rebuilt"] for e in events if "rebuilt" in e],
                "keys": sorted({e["key"] for e in events})[:4]}  # per-epoch caches have one key per epoch

    def forward_calls(self) -> list[int]:
        return [c[0] for c, _ in self.counters]


def standardize_fn(cfg: Any) -> Any:
    from .losses import standardize

    return standardize if cfg.standardize else None
