"""Recipe validation: every mistake is one short message naming file, line, field and fix, exit code 2."""

from __future__ import annotations

import pytest

from edgedistill.errors import UserError
from edgedistill.recipe import load_recipe

from .conftest import run_cli

GOOD = """\
name: tiny
data: {name: digits}
teacher:
  model: {name: cnn, channels: [8]}
  train: {epochs: 1}
stages:
  - kind: distill
    student: {name: cnn, channels: [4]}
    temperature: 3
"""


def write(tmp_path, text: str):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def error_of(path, *overrides) -> str:
    with pytest.raises(UserError) as info:
        load_recipe(str(path), list(overrides))
    return info.value.render()


def test_good_recipe_resolves_defaults_and_appends_export(tmp_path):
    recipe = load_recipe(str(write(tmp_path, GOOD)))
    assert [s.kind for s in recipe.config.stages] == ["distill", "export"]
    assert recipe.config.stages[0].train.lr == 3e-3  # default filled in
    assert len(recipe.sha256) == 64


def test_hash_changes_with_content(tmp_path):
    a = load_recipe(str(write(tmp_path, GOOD))).sha256
    b = load_recipe(str(write(tmp_path, GOOD)), ["stages.0.temperature=5"]).sha256
    assert a != b


def test_misspelt_key_names_line_field_and_suggestion(tmp_path):
    path = write(tmp_path, GOOD.replace("temperature: 3", "temprature: 3"))
    msg = error_of(path)
    assert f"{path}:9:" in msg
    assert "stages.0.temprature" in msg
    assert 'did you mean "temperature"' in msg


def test_wrong_type_and_out_of_range(tmp_path):
    msg = error_of(write(tmp_path, GOOD.replace("temperature: 3", "temperature: hot")))
    assert ":9: stages.0.temperature" in msg and "hot" in msg
    msg = error_of(write(tmp_path, GOOD), "stages.0.alpha=1.5")
    assert "--set stages.0.alpha" in msg and "less than or equal to 1" in msg


def test_missing_checkpoint_file(tmp_path):
    text = GOOD.replace("train: {epochs: 1}", "checkpoint: nowhere/teacher.safetensors")
    msg = error_of(write(tmp_path, text))
    assert ":5: teacher.checkpoint" in msg and "nowhere/teacher.safetensors" in msg


def test_unknown_stage_kind_and_illegal_order(tmp_path):
    msg = error_of(write(tmp_path, GOOD.replace("kind: distill", "kind: distil")))
    assert 'did you mean "distill"' in msg
    text = GOOD + "  - kind: export\n  - kind: quantize\n"
    msg = error_of(write(tmp_path, text))
    assert 'a "quantize" stage cannot follow "export"' in msg and "stages.2.kind" in msg


def test_unknown_model_argument(tmp_path):
    msg = error_of(write(tmp_path, GOOD.replace("channels: [4]", "chanels: [4]")))
    assert 'did you mean "channels"' in msg


def test_yaml_tags_cannot_execute_code(tmp_path):
    text = GOOD.replace("name: tiny", "name: !!python/object/apply:os.system ['echo pwned']")
    msg = error_of(write(tmp_path, text))
    assert "not valid YAML" in msg


def test_cli_unknown_recipe_exits_2_without_traceback():
    proc = run_cli("compress", "--recipe", "does-not-exist")
    assert proc.returncode == 2
    assert 'no recipe named "does-not-exist"' in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") <= 3  # one short paragraph


def test_cli_misspelt_key_exits_2_and_debug_shows_traceback(tmp_path):
    path = write(tmp_path, GOOD.replace("temperature: 3", "temprature: 3"))
    proc = run_cli("compress", "--recipe", str(path))
    assert proc.returncode == 2 and "temprature" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("--debug", "validate", str(path))
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_cli_validate_ok_and_recipes_lists_builtin():
    proc = run_cli("validate", "mobile")
    assert proc.returncode == 0 and "ok" in proc.stdout
    proc = run_cli("recipes")
    assert proc.returncode == 0 and "mobile" in [line.split()[0] for line in proc.stdout.splitlines()]


def test_validating_every_builtin_recipe_imports_no_torch():
    """`edgedistill validate` reads the stage and model registries only; torch and ONNX Runtime load on demand."""
    import subprocess
    import sys

    code = ("import sys; from edgedistill.recipe import builtin_recipe_names, load_recipe\n"
            "for name in builtin_recipe_names(): load_recipe(name)\n"
            "print(sorted(m for m in ('torch', 'onnxruntime') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
