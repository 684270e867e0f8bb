"""End to end: a shortened mobile recipe through the real CLI, the report contract, and --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from edgedistill.data import DataConfig, load_dataset
from edgedistill.evaluate import evaluate_onnx
from edgedistill.tasks import build_task

from .conftest import FAST, ROOT, run_cli, set_args


def test_report_validates_against_contract(fast_report):
    schema = json.loads((ROOT / "tests" / "contract" / "report.schema.json").read_text())
    jsonschema.validate(fast_report, schema)
    assert [s["kind"] for s in fast_report["stages"]] == ["teacher", "distill", "quantize", "export"]
    assert "x86_vnni" in fast_report["models"]["deployed"]["latency"]


def test_deployed_metric_is_measured_on_the_shipped_file(fast_run, fast_report):
    deployed = fast_report["models"]["deployed"]
    assert deployed["metric_measured_on"] == "onnxruntime"
    data = load_dataset(DataConfig(name="digits"))
    # re-measure the bundle's file independently: the report must hold exactly that number
    assert deployed["metric"] == evaluate_onnx(fast_run / deployed["path"], data.test, build_task(None, data))
    assert deployed["metric"] >= 0.9
    # the shipped file is the one the keep policy chose (`keep: fastest`: int8 only where it measured faster)
    import onnx

    keep = next(s for s in fast_report["stages"] if s["kind"] == "quantize")["details"]["keep"]
    ops = {n.op_type for n in onnx.load(str(fast_run / deployed["path"])).graph.node}
    assert keep["policy"] == "fastest" and keep["shipped"] in ("int8", "float")
    assert ("QuantizeLinear" in ops and "DequantizeLinear" in ops) == (keep["shipped"] == "int8")


def test_resume_skips_finished_stages(fast_run, fast_report, tmp_path):
    import shutil

    run = tmp_path / "mobile"
    shutil.copytree(fast_run, run)
    proc = run_cli("compress", "--recipe", "mobile", "--out", str(run), "--resume", *set_args(FAST))
    assert proc.returncode in (0, 1), proc.stderr
    assert "reused from the earlier run: 0-teacher, 1-distill, 2-quantize, 3-export (" in proc.stdout
    again = json.loads((run / "report.json").read_text())
    assert again["invocation"]["reused_stages"] == ["0-teacher", "1-distill", "2-quantize", "3-export"]
    assert again["invocation"]["resumed"] is True
    # the summary's time is this command's wall time, not the sum of the reused stages' recorded seconds
    wall = float(proc.stdout.split(" s wall for this command")[0].rsplit(" ", 1)[-1])
    assert wall == pytest.approx(again["invocation"]["wall_seconds"], abs=30)
    # skipped stages keep the timings recorded when they ran
    assert [s["seconds"] for s in again["stages"]] == [s["seconds"] for s in fast_report["stages"]]
    # a changed stage setting re-runs that stage and all later ones, not the earlier ones
    proc = run_cli("compress", "--recipe", "mobile", "--out", str(run), "--resume",
                   *set_args([*FAST, "stages.1.calibration.samples=32"]))
    assert "reused from the earlier run: 0-teacher, 1-distill (" in proc.stdout


@pytest.mark.slow
def test_interrupted_training_resumes_mid_stage(tmp_path):
    """Ctrl-C during distillation: exit 2 with a short message; --resume continues from the last saved epoch."""
    run = tmp_path / "mobile"
    epochs = 60
    args = ["compress", "--recipe", "mobile", "--out", str(run),
            *set_args([*FAST[2:], "teacher.train.epochs=2", f"stages.0.train.epochs={epochs}"])]
    exe = Path(sys.executable).with_name("edgedistill")
    # a shell's background job inherits SIGINT as ignored; Ctrl-C must reach the child as it would on a terminal
    proc = subprocess.Popen([str(exe), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "EDGEDISTILL_PROGRESS": "0"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    stage = run / "stages" / "1-distill"
    deadline = time.time() + 600
    while not list(stage.glob("train_state*.pt")) and time.time() < deadline:
        time.sleep(0.05)
    assert list(stage.glob("train_state*.pt")), "distillation never saved an epoch checkpoint"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)  # generous: with a core busy, torch's threads answer late
    assert proc.returncode == 2, err
    assert "--resume" in err and "Traceback" not in err
    assert not (run / "stages" / "1-distill" / "record.json").exists()  # the stage did not finish

    done = run_cli(*args, "--resume")
    assert done.returncode in (0, 1), done.stderr
    assert "reused from the earlier run: 0-teacher (" in done.stdout
    distill = json.loads((run / "report.json").read_text())["stages"][1]["details"]
    assert distill["resumed_from_epoch"] is not None and 1 <= distill["resumed_from_epoch"] < epochs
    assert [h["epoch"] for h in distill["history"]] == list(range(1, epochs + 1))


def test_json_output_is_only_json(fast_run, tmp_path):
    import shutil

    run = tmp_path / "mobile"
    shutil.copytree(fast_run, run)
    proc = run_cli("compress", "--recipe", "mobile", "--out", str(run), "--resume", "--json", *set_args(FAST))
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)  # the whole of stdout is one JSON document
    assert report["schema_version"] == 1


def test_teacher_from_checkpoint_and_unloadable_checkpoint(fast_run, tmp_path):
    import torch
    from safetensors.torch import load_file

    weights = fast_run / "stages" / "0-teacher" / "model.safetensors"
    state_dict = tmp_path / "teacher.pt"
    torch.save(load_file(str(weights)), state_dict)
    for ckpt in (weights, state_dict):
        proc = run_cli("validate", "mobile", "--set", f"teacher.checkpoint={ckpt}", "--set", "teacher.train=null")
        assert proc.returncode == 0, proc.stderr
    out = tmp_path / "from_ckpt"
    proc = run_cli("compress", "--recipe", "mobile", "--out", str(out), *set_args(FAST),
                   "--set", f"teacher.checkpoint={state_dict}", "--set", "teacher.train=null", "--json")
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    original = json.loads((fast_run / "report.json").read_text())
    assert report["models"]["teacher"]["metric"] == original["models"]["teacher"]["metric"]
    assert report["stages"][0]["details"]["source"] == str(state_dict)

    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    proc = run_cli("compress", "--recipe", "mobile", "--out", str(tmp_path / "x"), "--set", f"teacher.checkpoint={bad}",
                   "--set", "teacher.train=null")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert str(bad) in proc.stderr and "cannot load checkpoint" in proc.stderr
    wrong = tmp_path / "wrong.pt"
    torch.save({"0.0.weight": torch.zeros(3)}, wrong)
    proc = run_cli("compress", "--recipe", "mobile", "--out", str(tmp_path / "y"), "--set", f"teacher.checkpoint={wrong}",
                   "--set", "teacher.train=null")
    assert proc.returncode == 2 and "does not match the model spec" in proc.stderr and "Traceback" not in proc.stderr


def test_nan_loss_stops_with_stage_epoch_and_step(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 1, 8, 8)).astype(np.float32)
    y = np.arange(200) % 4
    x[:, 0, 0, 0] = 3e38  # finite (NaN pixels are refused at load) but overflows the first layer
    path = tmp_path / "nan.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x[:20], y_test=y[:20])
    proc = run_cli("compress", "--recipe", "mobile", "--out", str(tmp_path / "run"), *set_args(FAST),
                   "--set", "data.name=npz", "--set", f"data.path={path}")
    assert proc.returncode == 2, proc.stderr
    assert "became NaN or infinite" in proc.stderr and "in teacher at epoch 1, step 1;" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_progress_bars_on_a_terminal_and_plain_lines_in_a_log(tmp_path):
    """On a terminal the run shows epoch, calibration and profiling bars; in a pipe (CI, nohup) it prints plain
    timestamped lines on stderr instead, one per stage start and end, and stdout carries only the summary."""
    import pty

    exe = Path(sys.executable).with_name("edgedistill")
    args = [str(exe), "compress", "--recipe", "mobile", *set_args(FAST)]
    env = {**os.environ, "COLUMNS": "120"}
    env.pop("EDGEDISTILL_PROGRESS", None)
    leader, follower = pty.openpty()
    proc = subprocess.Popen([*args, "--out", str(tmp_path / "tty")], stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=600)
    os.close(leader)
    shown = b"".join(chunks).decode(errors="replace")
    assert proc.returncode in (0, 1), shown[-2000:]
    for bar in ("teacher: epochs", "calibrating", "profiling on x86_vnni"):
        assert bar in shown, bar
    piped = subprocess.run([*args, "--out", str(tmp_path / "pipe")], capture_output=True, text=True, env=env, timeout=600)
    assert piped.returncode in (0, 1), piped.stderr
    for bar in ("epochs", "calibrating", "profiling on"):
        assert bar not in piped.stdout
    lines = piped.stderr.splitlines()
    assert lines and all(line.startswith("[edgedistill ") for line in lines), piped.stderr[-2000:]
    for kind in ("0-teacher", "1-distill", "2-quantize", "3-export"):
        assert any(f"stage {kind}: started" in line for line in lines), kind
        assert any(f"stage {kind}: done in " in line for line in lines), kind
    assert any("teacher: epochs: finished" in line for line in lines)
    assert "━" not in piped.stderr  # no bar drawn into a log


def test_npz_with_half_a_validation_split_is_a_user_error(tmp_path):
    import numpy as np

    from edgedistill.errors import UserError

    x, y = np.zeros((20, 1, 8, 8), np.float32), np.arange(20) % 2
    path = tmp_path / "half.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y, x_val=x[:4])
    with pytest.raises(UserError, match="x_val and y_val must be given together") as err:
        load_dataset(DataConfig(name="npz", path=str(path)))
    assert err.value.where == str(path)


@pytest.mark.slow
def test_same_recipe_and_seed_give_the_same_models(fast_report, tmp_path):
    """Reproducible runs: teacher and student initialisation, data order and calibration follow the seed."""
    proc = run_cli("compress", "--recipe", "mobile", "--out", str(tmp_path / "again"), "--json", *set_args(FAST))
    assert proc.returncode in (0, 1), proc.stderr
    again = json.loads(proc.stdout)
    # teacher and student follow the seed; so do calibration and both candidate files' metrics. Which of the two
    # ships (`keep: fastest`) is a latency measurement, which the machine's load may tip when they are close.
    assert [s["metric_after"] for s in again["stages"][:2]] == [s["metric_after"] for s in fast_report["stages"][:2]]
    quant = [next(s for s in r["stages"] if s["kind"] == "quantize")["details"] for r in (again, fast_report)]
    for key in ("float_val_metric", "quantized_val_metric", "calibration"):
        assert quant[0][key] == quant[1][key], key
    if quant[0]["keep"]["shipped"] == quant[1]["keep"]["shipped"]:
        assert again["models"]["deployed"]["metric"] == fast_report["models"]["deployed"]["metric"]
    histories = [[h["train_loss"] for h in r["stages"][0]["details"]["history"]] for r in (again, fast_report)]
    assert histories[0] == histories[1]


@pytest.mark.slow
def test_every_batch_size_of_a_target_is_profiled(tmp_path):
    """A (custom) target listing batch sizes [1, 4]: both are timed; the first keeps the target's name."""
    from edgedistill.target import load_target

    spec = load_target("x86_vnni").model_dump(mode="json")
    spec.update(name="my_cpu", batch_sizes=[1, 4])
    target = tmp_path / "my_cpu.yaml"
    target.write_text(json.dumps(spec))  # JSON is YAML
    out = tmp_path / "run"
    proc = run_cli("compress", "--recipe", "mobile", "--out", str(out), *set_args([*FAST[:-1], f"targets=[{target}]"]))
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads((out / "report.json").read_text())
    jsonschema.validate(report, json.loads((ROOT / "tests" / "contract" / "report.schema.json").read_text()))
    for model in ("teacher", "student", "deployed"):
        latency = report["models"][model]["latency"]
        assert sorted(latency) == ["my_cpu", "my_cpu@b4"]
        assert (latency["my_cpu"]["batch"], latency["my_cpu@b4"]["batch"]) == (1, 4)
    assert "p50 ms my_cpu" in proc.stdout
