"""The strategy recipes through the real CLI: every generation / assistant step lands in report.json."""

from __future__ import annotations

import json

import pytest

from .conftest import ROOT, run_cli, set_args

RECIPES = [ROOT / "recipes" / f"digits_{n}.yaml" for n in ("born_again", "assistants", "multi_teacher", "features")]
SHORT = ["teacher.train.epochs=2", "stages.0.train.epochs=1", "stages.1.calibration.samples=32", "profile.runs=5",
         "profile.warmup=1"]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_strategy_recipes_validate(recipe):
    proc = run_cli("validate", str(recipe))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_assistant_chain_and_born_again_report_each_step(tmp_path):
    out = tmp_path / "ta"
    proc = run_cli("compress", "--recipe", str(ROOT / "recipes" / "digits_assistants.yaml"), "--out", str(out),
                   *set_args(SHORT))
    assert proc.returncode in (0, 1), proc.stderr
    stage = json.loads((out / "report.json").read_text())["stages"][1]
    steps = stage["details"]["steps"]
    assert [s["name"] for s in steps] == ["assistant 1", "student"]
    assert steps[0]["teacher"] == "teacher" and steps[1]["teacher"] == "assistant 1"
    assert steps[0]["params"] > steps[1]["params"]
    assert all(0 <= s["val_metric"] <= 1 and s["epochs_run"] == 1 for s in steps)
    assert stage["metric_after"] == steps[-1]["val_metric"]
    assert steps[0]["cache"]["mode"] == "topk"

    out = tmp_path / "ban"
    proc = run_cli("compress", "--recipe", str(ROOT / "recipes" / "digits_born_again.yaml"), "--out", str(out),
                   *set_args([*SHORT, "stages.0.strategy.generations=3"]))
    assert proc.returncode in (0, 1), proc.stderr
    details = json.loads((out / "report.json").read_text())["stages"][1]["details"]
    steps = details["steps"]
    assert [s["name"] for s in steps] == ["generation 1", "generation 2", "generation 3"]
    assert [s["teacher"] for s in steps] == ["teacher", "generation 1", "generation 2"]
    best = max(steps, key=lambda s: s["val_metric"])  # the recipe keeps the best generation on validation
    assert details["chosen_step"] == best["name"]
