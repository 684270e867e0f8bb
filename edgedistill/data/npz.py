"""Your own arrays: an .npz with x_train, y_train, x_test, y_test (optional x_val, y_val, labels)."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import UserError
from .base import ArrayData, DataConfig, Dataset, register_dataset, stratified_split
from .check import as_inputs, as_labels

MAX_CLASSES = 100_000  # a stray huge label must not make the model (or the names list) that wide


def _read(path: Path) -> dict[str, np.ndarray]:
    """Every array in the file; a truncated, corrupt or pickled file is a UserError naming it."""
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):  # an .npy array saved under an .npz name
            raise UserError("holds a single array, not named arrays", where=str(path),
                            fix="save with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")
        with z:
            return {k: z[k] for k in z.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
        raise UserError(f"cannot read the npz file ({type(exc).__name__}: {str(exc)[:200]})", where=str(path),
                        fix="the file is truncated, corrupt or holds Python objects: save it again with np.savez") from exc


@register_dataset("npz")
def load_npz(cfg: DataConfig) -> Dataset:
    if not cfg.path:
        raise UserError("the npz dataset needs a file", where="data.path", fix="set data.path to an .npz file")
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise UserError("file not found", where=f"data.path ({path})", fix="check the path")
    arrays = _read(path)
    missing = {"x_train", "y_train", "x_test", "y_test"} - set(arrays)
    if missing:
        raise UserError(f"missing arrays {sorted(missing)}", where=str(path),
                        fix="save x_train, y_train, x_test, y_test (and optionally x_val, y_val)")
    if ("x_val" in arrays) != ("y_val" in arrays):
        raise UserError("x_val and y_val must be given together", where=str(path),
                        fix="save both validation arrays, or neither (then val_fraction of x_train is held out)")
    x, y = as_inputs(arrays["x_train"], f"{path}: x_train"), as_labels(arrays["y_train"], f"{path}: y_train")
    if len(x) != len(y):
        raise UserError(f"x_train has {len(x)} samples but y_train {len(y)}", where=str(path),
                        fix="every input needs exactly one label: save arrays of the same length")
    test = ArrayData(as_inputs(arrays["x_test"], f"{path}: x_test"), as_labels(arrays["y_test"], f"{path}: y_test"))
    if "x_val" in arrays:
        train = ArrayData(x, y)
        val = ArrayData(as_inputs(arrays["x_val"], f"{path}: x_val"), as_labels(arrays["y_val"], f"{path}: y_val"))
    else:
        train, val = stratified_split(x, y, cfg.val_fraction, cfg.seed)
    n_classes = int(max([len(a) and a.max() for a in (y, test.y, val.y)]) + 1)
    if n_classes > MAX_CLASSES:
        raise UserError(f"labels go up to {n_classes - 1}; at most {MAX_CLASSES} classes are supported", where=str(path),
                        fix="labels are class indices 0..num_classes-1: renumber them")
    if "labels" in arrays:
        names = np.asarray(arrays["labels"])
        if names.ndim != 1:
            raise UserError(f"labels must be a 1-D list of class names, got shape {list(names.shape)}", where=str(path),
                            fix="save labels=np.array(['cat', 'dog', ...])")
        labels = [str(v) for v in names]
        n_classes = max(n_classes, len(labels))  # names for classes the data does not show are fine
    else:
        labels = [str(i) for i in range(n_classes)]
    return Dataset(
        name=path.stem, task="image_classification", train=train, val=val, test=test,
        num_classes=n_classes, class_labels=labels, preprocessing={"note": "as stored in the npz"},
    )
