"""The on-disk teacher-output cache: shards read by index, digests verified on open, --overwrite starts over."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgedistill.data import DataConfig, load_dataset
from edgedistill.distill import cache as cache_mod
from edgedistill.distill.cache import CacheConfig, load_or_build
from edgedistill.models import build_model
from edgedistill.tasks.image_classification import image_task

from .conftest import run_cli


def _setup(n: int = 50):
    data = load_dataset(DataConfig(name="digits", train_limit=n))
    task = image_task(data.input_shape, data.num_classes)
    torch.manual_seed(0)
    teacher = build_model({"name": "cnn", "channels": [8, 16]}, data.input_shape, data.num_classes).eval()
    with torch.no_grad():
        logits = teacher(torch.from_numpy(data.train.x))
    return data, task, teacher, logits


def _build(tmp_path, data, task, teacher, mode: str = "dense"):
    return load_or_build(teacher, data.train, CacheConfig(mode=mode), tmp_path / "cache", task=task,
                         temperature=4.0, settings={"epoch": None}, seed=0)


def test_shards_are_read_back_by_sample_index(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "SHARD_ROWS", 7)  # 50 rows → 8 shards, so reads cross shard boundaries
    data, task, teacher, logits = _setup()
    out, info = _build(tmp_path, data, task, teacher)
    assert not info["hit"] and len(out.arrays["logits"]) == 8
    idx = torch.tensor([49, 0, 13, 7, 6, 21])
    assert torch.allclose(out.targets(idx).a, logits[idx], atol=1e-6)
    again, info2 = _build(tmp_path, data, task, teacher)
    assert info2["hit"] and "rebuilt" not in info2
    assert torch.equal(again.targets(idx).a, out.targets(idx).a)
    topk, _ = _build(tmp_path, data, task, teacher, mode="topk")
    got = topk.targets(idx)
    assert torch.equal(got.b, logits[idx].topk(4, dim=1).indices)


@pytest.mark.parametrize("damage", ["roll", "truncate", "delete"])
def test_a_tampered_cache_is_refused_and_rebuilt(tmp_path, damage):
    data, task, teacher, logits = _setup()
    _, info = _build(tmp_path, data, task, teacher)
    folder = tmp_path / "cache" / f"teacher-{info['key']}"
    shard = folder / "logits-00000.npy"
    if damage == "roll":  # the rows of another sample: same size, same header, wrong teacher outputs
        arr = np.load(shard)
        np.save(shard, np.roll(arr, 1, axis=0))
    elif damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:-40])
    else:
        shard.unlink()
    out, info2 = _build(tmp_path, data, task, teacher)
    assert not info2["hit"] and info2["rebuilt"]
    idx = torch.arange(len(data.train))
    assert torch.allclose(out.targets(idx).a, logits, atol=1e-6)  # the teacher's real outputs again
    _, info3 = _build(tmp_path, data, task, teacher)
    assert info3["hit"]


RECIPE = """\
name: cachetamper
seed: 0
data: {name: digits, batch_size: 64, train_limit: 300}
teacher:
  model: {name: cnn, channels: [8, 16], hidden: 16}
  train: {epochs: 2, lr: 0.01}
stages:
  - kind: distill
    student: {name: cnn, channels: [4, 8]}
    train: {epochs: 2, lr: 0.01}
  - kind: export
targets: [x86_vnni]
profile: {runs: 3, warmup: 1}
"""


@pytest.mark.slow
def test_overwrite_does_not_reuse_the_old_runs_cache(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "run"
    first = run_cli("compress", "--recipe", str(recipe), "--out", str(out))
    assert first.returncode == 0, first.stderr
    shards = list((out / "cache").glob("teacher-*/logits-*.npy"))
    assert shards
    for shard in shards:  # roll the stored logits: a reused cache would teach the student wrong labels
        np.save(shard, np.roll(np.load(shard), 1, axis=0))
    again = run_cli("compress", "--recipe", str(recipe), "--out", str(out), "--overwrite")
    assert again.returncode == 0, again.stderr
    cache = json.loads((out / "report.json").read_text())["stages"][1]["details"]["cache"]
    assert cache["misses"] == 1 and cache["hits"] == 0
