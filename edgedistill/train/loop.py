"""The training loop shared by teacher training, distillation and recovery fine-tuning.

It owns the hygiene every stage needs: seeding, a learning-rate schedule, gradient clipping, the best
checkpoint on the validation split, early stopping, a per-epoch checkpoint for `--resume` (with the state of
the caller's schedules, so a resumed run equals an uninterrupted one), and a clear stop on a NaN or infinite
loss or weights: the weights are checked after every step and before every save, so the checkpoint the message
names as the last good one really is finite.

Under `torchrun` it runs unchanged with DistributedDataParallel: every rank walks the same shuffled order
and takes its share of each global batch (so the global batch, and the result, match a single process),
rank 0's BatchNorm statistics and validation metric are broadcast so every rank makes the same best-epoch
and early-stopping choices, and only rank 0 writes the checkpoint.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..data import Split
from ..data.loader import Transform
from ..errors import UserError
from ..evaluate import torch_predictor
from ..finite import describe, model_nonfinite
from ..io import atomic_path
from ..progress import progress_callback
from ..tasks import Task

# compute_loss(model, inputs, targets, idx): `inputs` are the batch's named input tensors
LossFn = Callable[[nn.Module, dict[str, torch.Tensor], torch.Tensor, torch.Tensor], torch.Tensor]
# on_step(epoch, global_step, total_steps), called before each step (temperature schedules, augmentation)
StepHook = Callable[[int, int, int], None]


class Stateful(Protocol):
    """Training state outside the model and optimizer (e.g. a temperature schedule), saved for `--resume`.

    `state_dict` must return plain numbers, strings, None, lists/dicts of them, or tensors (weights_only load)."""

    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class FitResult:
    best_metric: float
    best_epoch: int
    epochs_run: int
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from_epoch: int | None = None
    world_size: int = 1
    best_step: int = 0
    rows_read: int = 0  # training samples this process read (under torchrun: its share only)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def lr_factor(cfg: TrainConfig, step: int, total: int, warmup: int) -> float:
    """Multiplier of the base learning rate at `step` of `total` (linear warm-up, then the schedule)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if cfg.schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 1.0


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def fit(
    model: nn.Module,
    train: Split,
    val: Split,
    compute_loss: LossFn,
    cfg: TrainConfig,
    *,
    batch_size: int,
    task: Task,
    seed: int = 0,
    label: str = "train",
    checkpoint: Path | None = None,
    resume: bool = False,
    extra_params: list[nn.Parameter] | None = None,
    on_step: StepHook | None = None,
    state: dict[str, Stateful] | None = None,
    transform: Transform | None = None,
    workers: int | None = None,
) -> FitResult:
    """Train `model` in place; on return it holds the weights of the best validation epoch.

    `compute_loss(model, inputs, y, idx)` gets the batch's named input tensors, its targets and the sample
    indices (so a teacher-output cache can be read). The validation metric is the task's.
    `extra_params` are trained with the model but are not part of it (e.g. feature adapters); the model's frozen
    parameters (requires_grad=False) stay out of the optimizer. Each batch is trimmed by `task.trim` (text:
    to its longest row) before the forward pass.
    `state` holds the caller's stateful schedules; they are saved with each checkpoint and restored on resume.
    Batches are read through a `DataLoader` (`workers` processes; None: one per available CPU for streamed
    data, none for in-memory data); `transform(inputs, idx, epoch)` runs there (the recipe's augmentation).
    `cfg.max_steps` counts optimizer steps instead of epochs; `cfg.eval_every` / `cfg.checkpoint_every`
    validate / checkpoint every N steps, and `--resume` continues at the checkpointed step of its epoch.
    Under torchrun, `compute_loss` receives the DistributedDataParallel wrapper: call it, do not unwrap it.
    """
    from ..data.loader import Batch, batches
    from . import distributed as dd
    from .precision import autocast_for

    seed_everything(seed)
    dd.setup()
    world, rank = dd.world_size(), dd.rank()
    amp = autocast_for(cfg.precision, label)
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model)
    # parameters a builder froze (requires_grad=False, e.g. a frozen embedding table) are never trained
    params = [p for p in model.parameters() if p.requires_grad] + list(extra_params or [])
    if not params:
        raise UserError(f"nothing to train in {label}: every parameter of the model is frozen", where=label,
                        fix="leave some parameters trainable (requires_grad=True) in the model's builder")
    optimizer = make_optimizer(params, cfg)
    n = len(train)
    steps_per_epoch = math.ceil(n / batch_size)
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    n_epochs = math.ceil(total / steps_per_epoch)
    warmup = cfg.warmup_epochs * steps_per_epoch
    best_metric, best_epoch, best_step, best_state = task.metric.worst, -1, 0, None
    history: list[dict[str, Any]] = []
    start_step, resumed_from, stale = 0, None, 0
    running, count = 0.0, 0
    last_saved: int | None = None  # 1-based epoch of the last (finite) checkpoint on disk

    if resume and checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["model"])
        for key, obj in (state or {}).items():
            if key in saved.get("state", {}):
                obj.load_state_dict(saved["state"][key])
        optimizer.load_state_dict(saved["optimizer"])
        for p, v in zip(extra_params or [], saved.get("extra", []), strict=False):
            p.data.copy_(v)
        best_state, best_metric, best_epoch = saved["best_model"], saved["best_metric"], saved["best_epoch"]
        best_step = saved.get("best_step", best_epoch * steps_per_epoch)
        history = saved["history"]
        # the next step to run: a mid-epoch checkpoint records it; an older per-epoch one implies it
        start_step = int(saved.get("step", (saved["epoch"] + 1) * steps_per_epoch))
        running, count = saved.get("running", (0.0, 0))
        resumed_from = start_step // steps_per_epoch
        last_saved = saved["epoch"] + 1
        stale = saved.get("stale", resumed_from - best_epoch)
        torch.set_rng_state(saved["rng"])

    generator = torch.Generator().manual_seed(seed)
    start_epoch = start_step // steps_per_epoch
    for _ in range(start_epoch):  # keep the shuffling sequence identical to an uninterrupted run
        torch.randperm(n, generator=generator)
    if (cfg.patience and stale >= cfg.patience) or start_step >= total:
        start_epoch = n_epochs  # it had already stopped (early, or at its last step): it trains no further
    epochs = range(start_epoch, n_epochs)

    def diverged(what: str, epoch: int, step: int) -> UserError:
        if checkpoint is not None and last_saved is not None and checkpoint.exists():
            kept = f"; the last good weights are from epoch {last_saved}, saved in {checkpoint}"
        else:
            kept = "; no epoch finished before it, so no checkpoint was kept"
        return UserError(f"{what} in {label} at epoch {epoch + 1}, step {step + 1}{kept}", where=label,
                         fix="lower train.lr, keep train.grad_clip set, or check the data for extreme values")

    def plan(epoch: int, order: torch.Tensor) -> list[Batch]:
        """This rank's share of each global batch of the epoch, from the resume point to the step limit."""
        out = []
        for step in range(steps_per_epoch):
            g = epoch * steps_per_epoch + step
            if g < start_step or g >= total:
                continue
            rows = order[step * batch_size : (step + 1) * batch_size]
            if len(rows) < 2 * world and step > 0:
                continue  # a batch of one breaks BatchNorm
            out.append(Batch(rows[rank::world].numpy(), epoch, g))
        return out

    def save(epoch: int, next_step: int) -> None:
        nonlocal last_saved
        if checkpoint is None or rank != 0:
            return
        bad = model_nonfinite(model, extra_params or [])
        if bad:  # never write (and later name) a checkpoint that is not finite
            raise diverged(f"weights became NaN or infinite ({describe(bad)})", epoch, next_step - 1)
        _save(checkpoint, model, optimizer, extra_params, best_state, best_metric, best_epoch, history, epoch,
              stale, {k: v.state_dict() for k, v in (state or {}).items()},
              {"step": next_step, "running": [running, count], "best_step": best_step})
        last_saved = epoch + 1

    def validate(epoch: int, next_step: int, seconds: float, meter: Throughput) -> bool:
        """Score, keep the best weights, record history; True when early stopping says stop."""
        nonlocal best_metric, best_epoch, best_step, best_state, stale, running, count
        dd.broadcast_module_state(model)
        if len(val):
            metric = task.score(torch_predictor(model, task), val)
        else:  # no validation data: the training loss, signed so that "better" means what the metric means
            metric = (-1.0 if task.metric.higher_is_better else 1.0) * running / max(count, 1)
        metric = dd.broadcast_float(metric)
        history.append({"epoch": epoch + 1, "step": next_step, "train_loss": running / max(count, 1),
                        "val_metric": metric, "seconds": round(seconds, 4), **meter.summary()})
        running, count = 0.0, 0
        if task.metric.better(metric, best_metric) or best_state is None:
            best_metric, best_epoch, best_step, best_state = metric, epoch + 1, next_step, copy.deepcopy(model.state_dict())
            stale = 0
        else:
            stale += 1
        save(epoch, next_step)
        return bool(cfg.patience and stale >= cfg.patience)

    stop, rows_read = False, 0
    with progress_callback(f"{label}: epochs", total=len(epochs)) as update:
        for done, epoch in enumerate(epochs, start=1):
            model.train()
            epoch_start = time.perf_counter()
            order = torch.randperm(n, generator=generator)
            meter = Throughput()
            g = epoch * steps_per_epoch
            for got in meter.timed(batches(train, plan(epoch, order), workers=workers, transform=transform, seed=seed)):
                g = got["step"]
                batch = got["idx"]
                for group in optimizer.param_groups:
                    group["lr"] = cfg.lr * lr_factor(cfg, g, total, warmup)
                if on_step is not None:
                    on_step(epoch, g, total)
                inputs = task.trim(got["inputs"])  # padding every row shares costs time, not results
                with amp.autocast():
                    loss = compute_loss(net, inputs, got["targets"], batch)
                loss = loss.float()
                if not _finite_everywhere(loss, world):
                    raise diverged(f"loss became {loss.item()}", epoch, g - epoch * steps_per_epoch)
                optimizer.zero_grad(set_to_none=True)
                amp.backward(loss)
                if world > 1:
                    _average_grads(extra_params or [], world)  # DDP syncs the model's gradients, not the adapters'
                amp.unscale(optimizer)
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                amp.step(optimizer)
                bad = model_nonfinite(model, extra_params or [], trainable_only=True)
                if bad:  # e.g. BatchNorm statistics overflowing while the loss still looks finite
                    raise diverged(f"weights became NaN or infinite ({describe(bad)})", epoch, g - epoch * steps_per_epoch)
                running += loss.item() * len(batch)
                count += len(batch)
                rows_read += len(batch)
                meter.samples += len(batch) * world
                last = g + 1 == total or g + 1 == (epoch + 1) * steps_per_epoch
                if cfg.eval_every and ((g + 1) % cfg.eval_every == 0 or g + 1 == total):
                    stop = validate(epoch, g + 1, time.perf_counter() - epoch_start, meter)
                    model.train()
                elif cfg.checkpoint_every and (g + 1) % cfg.checkpoint_every == 0 and not last:
                    save(epoch, g + 1)
                if stop or g + 1 >= total:
                    break
            if not cfg.eval_every and not stop:
                stop = validate(epoch, min(total, (epoch + 1) * steps_per_epoch), time.perf_counter() - epoch_start, meter)
            if update is not None:  # samples/s and the data-wait share, on the bar or in the log's lines
                update(done, status=meter.describe())
            if stop or g + 1 >= total:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return FitResult(best_metric, best_epoch, len(history), history, resumed_from, world, best_step, rows_read)


class Throughput:
    """Samples per second and the share of the loop's time spent waiting for the next batch (data loading)."""

    def __init__(self) -> None:
        self.samples, self.wait, self.start = 0, 0.0, time.perf_counter()

    def timed(self, items):
        it = iter(items)
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            self.wait += time.perf_counter() - t0
            yield item

    def summary(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        return {"samples_per_s": round(self.samples / elapsed, 1), "data_wait": round(self.wait / elapsed, 3)}

    def describe(self) -> str:
        s = self.summary()
        return f"{s['samples_per_s']:.0f} samples/s, waiting for data {s['data_wait']:.0%} of the time"


def _finite_everywhere(loss: torch.Tensor, world: int) -> bool:
    """Finite on every rank (a NaN on one rank must stop all of them, or the others hang in all-reduce)."""
    if world == 1:
        return bool(torch.isfinite(loss))
    import torch.distributed as dist

    flag = torch.tensor([0.0 if torch.isfinite(loss) else 1.0])
    dist.all_reduce(flag)
    return flag.item() == 0.0


def _average_grads(params: list[nn.Parameter], world: int) -> None:
    import torch.distributed as dist

    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


def _save(path: Path, model, optimizer, extra_params, best_state, best_metric, best_epoch, history, epoch, stale,
          extra_state, position: dict[str, Any]) -> None:
    """A checkpoint of plain tensors and numbers, so it loads with weights_only=True."""
    with atomic_path(path) as tmp:
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "extra": [p.detach().clone() for p in extra_params or []],
                "best_model": best_state,
                "best_metric": best_metric,
                "best_epoch": best_epoch,
                "history": history,
                "epoch": epoch,
                "stale": stale,
                "state": extra_state,
                "rng": torch.get_rng_state(),
                **position,  # the next global step, the epoch's running loss so far, the best step
            },
            tmp,
        )
