"""Hostile and broken input: no code runs that the user did not import, the run folder stays where the user
said, every ending has its own exit code, and validation refuses what a run would crash on.

Each attack asserts the exit code, that the command did nothing (no marker file, no traceback), and that
nothing outside the run folder changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from edgedistill.errors import UserError
from edgedistill.recipe import load_recipe
from edgedistill.rundir import LOCK, claim
from edgedistill.target import Target, load_target

from .conftest import run_cli

RECIPE = """\
name: tiny
data: {name: digits}
teacher:
  model: {name: cnn, channels: [8]}
  train: {epochs: 1}
stages:
  - kind: distill
    student: {name: cnn, channels: [4]}
    train: {epochs: 1}
targets: [x86_avx2]
"""


def write(path, text: str):
    path.write_text(text)
    return path


def snapshot(root) -> dict:
    """Every file under `root` with its content: compared before and after an attack."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def plugin(tmp_path, body: str, name: str = "userplugin"):
    """A module on PYTHONPATH; importing it creates `imported.marker` (the side effect an attacker wants)."""
    d = tmp_path / "pp"
    d.mkdir(exist_ok=True)
    marker = tmp_path / "imported.marker"
    (d / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n" + textwrap.dedent(body))
    # no empty entry: "" on PYTHONPATH is the current folder, and a checkout's source tree there would shadow the
    # installed edgedistill
    paths = [str(d), *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
    return {"PYTHONPATH": os.pathsep.join(paths)}, marker


BUILDER = """
from torch import nn

def build(width: int = 4, input_shape=(1, 8, 8), num_classes=10):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0] * input_shape[1] * input_shape[2], num_classes))

def not_a_module(input_shape=(1, 8, 8), num_classes=10):
    return "rm -rf /"

_built = {"crash": 0, "truncated": 0}


def _second_build(fn, input_shape, num_classes):
    # the probe builds each model once before the run; fail on the run's own build, past the probe
    _built[fn] += 1
    return _built[fn] > 1


def crash(input_shape=(1, 8, 8), num_classes=10):
    if _second_build("crash", input_shape, num_classes):
        raise ValueError("boom inside a builder")
    return build(input_shape=input_shape, num_classes=num_classes)

def no_memory(input_shape=(1, 8, 8), num_classes=10):
    raise MemoryError()

def disk_full(input_shape=(1, 8, 8), num_classes=10):
    import errno
    raise OSError(errno.ENOSPC, "No space left on device", "/data/big.bin")

def truncated(input_shape=(1, 8, 8), num_classes=10):
    if _second_build("truncated", input_shape, num_classes):
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")
    return build(input_shape=input_shape, num_classes=num_classes)

def exits(input_shape=(1, 8, 8), num_classes=10):
    import sys
    sys.exit(0)  # some libraries do this in the caller's process
"""


# ---------------------------------------------------------------- 1. code never comes from a recipe


def test_recipe_naming_code_runs_nothing(tmp_path):
    env, marker = plugin(tmp_path, BUILDER)
    touched = tmp_path / "pwned"
    for model in (f'{{name: "os:system", command: "touch {touched}"}}', "{name: 'userplugin:build'}"):
        recipe = write(tmp_path / "r.yaml", RECIPE.replace("{name: cnn, channels: [8]}", model))
        for args in (["validate", str(recipe)], ["compress", "--recipe", str(recipe), "--out", str(tmp_path / "run")]):
            proc = run_cli(*args, env=env)
            assert proc.returncode == 2, proc.stderr
            assert "did not import" in proc.stderr and "--import" in proc.stderr and "Traceback" not in proc.stderr
            assert not marker.exists() and not touched.exists(), "a module named by the recipe was imported"
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_import_flag_and_env_make_a_builder_usable_and_its_result_is_checked(tmp_path):
    env, marker = plugin(tmp_path, BUILDER)
    recipe = write(tmp_path / "r.yaml", RECIPE.replace("{name: cnn, channels: [8]}", "{name: 'userplugin:build', width: 2}"))
    proc = run_cli("validate", str(recipe), "--import", "userplugin", env=env)
    assert proc.returncode == 0, proc.stderr
    assert marker.exists()
    proc = run_cli("validate", str(recipe), env={**env, "EDGEDISTILL_IMPORT": "json,userplugin"})
    assert proc.returncode == 0, proc.stderr
    bad_arg = write(tmp_path / "b.yaml", RECIPE.replace("{name: cnn, channels: [8]}", "{name: 'userplugin:build', width: '2'}"))
    proc = run_cli("validate", str(bad_arg), "--import", "userplugin", env=env)
    assert proc.returncode == 2 and "teacher.model.width" in proc.stderr, proc.stderr
    # an imported module's function that returns something else than a torch module is refused when built
    junk = write(tmp_path / "j.yaml", RECIPE.replace("{name: cnn, channels: [8]}", "{name: 'userplugin:not_a_module'}"))
    out = tmp_path / "run"
    proc = run_cli("compress", "--recipe", str(junk), "--out", str(out), "--import", "userplugin", env=env)
    assert proc.returncode == 2, proc.stderr
    assert "teacher.model" in proc.stderr and "not a torch.nn.Module" in proc.stderr  # the probe names the spec
    proc = run_cli("validate", str(recipe), "--import", "no_such_module_xyz", env=env)
    assert proc.returncode == 2 and "--import no_such_module_xyz" in proc.stderr


def test_installed_plugins_supply_builders_by_entry_point(tmp_path):
    """A builder from an installed package's `edgedistill.models` entry point needs no --import; only the entry
    point with the requested name is loaded."""
    env, marker = plugin(tmp_path, BUILDER, name="plugmod")
    dist = tmp_path / "pp" / "plugmod-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plugmod\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[edgedistill.models]\nplugnet = plugmod:build\n")
    recipe = write(tmp_path / "r.yaml", RECIPE)
    assert run_cli("validate", str(recipe), env=env).returncode == 0
    assert not marker.exists()  # another model was asked for: the plugin was not imported
    recipe = write(tmp_path / "p.yaml", RECIPE.replace("{name: cnn, channels: [8]}", "{name: plugnet, width: 3}"))
    proc = run_cli("validate", str(recipe), env=env)
    assert proc.returncode == 0, proc.stderr
    assert marker.exists()


def test_target_files_cannot_run_local_commands(tmp_path):
    marker = tmp_path / "proxy.marker"
    attacks = [
        {"ssh_options": [f"ProxyCommand=touch {marker}"]},
        {"ssh_options": [f"proxycommand touch {marker}"]},
        {"ssh_options": [f"LocalCommand=touch {marker}", "PermitLocalCommand=yes"]},
        {"ssh_options": [f"KnownHostsCommand=/bin/touch {marker}"]},
        {"ssh_options": ["ConnectTimeout=5 ProxyCommand=x"]},
        {"ssh_host": f"-oProxyCommand=touch {marker}"},
        {"ssh_user": "-oProxyCommand=x"},
        {"remote_python": "python3; touch /tmp/x"},
    ]
    for i, fields in enumerate(attacks):
        path = tmp_path / f"t{i}.yaml"
        lines = [f"name: t{i}", "arch: any", "ssh_host: device.local"]
        lines = [ln for ln in lines if not any(ln.startswith(k) for k in fields)]
        import json

        lines += [f"{k}: {json.dumps(v)}" for k, v in fields.items()]
        path.write_text("\n".join(lines) + "\n")
        with pytest.raises(UserError):
            load_target(str(path))
        recipe = write(tmp_path / "r.yaml", RECIPE.replace("targets: [x86_avx2]", f"targets: [{path}]"))
        proc = run_cli("validate", str(recipe))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (fields, proc.stderr)
    ok = load_target(str(write(tmp_path / "ok.yaml", "name: pi\nssh_host: pi-alias\nssh_user: pi\nssh_options: "
                                                    "[StrictHostKeyChecking=no, ConnectTimeout=5]\n")))
    assert ok.remote and ok.ssh_destination == "pi@pi-alias"
    assert not marker.exists()


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")
def test_remote_profiling_never_reads_the_host_as_an_ssh_option(tmp_path):
    """Even a Target built around validation: the real remote path ends ssh's options before the host."""
    from edgedistill.profile import profile_models
    from edgedistill.profile.synthetic import synthetic_mlp

    marker = tmp_path / "proxy.marker"
    evil = Target.model_construct(**{**Target(name="x", arch="any").model_dump(),
                                     "ssh_host": f"-oProxyCommand=touch {marker}", "ssh_port": 22})
    with pytest.raises(UserError):
        profile_models({"a": synthetic_mlp(tmp_path / "a.onnx")}, evil, runs=2, warmup=0)
    assert not marker.exists()


# ---------------------------------------------------------------- 2. the run folder is where the user said


def test_recipe_names_cannot_leave_the_runs_folder(tmp_path):
    victim = tmp_path / "x"
    (victim / "bundle").mkdir(parents=True)
    (victim / "bundle" / "keep.txt").write_text("precious")
    (victim / "stages").mkdir()
    before = snapshot(tmp_path)
    for name in ("../x", str(victim), "a/b", ".hidden", ".."):
        recipe = write(tmp_path / "r.yaml", RECIPE.replace("name: tiny", f"name: {name!r}"))
        with pytest.raises(UserError, match="name"):
            load_recipe(str(recipe))
    recipe = write(tmp_path / "r.yaml", RECIPE.replace("name: tiny", "name: ../x"))
    work = tmp_path / "work"
    work.mkdir()
    proc = run_cli("compress", "--recipe", str(recipe), cwd=work)
    assert proc.returncode == 2 and "name" in proc.stderr, proc.stderr
    assert snapshot(tmp_path) == {**before, "r.yaml": recipe.read_bytes()}
    assert list(work.iterdir()) == []


def _old_run(root):
    (root / "stages" / "0-teacher").mkdir(parents=True)
    (root / "bundle").mkdir()
    (root / "bundle" / "model.onnx").write_bytes(b"old model")
    (root / "report.json").write_text('{"passed": true}')
    (root / "recipe.resolved.json").write_text("{}")
    return root


def test_a_fresh_run_into_earlier_results_refuses_unless_told(tmp_path):
    run = _old_run(tmp_path / "run")
    before = snapshot(tmp_path)
    proc = run_cli("compress", "--recipe", "mobile", "--out", str(run))
    assert proc.returncode == 2 and "--overwrite" in proc.stderr and "--resume" in proc.stderr, proc.stderr
    assert snapshot(tmp_path) == before
    with claim(run, resume=False, overwrite=True):  # what --overwrite does before the first stage
        assert not (run / "report.json").exists() and not (run / "bundle").exists() and not (run / "stages").exists()
        assert (run / LOCK).exists()
    assert not (run / LOCK).exists()


def test_overwrite_deletes_only_a_run_folders_own_files(tmp_path):
    mine = tmp_path / "mine"
    (mine / "bundle").mkdir(parents=True)
    (mine / "bundle" / "thesis.pdf").write_text("years of work")
    (mine / "notes.txt").write_text("keep")
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match="not a run folder"), claim(mine, resume=False, overwrite=True):
        pass
    assert snapshot(tmp_path) == before and not (mine / LOCK).exists()
    run = _old_run(tmp_path / "run")
    (run / "notes.txt").write_text("mine")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "f").write_text("x")
    (run / "compare").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UserError, match="compare in the run folder is a symbolic link"), \
            claim(run, resume=False, overwrite=True):
        pass  # a link among a run's own names is refused, never followed
    assert (run / "notes.txt").read_text() == "mine" and (outside / "f").read_text() == "x"
    (run / "compare").unlink()
    with claim(run, resume=False, overwrite=True):
        pass
    assert (run / "notes.txt").read_text() == "mine" and not (run / "bundle").exists()


def test_resume_removes_the_old_report_first(tmp_path):
    run = _old_run(tmp_path / "run")
    with claim(run, resume=True, overwrite=False):
        assert not (run / "report.json").exists()  # a killed resume cannot leave a report that `check` passes
        assert (run / "bundle" / "model.onnx").exists() and (run / "stages").exists()


def test_a_lock_stops_a_second_run_and_a_dead_owners_lock_is_taken_over(tmp_path):
    run = _old_run(tmp_path / "run")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        (run / LOCK).write_text(f"{sleeper.pid} {socket.gethostname()}\n")
        proc = run_cli("compress", "--recipe", "mobile", "--out", str(run), "--resume")
        assert proc.returncode == 2 and f"pid {sleeper.pid}" in proc.stderr, proc.stderr
        assert (run / "report.json").exists()  # the running owner's files were not touched
    finally:
        sleeper.kill()
        sleeper.wait()
    with claim(run, resume=True, overwrite=False):  # its owner is dead now: the lock is stale
        assert (run / LOCK).read_text().startswith(f"{os.getpid()} ")


# ---------------------------------------------------------------- 3. exit codes mean one thing each


@pytest.mark.slow
def test_internal_errors_exit_3_with_a_crash_file_and_environment_errors_exit_2(tmp_path):
    env, _ = plugin(tmp_path, BUILDER)
    outcomes = {}
    for fn in ("crash", "no_memory", "disk_full", "truncated", "exits"):
        recipe = write(tmp_path / f"{fn}.yaml", RECIPE.replace("{name: cnn, channels: [8]}", f"{{name: 'userplugin:{fn}'}}"))
        out = tmp_path / f"run_{fn}"
        proc = run_cli("compress", "--recipe", str(recipe), "--out", str(out), "--import", "userplugin", env=env)
        assert "Traceback" not in proc.stderr and "Aborted!" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) <= 2, proc.stderr
        outcomes[fn] = (proc.returncode, proc.stderr, out)
    for fn in ("crash", "truncated", "exits"):
        code, err, out = outcomes[fn]
        assert code == 3, err
        crash = list(out.glob("crash-*.txt"))
        assert len(crash) == 1 and str(crash[0]) in err
        assert "Traceback" in crash[0].read_text() and f"in {fn}" in crash[0].read_text()
    assert outcomes["no_memory"][0] == 2 and "out of memory" in outcomes["no_memory"][1]
    assert outcomes["disk_full"][0] == 2 and "disk is full" in outcomes["disk_full"][1]
    assert "/data/big.bin" in outcomes["disk_full"][1]
    proc = run_cli("compress", "--recipe", str(tmp_path / "crash.yaml"), "--out", str(tmp_path / "dbg"),
                   "--import", "userplugin", "--debug", env=env)
    assert proc.returncode == 3 and "Traceback" in proc.stderr  # --debug shows it, the code stays
    assert run_cli("compress", "--no-such-option").returncode == 2


# ---------------------------------------------------------------- 4. validation catches what a run would crash on


@pytest.mark.parametrize(("change", "field"), [
    (("channels: [4]", "channels: '16'"), "stages.0.student.channels"),
    (("channels: [4]", "channels: ['16', 8]"), "stages.0.student.channels"),
    (("channels: [4]", "channels: [-4]"), "stages.0.student.channels"),
    (("channels: [4]", "channels: []"), "stages.0.student.channels"),
    (("channels: [8]}", "channels: [8], dropout: 1.5}"), "teacher.model.dropout"),
    (("name: tiny", "name: tiny\nseed: 1000000000000000000000000000000"), "seed"),
    (("name: tiny", "name: tiny\nseed: -1"), "seed"),
    (("targets: [x86_avx2]", "targets: []"), "targets"),
    (("targets: [x86_avx2]", "gates: {min_metric: .nan}"), "gates.min_metric"),
    (("targets: [x86_avx2]", "gates: {max_size_mb: .inf}"), "gates.max_size_mb"),
    (("kind: distill", "kind: [distill]"), "stages.0"),
    (("{name: cnn, channels: [8]}", "{}"), "teacher.model.name"),
    (("{name: cnn, channels: [8]}", "[cnn]"), "teacher.model"),
])
def test_validation_refuses_values_a_run_would_crash_on(tmp_path, change, field):
    text = RECIPE.replace(*change)
    assert text != RECIPE
    with pytest.raises(UserError) as err:
        load_recipe(str(write(tmp_path / "r.yaml", text)))
    assert field in err.value.render()


def test_yaml_limits_duplicates_and_encoding(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    bomb = write(tmp_path / "bomb.yaml", "\n".join(lines) + "\n")
    assert len(bomb.read_bytes()) < 1000  # a few hundred bytes that would expand to 10**10 values
    with pytest.raises(UserError, match="aliases"):
        load_recipe(str(bomb))
    with pytest.raises(UserError, match="nested deeper"):
        load_recipe(str(write(tmp_path / "deep.yaml", "name: x\nstages: " + "[" * 5000 + "]" * 5000 + "\n")))
    dup = write(tmp_path / "dup.yaml", RECIPE.replace("  train: {epochs: 1}\nstages", "  train: {epochs: 1}\n  train: {epochs: 2}\nstages"))
    with pytest.raises(UserError, match=r'duplicate key "train" \(first on line 5\)') as err:
        load_recipe(str(dup))
    assert err.value.where.endswith(":6")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(RECIPE.encode().replace(b"tiny", b"t\xffny"))
    with pytest.raises(UserError, match="not UTF-8"):
        load_recipe(str(binary))


def test_cli_bad_input_exits_2_without_a_traceback(tmp_path):
    recipe = write(tmp_path / "r.yaml", RECIPE)
    cases = [
        (["validate", str(recipe), "--set", "stages.0.student={name: cnn, channels: [8"], "--set stages.0.student"),
        (["validate", str(recipe), "--set", "teacher.model.channels=[0]"], "teacher.model.channels"),
        (["validate", str(write(tmp_path / "deep.yaml", "[" * 3000 + "]" * 3000))], "nested deeper"),
        (["check", str(recipe), "--baseline", str(recipe), "--junit", str(tmp_path)], "--junit"),
    ]
    for args, expected in cases:
        proc = run_cli(*args)
        assert proc.returncode == 2 and expected in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
