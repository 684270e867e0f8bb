"""Divergence never leaves (or names) non-finite weights; --resume restores every piece of training state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgedistill.config import TrainConfig
from edgedistill.data import ArrayData
from edgedistill.errors import UserError
from edgedistill.finite import model_nonfinite, nonfinite
from edgedistill.models import build_model, load_checkpoint
from edgedistill.tasks.image_classification import image_task
from edgedistill.train import fit

from .builders import interrupt_at_call
from .test_distill import stage_inputs


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models train 10-50x faster on one thread when the machine's other core is busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TASK = image_task((1, 8, 8), 3)


def _toy(n=64):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
    return ArrayData(x, (np.arange(n) % 3).astype(np.int64))


def test_weights_that_overflow_stop_the_run_and_the_named_checkpoint_is_finite(tmp_path):
    """Huge (finite) inputs in epoch 3 overflow BatchNorm's running variance while the loss stays finite.

    Before, only the loss was checked: the epoch ended, its inf statistics were saved, and that file was named
    'the last good checkpoint'. Now the step is caught, and the checkpoint named holds finite weights."""
    torch.manual_seed(0)
    model = build_model({"name": "cnn", "channels": [4]}, (1, 8, 8), 3)
    steps = []

    def loss(m, x, y, idx):
        steps.append(1)
        if len(steps) > 9:  # epoch 3, step 2 (4 steps an epoch)
            x = {"input": x["input"].clone()}
            x["input"][:, 0, 0, 0] = 3e38
        out = torch.nn.functional.cross_entropy(m(x["input"]), y)
        assert torch.isfinite(out)  # the loss alone would not have stopped this run
        return out

    ckpt = tmp_path / "state.pt"
    with pytest.raises(UserError) as err:
        fit(model, _toy(), _toy(32), loss, TrainConfig(epochs=5), batch_size=16, task=TASK, label="stage 1 (distill)",
            checkpoint=ckpt)
    msg = err.value.message
    assert "weights became NaN or infinite" in msg and "running_var" in msg
    assert "stage 1 (distill) at epoch 3, step 2" in msg
    assert f"the last good weights are from epoch 2, saved in {ckpt}" in msg
    saved = torch.load(ckpt, weights_only=True)
    assert saved["epoch"] == 1  # 0-based: epoch 2
    assert nonfinite(saved["model"]) == [] and nonfinite(saved["best_model"]) == []


def test_divergence_in_the_first_epoch_names_no_checkpoint(tmp_path):
    model = build_model({"name": "cnn", "channels": [4]}, (1, 8, 8), 3)
    with pytest.raises(UserError) as err:
        fit(model, _toy(), _toy(32), lambda m, x, y, i: torch.nn.functional.cross_entropy(m(x["input"].index_fill(3, torch.tensor([0]), 3e38)), y),
            TrainConfig(epochs=2), batch_size=16, task=TASK, label="teacher", checkpoint=tmp_path / "s.pt")
    assert "teacher at epoch 1, step 1" in err.value.message and "no checkpoint was kept" in err.value.message
    assert not (tmp_path / "s.pt").exists()


def test_a_nan_teacher_checkpoint_is_blamed_on_the_file(tmp_path):
    """Used to surface later as a NaN distillation loss with the advice to lower the learning rate."""
    model = build_model({"name": "cnn", "channels": [4]}, (1, 8, 8), 3)
    state = model.state_dict()
    state["1.2.weight"] = torch.full_like(state["1.2.weight"], float("nan"))
    bad = tmp_path / "teacher.pt"
    torch.save(state, bad)
    with pytest.raises(UserError, match="checkpoint holds NaN or infinite values") as err:
        load_checkpoint(build_model({"name": "cnn", "channels": [4]}, (1, 8, 8), 3), bad)
    assert str(bad) in err.value.where and "lower" not in (err.value.fix or "")
    from safetensors.torch import save_file

    st = tmp_path / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    with pytest.raises(UserError, match=r"1\.2\.weight"):
        load_checkpoint(build_model({"name": "cnn", "channels": [4]}, (1, 8, 8), 3), st)


def test_early_stopping_counter_survives_resume(tmp_path):
    """patience counts stale epochs; a run resumed in its last epoch must stop where an uninterrupted one stops."""
    cfg = TrainConfig(epochs=30, lr=1e-9, patience=3)
    lossf = lambda m, x, y, i: torch.nn.functional.cross_entropy(m(x["input"]), y)  # noqa: E731
    torch.manual_seed(0)
    full = fit(build_model({"name": "cnn", "channels": [4]}, (1, 8, 8), 3), _toy(), _toy(32), lossf, cfg,
               batch_size=16, task=TASK)
    assert full.epochs_run < cfg.epochs and full.epochs_run - full.best_epoch == cfg.patience  # it stopped early
    last = full.epochs_run - 1  # 0-based index of the epoch in which it stopped

    def stop(epoch, step, total):
        if epoch == last:
            raise KeyboardInterrupt  # Ctrl-C at the start of the last epoch: patience - 1 stale epochs saved

    torch.manual_seed(0)
    model = build_model({"name": "cnn", "channels": [4]}, (1, 8, 8), 3)
    with pytest.raises(KeyboardInterrupt):
        fit(model, _toy(), _toy(32), lossf, cfg, batch_size=16, task=TASK, checkpoint=tmp_path / "s.pt", on_step=stop)
    resumed = fit(model, _toy(), _toy(32), lossf, cfg, batch_size=16, task=TASK, checkpoint=tmp_path / "s.pt", resume=True)
    assert resumed.resumed_from_epoch == last
    assert resumed.epochs_run == full.epochs_run and resumed.best_epoch == full.best_epoch
    assert [h["val_metric"] for h in resumed.history] == [h["val_metric"] for h in full.history]


@pytest.mark.slow
def test_resume_restores_the_dynamic_temperature_schedule(tmp_path):
    """A real distill stage (dynamic temperature, live teacher) interrupted by Ctrl-C at step 62 of 120 and
    resumed ends with the same temperature and bit-identical weights as an uninterrupted run. Before, the
    schedule restarted at its start temperature (4.0) on resume."""
    from edgedistill.distill.stage import run_distill

    overrides = ["stages.0.temperature_schedule={kind: dynamic, end: 1.0}", "stages.0.train.epochs=30",
                 "stages.0.cache.enabled=false"]

    def run(run_dir, interrupt_at=None, resume=False):
        state, cfg, ctx = stage_inputs(run_dir, overrides)
        ctx.resume = resume
        with interrupt_at_call(state.teacher, interrupt_at) as calls:
            out = run_distill(state, cfg, ctx)
        return out, calls

    full, calls = run(tmp_path / "full")
    assert len(calls) == 120  # one live teacher call per training step (4 steps an epoch × 30)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", interrupt_at=62)
    resumed, _ = run(tmp_path / "cut", resume=True)
    step_full, step_resumed = full.lineage[-1].details["steps"][0], resumed.lineage[-1].details["steps"][0]
    assert step_resumed["resumed_from_epoch"] == 15
    assert step_full["temperature_final"] < 4.0  # the schedule moved: the comparison below means something
    assert step_resumed["temperature_final"] == step_full["temperature_final"]
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert model_nonfinite(resumed.model) == []
