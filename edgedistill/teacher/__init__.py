"""The teacher: loaded from a checkpoint, or trained here on the recipe's data."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from ..config import TeacherConfig, TrainConfig
from ..data import Dataset
from ..evaluate import evaluate_torch
from ..models import build_model, load_checkpoint
from ..state import StageRecord
from ..tasks import Task


def prepare_teacher(
    cfg: TeacherConfig, data: Dataset, task: Task, *, seed: int, batch_size: int, stage_dir: Path, resume: bool,
    where: str = "teacher",
) -> tuple[nn.Module, StageRecord]:
    """Build the teacher from its spec, then load its checkpoint or train it with the task's label loss.

    `where` is the teacher's recipe path, named in errors (an extra teacher is not `teacher`).
    """
    from ..train import fit

    t0 = time.perf_counter()
    with torch.random.fork_rng():  # initial weights depend only on the recipe's seed, so runs are reproducible
        torch.manual_seed(seed)
        model = build_model(cfg.model, data.input_shape, data.num_classes, where=f"{where}.model", task=task)
    details: dict = {"params": sum(p.numel() for p in model.parameters())}
    if cfg.checkpoint:
        load_checkpoint(model, cfg.checkpoint, where=f"{where}.checkpoint")
        details["source"] = str(cfg.checkpoint)
    elif cfg.train is None:
        details["source"] = "builder"  # the weights the spec's builder loaded (a pretrained hf model) or made
    else:
        train: TrainConfig = cfg.train
        result = fit(
            model, data.train, data.val, lambda m, x, y, i: task.label_loss(task.forward(m, x), y), train,
            batch_size=train.batch_size or batch_size,
            seed=seed, task=task, label="teacher", checkpoint=stage_dir / "train_state.pt", resume=resume,
        )
        details.update(source="trained", best_epoch=result.best_epoch, epochs_run=result.epochs_run,
                       history=result.history, resumed_from_epoch=result.resumed_from_epoch)
    metric = evaluate_torch(model, data.val, task)
    record = StageRecord(index=0, kind="teacher", settings=cfg.model_dump(mode="json"),
                         seconds=time.perf_counter() - t0, metric_after=metric, details=details)
    return model, record
