"""torch → ONNX with the legacy exporter (one self-contained file), a parity check on real samples, and
safe copies of ONNX files (external data included).

Inputs and outputs are named by the task (`input`/`logits` for image classification; several named inputs
such as `input_ids`/`attention_mask` for text), every string dim of a `TensorSpec` ("batch", "sequence")
becomes a dynamic axis, and models that return tuples, dicts or Hugging Face output objects are wrapped so
the file's outputs are exactly the task's named outputs, in order."""

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

    from ..tasks import Task

INPUT_NAME, OUTPUT_NAME = "input", "logits"  # image classification's names


def _as_task(io: Task | tuple[int, ...]) -> Task:
    """A task, or a bare image shape (C, H, W) as shorthand for image classification."""
    if isinstance(io, tuple | list):
        from ..tasks.image_classification import image_task

        return image_task(tuple(io), 0)
    return io


def _named_module(model: nn.Module, task: Task, example: dict[str, Any]) -> nn.Module:
    """`model` itself when it already takes the task's single input and returns one tensor (so node names
    stay those of the model); otherwise a wrapper that calls it through the task and returns a tuple of the
    task's outputs in order."""
    import torch
    from torch import nn

    with torch.no_grad():
        raw = task.call(model, example)
    if len(task.inputs) == 1 and isinstance(raw, torch.Tensor):
        return model
    outputs = task.forward(model, example)
    names = [n for n in task.output_names if n in outputs]

    class NamedIO(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = task.forward(self.model, dict(zip(task.input_names, args, strict=True)))
            return tuple(out[n] for n in names)

    return NamedIO().eval()


def export_onnx(model: nn.Module, path: str | Path, io: Task | tuple[int, ...], opset: int = 17,
                example: dict[str, np.ndarray] | None = None) -> Path:
    """Export with the task's named inputs/outputs and dynamic axes. The legacy exporter writes a single
    file (no .onnx.data sibling). `io` may be a bare image shape (C, H, W) for one float input."""
    import torch

    task = _as_task(io)
    path = Path(path)
    model = model.eval()
    arrays = example if example is not None else task.example_inputs(batch=1)
    inputs = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    module = _named_module(model, task, inputs)
    out_names = list(task.output_names)
    if module is not model:
        with torch.no_grad():
            out_names = [n for n in task.output_names if n in task.forward(model, inputs)]
    specs = {s.name: s for s in (*task.inputs, *task.outputs)}
    axes = {n: specs[n].dynamic_axes() for n in (*task.input_names, *out_names) if specs[n].dynamic_axes()}
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, tuple(inputs[n] for n in task.input_names), str(tmp), dynamo=False, opset_version=opset,
            input_names=list(task.input_names), output_names=out_names, dynamic_axes=axes,
        )
    return path


def parity(model: nn.Module, onnx_path: str | Path, batch: dict[str, np.ndarray], task: Task) -> dict[str, Any]:
    """Compare every named output of the file with the module's on the same real inputs."""
    from ..evaluate import onnx_predictor, torch_predictor

    ref = torch_predictor(model, task)(batch)
    got = onnx_predictor(onnx_path, output_names=task.output_names)(batch)
    diffs = {k: float(np.abs(ref[k] - got[k]).max()) for k in ref if k in got}
    primary = task.output_names[0]
    out: dict[str, Any] = {
        "samples": len(next(iter(batch.values()))),
        "max_abs_diff": max(diffs.values(), default=float("inf")),  # no common output: never "in parity"
        "outputs": diffs,
    }
    if primary in ref and primary in got and ref[primary].ndim == 2 and task.metric.name == "accuracy":
        out["top1_agreement"] = float((ref[primary].argmax(1) == got[primary].argmax(1)).mean())
    return out


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
