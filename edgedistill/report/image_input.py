"""From an app's ordinary image (PIL image, Android Bitmap, iOS CGImage) to the model's input, as data.

The dataset's `preprocessing` says how its training values were made; this turns that into the few numbers
an app needs, written once into `manifest.json` (`image_input`) and copied verbatim into every snippet, so
the Python, Kotlin and Swift code cannot drift from the manifest (a test compares them):

    pixel p (0..255, one channel per `color`)  ->  p * levels / 255  (the dataset's raw value)
    -> raw / divide_by  (the dataset's scale, as the division it performs)  ->  (x - mean[c]) / std[c]

`levels` is the range of the dataset's raw values (255 for 8-bit images, 16 for scikit-learn's digits,
whose values are counts of ink pixels in 4x4 blocks: a box resize of a 0/255 image gives them back).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _divisor(scale: float) -> float:
    """The dataset divides by 255.0 or 16.0; dividing (not multiplying by 1/255) gives the same float32 bits."""
    inv = 1.0 / scale if scale else 1.0
    return float(round(inv)) if abs(inv - round(inv)) < 1e-6 else inv


def image_input(preprocessing: Mapping[str, Any], input_shape: Sequence[int] | None) -> dict[str, Any] | None:
    """The manifest's `image_input` entry, or None when the model's input is not an image made from pixels."""
    pre = dict(preprocessing or {})
    size = pre.get("image_size")
    if not size or len(size) != 2 or pre.get("layout", "NCHW") != "NCHW":
        return None
    channels = int(pre.get("channels") or (input_shape[0] if input_shape else 1))
    if channels not in (1, 3):
        return None
    mean = [float(m) for m in pre.get("mean") or []]
    std = [float(s) for s in pre.get("std") or []]
    return {
        "color": "L" if channels == 1 else "RGB",  # PIL's modes: L = 8-bit luma (ITU-R 601-2), RGB
        "height": int(size[0]), "width": int(size[1]), "channels": channels, "layout": "NCHW",
        "resample": str(pre.get("resample", "bilinear")),  # used only when the image is not already that size
        "levels": float(pre.get("levels", 255)),
        "divide_by": _divisor(float(pre.get("scale", 1.0))),
        "mean": mean or [0.0] * channels, "std": std or [1.0] * channels,
        "ink": pre.get("ink"),  # "light": strokes brighter than the background (invert dark-on-white images)
    }
