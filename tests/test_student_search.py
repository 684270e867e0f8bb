"""`student: {search: ...}`: the DisWOT score against hand computations, the budgeted pick, validation
errors with file:line, and the real pipeline (report contents, the trained student is the pick, --resume)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from edgedistill.distill.search import (
    choose,
    diswot_score,
    maps_and_features,
    relational_distance,
    score_batches,
    semantic_distance,
)
from edgedistill.errors import UserError
from edgedistill.recipe import load_recipe

from .conftest import run_cli

IDENTITY = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
ONES = torch.tensor([[1.0, 1.0], [1.0, 1.0]])


def test_semantic_distance_is_ickd_of_row_normalised_class_grams():
    # teacher Gram I (rows already unit); student Gram [[2,2],[2,2]] -> rows [1/√2, 1/√2]
    # ‖I − G_s‖² = 2·((1 − 1/√2)² + 1/2) = 4 − 2√2, divided by C = 2 -> 2 − √2
    assert semantic_distance(IDENTITY, ONES) == pytest.approx(2 - math.sqrt(2), rel=1e-6)
    assert semantic_distance(IDENTITY, IDENTITY) == pytest.approx(0.0)


def test_relational_distance_is_sp_of_row_normalised_sample_grams():
    # the same Gram matrices as sample×sample: the squared norm (4 − 2√2) divided by N² = 4
    assert relational_distance(IDENTITY, ONES) == pytest.approx((4 - 2 * math.sqrt(2)) / 4, rel=1e-6)
    # feature maps are flattened per sample: a (2, 1, 1, 2) map is the same as its (2, 2) rows
    assert relational_distance(IDENTITY.reshape(2, 1, 1, 2), ONES) == pytest.approx((4 - 2 * math.sqrt(2)) / 4, rel=1e-6)


def test_score_is_the_negated_sum_of_the_two_distances():
    assert diswot_score(0.25, 0.5) == pytest.approx(-0.75)
    assert diswot_score(0.1, 0.0) > diswot_score(0.2, 0.0)  # closer to the teacher scores higher


class _Task:
    """The slice of a Task the score uses (a single-input classifier)."""

    def forward(self, model, batch):
        return {"logits": model(batch["input"])}

    def primary(self, out):
        return out["logits"]


def test_class_maps_are_the_classifier_weight_gradient_of_the_label_cross_entropy():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 4))
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 1])
    grad, feats = maps_and_features(model, _Task(), {"input": x}, y, "m")
    p = torch.softmax(model(x), 1).detach()
    hand = (p - torch.nn.functional.one_hot(y, 4).float()).t() @ x / 5  # d CE / d W, by hand
    assert torch.allclose(grad, hand, atol=1e-6)
    assert torch.equal(feats, x)  # no pooling: the classifier's input


def test_features_are_read_before_the_global_pooling_and_parameters_are_left_as_found():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 2, 3, padding=1)
    model = torch.nn.Sequential(conv, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(2, 3))
    model[3].weight.requires_grad_(False)
    x = torch.randn(4, 1, 5, 5)
    _, feats = maps_and_features(model, _Task(), {"input": x}, torch.tensor([0, 1, 2, 0]), "m")
    assert feats.shape == (4, 2, 5, 5) and torch.allclose(feats, conv(x))
    assert model[3].weight.requires_grad is False


def test_a_student_identical_to_the_teacher_scores_zero_and_a_different_one_lower():
    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    same = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    same.load_state_dict(teacher.state_dict())
    other = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    batches = [({"input": torch.randn(7, 6)}, torch.tensor([0, 1, 2, 0, 1, 2, 0]))]
    assert score_batches(teacher, same, _Task(), batches, "s")["score"] == pytest.approx(0.0, abs=1e-6)
    parts = score_batches(teacher, other, _Task(), batches, "s")
    assert parts["score"] < 0 and parts["score"] == pytest.approx(-(parts["semantic_distance"] + parts["relational_distance"]))


ROWS = [{"spec": {"name": "cnn", "channels": [4]}, "score": -1.0, "p50_ms": 0.02},
        {"spec": {"name": "cnn", "channels": [64]}, "score": -0.1, "p50_ms": 0.30},
        {"spec": {"name": "cnn", "channels": [16]}, "score": -0.5, "p50_ms": 0.08}]


def test_the_pick_is_the_best_score_within_the_budget():
    assert choose(ROWS, None, "w") == 1  # no budget: the best score
    assert choose(ROWS, 0.1, "w") == 2  # the best-scoring one is too slow
    assert choose(ROWS, 0.02, "w") == 0


def test_no_candidate_within_the_budget_names_the_fastest():
    with pytest.raises(UserError) as info:
        choose(ROWS, 0.01, "stages.0.student.search.latency_budget_ms")
    text = info.value.render()
    assert "stages.0.student.search.latency_budget_ms" in text and "candidate 0" in text and "0.0200 ms" in text


RECIPE = """\
name: search
seed: 0
data: {name: digits}
teacher:
  model: {name: resnet, channels: [8, 16]}
  train: {epochs: 2}
stages:
  - kind: distill
    student:
      search:
        candidates:
          - {name: cnn, channels: [4]}
          - {name: cnn, channels: [8, 16]}
          - {name: cnn, channels: [16, 32]}
        batches: 2
        batch_size: 32
        latency_ratio: 3.0
        runs: 10
    train: {epochs: 1}
targets: [x86_vnni]
profile: {runs: 10, warmup: 2}
"""


def _error(tmp_path, text: str, *overrides: str) -> str:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_recipe(str(path), list(overrides))
    return info.value.render()


def test_validation_names_file_line_and_field(tmp_path):
    bad = RECIPE.replace("- {name: cnn, channels: [8, 16]}", "- {name: cnn, chanels: [8, 16]}")
    text = _error(tmp_path, bad)
    assert "r.yaml:13" in text and "stages.0.student.search.candidates.1" in text and 'did you mean "channels"' in text
    text = _error(tmp_path, RECIPE.replace("latency_ratio: 3.0", "latency_ratio: 3.0\n        latency_budget_ms: 1.0"))
    assert "stages.0.student.search" in text and "not both" in text
    text = _error(tmp_path, RECIPE, "stages.0.student.search.candidates=[]")
    assert "stages.0.student.search.candidates" in text and "at least 2" in text
    text = _error(tmp_path, RECIPE, "stages.0.student.search.candidates=[{name: cnn}]")
    assert "got 1" in text
    text = _error(tmp_path, RECIPE, "stages.0.student.search.batches=0")
    assert "stages.0.student.search.batches" in text
    text = _error(tmp_path, RECIPE.replace("    student:\n", "    strategy: {kind: born_again, generations: 2}\n    student:\n"))
    assert "strategy kd" in text


def test_a_valid_search_recipe_loads(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE)
    stage = load_recipe(str(path)).config.stages[0]
    assert len(stage.student["search"]["candidates"]) == 3


@pytest.mark.slow
def test_pipeline_reports_the_search_trains_the_pick_and_resume_reuses_it(tmp_path):
    recipe, run = tmp_path / "r.yaml", tmp_path / "run"
    recipe.write_text(RECIPE)
    proc = run_cli("compress", "--recipe", str(recipe), "--out", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    stage = next(s for s in json.loads((run / "report.json").read_text())["stages"] if s["kind"] == "distill")
    search = stage["details"]["student_search"]
    rows = search["candidates"]
    assert [r["spec"]["channels"] for r in rows] == [[4], [8, 16], [16, 32]]
    for r in rows:
        assert set(r) >= {"semantic_distance", "relational_distance", "score", "p50_ms", "params"}
        assert r["score"] == pytest.approx(-(r["semantic_distance"] + r["relational_distance"]))
        assert r["p50_ms"] > 0 and r["params"] > 0
    assert [r["params"] for r in rows] == sorted(r["params"] for r in rows)
    assert search["budget_ms"] == pytest.approx(3.0 * search["teacher_p50_ms"])
    fits = [i for i, r in enumerate(rows) if r["p50_ms"] <= search["budget_ms"]]
    assert search["pick"] == max(fits, key=lambda i: rows[i]["score"])
    assert search["latency"]["target"] == "x86_vnni" and search["reused"] is False
    distill_dir = run / "stages" / "1-distill"
    assert json.loads((distill_dir / "spec.json").read_text()) == rows[search["pick"]]["spec"]  # the pick was trained
    assert stage["details"]["params"] == rows[search["pick"]]["params"]

    # a run killed after the search (its stage unfinished) resumes without searching again
    saved = distill_dir / "student_search.json"
    before = saved.stat().st_mtime_ns
    (distill_dir / "record.json").unlink()
    proc = run_cli("compress", "--recipe", str(recipe), "--out", str(run), "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = next(s for s in json.loads((run / "report.json").read_text())["stages"] if s["kind"] == "distill")
    assert again["details"]["student_search"]["reused"] is True
    assert again["details"]["student_search"]["candidates"] == rows
    assert saved.stat().st_mtime_ns == before
    assert np.isfinite(again["metric_after"])
