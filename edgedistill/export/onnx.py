"""torch → ONNX with the legacy exporter (one self-contained file), a parity check on real samples, and
safe copies of ONNX files (external data included)."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..io import atomic_path

if TYPE_CHECKING:  # the package is imported when the recipe schema is built, which must not import torch
    from torch import nn

INPUT_NAME, OUTPUT_NAME = "input", "logits"


def export_onnx(model: nn.Module, path: str | Path, input_shape: tuple[int, ...], opset: int = 17) -> Path:
    """Export with a dynamic batch axis. The legacy exporter writes a single file (no .onnx.data sibling)."""
    import torch

    path = Path(path)
    model = model.eval()
    dummy = torch.zeros((1, *input_shape), dtype=torch.float32)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (dummy,), str(tmp), dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    return path


def parity(model: nn.Module, onnx_path: str | Path, x: np.ndarray) -> dict[str, Any]:
    """Compare the file's outputs with the module's on the same real inputs."""
    from ..evaluate import onnx_predictor, torch_predictor

    ref = torch_predictor(model)(x)
    got = onnx_predictor(onnx_path)(x)
    return {
        "samples": len(x),
        "max_abs_diff": float(np.abs(ref - got).max()),
        "top1_agreement": float((ref.argmax(1) == got.argmax(1)).mean()),
    }


def copy_onnx(src: Path, dst: Path) -> list[Path]:
    """Copy an ONNX file to `dst` atomically; external data (any layout) is rewritten to one `<dst>.data` sibling.

    Every copy of an exported file goes through here, so a model with external weights never loses them."""
    import onnx

    if src.resolve() == dst.resolve():
        return [dst, *([dst.with_name(dst.name + ".data")] if dst.with_name(dst.name + ".data").exists() else [])]
    head = onnx.load(str(src), load_external_data=False)
    external = any(e.key == "location" for t in head.graph.initializer for e in t.external_data)
    if not external:
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        return [dst]
    model = onnx.load(str(src), load_external_data=True)
    data_name = dst.name + ".data"
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".onnx-") as tmp:
        onnx.save_model(model, str(Path(tmp) / dst.name), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=data_name, size_threshold=1024)
        os.replace(Path(tmp) / data_name, dst.with_name(data_name))
        os.replace(Path(tmp) / dst.name, dst)
    return [dst, dst.with_name(data_name)]
