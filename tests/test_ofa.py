"""OFA-KD across architecture families, and the token models (mixer, vit) it needs as students and teachers.

The OFA loss against its formula computed by hand, the term's head + branch sum, a CNN teacher distilled
into a mixer and a transformer teacher into a CNN end to end with [ofa, ce], projectors left out of the
exported file, the token models' ONNX parity, and bad settings failing with the recipe's file:line."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import torch
import yaml
from torch import nn

from edgedistill.data import load_dataset
from edgedistill.distill.cache import Targets
from edgedistill.distill.features import Recorder
from edgedistill.distill.ofa import Branches, ofa_loss, stage_layers
from edgedistill.distill.stage import LossTerm
from edgedistill.distill.terms import TERMS, Batch, TermSetup
from edgedistill.errors import UserError
from edgedistill.evaluate import onnx_predictor
from edgedistill.export import export_onnx, parity
from edgedistill.models import build_model
from edgedistill.recipe import load_recipe
from edgedistill.tasks.image_classification import image_task
from tests.conftest import run_cli
from tests.test_distill import distill

MIXER = "{name: mixer, patch: 2, dim: 16, depth: 2, token_hidden: 8, channel_hidden: 32}"
VIT = "{name: vit, patch: 2, dim: 16, depth: 2, heads: 2}"
OFA_CE = "stages.0.losses=[{name: ofa, weight: 1.0}, {name: ce, weight: 1.0}]"


# ---------------------------------------------------------------- the loss


def _by_hand(logits, p_t, y, eps, temperature):
    """The paper's formula, one sample and one class at a time."""
    total = 0.0
    for z, p, label in zip(logits.tolist(), p_t.tolist(), y.tolist(), strict=True):
        zs = [v / temperature for v in z]
        log_norm = math.log(sum(math.exp(v) for v in zs))
        for c in range(len(z)):
            one = 1.0 if c == label else 0.0
            total -= ((p[c] + one) ** eps - one) * (zs[c] - log_norm)
    return total / len(y)


@pytest.mark.parametrize(("eps", "temperature"), [(1.0, 1.0), (1.5, 1.0), (0.7, 2.5)])
def test_ofa_loss_is_the_papers_formula(eps, temperature):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 4, generator=g, dtype=torch.float64) * 3
    p_t = torch.softmax(torch.randn(5, 4, generator=g, dtype=torch.float64), dim=1)
    y = torch.tensor([0, 3, 1, 1, 2])
    assert ofa_loss(logits, p_t, y, eps, temperature).item() == pytest.approx(_by_hand(logits, p_t, y, eps, temperature), rel=1e-10)


def test_with_eps_one_it_is_the_teachers_cross_entropy_and_larger_eps_weights_the_label_more():
    g = torch.Generator().manual_seed(2)
    logits, p_t = torch.randn(6, 5, generator=g), torch.softmax(torch.randn(6, 5, generator=g), dim=1)
    y = torch.randint(0, 5, (6,), generator=g)
    soft_ce = -(p_t * torch.log_softmax(logits, dim=1)).sum(1).mean()
    assert torch.allclose(ofa_loss(logits, p_t, y, 1.0), soft_ce)
    # ε > 1: the label's weight (p_y + 1)^ε − 1 grows beyond p_y, other classes' p^ε shrink below p
    grad = torch.func.grad(lambda z: ofa_loss(z, p_t, y, 1.5))(logits)
    grad1 = torch.func.grad(lambda z: ofa_loss(z, p_t, y, 1.0))(logits)
    rows = torch.arange(6)
    assert (grad[rows, y] < grad1[rows, y]).all()  # a stronger pull up on the label's logit


def _term_setup(student, spec_kwargs, num_classes=10):
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    task = image_task((1, 8, 8), num_classes)
    spec = LossTerm(name="ofa", **spec_kwargs)
    setup = TermSetup(student=student, teacher=student, task=task, probe=lambda m: m(x), num_classes=num_classes,
                      n_train=6, cfg=None, where="stages.0.losses.0")
    return x, TERMS["ofa"](spec, setup)


@pytest.mark.parametrize("spec", [MIXER, "{name: cnn, channels: [8, 16]}"])
def test_the_term_is_head_plus_weighted_branches_by_hand(spec):
    torch.manual_seed(0)
    student = build_model(yaml.safe_load(spec), (1, 8, 8), 10)
    x, term = _term_setup(student, {"weight": 0.7, "eps": 1.5, "temperature": 2.0, "branch_weight": 0.25, "evenly": 2})
    assert len(term.layers) == 2
    rec = Recorder(student, term.record()[0])
    term.build(_outputs(student, rec, x), {})
    logits = student(x)
    teacher_logits = torch.randn(6, 10, generator=torch.Generator().manual_seed(4))
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    b = Batch(x={"input": x}, y=y, idx=torch.arange(6), student=logits, student_kd=logits, temperature=4.0,
              s_features=rec.outputs, targets=[Targets("dense", teacher_logits)], weights=[1.0])
    got = term.contribution(b)
    p_t = torch.softmax(teacher_logits / 2.0, dim=1)  # the term's own temperature, not the step's 4.0
    branch_logits = [term.branches.projectors[n.replace(".", "_")](rec.outputs[n]) for n in term.layers]
    want = 0.7 * (_by_hand(logits.detach(), p_t, y, 1.5, 2.0)
                  + 0.25 * sum(_by_hand(z.detach(), p_t, y, 1.5, 2.0) for z in branch_logits))
    assert got.item() == pytest.approx(want, rel=1e-5)
    got.backward()  # the branches and the student both get gradients
    assert all(p.grad is not None for p in term.parameters())
    assert next(student.parameters()).grad is not None
    rec.remove()


def _outputs(model, rec, x):
    with torch.no_grad():
        model(x)
    return dict(rec.outputs)


def test_stages_are_blocks_of_a_token_model_and_activations_of_a_cnn():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 28, 28)
    vit = build_model({"name": "vit", "depth": 8, "dim": 32}, (1, 28, 28), 10)
    assert stage_layers(vit, 4, lambda m: m(x)) == ["blocks.1", "blocks.3", "blocks.5", "blocks.7"]
    mixer = build_model({"name": "mixer", "depth": 2}, (1, 28, 28), 10)
    assert stage_layers(mixer, 4, lambda m: m(x)) == ["blocks.0", "blocks.1"]  # as many as it has
    cnn = build_model({"name": "cnn", "channels": [8, 16, 32]}, (1, 28, 28), 10)
    names = stage_layers(cnn, 4, lambda m: m(x))
    modules = dict(cnn.named_modules())
    assert names == ["0.2", "0.6", "0.10"] and all(isinstance(modules[n], nn.ReLU) for n in names)


def test_projectors_turn_every_feature_kind_into_class_logits():
    shapes = {"map": (2, 8, 7, 7), "tokens": (2, 50, 24), "flat": (2, 12)}
    branches = Branches(list(shapes), shapes, num_classes=7)
    outs = branches({k: torch.randn(*s) for k, s in shapes.items()})
    assert [tuple(o.shape) for o in outs] == [(2, 7)] * 3 and branches.width == 24


# ---------------------------------------------------------------- end to end, across families


def _train_teacher(spec: dict, data, epochs: int = 15) -> nn.Module:
    """A quickly trained teacher (the stage gets it ready-made, as after a teacher stage)."""
    torch.manual_seed(0)
    model = build_model(spec, data.input_shape, data.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = torch.as_tensor(data.train.x[:300]), torch.as_tensor(data.train.y[:300]).long()
    for _ in range(epochs):
        for i in range(0, len(x), 50):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i:i + 50]), y[i:i + 50]).backward()
            opt.step()
    return model.eval()


@pytest.mark.parametrize(("teacher", "student", "branch_kind"), [
    ({"name": "cnn", "channels": [16, 32]}, MIXER, "blocks."),
    ({"name": "vit", "patch": 2, "dim": 16, "depth": 2, "heads": 2}, "{name: cnn, channels: [8, 16]}", "0."),
    ({"name": "mixer", "patch": 2, "dim": 16, "depth": 2}, "{name: cnn, channels: [8, 16]}", "0."),
])
def test_cross_family_distillation_with_ofa_and_ce(tmp_path, teacher, student, branch_kind):
    from edgedistill.recipe import load_recipe as _load

    data = load_dataset(_load("mobile", ["data.train_limit=200"]).config.data)
    trained = _train_teacher(teacher, data)
    out, details, _ = distill(tmp_path, [f"teacher.model={_flow(teacher)}", f"stages.0.student={student}", OFA_CE,
                                         "stages.0.train.epochs=4"], teacher=trained)
    step = details["steps"][0]
    ofa = next(t for t in step["terms"] if t["loss"] == "ofa")
    assert ofa["branches"] and all(b.startswith(branch_kind) for b in ofa["branches"])
    assert ofa["projector_params"] == step["connector_params"] > 0 and step["connector_update_norm"] > 0
    losses = [h["train_loss"] for h in details["history"]]
    assert losses[-1] < losses[0]
    # the exported file holds the student's parameters and nothing of the projectors
    model = out.model.eval()
    path = export_onnx(model, tmp_path / "s.onnx", data.input_shape)
    graph = onnx.load(str(path)).graph
    exported = sum(int(np.prod(t.dims)) for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
    params = sum(p.numel() for p in model.parameters())
    fresh = build_model(yaml.safe_load(student), data.input_shape, data.num_classes)
    assert params == sum(p.numel() for p in fresh.parameters())  # nothing was attached to the student
    # the exporter folds each eval-mode BatchNorm into the conv before it: its scale and shift become the
    # conv's bias, one number per channel instead of two
    folded = sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert exported == params - folded


def _flow(spec: dict) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in spec.items()) + "}"


# ---------------------------------------------------------------- the token models


@pytest.mark.parametrize("spec", [
    {"name": "mixer"}, {"name": "vit"}, {"name": "vit", "pool": "mean", "patch": 7, "heads": 2},
])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_token_models_export_and_match_onnx_runtime(tmp_path, spec, shape):
    torch.manual_seed(0)
    model = build_model(spec, shape, 10).eval()
    with torch.no_grad():  # trained-looking weights: no two LayerNorms alike (the exporter shares equal tensors)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    path = export_onnx(model, tmp_path / "m.onnx", shape)
    onnx.checker.check_model(str(path))
    x = np.random.default_rng(0).normal(size=(7, *shape)).astype(np.float32)
    check = parity(model, path, {"input": x}, image_task(shape, 10))
    assert check["max_abs_diff"] < 1e-4 and check["top1_agreement"] == 1.0
    assert onnx_predictor(path)({"input": x[:1]})["logits"].shape == (1, 10)  # dynamic batch
    graph = onnx.load(str(path)).graph
    assert sum(int(np.prod(t.dims)) for t in graph.initializer if t.data_type == 1) == sum(
        p.numel() for p in model.parameters())


def test_token_models_refuse_impossible_shapes():
    with pytest.raises(UserError, match="not divisible by heads") as err:
        build_model({"name": "vit", "dim": 30, "heads": 4}, (1, 28, 28), 10)
    assert err.value.where == "model.heads"
    with pytest.raises(UserError, match="larger than the 8×8 image"):
        build_model({"name": "mixer", "patch": 9}, (1, 8, 8), 10)


# ---------------------------------------------------------------- bad settings


@pytest.mark.parametrize(("override", "where", "text"), [
    ("stages.0.losses=[{name: ofa, eps: 0}, {name: ce}]", "losses.0.eps", "greater than 0"),
    ("stages.0.losses=[{name: ofa, epsilon: 1.5}]", "losses.0.epsilon", 'did you mean "eps"'),
    ("stages.0.losses=[{name: ofa, teacher_layers: ['0.2']}]", "losses.0.teacher_layers", "never its layers"),
    ("stages.0.losses=[{name: ofa, evenly: 2, student_layers: ['0.2']}]", "losses.0.evenly", "not both"),
    ("stages.0.losses=[{name: ofa, student_layers: []}]", "losses.0.student_layers", "at least one branch"),
    ("stages.0.student={name: vit, patch: 0}", "student.patch", "greater than or equal to 1"),
])
def test_bad_settings_fail_validation_with_their_path(override, where, text):
    with pytest.raises(UserError) as err:
        load_recipe("mobile", ["stages.0.alpha=null", override])
    assert err.value.where.endswith(where), err.value.where
    assert text in f"{err.value.message} {err.value.fix}"


@pytest.mark.parametrize(("edit", "marker", "text"), [
    ("    losses: [{name: ofa, eps: -1.0}, {name: ce}]", "name: ofa", "eps"),
    ("    losses: [{name: ofa}, {name: ce}]\n    student: {name: vit, patch: 2, dim: 30, heads: 4}", "name: vit",
     "not divisible by heads"),
])
def test_bad_ofa_recipes_exit_2_with_file_and_line(tmp_path, edit, marker, text):
    recipe = load_recipe("mobile").raw_text.replace("alpha: 0.9", "").replace("student: {name: cnn, channels: [16, 32]}", "")
    recipe = recipe.replace("temperature: 4.0", "temperature: 4.0\n" + edit)
    path = tmp_path / "r.yaml"
    path.write_text(recipe)
    proc = run_cli("validate", str(path))
    line = next(i for i, s in enumerate(recipe.splitlines(), 1) if marker in s)
    assert proc.returncode == 2 and f"{path}:{line}" in proc.stderr and text in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_misspelt_student_layer_names_the_closest_ones():
    torch.manual_seed(0)
    student = build_model({"name": "mixer", "patch": 2, "dim": 16, "depth": 2}, (1, 8, 8), 10)
    with pytest.raises(UserError, match=r"blocks\.1") as err:
        _term_setup(student, {"student_layers": ["block.1"]})
    assert err.value.where == "stages.0.losses.0.student_layers"


def test_text_tasks_are_refused_naming_the_term():
    from edgedistill.tasks.text_classification import TextClassification

    torch.manual_seed(0)
    student = build_model({"name": "mixer", "patch": 2, "dim": 16, "depth": 1}, (1, 8, 8), 3)
    setup = TermSetup(student=student, teacher=student, task=TextClassification(None, None, num_classes=3),
                      probe=lambda m: None, num_classes=3, n_train=6, cfg=None, where="stages.0.losses.1")
    with pytest.raises(UserError, match="built for images") as err:
        TERMS["ofa"](LossTerm(name="ofa"), setup)
    assert err.value.where == "stages.0.losses.1.name"
