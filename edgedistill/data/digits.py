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
        # levels/resample/ink: how an ordinary 0..255 image becomes these values (each is the count of ink pixels
        # in a 4x4 block of a 32x32 bitmap, so a box resize of a light-on-dark image gives them back)
        preprocessing={"layout": "NCHW", "image_size": [8, 8], "channels": 1, "scale": 1 / 16.0, "levels": 16,
                       "resample": "box", "ink": "light",
                       "note": "grey levels 0..16 multiplied by scale"},
    )
