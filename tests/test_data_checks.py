"""Data is checked when loaded: bad labels, inputs, lengths, splits and files are exit 2 before training."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

from edgedistill.data import DataConfig, load_dataset
from edgedistill.errors import UserError

from .conftest import SHARED_DATA, run_cli


def _arrays(n: int = 120, classes: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
    y = np.arange(n) % classes
    return {"x_train": x, "y_train": y, "x_test": x[:30], "y_test": y[:30]}


def _load(tmp_path, **changes):
    arrays = {**_arrays(), **changes}
    path = tmp_path / "d.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return load_dataset(DataConfig(name="npz", path=str(path)))


def test_a_clean_npz_loads(tmp_path):
    ds = _load(tmp_path)
    assert ds.num_classes == 4 and len(ds.train) + len(ds.val) == 120 and len(ds.test) == 30


@pytest.mark.parametrize("change, message", [
    ({"y_train": np.r_[-1, np.arange(119) % 4]}, "must not be negative"),
    # a test label beyond the named classes
    ({"y_test": np.r_[7, np.arange(29) % 4], "labels": np.array(list("abcd"))}, "4 class names for 8 classes"),
    ({"y_train": (np.arange(120) % 4).astype(np.float32)}, "labels must be integers"),
    ({"y_train": np.zeros(120, np.int64), "y_test": np.zeros(30, np.int64)}, "needs at least 2"),
    ({"y_train": np.arange(100) % 4}, "120 samples but y_train 100"),
    ({"x_test": np.zeros((0, 1, 8, 8), np.float32), "y_test": np.zeros(0, np.int64)}, "the split is empty"),
    ({"x_test": np.zeros((30, 1, 6, 6), np.float32)}, "differ from the train split's"),
    ({"x_train": np.full((120, 1, 8, 8), np.inf, np.float32)}, "NaN or infinite"),
    ({"labels": np.array(["a", "b", "c"])}, "3 class names for 4 classes"),
    ({"y_train": np.r_[10**9, np.arange(119) % 4]}, "at most 100000 classes"),
    ({"x_train": np.full((120, 4), "a")}, "inputs must be real numbers"),
])
def test_bad_npz_contents_are_user_errors(tmp_path, change, message):
    with pytest.raises(UserError, match=message):
        _load(tmp_path, **change)


def test_nan_pixel_in_one_sample_is_counted(tmp_path):
    x = _arrays()["x_train"].copy()
    x[3, 0, 1, 1], x[9, 0, 0, 0] = np.nan, -np.inf
    with pytest.raises(UserError, match="2 input sample") as err:
        _load(tmp_path, x_train=x)
    assert "train split" in err.value.where


def test_too_small_to_split_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="cannot hold out"):
        _load(tmp_path, x_train=np.zeros((1, 1, 8, 8), np.float32), y_train=np.array([0]))
    with pytest.raises(UserError, match="needs at least 2"):  # 2 samples: 1 trains
        _load(tmp_path, x_train=np.zeros((2, 1, 8, 8), np.float32), y_train=np.array([0, 1]))


def test_truncated_or_corrupt_npz_names_the_file(tmp_path):
    good = tmp_path / "good.npz"
    np.savez_compressed(good, **_arrays())
    data = good.read_bytes()
    for name, blob in [("cut.npz", data[: len(data) // 2]), ("noise.npz", b"PK\x03\x04" + bytes(200)),
                       ("text.npz", b"hello")]:
        bad = tmp_path / name
        bad.write_bytes(blob)
        with pytest.raises(UserError) as err:
            load_dataset(DataConfig(name="npz", path=str(bad)))
        assert str(bad) in err.value.render()


def test_truncated_mnist_gz_is_exit_2_naming_the_file(tmp_path):
    """Used to end in click's 'Aborted!' with exit 1 (gzip raises EOFError)."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    shutil.copy(SHARED_DATA / "mnist" / "t10k-labels-idx1-ubyte.gz", folder)
    raw = (SHARED_DATA / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes()
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(raw[: len(raw) // 3])
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    proc = run_cli("evaluate", str(onnx), "--data", f"mnist:{folder}")
    assert proc.returncode == 2, proc.stderr
    assert "t10k-images-idx3-ubyte.gz" in proc.stderr and "Traceback" not in proc.stderr
    assert "Aborted" not in proc.stderr


def test_mnist_label_beyond_ten_classes_is_refused(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    shutil.copy(SHARED_DATA / "mnist" / "t10k-images-idx3-ubyte.gz", folder)
    with gzip.open(SHARED_DATA / "mnist" / "t10k-labels-idx1-ubyte.gz") as f:
        labels = bytearray(f.read())
    labels[8 + 9000] = 12  # one test label out of range
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes(labels))
    with pytest.raises(UserError, match=r"outside 0\.\.9"):
        load_dataset(DataConfig(name="mnist", path=str(folder)))


def test_a_tiny_dataset_fails_before_training(tmp_path):
    """Used to crash with a traceback after all training; now exit 2 at load, nothing trained."""
    a = _arrays(n=6, classes=2)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=a["x_train"], y_train=a["y_train"], x_test=a["x_test"][:0], y_test=a["y_test"][:0])
    out = tmp_path / "run"
    proc = run_cli("compress", "--recipe", "mobile", "--out", str(out), "--set", "data.name=npz",
                   "--set", f"data.path={path}")
    assert proc.returncode == 2, proc.stderr
    assert "test split" in proc.stderr and "empty" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(out.glob("stages/*/model.safetensors"))


def test_labels_that_do_not_match_the_model_outputs(tmp_path):
    """A model with 10 outputs evaluated on data with 4 class names: refused, not scored."""
    import torch

    from edgedistill.export import export_onnx

    onnx = export_onnx(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)), tmp_path / "m.onnx", (1, 8, 8))
    path = tmp_path / "d.npz"
    np.savez(path, **_arrays())
    proc = run_cli("evaluate", str(onnx), "--data", f"npz:{path}")
    assert proc.returncode == 2, proc.stderr
    assert "10 outputs but the data has 4 classes" in proc.stderr
    ok = run_cli("evaluate", str(onnx), "--data", "digits")
    assert ok.returncode == 0, ok.stderr


def test_every_named_input_is_checked():
    """Splits with several named inputs (text: input_ids, attention_mask) get the same checks per input."""
    from types import SimpleNamespace

    from edgedistill.data import Dataset
    from edgedistill.data.check import check_dataset

    def dataset(mask_rows=10, bad=None):
        mask = np.ones((mask_rows, 4), np.float32)
        if bad is not None:
            mask[2, 1] = bad
        split = SimpleNamespace(inputs={"input_ids": np.zeros((10, 4), np.int64), "attention_mask": mask},
                                y=np.arange(10) % 2)
        return Dataset("t", "text_classification", split, split, split, 2, ["no", "yes"])

    assert check_dataset(dataset(), "t").num_classes == 2
    with pytest.raises(UserError, match='9 "attention_mask" inputs but 10 labels'):
        check_dataset(dataset(mask_rows=9), "t")
    with pytest.raises(UserError, match="NaN or infinite"):
        check_dataset(dataset(bad=np.inf), "t")
