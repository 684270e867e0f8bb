"""The distill stage on real digits data: hooks, connectors, the teacher-output cache, schedules, strategies."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from edgedistill.config import TrainConfig
from edgedistill.data import load_dataset
from edgedistill.distill.cache import count_calls
from edgedistill.distill.features import Recorder, check_layers, evenly_spaced
from edgedistill.distill.schedules import TemperatureSchedule, TemperatureState, scheduled_temperature
from edgedistill.distill.stage import run_distill
from edgedistill.distill.strategies import interpolate_spec
from edgedistill.errors import UserError
from edgedistill.models import build_model
from edgedistill.recipe import load_recipe
from edgedistill.state import ModelState, RunContext
from edgedistill.tasks.image_classification import image_task
from edgedistill.train import fit

SMALL = ["data.train_limit=200", "teacher.model={name: cnn, channels: [16, 32], hidden: 32}",
         "stages.0.student={name: cnn, channels: [8, 16]}", "stages.0.train.epochs=2"]


def stage_inputs(run_dir, overrides=(), teacher=None):
    """A real recipe, real digits data and a (seeded, untrained) teacher: everything run_distill reads."""
    if any(o.startswith("stages.0.losses=") for o in overrides):
        overrides = ["stages.0.alpha=null", *overrides]  # mobile.yaml sets alpha, which only applies without losses
    recipe = load_recipe("mobile", [*SMALL, *overrides])
    data = load_dataset(recipe.config.data)
    spec = recipe.config.teacher.model
    if teacher is None:
        torch.manual_seed(0)
        teacher = build_model(spec, data.input_shape, data.num_classes).eval()
    ctx = RunContext(run_dir=run_dir, stage_dir=run_dir / "stages" / "1-distill", data=data, recipe=recipe, index=1)
    state = ModelState(copy.deepcopy(teacher), spec, teacher, spec, None, [])
    return state, recipe.config.stages[0], ctx


def distill(run_dir, overrides=(), teacher=None):
    state, cfg, ctx = stage_inputs(run_dir, overrides, teacher)
    out = run_distill(state, cfg, ctx)
    return out, out.lineage[-1].details, state.teacher


# ---------------------------------------------------------------- teacher-output cache


@pytest.mark.slow
def test_cache_hit_performs_no_teacher_forward(tmp_path):
    first, d1, teacher = distill(tmp_path)
    assert d1["cache"]["use"] == "once" and d1["cache"]["misses"] == 1
    assert d1["steps"][0]["teacher_forward_calls"][0] > 0
    calls, handle = count_calls(teacher)  # our own counter, independent of the stage's
    second, d2, _ = distill(tmp_path, teacher=teacher)
    handle.remove()
    assert calls[0] == 0 and d2["steps"][0]["teacher_forward_calls"] == [0]
    assert d2["cache"]["hits"] == 1 and d2["cache"]["keys"] == d1["cache"]["keys"]
    # cached outputs are the exact teacher logits: same seed, same student, same metric as the first run
    assert second.lineage[-1].metric_after == first.lineage[-1].metric_after
    # a different teacher, different data or different augmentation means a different key (a miss)
    other = copy.deepcopy(teacher)
    with torch.no_grad():
        next(other.parameters())[0].add_(0.01)
    keys = {d1["cache"]["keys"][0]}
    for overrides, t in (((), other), (["data.train_limit=299"], teacher), (["stages.0.augment.shift=1"], teacher)):
        _, d, _ = distill(tmp_path, [*overrides, "stages.0.train.epochs=1"], teacher=t)
        assert d["cache"]["misses"] >= 1 and d["cache"]["hits"] == 0
        assert not keys & set(d["cache"]["keys"])
        keys |= set(d["cache"]["keys"])


@pytest.mark.slow
def test_cache_modes_and_augmentation_policies(tmp_path):
    _, d, _ = distill(tmp_path, ["stages.0.cache.mode=topk", "stages.0.cache.k=3"])
    assert d["cache"]["mode"] == "topk" and 0 < d["steps"][0]["val_metric"] <= 1
    _, d, _ = distill(tmp_path, ["stages.0.cache.mode=sampled", "stages.0.cache.samples=8"])
    assert d["cache"]["mode"] == "sampled"
    # random augmentation: the cache is built once per epoch, and a second identical run reads all of them
    aug = ["stages.0.augment.shift=1"]
    _, d, teacher = distill(tmp_path, aug)
    assert d["cache"]["use"] == "per_epoch" and d["cache"]["misses"] == 2 and d["cache"]["key_count"] == 2
    _, d, _ = distill(tmp_path, aug, teacher=teacher)
    assert d["cache"]["hits"] == 2 and d["steps"][0]["teacher_forward_calls"] == [0]
    _, d, _ = distill(tmp_path, [*aug, "stages.0.cache.augmented=live"], teacher=teacher)
    assert d["cache"]["use"] == "off" and "augmentation" in d["cache"]["reason"]
    assert d["steps"][0]["teacher_forward_calls"][0] > 0
    # teacher_sees: original → the teacher labels the unmoved images: the very outputs (same key) of a run
    # without augmentation, computed once for every epoch, while the student still trains on moved images
    _, plain, _ = distill(tmp_path, [], teacher=teacher)
    out, d, _ = distill(tmp_path, [*aug, "stages.0.augment.teacher_sees=original"], teacher=teacher)
    assert d["cache"]["use"] == "once" and d["cache"]["keys"] == plain["cache"]["keys"] and d["cache"]["hits"] == 1
    assert d["steps"][0]["teacher_forward_calls"] == [0]
    unmoved, _, _ = distill(tmp_path, [], teacher=teacher)
    assert not all(torch.equal(a, b) for a, b in zip(out.model.state_dict().values(),
                                                    unmoved.model.state_dict().values(), strict=True))


# ---------------------------------------------------------------- features


def test_hooks_capture_exactly_the_named_layers():
    torch.manual_seed(0)
    model = build_model({"name": "cnn", "channels": [4, 8]}, (1, 8, 8), 10).eval()
    x = torch.randn(3, 1, 8, 8)
    rec = Recorder(model, ["0.2", "0.4", "1.1"])
    with torch.no_grad():
        out = model(x)
        first = model[0][:3](x)
        pooled = model[0][:5](x)
        flat = model[1][:2](model[0](x))
    assert set(rec.outputs) == {"0.2", "0.4", "1.1"}
    assert torch.equal(rec.outputs["0.2"], first) and torch.equal(rec.outputs["0.4"], pooled)
    assert torch.equal(rec.outputs["1.1"], flat)
    rec.remove()
    rec.outputs.clear()
    with torch.no_grad():
        assert torch.equal(model(x), out)
    assert rec.outputs == {}  # removed hooks record nothing
    assert evenly_spaced(model, 1) == ["0.6"] and evenly_spaced(model, 2) == ["0.2", "0.6"]


def test_wrong_layer_name_lists_the_closest_real_names(tmp_path):
    model = build_model({"name": "cnn", "channels": [4, 8]}, (1, 8, 8), 10)
    with pytest.raises(UserError) as err:
        check_layers(model, ["0.22"], "losses.0.student_layers")
    assert '"0.22"' in err.value.message and "0.2" in err.value.message and err.value.where == "losses.0.student_layers"
    with pytest.raises(UserError) as err:
        distill(tmp_path, ["stages.0.losses=[{name: mse, student_layers: ['0.2'], teacher_layers: ['1.33']}]"])
    assert '"1.33"' in err.value.message and "1.3" in err.value.message


def test_connectors_train_with_the_student_and_stay_out_of_the_export(tmp_path):
    import onnx

    from edgedistill.export import export_onnx

    out, d, _ = distill(tmp_path, ["stages.0.losses=[{name: kl, weight: 0.9}, {name: ce, weight: 0.1}, "
                                   "{name: mse, evenly: 2}, {name: attention, evenly: 2}]"])
    step = d["steps"][0]
    assert step["features"][0]["connectors"] == 2 and step["features"][1]["connectors"] == 0
    assert step["connector_params"] > 0 and step["connector_update_norm"] > 0
    assert d["cache"]["use"] == "off" and step["teacher_forward_calls"][0] > 0  # features need live activations
    path = export_onnx(out.model, tmp_path / "student.onnx", (1, 8, 8))
    graph = onnx.load(str(path)).graph
    student_convs = [m for m in out.model.modules() if isinstance(m, torch.nn.Conv2d)]
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) == len(student_convs) == 2
    onnx_params = sum(int(np.prod(i.dims)) for i in graph.initializer)
    assert onnx_params <= sum(p.numel() for p in out.model.parameters()) + 2 * 24  # BN folding may add conv biases
    assert not any(m for m in out.model.modules() if type(m).__name__ == "Connector")


# ---------------------------------------------------------------- schedules, strategies, validation


def test_temperature_schedules():
    assert scheduled_temperature("linear", 8, 2, 0.0) == 8 and scheduled_temperature("linear", 8, 2, 0.5) == 5
    assert scheduled_temperature("cosine", 8, 2, 1.0) == 2 and math.isclose(scheduled_temperature("cosine", 8, 2, 0.5), 5)
    assert scheduled_temperature("cosine", 8, 2, 0.25) > 5  # cosine stays soft longer
    assert scheduled_temperature("constant", 8, 2, 0.7) == 8
    dyn = TemperatureState(6.0, TemperatureSchedule(kind="dynamic", end=2.0, smoothing=0.0))
    assert dyn.at_step(0, 100) == 6.0
    dyn.observe_gap(1.0)  # the first gap is the reference: still fully soft
    assert dyn.value == 6.0
    dyn.observe_gap(0.5)  # half the gap closed: halfway to the end temperature
    assert math.isclose(dyn.value, 4.0)
    dyn.observe_gap(0.0)
    assert dyn.value == 2.0 and dyn.at_step(50, 100) == 2.0  # time does not move the dynamic schedule


def test_dynamic_temperature_sharpens_during_training(tmp_path):
    _, d, _ = distill(tmp_path, ["stages.0.temperature_schedule={kind: dynamic, end: 1.0}", "stages.0.train.epochs=3"])
    assert 1.0 <= d["steps"][0]["temperature_final"] < 4.0


def test_interpolated_assistant_sits_between_teacher_and_student():
    teacher, student = {"name": "cnn", "channels": [32, 64, 128], "hidden": 128}, {"name": "cnn", "channels": [8, 16]}
    mid = interpolate_spec(teacher, student, 0.5)
    assert len(mid["channels"]) in (2, 3)
    sizes = [sum(p.numel() for p in build_model(s, (1, 8, 8), 10).parameters()) for s in (teacher, mid, student)]
    assert sizes[0] > sizes[1] > sizes[2]
    with pytest.raises(UserError, match="assistants"):
        interpolate_spec(teacher, {"name": "resnet", "channels": [8]}, 0.5)


@pytest.mark.slow
def test_multi_teacher_and_born_again_report_every_step(tmp_path):
    _, d, _ = distill(tmp_path, ["stages.0.strategy={kind: multi_teacher, teachers: [{model: {name: cnn, channels: [8]}, "
                                 "train: {epochs: 1}}], weights: [0.7, 0.3]}", "stages.0.train.epochs=1"])
    assert d["teacher_weights"] == [0.7, 0.3] and len(d["teachers"]) == 1
    assert d["steps"][0]["teacher"] == ["teacher", "teacher 1"] and len(d["steps"][0]["teacher_forward_calls"]) == 2
    _, d, _ = distill(tmp_path, ["stages.0.strategy={kind: born_again, generations: 2}", "stages.0.train.epochs=1"])
    assert [s["name"] for s in d["steps"]] == ["generation 1", "generation 2"]
    assert d["steps"][1]["teacher"] == "generation 1" and d["steps"][0]["teacher"] == "teacher"
    assert d["steps"][0]["spec"] == {"name": "cnn", "channels": [8, 16]}


@pytest.mark.parametrize(("overrides", "where", "text"), [
    (["stages.0.losses=[{name: rkl}]", "stages.0.cache.mode=topk"], "cache.mode", "reverse KL"),
    # biased under sampled targets (nonlinear in the teacher probabilities): refused with that cache mode
    (["stages.0.losses=[{name: js}]", "stages.0.cache.mode=sampled"], "cache.mode", '"js" is biased'),
    (["stages.0.losses=[{name: skew_kl}]", "stages.0.cache.mode=sampled"], "cache.mode", '"skew_kl" is biased'),
    (["stages.0.losses=[{name: kl}, {name: skew_rkl}]", "stages.0.cache.mode=sampled"], "cache.mode",
     '"skew_rkl" is biased'),
    (["stages.0.losses=[{name: kl}]"], "alpha", "alpha only applies"),
    (["stages.0.cache.mode=sampled", "stages.0.temperature_schedule.kind=linear"], "temperature_schedule.kind", "fixed temperature"),
    (["stages.0.losses=[{name: mse}]"], "losses.0", "evenly"),
    (["stages.0.losses=[{name: kl}, {name: mse, evenly: 1}]", "stages.0.augment={shift: 1, teacher_sees: original}"],
     "augment.teacher_sees", "position by position"),
    (["stages.0.losses=[{name: kl, evenly: 2}]"], "losses.0", "takes no layers"),
    (["stages.0.strategy={kind: multi_teacher, teachers: [{model: {name: cnn}, train: {}}], weights: [1]}"],
     "strategy.weights", "2 teachers"),
    (["stages.0.strategy={kind: assistants, assistants: [{name: cnn, chanels: [8]}]}"], "strategy.assistants.0", "chanels"),
])
def test_impossible_combinations_fail_validation(overrides, where, text):
    if "alpha" not in where:  # mobile.yaml sets alpha, which only applies without losses
        overrides = ["stages.0.alpha=null", *overrides]
    with pytest.raises(UserError) as err:
        load_recipe("mobile", overrides)
    assert where in err.value.where and text in err.value.message


# ---------------------------------------------------------------- trainer hygiene


def _toy(n=64):
    from edgedistill.data import ArrayData

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
    return ArrayData(x, (np.arange(n) % 3).astype(np.int64))


def test_nan_loss_names_stage_epoch_step_and_keeps_the_last_checkpoint(tmp_path):
    model = build_model({"name": "cnn", "channels": [4]}, (1, 8, 8), 3)
    seen = []

    def loss(m, x, y, idx):
        out = torch.nn.functional.cross_entropy(m(x["input"]), y)
        return out * float("nan") if len(seen) > 6 else out

    ckpt = tmp_path / "state.pt"
    with pytest.raises(UserError) as err:
        fit(model, _toy(), _toy(32), loss, TrainConfig(epochs=5), batch_size=16, task=image_task((1, 8, 8), 3),
            label="stage 1 (distill)",
            checkpoint=ckpt, on_step=lambda e, s, t: seen.append((e, s, t)))
    assert "stage 1 (distill) at epoch 2, step 3" in err.value.message and str(ckpt) in err.value.message
    assert torch.load(ckpt, weights_only=True)["epoch"] == 0  # epoch 1 was saved, epoch 2 never finished
    assert [s for _, s, _ in seen] == list(range(7)) and all(t == 20 for *_, t in seen)


def test_early_stopping_and_best_epoch_on_validation():
    model = build_model({"name": "cnn", "channels": [4]}, (1, 8, 8), 3)
    result = fit(model, _toy(), _toy(32), lambda m, x, y, i: torch.nn.functional.cross_entropy(m(x["input"]), y),
                 TrainConfig(epochs=30, lr=1e-9, patience=2), batch_size=16, task=image_task((1, 8, 8), 3))
    # with a learning rate of 1e-9 validation never improves after epoch 1: stop after patience epochs
    assert result.best_epoch == 1 and result.epochs_run == 3


def test_extra_teacher_checkpoint_errors_name_its_own_recipe_path(tmp_path):
    """A missing extra-teacher checkpoint fails validation; a mismatched one names strategy.teachers.N, not teacher."""
    strategy = "stages.0.strategy={{kind: multi_teacher, teachers: [{{model: {{name: cnn, channels: [8]}}, checkpoint: {}}}]}}"
    with pytest.raises(UserError, match="file not found") as err:
        load_recipe("mobile", [*SMALL, strategy.format(tmp_path / "missing.pt")])
    assert "stages.0.strategy.teachers.0.checkpoint" in err.value.where
    wrong = tmp_path / "wrong.pt"
    torch.save({"0.0.weight": torch.zeros(3)}, wrong)
    with pytest.raises(UserError, match="does not match the model spec") as err:
        distill(tmp_path / "run", [strategy.format(wrong)])
    assert err.value.where.startswith("stages.0.strategy.teachers.0.checkpoint")
