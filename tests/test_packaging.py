"""A non-editable install carries the CLI, the built-in recipes and targets, and works from any directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT


@pytest.mark.slow
def test_wheel_install_finds_builtin_recipes_and_targets_from_elsewhere(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(ROOT)], check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = ("import edgedistill, sys; from edgedistill.cli.main import cli; "
            "assert edgedistill.__file__.startswith(sys.argv[1]), edgedistill.__file__; "
            "cli.main(args=sys.argv[2:], prog_name='edgedistill')")
    for args, expect in ((["recipes"], "mobile"), (["validate", "mobile"], "ok"), (["targets"], "x86_vnni")):
        proc = subprocess.run([sys.executable, "-c", code, str(target), *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert expect in proc.stdout


def _venv_with_current_dependencies(root) -> Path:
    """A new virtual environment that sees this interpreter's installed packages as dependencies (through a
    .pth file, listed after its own site-packages) but holds no edgedistill of its own yet."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    own = next((venv / "lib").glob("python3*/site-packages"))
    deps = [p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages"))]
    (own / "zz_dependencies.pth").write_text("\n".join(deps) + "\n")
    return venv


@pytest.mark.slow
def test_built_wheel_runs_the_default_recipe_in_its_own_environment(tmp_path):
    """The README's first command as a new user runs it: the wheel (not the source tree) installed into its own
    environment runs `compress --recipe mobile` from another folder. A package folder missing from the wheel
    (edgedistill.vocab once was) fails here, whichever way the suite itself was installed."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "-w", str(wheels), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next(wheels.glob("edgedistill-*.whl"))
    venv = _venv_with_current_dependencies(tmp_path)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", "--ignore-installed", str(wheel)], check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    where = subprocess.run([str(python), "-c", "import edgedistill.vocab, edgedistill.cli.main as m; print(m.__file__)"],
                           cwd=elsewhere, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(venv)), where.stdout  # the wheel's copy, not the source tree
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGEDISTILL_IMPORT")}
    proc = subprocess.run([str(venv / "bin" / "edgedistill"), "compress", "--recipe", "mobile", "--out", "run"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads((elsewhere / "run" / "report.json").read_text())
    assert report["passed"] and (elsewhere / "run" / "bundle" / "model.onnx").is_file()
    assert report["invocation"]["threads"]["count"] >= 1
