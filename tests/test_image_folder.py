"""The image_folder loader on real PNG files written with Pillow: shapes, labels, splits and bad input."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from edgedistill.data import DataConfig, load_dataset
from edgedistill.errors import UserError

from .conftest import run_cli

CLASSES = ("circle", "bar", "dot")  # written unsorted: class indices follow the sorted folder names


def _write(root, per_class: int = 6, classes=CLASSES) -> None:
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            a = (rng.random((10 + i, 12, 3)) * 60 + 60 * c).astype(np.uint8)  # sizes differ: all get resized
            Image.fromarray(a).save(root / name / f"{i}.png")


def test_loads_resized_scaled_and_labelled_by_sorted_folder(tmp_path):
    _write(tmp_path / "imgs")
    (tmp_path / "imgs" / "bar" / "notes.txt").write_text("not an image, ignored")
    ds = load_dataset(DataConfig(name="image_folder", path=str(tmp_path / "imgs"), image_size=[8, 6],
                                 image_mode="grayscale", val_fraction=0.2, test_fraction=0.25))
    assert ds.class_labels == ["bar", "circle", "dot"] and ds.num_classes == 3
    assert ds.input_shape == (1, 8, 6) and ds.task == "image_classification"
    assert len(ds.train) + len(ds.val) + len(ds.test) == 18
    for split in (ds.train, ds.val, ds.test):
        assert split.streamed  # file names, decoded when read
        x = split.x[:]
        assert x.dtype == np.float32 and split.y.dtype == np.int64 and x.shape == (len(split), 1, 8, 6)
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert sorted(set(ds.test.y.tolist())) == [0, 1, 2]  # stratified
    x, y = np.concatenate([ds.train.x[:], ds.test.x[:]]), np.concatenate([ds.train.y, ds.test.y])
    # "dot" pixels were drawn brightest and "circle" darkest: labels follow the sorted names, not write order
    assert x[y == 2].mean() > x[y == 0].mean() > x[y == 1].mean()
    assert ds.preprocessing["image_size"] == [8, 6] and ds.preprocessing["channels"] == 1
    again = load_dataset(DataConfig(name="image_folder", path=str(tmp_path / "imgs"), image_size=[8, 6],
                                    image_mode="grayscale", val_fraction=0.2, test_fraction=0.25))
    assert np.array_equal(again.test.x[:], ds.test.x[:])  # deterministic split


def test_separate_test_folder_and_rgb(tmp_path):
    _write(tmp_path / "train")
    _write(tmp_path / "test", per_class=2, classes=("dot", "bar"))
    ds = load_dataset(DataConfig(name="image_folder", path=str(tmp_path / "train"),
                                 test_path=str(tmp_path / "test"), image_size=5))
    assert ds.input_shape == (3, 5, 5) and len(ds.test) == 4 and len(ds.train) + len(ds.val) == 18
    assert sorted(ds.test.y.tolist()) == [0, 0, 2, 2]


@pytest.mark.parametrize("case", ["corrupt", "empty_class", "one_class", "no_classes", "missing"])
def test_bad_folders_are_user_errors_naming_the_place(tmp_path, case):
    root = tmp_path / "imgs"
    if case != "missing":
        root.mkdir()
    if case in ("corrupt", "empty_class"):
        _write(root, per_class=2)
    if case == "corrupt":
        bad = root / "dot" / "broken.png"
        bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    if case == "empty_class":
        (root / "empty").mkdir()
    if case == "one_class":
        _write(root, per_class=2, classes=("only",))
    with pytest.raises(UserError) as err:
        load_dataset(DataConfig(name="image_folder", path=str(root)))
    text = str(err.value)
    expected = {"corrupt": "broken.png", "empty_class": "empty", "one_class": "only one class",
                "no_classes": "no class folders", "missing": "not found"}[case]
    assert expected in text and str(root) in text, text


def test_missing_pillow_names_the_extra(tmp_path, monkeypatch):
    _write(tmp_path / "imgs", per_class=2)
    monkeypatch.setitem(sys.modules, "PIL", None)  # what an environment without Pillow looks like to import
    with pytest.raises(UserError, match=r"edgedistill\[images\]"):
        load_dataset(DataConfig(name="image_folder", path=str(tmp_path / "imgs")))


@pytest.mark.parametrize("size", [3, [8, 8, 8], [8, 2000], []])
def test_image_size_out_of_range_is_refused(size):
    with pytest.raises(ValueError, match="height, width"):
        DataConfig(name="image_folder", path="x", image_size=size)


def test_validate_a_recipe_on_an_image_folder_exits_0(tmp_path):
    _write(tmp_path / "imgs")
    recipe = tmp_path / "imgs.yaml"
    recipe.write_text(f"""
name: imgs
data: {{name: image_folder, path: "{tmp_path / 'imgs'}", image_size: 8, image_mode: rgb, val_fraction: 0.2}}
teacher:
  model: {{name: cnn, channels: [8], hidden: 16}}
  train: {{epochs: 1}}
stages:
  - kind: export
targets: [x86_vnni]
""")
    proc = run_cli("validate", str(recipe))
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "imgs" / "bar" / "0.png").write_bytes(b"garbage")
    proc = run_cli("validate", str(recipe))
    assert proc.returncode == 2 and "0.png" in proc.stderr, proc.stderr
