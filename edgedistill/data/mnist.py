"""MNIST in its original IDX files (optionally gzipped), e.g. ../shared/data/mnist.

Only the official test file may be present; then, as in the benchmarks, the first 8,000 images train and
the last 2,000 evaluate. When the training files are present too, they are used for training.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import UserError
from .base import ArrayData, DataConfig, Dataset, register_dataset, stratified_split
from .check import as_labels


def read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        magic, count = struct.unpack(">II", data[:8])
        if magic == 2051:
            rows, cols = struct.unpack(">II", data[8:16])
            return np.frombuffer(data, np.uint8, offset=16).reshape(count, rows, cols)
        if magic == 2049:
            return np.frombuffer(data, np.uint8, offset=8).reshape(count)
    except (OSError, EOFError, zlib.error, struct.error, ValueError) as exc:  # truncated gz: EOFError
        raise UserError(f"cannot read IDX file ({type(exc).__name__}: {exc})", where=str(path),
                        fix="the file is truncated or corrupt: download it again") from exc
    raise UserError(f"not an IDX image or label file (magic {magic})", where=str(path))


def _find(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (folder / name).exists():
            return folder / name
    return None


@register_dataset("mnist")
def load_mnist(cfg: DataConfig) -> Dataset:
    if not cfg.path:
        raise UserError("the mnist dataset needs a folder", where="data.path",
                        fix="set data.path to the folder holding t10k-images-idx3-ubyte.gz")
    folder = Path(cfg.path).expanduser()
    test_images = _find(folder, "t10k-images-idx3-ubyte")
    test_labels = _find(folder, "t10k-labels-idx1-ubyte")
    if test_images is None or test_labels is None:
        raise UserError("MNIST test files not found", where=f"data.path ({folder})",
                        fix="point data.path at the folder with t10k-images-idx3-ubyte(.gz) and t10k-labels-idx1-ubyte(.gz)")
    norm = lambda a: ((a.astype(np.float32) / 255.0 - 0.1307) / 0.3081)[:, None]  # noqa: E731
    tx, ty = norm(read_idx(test_images)), as_labels(read_idx(test_labels), str(test_labels))
    train_images, train_labels = _find(folder, "train-images-idx3-ubyte"), _find(folder, "train-labels-idx1-ubyte")
    if train_images and train_labels:
        rest = ArrayData(norm(read_idx(train_images)), as_labels(read_idx(train_labels), str(train_labels)))
        test = ArrayData(tx, ty)
    else:
        rest, test = ArrayData(tx[:8000], ty[:8000]), ArrayData(tx[8000:], ty[8000:])
    train, val = stratified_split(rest.x, rest.y, cfg.val_fraction, cfg.seed)
    return Dataset(
        name="mnist", task="image_classification", train=train, val=val, test=test, num_classes=10,
        class_labels=[str(i) for i in range(10)],
        preprocessing={"layout": "NCHW", "image_size": [28, 28], "channels": 1, "scale": 1 / 255.0,
                       "mean": [0.1307], "std": [0.3081], "ink": "light"},
    )
