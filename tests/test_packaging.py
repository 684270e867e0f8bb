"""A non-editable install carries the CLI, the built-in recipes and targets, and works from any directory."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import ROOT


@pytest.mark.slow
def test_wheel_install_finds_builtin_recipes_and_targets_from_elsewhere(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
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
