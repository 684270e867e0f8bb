"""USKD (terms/uskd.py): the loss against the official formula written out by hand, the teacher never runs, a
real tiny [ce, uskd] run trains the student and the weak head, bad settings are refused; and the Recorder's
"name:input" suffix that feeds the weak head the classifier's input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from edgedistill.distill.cache import count_calls
from edgedistill.distill.features import Recorder, check_layers
from edgedistill.distill.kd import train_student
from edgedistill.distill.terms.uskd import default_layer, uskd_loss
from edgedistill.errors import UserError
from edgedistill.recipe import load_recipe
from tests.test_distill import stage_inputs


def _log_softmax(row: list[float]) -> list[float]:
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


def hand_uskd(z, w, y, alpha, beta, mu):
    """The official USKD loss for hard labels, one row at a time in plain Python."""
    n, c = len(z), len(z[0])
    log_q = [_log_softmax(r) for r in z]
    q2 = [math.exp(log_q[i][y[i]]) ** 2 for i in range(n)]
    soft_t = [q2[i] + 1 - sum(q2) / n for i in range(n)]
    loss_t = -sum(soft_t[i] * log_q[i][y[i]] for i in range(n)) / n
    loss_weak = loss_non = 0.0
    for i in range(n):
        log_w = _log_softmax(w[i])
        smooth = [(0.9 if k == y[i] else 0.0) + 0.1 / c for k in range(c)]
        loss_weak -= sum(s * lw for s, lw in zip(smooth, log_w, strict=True)) / n
        p_w = [math.exp(v) for v in log_w]
        score = [p_w[k] / (1 - p_w[y[i]] + 1e-6) + log_q[i][k] / (1 - log_q[i][y[i]] + 1e-6) for k in range(c)]
        ranked = sorted(range(c), key=lambda k, score=score: -score[k])
        zipf = {k: 1 / (ranked.index(k) + 1) for k in range(c)}
        others = [k for k in range(c) if k != y[i]]
        total = sum(zipf[k] for k in others)
        log_non = _log_softmax([z[i][k] for k in others])
        loss_non -= sum(zipf[k] / total * ln for k, ln in zip(others, log_non, strict=True)) / n
    return alpha * loss_t + beta * loss_non + mu * loss_weak


def test_the_loss_is_the_official_formula_by_hand():
    z = [[2.0, 0.5, -1.0, 0.1], [0.3, 1.2, 0.9, -0.4], [-0.5, 0.0, 0.7, 2.2]]
    w = [[0.1, 0.9, -0.3, 0.4], [1.5, -0.2, 0.3, 0.0], [0.2, 0.8, -1.1, 0.6]]
    y = [0, 2, 3]
    for alpha, beta, mu in [(1.0, 0.1, 0.005), (0.1, 0.1, 0.1), (0.0, 1.0, 0.0)]:
        got = uskd_loss(torch.tensor(z), torch.tensor(w), torch.tensor(y), alpha, beta, mu).item()
        assert got == pytest.approx(hand_uskd(z, w, y, alpha, beta, mu), rel=1e-5)


def test_the_soft_labels_carry_no_gradient_and_the_weak_head_learns_smoothed_labels():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 6, generator=g).requires_grad_()
    w = torch.randn(5, 6, generator=g).requires_grad_()
    y = torch.tensor([0, 1, 2, 3, 4])
    uskd_loss(z, w, y, alpha=0.0, beta=0.0, mu=1.0).backward()
    smooth = torch.zeros(5, 6).scatter_(1, y.view(-1, 1), 0.9) + 0.1 / 6
    assert torch.allclose(w.grad, (torch.softmax(w, 1) - smooth).detach() / 5, atol=1e-6)
    assert z.grad is None or not z.grad.any()  # the weak part never reaches the logits
    z.grad = w.grad = None
    uskd_loss(z, w, y, alpha=1.0, beta=0.0, mu=0.0).backward()
    with torch.no_grad():  # L_t with a constant soft label p̃: dL/dz = −p̃·(onehot − q)/N
        q = torch.softmax(z, 1)
        q2 = q.gather(1, y.view(-1, 1)) ** 2
        soft = q2 + 1 - q2.mean()
        expected = -soft * (torch.zeros(5, 6).scatter_(1, y.view(-1, 1), 1.0) - q) / 5
    assert torch.allclose(z.grad, expected, atol=1e-6) and (w.grad is None or not w.grad.any())


def test_the_recorder_keeps_a_module_input_under_name_input():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    check_layers(net, ["2:input", "0"], "here")
    with pytest.raises(UserError, match="no layer named"):
        check_layers(net, ["7:input"], "here")
    rec = Recorder(net, ["2:input", "1", "2"])
    x = torch.randn(5, 3)
    out = net(x)
    assert torch.equal(rec.outputs["2:input"], rec.outputs["1"]) and torch.equal(rec.outputs["2"], out)
    assert rec.outputs["2:input"].shape == (5, 4)
    rec.remove()
    assert default_layer(net) == "2:input"


def _run(tmp_path, losses, epochs=3):
    state, cfg, ctx = stage_inputs(tmp_path, [f"stages.0.losses={losses}", f"stages.0.train.epochs={epochs}"])
    torch.manual_seed(0)
    calls, handle = count_calls(state.teacher)  # our own counter, installed before the stage's dry pass
    before = [p.detach().clone() for p in state.model.parameters()]
    try:
        info = train_student("s", state.model, [state.teacher], [1.0], cfg, ctx, seed=0, checkpoint=None)
    finally:
        handle.remove()
    moved = any(not torch.equal(p, q) for p, q in zip(before, state.model.parameters(), strict=True))
    return info, calls[0], moved, state.model


def test_a_tiny_ce_uskd_run_trains_without_ever_running_the_teacher(tmp_path):
    info, teacher_calls, moved, student = _run(tmp_path, "[{name: ce}, {name: uskd}]")
    assert teacher_calls == 0 and info["teacher_forward_calls"] == [0]
    assert info["cache"]["reason"] == "no teacher term"
    rep = next(r for r in info["terms"] if r["loss"] == "uskd")
    assert rep["layer"] == default_layer(student) and rep["head_params"] > 0
    assert moved and info["connector_update_norm"] > 0  # the student and the weak head both trained
    losses = [h["train_loss"] for h in info["history"]]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert not any("uskd" in k or "head" in k for k in student.state_dict())  # the head is never part of it


def test_a_named_layer_feeds_the_weak_head(tmp_path):
    info, teacher_calls, _, _ = _run(tmp_path, "[{name: ce}, {name: uskd, layer: '0.2', mu: 0.1}]", epochs=1)
    rep = next(r for r in info["terms"] if r["loss"] == "uskd")
    assert rep["layer"] == "0.2" and teacher_calls == 0 and rep["mu"] == 0.1
    with pytest.raises(UserError) as err:
        _run(tmp_path / "bad", "[{name: ce}, {name: uskd, layer: '0.99'}]", epochs=1)
    assert err.value.where.endswith("losses.1.layer") and "no layer named" in err.value.message


@pytest.mark.parametrize(("losses", "field", "text"), [
    ("[{name: ce}, {name: uskd, alpha: -1}]", "losses.1.alpha", "greater than or equal to 0"),
    ("[{name: ce}, {name: uskd, mu: 'a lot'}]", "losses.1.mu", "valid number"),
    ("[{name: ce}, {name: uskd, gamma: 1}]", "losses.1.gamma", 'has no setting "gamma"'),
    ("[{name: ce}, {name: uskd, student_layers: ['0.2']}]", "losses.1", "`layer`"),
])
def test_bad_settings_are_refused_with_their_path(losses, field, text):
    with pytest.raises(UserError) as err:
        load_recipe("mobile", ["stages.0.alpha=null", f"stages.0.losses={losses}"])
    assert err.value.where.endswith(field), err.value.where
    assert text in err.value.message
