"""What a newcomer meets first: the README's commands, threads chosen on purpose, quiet imports, a fast doctor,
`--import` of a module in the current folder, and progress lines in a log."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from edgedistill import progress, threads

from .conftest import ROOT, run_cli


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = 'pip install ".[test]" && pytest -q'
    assert command in readme and command in ci.splitlines()
    assert "pip install -e" not in ci  # an editable install imports the source tree and hid a missing package
    assert "python3 -m venv" in ci and "--system-site-packages" not in ci


def test_thread_count_precedence_and_auto(monkeypatch):
    monkeypatch.setattr(threads, "_USER_ENV", "")
    cpus = threads.usable_cpus()
    auto = threads.resolve()
    assert (auto.count, auto.source) == (max(1, cpus // 2), "auto")
    assert threads.resolve(recipe="auto").source == "auto"
    monkeypatch.setattr(threads, "_USER_ENV", "3")
    assert (threads.resolve().count, threads.resolve().source) == (3, "OMP_NUM_THREADS")
    assert (threads.resolve(recipe=2).count, threads.resolve(recipe=2).source) == (2, "recipe")
    assert (threads.resolve(cli=5, recipe=2).count, threads.resolve(cli=5, recipe=2).source) == (5, "--threads")


def test_recipe_threads_field_is_validated(tmp_path):
    proc = run_cli("validate", "mobile", "--set", "threads=0")
    assert proc.returncode == 2 and "threads" in proc.stderr and "Traceback" not in proc.stderr


def test_plain_progress_lines_in_a_log(monkeypatch, capsys):
    monkeypatch.setenv("EDGEDISTILL_PROGRESS", "1")
    monkeypatch.setenv("EDGEDISTILL_LOG_EVERY", "0")
    assert progress.logging_lines()  # pytest's captured stdout is not a terminal
    assert list(progress.track(range(3), "epochs")) == [0, 1, 2]
    err = capsys.readouterr().err.splitlines()
    assert [re.sub(r"^\[edgedistill [0-9:]+\] ", "", line) for line in err][:4] == [
        "epochs: started (3 to do)", "epochs: 1/3, 0 s", "epochs: 2/3, 0 s", "epochs: 3/3, 0 s"]
    assert err[-1].split("] ", 1)[1].startswith("epochs: finished 3/3 in ")
    monkeypatch.setenv("EDGEDISTILL_LOG_EVERY", "3600")  # inside a loop: at most one line per interval
    list(progress.track(range(50), "steps"))
    assert len(capsys.readouterr().err.splitlines()) == 2  # started, finished
    monkeypatch.setenv("EDGEDISTILL_PROGRESS", "0")
    list(progress.track(range(3), "silent"))
    assert capsys.readouterr().err == ""


def test_known_harmless_third_party_messages_are_silenced_and_others_are_not():
    code = ("import logging; from edgedistill import quiet; quiet.install(); import torchao; "
            "from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e; "
            "logging.getLogger('torchao').warning('Failed to load a real thing'); "
            "logging.getLogger('torch.utils._pytree').warning('another pytree warning')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "_C_" not in proc.stderr and "Enum subclass" not in proc.stderr
    assert "Failed to load a real thing" in proc.stderr and "another pytree warning" in proc.stderr


def test_doctor_reports_packages_without_importing_them():
    """Importing transformers, Torch-Pruning and friends made doctor take 46 s on a busy machine. (torch itself
    is loaded by the ExecuTorch target's check, which must load its runtime to see XNNPACK compiled in.)"""
    code = ("import sys; from edgedistill.doctor import diagnose; r = diagnose(); "
            "print(sorted(m for m in ('transformers', 'torch_pruning', 'torchao', 'optimum') if m in sys.modules)); "
            "print({e['name']: e['usable'] for e in r['extras']})")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    imported, usable = proc.stdout.splitlines()
    assert imported == "[]"
    assert "'torch': True" in usable and "'tensorrt': False" in usable


def test_doctor_prints_each_part_as_it_goes():
    proc = run_cli("doctor")
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()
    assert first[0].startswith("edgedistill ") and any(line == "targets:" for line in first)


def test_recipe_named_with_yaml_suffix_falls_back_to_the_builtin(tmp_path):
    proc = run_cli("validate", "mobile.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "(built-in): ok" in proc.stdout
    (tmp_path / "mobile.yaml").write_text("name: mine\n")  # a file of that name wins over the built-in
    proc = run_cli("validate", "mobile.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and "mobile.yaml" in proc.stderr


def test_import_finds_a_module_in_the_current_folder(tmp_path):
    (tmp_path / "mymodels.py").write_text(
        "import torch.nn as nn\n\n"
        "def tiny(input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[-1] * input_shape[-2], num_classes))\n")
    (tmp_path / "r.yaml").write_text(
        "name: mine\ndata: {name: digits}\nteacher: {model: {name: 'mymodels:tiny'}, train: {epochs: 1}}\n"
        "stages: [{kind: export}]\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(_exe()), "validate", "r.yaml", "--import", "mymodels"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([str(_exe()), "validate", "r.yaml"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "--import" in proc.stderr  # never imported unless named


def _exe():
    from pathlib import Path

    exe = Path(sys.executable).with_name("edgedistill")
    if not exe.exists():
        pytest.skip("the edgedistill console script is not installed next to this interpreter")
    return exe
