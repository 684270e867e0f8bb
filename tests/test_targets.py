"""Built-in hardware targets, target files, and honest availability."""

from __future__ import annotations

import json

import pytest

from edgedistill.errors import UserError
from edgedistill.target import (
    Target,
    availability,
    builtin_target_names,
    default_target,
    list_targets,
    load_target,
    machine_arch,
)

from .conftest import run_cli

PRESETS = {"x86_vnni", "x86_avx2", "arm64", "tensorrt", "fp16"}


def test_builtins_cover_the_issue():
    names = set(builtin_target_names())
    assert {"x86_vnni", "x86_avx2", "arm64_mobile", "nvidia_trt_fp16", "nvidia_trt_int8", "jetson"} <= names
    for t in list_targets():
        assert t.quant_preset in PRESETS, t.name
        assert t.description
    arm = load_target("arm64_mobile")
    assert arm.threads == 4 and "ort" in arm.formats and arm.arch == "aarch64"
    trt16, trt8 = load_target("nvidia_trt_fp16"), load_target("nvidia_trt_int8")
    assert (trt16.runtime, trt16.precision, trt16.gpu) == ("tensorrt", "fp16", True)
    assert (trt8.precision, trt8.quant_preset) == ("int8", "tensorrt")
    assert "TensorrtExecutionProvider" in load_target("jetson").providers


def test_unavailable_targets_say_why():
    for t in list_targets():
        ok, why = availability(t)
        assert why
        if t.arch not in ("any", machine_arch()):
            assert not ok and t.arch in why
    ok, why = availability(load_target("nvidia_trt_fp16"))
    if not ok:
        assert "GPU" in why or "tensorrt" in why


def test_remote_target_is_judged_by_the_ssh_client_not_the_local_cpu():
    t = Target(name="pi", arch="aarch64", ssh_host="pi.local", ssh_user="pi")
    ok, why = availability(t)
    assert t.remote and t.ssh_destination == "pi@pi.local"
    if ok:
        assert "ssh" in why and "pi@pi.local" in why


def test_target_file_errors_name_the_field(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("threads: 0\n")
    with pytest.raises(UserError) as e:
        load_target(str(p))
    assert e.value.where == str(p) and "threads" in e.value.message
    p.write_text("precision: int3\n")
    with pytest.raises(UserError, match="precision"):
        load_target(str(p))
    p.write_text("bogus_field: 1\n")
    with pytest.raises(UserError, match="bogus_field"):
        load_target(str(p))
    p.write_text("threads: [\n")
    with pytest.raises(UserError, match="YAML"):
        load_target(str(p))
    with pytest.raises(UserError, match='did you mean "arm64_mobile"'):
        load_target("arm64_mobil")
    with pytest.raises(UserError, match="not found"):
        load_target(str(tmp_path / "missing.yaml"))


def test_target_file_name_defaults_to_the_file_stem(tmp_path):
    p = tmp_path / "my_box.yaml"
    p.write_text("arch: any\nthreads: 2\ninput_shapes: {x: [1, 64]}\ntime_budget_s: 5\n")
    t = load_target(str(p))
    assert t.name == "my_box" and t.threads == 2 and t.input_shapes == {"x": [1, 64]} and t.time_budget_s == 5
    assert load_target(t) is t


def test_default_target_is_usable_here():
    try:
        t = default_target()
    except UserError as exc:
        assert "--target" in str(exc)
        return
    assert availability(t)[0]


@pytest.mark.slow  # each CLI start imports torch (~4 s here)
def test_cli_targets_lists_every_builtin():
    proc = run_cli("targets")
    assert proc.returncode == 0
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == len(builtin_target_names())
    assert any(line.startswith("arm64_mobile") for line in lines)
    rows = json.loads(run_cli("targets", "--json").stdout)
    assert {r["name"] for r in rows} == set(builtin_target_names())
    assert all(r["usable"] or r["reason"] for r in rows)


def test_cli_runs_as_a_module_too(tmp_path):
    """`python -m edgedistill.cli.main` (run_cli's fallback without the console script) has every command.
    (Run outside the checkout: `-m` puts the current folder first on sys.path.)"""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "edgedistill.cli.main", "targets", "--json"], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert {r["name"] for r in json.loads(proc.stdout)} == set(builtin_target_names())
