"""Integration snippets for the bundle's `model.pte` (ExecuTorch): Python, Kotlin (Android), Swift (iOS).

Each is written from the .pte's own I/O spec (names from the task, shapes and dtypes read from the file) and
the bundle's preprocessing, against the ExecuTorch version the manifest pins. The Python one runs in a test in
an environment holding only ExecuTorch's runtime and what it loads (torch, numpy); the Kotlin and Swift ones
cannot be compiled here, so a test parses them and compares every name, dtype, shape and constant with the
manifest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


def _pre(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The bundle's preprocessing as the snippets hard-code it: scale, then per-channel mean and std."""
    p = dict(meta.get("preprocessing") or {})
    return {"scale": float(p.get("scale", 1.0)), "mean": [float(m) for m in p.get("mean", [])],
            "std": [float(s) for s in p.get("std", [])]}


def kotlin_preprocess(meta: Mapping[str, Any], per_channel: int) -> str:
    """The Kotlin class members: preprocessing constants, labels, and `preprocess`."""
    pre = _pre(meta)
    mean = ", ".join(f"{m}f" for m in pre["mean"]) or "0f"
    std = ", ".join(f"{s}f" for s in pre["std"]) or "1f"
    return f'''    private val scale = {pre["scale"]}f
    private val mean = floatArrayOf({mean})
    private val std = floatArrayOf({std})
    val labels = listOf({", ".join(json.dumps(str(c)) for c in meta.get("class_labels") or [])})

    private fun preprocess(raw: FloatArray) = FloatArray(raw.size) {{ i ->
        val c = (i / {per_channel}).coerceAtMost(mean.size - 1)
        (raw[i] * scale - mean[c]) / std[c]
    }}'''

ANDROID_PACKAGE = "org.pytorch:executorch-android"
SWIFT_PACKAGE = "https://github.com/pytorch/executorch"


def _image_io(spec: Mapping[str, Any]) -> tuple[dict, dict, list[int]]:
    inp, out = spec["inputs"][0], spec["outputs"][0]
    return inp, out, [int(d) for d in inp["shape"]]


def python_snippet(spec: Mapping[str, Any], meta: Mapping[str, Any], version: str) -> str:
    pre = _pre(meta)
    inp, out, shape = _image_io(spec)
    return f'''"""Run the bundled model.pte with ExecuTorch's Python runtime.

pip install executorch=={version} numpy   (its Python runtime loads torch; a phone app needs neither)
Usage: python usage/executorch/predict.py
"""

from pathlib import Path

import numpy as np
import torch
from executorch.runtime import Runtime

BUNDLE = Path(__file__).resolve().parent.parent.parent
INPUT_NAME, INPUT_SHAPE, INPUT_DTYPE = {inp["name"]!r}, {shape!r}, {inp["dtype"]!r}  # batch 1: the file is static
OUTPUT_NAME = {out["name"]!r}
SCALE, MEAN, STD = {pre["scale"]!r}, {pre["mean"]!r}, {pre["std"]!r}  # per channel
LABELS = (BUNDLE / "labels.txt").read_text().splitlines() if (BUNDLE / "labels.txt").exists() else []

method = Runtime.get().load_program(BUNDLE / "model.pte").load_method("forward")


def preprocess(raw: np.ndarray) -> np.ndarray:
    """Raw values (as in the training data) of shape INPUT_SHAPE -> the model's input."""
    x = np.asarray(raw, dtype=INPUT_DTYPE) * SCALE
    if MEAN:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        x = (x - np.asarray(MEAN, x.dtype).reshape(shape)) / np.asarray(STD, x.dtype).reshape(shape)
    return x.astype(INPUT_DTYPE)


def predict(raw: np.ndarray) -> list:
    """Class label (or index) per item; items run one at a time (the .pte has batch 1)."""
    x = preprocess(raw).reshape(-1, *INPUT_SHAPE[1:])
    out = []
    for row in x:
        scores = method.execute([torch.from_numpy(np.ascontiguousarray(row[None]))])[0].numpy()
        best = int(scores.reshape(-1).argmax())
        out.append(LABELS[best] if best < len(LABELS) else best)
    return out


if __name__ == "__main__":
    example = np.zeros(INPUT_SHAPE, dtype=INPUT_DTYPE)
    print("prediction for an all-zero input:", predict(example))
'''


def kotlin_snippet(spec: Mapping[str, Any], meta: Mapping[str, Any], version: str) -> str:
    inp, out, shape = _image_io(spec)
    per_channel = math.prod(shape[2:]) or 1
    return f'''// Android, with ExecuTorch (XNNPACK delegate included in the AAR):
//   implementation("{ANDROID_PACKAGE}:{version}")
// Copy model.pte from the app's assets to filesDir once (Module.load takes a file path).  Usage:
//   val model = EdgeModel(File(context.filesDir, "model.pte").path)
//   val label = model.predict(rawValues)   // FloatArray of {math.prod(shape)} values, layout {"x".join(map(str, shape))}
// Input "{inp["name"]}" ({inp["dtype"]}), output "{out["name"]}" ({out["dtype"]}, shape {out["shape"]}).
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor

class EdgeModel(modelPath: String) : AutoCloseable {{
    private val module: Module = Module.load(modelPath)
    private val shape = longArrayOf({", ".join(f"{d}L" for d in shape)})
{kotlin_preprocess(meta, per_channel)}

    fun predict(raw: FloatArray): String {{
        val x = preprocess(raw)
        val input = Tensor.fromBlob(x, shape)
        val scores = module.forward(EValue.from(input))[0].toTensor().dataAsFloatArray
        val best = scores.indices.maxByOrNull {{ scores[it] }} ?: 0
        return labels.getOrElse(best) {{ best.toString() }}
    }}

    override fun close() {{ module.destroy() }}
}}
'''


def swift_snippet(spec: Mapping[str, Any], meta: Mapping[str, Any], version: str) -> str:
    pre = _pre(meta)
    inp, out, shape = _image_io(spec)
    per_channel = math.prod(shape[2:]) or 1
    return f'''// iOS, with ExecuTorch's Swift package: {SWIFT_PACKAGE}, branch "swiftpm-{version}";
// link the products executorch and backend_xnnpack (plus kernels_optimized). Add model.pte to the app target.
// Usage:
//   let model = try EdgeModel()
//   let label = try model.predict(rawValues)   // [Float] of {math.prod(shape)} values, layout {"x".join(map(str, shape))}
// Input "{inp["name"]}" ({inp["dtype"]}), output "{out["name"]}" ({out["dtype"]}, shape {out["shape"]}).
import ExecuTorch
import Foundation

final class EdgeModel {{
    private let module: Module
    private let shape: [Int] = {json.dumps(shape).replace(" ", "")}
    private let scale: Float = {pre["scale"]}
    private let mean: [Float] = {pre["mean"] or [0.0]}
    private let std: [Float] = {pre["std"] or [1.0]}
    let labels: [String] = {json.dumps([str(c) for c in meta.get("class_labels") or []])}

    init() throws {{
        guard let path = Bundle.main.path(forResource: "model", ofType: "pte") else {{
            throw NSError(domain: "EdgeModel", code: 1, userInfo: [NSLocalizedDescriptionKey: "model.pte missing"])
        }}
        module = Module(filePath: path)
        try module.load("forward")
    }}

    func predict(_ raw: [Float]) throws -> String {{
        let x = raw.enumerated().map {{ i, v -> Float in
            let c = min(i / {per_channel}, mean.count - 1)
            return (v * scale - mean[c]) / std[c]
        }}
        let input = Tensor<Float>(x, shape: shape)
        guard let output: Tensor<Float> = try module.forward(input).first?.tensor() else {{
            throw NSError(domain: "EdgeModel", code: 2, userInfo: [NSLocalizedDescriptionKey: "no tensor output"])
        }}
        let scores = output.scalars()
        let best = scores.indices.max {{ scores[$0] < scores[$1] }} ?? 0
        return best < labels.count ? labels[best] : String(best)
    }}
}}
'''


def executorch_snippets(spec: Mapping[str, Any], meta: Mapping[str, Any], version: str) -> dict[str, str]:
    """usage/executorch/ files for an image classifier's .pte (other tasks ship the manifest's I/O spec only)."""
    if meta.get("task_kind", "image_classification") != "image_classification" or len(spec["inputs"]) != 1:
        return {}
    return {"predict.py": python_snippet(spec, meta, version), "EdgeModel.kt": kotlin_snippet(spec, meta, version),
            "EdgeModel.swift": swift_snippet(spec, meta, version)}
