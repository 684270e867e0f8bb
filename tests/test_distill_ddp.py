"""The unchanged pipeline under a real `torchrun --nproc-per-node 2` (gloo on CPU) against a single process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import run_cli

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
    torchrun = Path(sys.executable).with_name("torchrun")
    exe = Path(sys.executable).with_name("edgedistill")
    if not torchrun.exists() or not exe.exists():
        pytest.skip("torchrun or the edgedistill console script is not installed next to this python")
    recipe = tmp_path / "ddp.yaml"
    recipe.write_text(RECIPE)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "EDGEDISTILL_PROGRESS": "0", "TMPDIR": str(scratch)}
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "--no-python", str(exe), "compress",
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
    names = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.parent.name != "cache")  # noqa: E731
    assert names(tmp_path / "two") == names(tmp_path / "one")
    shutil.rmtree(tmp_path / "one")
