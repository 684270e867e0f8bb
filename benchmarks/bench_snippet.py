"""The bundle's Python snippet on ordinary image files, as an app team would feed it.

Saves the default (`mobile`, scikit-learn digits) run's test images as 8-bit PNG files (light ink, as the
manifest's `image_input.ink` says), classifies them with `bundle/usage/predict.py`, and prints the accuracy
next to the one report.json states. Also: the same images upscaled 4x (the snippet box-resizes them back),
and what the old snippet's "raw values" invited — 0..255 pixels fed as if they were the 0..16 grey levels.

    edgedistill compress --recipe mobile --out runs/mobile
    python benchmarks/bench_snippet.py runs/mobile
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def main(run: Path) -> dict:
    from PIL import Image

    from edgedistill.data import DataConfig, load_dataset

    sys.path.insert(0, str(run / "bundle" / "usage"))
    import predict  # the bundle's own snippet

    report = json.loads((run / "report.json").read_text())
    data = load_dataset(DataConfig(**{k: v for k, v in report["recipe"]["resolved"]["data"].items()
                                      if k in ("name", "seed", "val_fraction", "test_fraction")}))
    levels = np.rint(data.test.x[:, 0] * 16).astype(int)
    hits = {"png": 0, "png_upscaled_4x": 0, "raw_0_255_as_levels": 0}
    with tempfile.TemporaryDirectory() as d:
        for i, (lv, y) in enumerate(zip(levels, data.test.y, strict=True)):
            path = Path(d) / f"{i}.png"
            Image.fromarray(np.rint(lv * 255 / 16).astype(np.uint8)).save(path)
            label = predict.LABELS[y]
            hits["png"] += predict.predict_image(Image.open(path))[0] == label
            big = Image.open(path).resize((32, 32), Image.Resampling.NEAREST)
            hits["png_upscaled_4x"] += predict.predict_image(big)[0] == label
            raw = (np.rint(lv * 255 / 16).astype(np.float32) / np.float32(16))[None, None]
            hits["raw_0_255_as_levels"] += predict.predict(raw)[0][0] == label
    out = {"reported": report["models"]["deployed"]["metric"], "images": len(levels),
           **{k: v / len(levels) for k, v in hits.items()}}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/mobile"))
