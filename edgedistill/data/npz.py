"""Your own arrays: an .npz with x_train, y_train, x_test, y_test (optional x_val, y_val, labels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .base import ArrayData, DataConfig, Dataset, register_dataset, stratified_split


@register_dataset("npz")
def load_npz(cfg: DataConfig) -> Dataset:
    if not cfg.path:
        raise UserError("the npz dataset needs a file", where="data.path", fix="set data.path to an .npz file")
    path = Path(cfg.path).expanduser()
    if not path.exists():
        raise UserError("file not found", where=f"data.path ({path})", fix="check the path")
    with np.load(path, allow_pickle=False) as z:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(z.files)
        if missing:
            raise UserError(f"missing arrays {sorted(missing)}", where=str(path),
                            fix="save x_train, y_train, x_test, y_test (and optionally x_val, y_val)")
        if ("x_val" in z.files) != ("y_val" in z.files):
            raise UserError("x_val and y_val must be given together", where=str(path),
                            fix="save both validation arrays, or neither (then val_fraction of x_train is held out)")
        arrays = {k: z[k] for k in z.files}
    x, y = arrays["x_train"].astype(np.float32), arrays["y_train"].astype(np.int64)
    if "x_val" in arrays:
        train, val = ArrayData(x, y), ArrayData(arrays["x_val"].astype(np.float32), arrays["y_val"].astype(np.int64))
    else:
        train, val = stratified_split(x, y, cfg.val_fraction, cfg.seed)
    n_classes = int(max(y.max(), arrays["y_test"].max()) + 1)
    labels = [str(v) for v in arrays["labels"]] if "labels" in arrays else [str(i) for i in range(n_classes)]
    return Dataset(
        name=path.stem, task="classification", train=train, val=val,
        test=ArrayData(arrays["x_test"].astype(np.float32), arrays["y_test"].astype(np.int64)),
        num_classes=n_classes, class_labels=labels, preprocessing={"note": "as stored in the npz"},
    )
