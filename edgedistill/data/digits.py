"""scikit-learn's bundled handwritten digits (1,797 8×8 images): real data with no download."""

from __future__ import annotations

import numpy as np

from .base import DataConfig, Dataset, register_dataset, stratified_split


@register_dataset("digits")
def load_digits_dataset(cfg: DataConfig) -> Dataset:
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = (raw.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = raw.target.astype(np.int64)
    rest, test = stratified_split(x, y, cfg.test_fraction, cfg.seed)
    train, val = stratified_split(rest.x, rest.y, cfg.val_fraction, cfg.seed)
    return Dataset(
        name="digits",
        task="image_classification",
        train=train,
        val=val,
        test=test,
        num_classes=10,
        class_labels=[str(i) for i in range(10)],
        preprocessing={"layout": "NCHW", "image_size": [8, 8], "channels": 1, "scale": 1 / 16.0,
                       "note": "grey levels 0..16 multiplied by scale"},
    )
