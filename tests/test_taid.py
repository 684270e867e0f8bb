"""TAID (terms/taid.py): the loss against its formula, a target without gradient, the official adaptive rule for
t with its linear floor, resumable state, a real tiny run, and bad settings refused at validation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from edgedistill.distill.cache import Targets
from edgedistill.distill.kd import train_student
from edgedistill.distill.stage import LossTerm
from edgedistill.distill.terms import Batch, TermSetup
from edgedistill.distill.terms.taid import TaidTerm
from edgedistill.errors import UserError
from edgedistill.recipe import load_recipe
from tests.conftest import run_cli
from tests.test_distill import stage_inputs
from tests.test_recipe import GOOD, write


def make_term(**settings) -> TaidTerm:
    spec = LossTerm(name="taid", **settings)
    setup = TermSetup(student=nn.Linear(3, 5), teacher=nn.Linear(3, 5), task=None, probe=None, num_classes=5,
                      n_train=8, cfg=None, where="stages.0.losses.0")
    return TaidTerm(spec, setup)


def batch(z_s: torch.Tensor, z_t: torch.Tensor, temperature: float = 4.0) -> Batch:
    n = z_s.shape[0]
    return Batch(x={}, y=torch.zeros(n, dtype=torch.long), idx=torch.arange(n), student=z_s, student_kd=z_s,
                 temperature=temperature, targets=[Targets("dense", z_t)])


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_the_loss_is_kl_to_the_interpolated_target_at_t1():
    g = torch.Generator().manual_seed(1)
    z_s, z_t = torch.randn(6, 5, generator=g) * 2, torch.randn(6, 5, generator=g) * 3
    term = make_term()
    term.t = 0.3
    got = term.loss(batch(z_s, z_t, temperature=4.0)).item()
    s, t = z_s.double().numpy(), z_t.double().numpy()
    p, q = softmax(0.7 * s + 0.3 * t), softmax(s)
    expected = float(np.mean(np.sum(p * np.log(p / q), axis=1)))
    assert got == pytest.approx(expected, rel=1e-5)
    # the stage's temperature plays no part
    assert term.loss(batch(z_s, z_t, temperature=1.0)).item() == pytest.approx(got, rel=1e-6)
    term.t = 1.0  # at t = 1 it is plain KL(teacher ‖ student) at T = 1
    p = softmax(t)
    assert term.loss(batch(z_s, z_t)).item() == pytest.approx(float(np.mean(np.sum(p * np.log(p / q), axis=1))), rel=1e-5)


def test_no_gradient_flows_through_the_target():
    g = torch.Generator().manual_seed(2)
    z_s = (torch.randn(4, 5, generator=g) * 2).requires_grad_()
    z_t = (torch.randn(4, 5, generator=g) * 2).requires_grad_()
    term = make_term()
    term.t = 0.5
    term.loss(batch(z_s, z_t)).backward()
    with torch.no_grad():  # d KL(p ‖ softmax(z)) / dz = (q − p) / N when p is a constant
        p = torch.softmax(0.5 * z_s + 0.5 * z_t, dim=-1)
        expected = (torch.softmax(z_s, dim=-1) - p) / z_s.shape[0]
    assert torch.allclose(z_s.grad, expected, atol=1e-6)
    assert z_t.grad is None


def hand_rule(losses, progress, t_start, t_end, alpha, beta):
    """The official update, written out independently: the first loss is only remembered."""
    t, m, prev, out = t_start, 0.0, None, []
    for loss, prog in zip(losses, progress, strict=True):
        if prev is not None:
            m = beta * m + (1 - beta) * (prev - loss) / (prev + 1e-15)
            t = min(t_end, max(t_start + (t_end - t_start) * prog, t + alpha * (1 / (1 + math.exp(-m))) * (1 - t)))
        prev = loss
        out.append(t)
    return out


def test_t_follows_the_official_rule_and_never_drops_below_the_linear_floor():
    term = make_term(t_start=0.2, t_end=0.9, alpha=0.1, beta=0.5)
    losses, total = [2.0, 1.6, 1.5, 1.9, 1.2, 1.1], 10
    got = []
    for step, loss in enumerate(losses):
        term.on_step(step, total)
        term.update(loss)
        got.append(term.t)
    expected = hand_rule(losses, [s / total for s in range(len(losses))], 0.2, 0.9, 0.1, 0.5)
    assert got == pytest.approx(expected, abs=1e-12)
    assert got[0] == 0.2 and all(b > a for a, b in itertools.pairwise(got))
    # late in training the floor wins: t is at least t_start + (t_end − t_start)·progress, and at most t_end
    term.on_step(8, total)
    term.update(1.1)
    assert term.t == pytest.approx(0.2 + 0.7 * 0.8)
    term.on_step(10, total)
    term.update(1.0)
    assert term.t == pytest.approx(0.9)
    for _ in range(50):
        term.update(0.5)
    assert term.t == pytest.approx(0.9)


def test_the_step_feeds_the_rule_the_cross_entropy_to_the_target():
    g = torch.Generator().manual_seed(3)
    z_s, z_t = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    term = make_term()
    b = batch(z_s, z_t)
    term.on_step(0, 100)
    term.observe(b, term.contribution(b))
    p, q = softmax(0.6 * z_s.double().numpy() + 0.4 * z_t.double().numpy()), softmax(z_s.double().numpy())
    assert term.prev_loss == pytest.approx(float(np.mean(-np.sum(p * np.log(q), axis=1))), rel=1e-5)
    assert term.t == 0.4  # the first step only records the loss


def test_the_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    a = make_term(alpha=0.05)
    for step, loss in enumerate([3.0, 2.0, 1.5]):
        a.on_step(step, 100)
        a.update(loss)
    torch.save({"state": a.state_dict()}, tmp_path / "s.pt")
    b = make_term(alpha=0.05)
    assert b.state_dict() != a.state_dict()
    b.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True)["state"])
    assert b.state_dict() == a.state_dict()
    b.update(1.2), a.update(1.2)
    assert b.t == a.t and b.momentum == a.momentum
    fresh = make_term()
    fresh.load_state_dict(fresh.state_dict())  # the first step's infinite "previous loss" survives too
    assert math.isinf(fresh.prev_loss)


def _run(tmp_path, losses, *extra, epochs=2, checkpoint=None, resume=False):
    state, cfg, ctx = stage_inputs(tmp_path, [f"stages.0.losses={losses}", f"stages.0.train.epochs={epochs}", *extra])
    ctx.resume = resume
    torch.manual_seed(0)
    before = [p.detach().clone() for p in state.model.parameters()]
    info = train_student("s", state.model, [state.teacher], [1.0], cfg, ctx, seed=0, checkpoint=checkpoint)
    moved = any(not torch.equal(p, q) for p, q in zip(before, state.model.parameters(), strict=True))
    return info, moved


def test_a_tiny_recipe_with_taid_and_ce_trains_and_resumes(tmp_path):
    ckpt = tmp_path / "state.pt"
    info, moved = _run(tmp_path, "[{name: taid, weight: 0.9}, {name: ce, weight: 0.1}]", checkpoint=ckpt)
    rep = next(r for r in info["terms"] if r["loss"] == "taid")
    assert moved and all(math.isfinite(h["train_loss"]) for h in info["history"])
    assert rep["t_start"] == 0.4 and 0.4 < rep["t_final"] <= 1.0
    assert info["cache"]["use"] == "once" and info["cache"]["misses"] == 1  # dense logits from the teacher cache
    saved = torch.load(ckpt, weights_only=True)
    assert any(v.get("t") == rep["t_final"] for v in saved["state"].values())
    # --resume of the finished run restores t (a fresh term would report t_start)
    again, _ = _run(tmp_path, "[{name: taid, weight: 0.9}, {name: ce, weight: 0.1}]", checkpoint=ckpt, resume=True)
    assert next(r for r in again["terms"] if r["loss"] == "taid")["t_final"] == rep["t_final"]


@pytest.mark.parametrize(("losses", "field", "text"), [
    ("[{name: taid, t_start: 0.9, t_end: 0.5}]", "losses.0.t_end", "must not be below t_start"),
    ("[{name: taid, alpha: 0}]", "losses.0.alpha", "greater than 0"),
    ("[{name: taid, beta: 1.0}]", "losses.0.beta", "less than 1"),
    ("[{name: taid, t_start: -0.1}]", "losses.0.t_start", "greater than or equal to 0"),
    ("[{name: taid, evenly: 1}]", "losses.0", "takes no layers"),
])
def test_bad_settings_are_refused_with_their_path(losses, field, text):
    with pytest.raises(UserError) as err:
        load_recipe("mobile", ["stages.0.alpha=null", f"stages.0.losses={losses}"])
    assert err.value.where.endswith(field), err.value.where
    assert text in err.value.message


def test_a_sparse_teacher_cache_is_refused():
    with pytest.raises(UserError) as err:
        load_recipe("mobile", ["stages.0.alpha=null", "stages.0.losses=[{name: taid}]", "stages.0.cache.mode=topk"])
    assert err.value.where.endswith("cache.mode") and "full distribution" in err.value.message


def test_the_cli_names_the_file_and_line_of_a_bad_setting_and_exits_2(tmp_path):
    text = GOOD + "    losses:\n      - {name: ce, weight: 0.5}\n      - {name: taid, weight: 0.5, t_end: 2.0}\n"
    path = write(tmp_path, text)
    proc = run_cli("validate", str(path))
    assert proc.returncode == 2, proc.stderr
    assert f"{path}:12:" in proc.stderr and "t_end" in proc.stderr and "Traceback" not in proc.stderr
