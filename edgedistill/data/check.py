"""Checks every loaded dataset passes before anything trains on it.

Bad data used to be accepted and fail late or silently: negative or out-of-range labels, float labels
truncated to integers, inf/NaN pixels, a single class (which passes every gate at accuracy 1.0), splits of
different lengths, an empty test split (a traceback after all training). Every loader's result goes through
`check_dataset` (called by `load_dataset`), and loaders convert raw arrays with `as_labels`/`as_inputs`, so
the checks live in one place whatever the source.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError

if TYPE_CHECKING:
    from .base import Dataset

SPLITS = ("train", "val", "test")


def is_classification(task: str) -> bool:
    """classification, image_classification, text_classification, ...: targets are class indices."""
    return "classification" in task


def _inputs(split) -> dict[str, np.ndarray]:
    """A split's named input arrays (`inputs`), or its single `x`."""
    named = getattr(split, "inputs", None)
    return dict(named) if isinstance(named, dict) else {"input": split.x}


def as_labels(y: np.ndarray, where: str) -> np.ndarray:
    """Class labels as int64; float, boolean, string or multi-dimensional labels are refused, not truncated."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise UserError(f"labels must be a 1-D array of class indices, got shape {list(y.shape)}", where=where,
                        fix="store one integer class index per sample")
    if not np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        raise UserError(f"labels must be integers, got dtype {y.dtype}", where=where,
                        fix="store class indices 0..num_classes-1 as integers, e.g. y.astype(np.int64)")
    if len(y) and int(y.min()) < 0:
        raise UserError(f"labels must not be negative, found {int(y.min())}", where=where,
                        fix="labels are class indices 0..num_classes-1")
    return y.astype(np.int64, copy=False)


def as_inputs(x: np.ndarray, where: str) -> np.ndarray:
    """Inputs as float32 with a sample axis; non-numeric arrays are a UserError, not a traceback."""
    x = np.asarray(x)
    if x.ndim < 2:
        raise UserError(f"inputs must have a sample axis and at least one feature axis, got shape {list(x.shape)}",
                        where=where, fix="store inputs as (samples, features...) e.g. (N, 1, 28, 28)")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or np.issubdtype(x.dtype, np.complexfloating):
        raise UserError(f"inputs must be real numbers, got dtype {x.dtype}", where=where,
                        fix="store the inputs as a float or integer array")
    return x.astype(np.float32, copy=False)


def check_dataset(ds: Dataset, where: str) -> Dataset:
    """Refuse a dataset that training, evaluation or the gate would mis-handle. Returns `ds` unchanged."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name in SPLITS:
        split = ds.split(name)
        here = f"{where} ({name} split)"
        y = np.asarray(split.y)
        if name != "val" and len(y) == 0:  # val may be empty (val_fraction: 0); train and test may not
            raise UserError("the split is empty", where=here,
                            fix="use more data, a smaller data.test_fraction/val_fraction, or a larger limit")
        for key, x in _inputs(split).items():
            x = np.asarray(x)
            what = "inputs" if key == "input" else f'"{key}" inputs'
            if len(x) != len(y):
                raise UserError(f"{len(x)} {what} but {len(y)} labels", where=here,
                                fix="every input needs exactly one label: save arrays of the same length")
            if len(x) and key in shapes and x.shape[1:] != shapes[key]:
                raise UserError(f"{what} of shape {list(x.shape[1:])} differ from the train split's {list(shapes[key])}",
                                where=here, fix="every split must hold inputs of the same shape")
            if name == "train":
                shapes[key] = x.shape[1:]
            if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
                bad = int((~np.isfinite(x)).reshape(len(x), -1).any(axis=1).sum())
                raise UserError(f"{bad} input sample(s) contain NaN or infinite values", where=here,
                                fix="clean or drop those samples; training on them makes the loss NaN")
        if is_classification(ds.task) and len(y):
            y = as_labels(y, here)
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= ds.num_classes:
                raise UserError(f"labels range over {lo}..{hi}, outside 0..{ds.num_classes - 1}", where=here,
                                fix=f"labels are class indices 0..num_classes-1 ({ds.num_classes} classes here)")
    if is_classification(ds.task):
        classes = np.unique(np.asarray(ds.train.y))
        if ds.num_classes < 2 or len(classes) < 2:
            raise UserError(f"the training split holds {len(classes)} class(es); classification needs at least 2",
                            where=where, fix="use data with at least two classes (one class scores 1.0 on anything)")
        if len(ds.class_labels) != ds.num_classes:
            raise UserError(f"{len(ds.class_labels)} class names for {ds.num_classes} classes", where=where,
                            fix="give exactly one class name per class, in class-index order")
        check_class_names(ds.class_labels, where)
    return ds


def check_class_names(names: list[str], where: str) -> None:
    """Class names go into labels.txt (one a line), the snippets and the model card: a control character or a
    line separator inside one would split it over lines and shift every later class onto the wrong index."""
    for i, name in enumerate(names):
        bad = [c for c in str(name) if unicodedata.category(c) in ("Cc", "Zl", "Zp")]
        if bad:
            raise UserError(f"class name {i} ({str(name)[:60]!r}) contains the control character {bad[0]!r}",
                            where=where, fix="rename the class (folder, label value or labels array) without "
                                             "newlines, tabs or other control characters")


def check_outputs(num_outputs: int | None, ds: Dataset, where: str) -> None:
    """A classifier must have one output per class: fewer means some labels can never be predicted or named."""
    if not is_classification(ds.task) or not isinstance(num_outputs, int):
        return
    if num_outputs != ds.num_classes:
        raise UserError(f"the model has {num_outputs} outputs but the data has {ds.num_classes} classes "
                        f"({len(ds.class_labels)} class names)", where=where,
                        fix="use the model trained for this dataset, or data/class names that match its outputs")
