"""The unchanged pipeline under a real torchrun (gloo on CPU) against a single process: 2 processes on one
node, and 2 nodes of 1 process each launched separately and meeting at a c10d rendezvous on loopback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import run_cli
from .test_streaming import streamed_recipe

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]  # the torchrun of this interpreter's torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

RECIPE = """\
name: ddp
seed: 0
data: {name: digits, batch_size: 64}
teacher:
  model: {name: cnn, channels: [16, 32], hidden: 32}
  train: {epochs: 15, lr: 0.005}
stages:
  - kind: distill
    student: {name: cnn, channels: [8, 16]}
    train: {epochs: 15, lr: 0.01}
  - kind: export
targets: [x86_vnni]
profile: {runs: 5, warmup: 1}
"""


@pytest.mark.slow
def test_torchrun_two_processes_matches_single_process(tmp_path):
    exe = Path(sys.executable).with_name("edgedistill")
    if not exe.exists():
        pytest.skip("the edgedistill console script is not installed next to this python")
    recipe = tmp_path / "ddp.yaml"
    recipe.write_text(RECIPE)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "EDGEDISTILL_PROGRESS": "0", "TMPDIR": str(scratch)}
    proc = subprocess.run([*TORCHRUN, "--standalone", "--nproc-per-node", "2", "--no-python", str(exe), "compress",
                           "--recipe", str(recipe), "--out", str(tmp_path / "two")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # both ranks finished and printed the report rank 0 wrote
    assert proc.stdout.count("PASSED") == 2
    one = run_cli("compress", "--recipe", str(recipe), "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr

    two_report = json.loads((tmp_path / "two" / "report.json").read_text())
    one_report = json.loads((tmp_path / "one" / "report.json").read_text())
    distill_two = two_report["stages"][1]
    assert distill_two["details"]["world_size"] == 2 and one_report["stages"][1]["details"]["world_size"] == 1
    # the same global batch, split over two ranks: the metrics agree within noise (BatchNorm sees half batches)
    for i in (0, 1):
        assert abs(two_report["stages"][i]["metric_after"] - one_report["stages"][i]["metric_after"]) <= 0.04
    assert abs(two_report["models"]["deployed"]["metric"] - one_report["models"]["deployed"]["metric"]) <= 0.06
    # only rank 0 wrote the run directory; rank 1 worked in a scratch folder under TMPDIR and removed it
    assert not [p for p in scratch.iterdir() if p.name.startswith("edgedistill-rank")]
    names = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if "cache" not in p.relative_to(d).parts)  # noqa: E731
    assert names(tmp_path / "two") == names(tmp_path / "one")
    shutil.rmtree(tmp_path / "one")


@pytest.mark.slow
def test_two_nodes_on_loopback_match_a_single_process_each_reading_its_share(tmp_path):
    """Two separate torchrun launches (--nnodes 2, one process each) meet at a c10d rendezvous on 127.0.0.1;
    each decodes only its share of a streamed image folder, and the result matches one process."""
    exe = Path(sys.executable).with_name("edgedistill")
    if not exe.exists():
        pytest.skip("the edgedistill console script is not installed next to this python")
    recipe = streamed_recipe(tmp_path)
    port = _free_port()
    env = {**os.environ, "EDGEDISTILL_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    launch = [*TORCHRUN, "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
              "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "edgedistill-test", "--no-python", str(exe),
              "compress", "--recipe", str(recipe), "--out", str(tmp_path / "two")]
    nodes = [subprocess.Popen(launch, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [n.communicate(timeout=600) for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], "\n".join(o[1][-2000:] for o in outs)
    one = run_cli("compress", "--recipe", str(recipe), "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-2000:]
    two_r = json.loads((tmp_path / "two" / "report.json").read_text())
    one_r = json.loads((tmp_path / "one" / "report.json").read_text())
    step_two, step_one = two_r["stages"][1]["details"]["steps"][0], one_r["stages"][1]["details"]["steps"][0]
    assert step_two["world_size"] == 2 and step_one["world_size"] == 1
    # rank 0 read half of each epoch's rows (its share of every global batch), the single process all of them
    assert abs(step_two["train_rows_read"] - step_one["train_rows_read"] / 2) <= 4
    assert one_r["stages"][0]["metric_after"] > 0.6  # the teacher learned: agreeing at chance would prove nothing
    # the same global batches; BatchNorm sees half batches per rank, so the metrics agree within noise
    for i in (0, 1):
        assert abs(two_r["stages"][i]["metric_after"] - one_r["stages"][i]["metric_after"]) <= 0.1
    assert abs(two_r["models"]["deployed"]["metric"] - one_r["models"]["deployed"]["metric"]) <= 0.1
