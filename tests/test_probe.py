"""The model probe: every model/data mismatch it can see is exit code 2 at `validate` (and before training
in `compress`), naming the recipe field and the fix, without a traceback."""

from __future__ import annotations

import pytest
import yaml

from .conftest import ROOT, run_cli

pytest.importorskip("transformers")

ENV = {"EDGEDISTILL_IMPORT": "tests.builders"}  # the user's own builders module, found in the current folder (ROOT)
HF_RESNET = {"name": "hf", "config": {"model_type": "resnet", "embedding_size": 8, "hidden_sizes": [8, 16],
                                      "depths": [1, 1], "layer_type": "basic"}}


def _recipe(tmp_path, teacher: dict, student: dict | None = None) -> str:
    recipe = {"name": "probe", "data": {"name": "digits"},
              "teacher": {"model": teacher, "train": {"epochs": 1}},
              "stages": [{"kind": "distill", "student": student or {"name": "cnn", "channels": [4]},
                          "train": {"epochs": 1}}]}
    path = tmp_path / "probe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return str(path)


def _validate(path: str):
    return run_cli("validate", path, env=ENV, cwd=ROOT)


def _assert_user_error(proc, *needles: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def test_hf_models_from_config_pass_the_probe(tmp_path):
    hf_mobilenet = {"name": "hf", "config": {"model_type": "mobilenet_v2", "depth_multiplier": 0.35, "image_size": 8}}
    proc = _validate(_recipe(tmp_path, HF_RESNET, hf_mobilenet))
    assert proc.returncode == 0, proc.stderr


def test_three_channel_first_layer_on_one_channel_data(tmp_path):
    teacher = {**HF_RESNET, "config": {**HF_RESNET["config"], "num_channels": 3}}
    proc = _validate(_recipe(tmp_path, teacher))
    _assert_user_error(proc, "probe.yaml:", "teacher.model", "expects 3 input channel(s)", "has 1", "num_channels: 1")


def test_input_shape_mismatch(tmp_path):
    proc = _validate(_recipe(tmp_path, {"name": "tests.builders:flat28"}))
    _assert_user_error(proc, "teacher.model", "cannot run on the data", "[1, 8, 8]")


def test_output_width_differs_from_the_classes(tmp_path):
    student = {**HF_RESNET, "config": {**HF_RESNET["config"], "num_labels": 5}}
    proc = _validate(_recipe(tmp_path, {"name": "cnn", "channels": [8]}, student))
    _assert_user_error(proc, "stages.0.student", "5 class scores", "10 classes")


def test_unusable_output_type(tmp_path):
    proc = _validate(_recipe(tmp_path, {"name": "cnn", "channels": [8]}, {"name": "tests.builders:returns_text"}))
    _assert_user_error(proc, "stages.0.student", "unusable", "logits")


def test_compress_probes_before_training(tmp_path):
    """compress refuses the same recipe before the teacher trains: no stage folder is written."""
    teacher = {**HF_RESNET, "config": {**HF_RESNET["config"], "num_channels": 3}}
    out = tmp_path / "run"
    proc = run_cli("compress", "--recipe", _recipe(tmp_path, teacher), "--out", str(out), env=ENV, cwd=ROOT)
    _assert_user_error(proc, "teacher.model", "expects 3 input channel(s)")
    assert not (out / "stages" / "0-teacher" / "record.json").exists()
