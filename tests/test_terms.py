"""The term registry: names and settings validated against it, a registered class is all a method needs, the
stage sums terms in a fixed order, and the teacher runs only when a term needs it."""

from __future__ import annotations

import pytest
import torch

from edgedistill.distill.kd import train_student
from edgedistill.distill.terms import TERMS, Term, register_term
from edgedistill.distill.terms.base import TEACHER_PROBS
from edgedistill.distill.terms.classic import FEATURE_NAMES, LOGIT_NAMES, OUTPUT_NAMES, PAIR_NAMES, registries
from edgedistill.distill.transformer_terms import TRANSFORMER_TERMS
from edgedistill.errors import UserError
from edgedistill.recipe import load_recipe
from tests.test_distill import stage_inputs


def test_the_classic_names_are_exactly_the_function_registries():
    reg = registries()
    assert set(LOGIT_NAMES) | {"ce"} == set(reg["logit"])
    assert set(OUTPUT_NAMES) == set(reg["output"]) and set(PAIR_NAMES) == set(reg["pair"])
    assert set(FEATURE_NAMES) == set(reg["feature"]) and set(TRANSFORMER_TERMS) == set(TERMS) & set(TRANSFORMER_TERMS)
    assert all(name in TERMS for names in reg.values() for name in names)


@pytest.mark.parametrize(("losses", "where", "text"), [
    ("[{name: kll}]", "losses.0.name", 'did you mean "kl"'),
    ("[{name: kl}, {name: ce, skeww: 0.1}]", "losses.1.skeww", 'did you mean "skew"'),
    ("[{name: kl, t_start: 0.4}]", "losses.0.t_start", 'has no setting "t_start"'),
])
def test_unknown_names_and_settings_fail_validation_with_their_path(losses, where, text):
    with pytest.raises(UserError) as err:
        load_recipe("mobile", ["stages.0.alpha=null", f"stages.0.losses={losses}"])
    assert err.value.where.endswith(where), err.value.where
    assert text in f"{err.value.message} {err.value.fix}"


class _Counting(Term):
    """A test method: KL at T plus a per-step counter kept in its resume state."""

    needs = frozenset({TEACHER_PROBS})

    def __init__(self, spec, setup):
        super().__init__(spec, setup)
        self.steps = 0

    def on_step(self, step, total):
        self.steps += 1

    def loss(self, b):
        return registries()["logit"]["kl"](b.student_kd, b.teacher_probs(), b.y, b.temperature, 0.0)

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = int(state["steps"])

    def report(self):
        return {**super().report(), "steps": self.steps}


@pytest.fixture
def counting_term():
    register_term("test_counting")(_Counting)
    yield
    TERMS.pop("test_counting")


def _train(tmp_path, losses, epochs=1, checkpoint=None, resume=False):
    state, cfg, ctx = stage_inputs(tmp_path, [f"stages.0.losses={losses}", f"stages.0.train.epochs={epochs}",
                                              "stages.0.cache.enabled=false"])
    ctx.resume = resume
    torch.manual_seed(0)
    student = state.model
    return train_student("s", student, [state.teacher], [1.0], cfg, ctx, seed=0, checkpoint=checkpoint), student


def test_a_registered_class_is_a_method_with_its_own_resumable_state(tmp_path, counting_term):
    ckpt = tmp_path / "state.pt"
    info, _ = _train(tmp_path, "[{name: test_counting, weight: 0.9}, {name: ce, weight: 0.1}]", epochs=2, checkpoint=ckpt)
    steps = next(r for r in info["terms"] if r["loss"] == "test_counting")["steps"]
    assert steps > 0 and info["teacher_forward_calls"][0] > 0
    saved = torch.load(ckpt, weights_only=True)
    assert any(v == {"steps": steps} for v in saved["state"].values())


def test_the_teacher_never_runs_when_no_term_needs_it(tmp_path):
    info, _ = _train(tmp_path, "[{name: ce}]")
    assert info["teacher_forward_calls"] == [0] and info["cache"]["reason"] == "no teacher term"


def test_the_order_terms_are_listed_in_does_not_change_the_loss(tmp_path):
    a, sa = _train(tmp_path / "a", "[{name: kl, weight: 0.5}, {name: ce, weight: 0.2}, {name: mse, weight: 0.3, evenly: 1}]")
    b, sb = _train(tmp_path / "b", "[{name: mse, weight: 0.3, evenly: 1}, {name: ce, weight: 0.2}, {name: kl, weight: 0.5}]")
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert all(torch.equal(p, q) for p, q in zip(sa.state_dict().values(), sb.state_dict().values(), strict=True))
