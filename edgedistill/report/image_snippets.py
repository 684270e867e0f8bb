"""The bundle's usage/ files for image classifiers: Python (PIL image), Kotlin (Android Bitmap), Swift (CGImage).

Each one turns the platform's ordinary image type into the model's input following `manifest.json`'s
`image_input` exactly (its constants are copied verbatim; tests/test_snippets.py compares them), runs the
model with the ONNX Runtime version the bundle was verified with and the thread count its latency was
measured with, and returns the label with its confidence (softmax of the scores).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .image_input import image_input


def _input(spec: Mapping, meta: Mapping) -> dict[str, Any]:
    """image_input from the manifest (or derived the same way), plus names, dtypes and shape."""
    dims = [int(d) for d in meta.get("input_shape") or []] or [
        d if isinstance(d, int) else 1 for d in spec["inputs"][0]["shape"][1:]]
    img = meta.get("image_input") or image_input(meta.get("preprocessing") or {}, dims) or {
        "color": None, "height": dims[-2] if len(dims) >= 2 else 1, "width": dims[-1] if dims else 1,
        "channels": dims[0] if len(dims) == 3 else 1, "layout": "NCHW", "resample": "bilinear", "levels": 255.0,
        "divide_by": 1.0, "mean": [0.0], "std": [1.0], "ink": None}
    return {**img, "dims": dims, "input_name": spec["inputs"][0]["name"], "output_name": spec["outputs"][0]["name"],
            "dtype": spec["inputs"][0]["dtype"], "ort": meta.get("onnxruntime_version") or "",
            "threads": int(meta.get("threads") or 1), "labels": [str(c) for c in meta.get("class_labels") or []],
            "options": dict(meta.get("session_options") or {})}


def python_snippet(spec: Mapping, meta: Mapping) -> str:
    c = _input(spec, meta)
    config = dict(c["options"].get("session_config") or {})
    level = c["options"].get("graph_optimization_level")
    return f'''"""Run the bundled model with ONNX Runtime on ordinary images.

    pip install onnxruntime=={c["ort"]} numpy pillow      # the version this bundle was verified with
    python usage/predict.py digit.png [more.png ...]      # prints label and confidence per image

or, from code:  from predict import predict_image;  label, confidence = predict_image(PIL.Image.open(path))
Every constant below is copied from manifest.json ("image_input", "inputs", "outputs").
"""

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

ORT_VERSION = {c["ort"]!r}  # verified with this ONNX Runtime version
THREADS = {c["threads"]}  # the latency in the model card was measured with this many intra-op threads
INPUT_NAME, INPUT_DTYPE, INPUT_SHAPE = {c["input_name"]!r}, np.{c["dtype"]}, {[1, *c["dims"]]!r}  # NCHW
OUTPUT_NAME = {c["output_name"]!r}
COLOR, WIDTH, HEIGHT = {c["color"]!r}, {c["width"]}, {c["height"]}  # PIL mode and size the model wants
RESAMPLE = {c["resample"]!r}  # PIL filter, used only when an image is not WIDTH x HEIGHT already
LEVELS, DIVIDE_BY = {c["levels"]!r}, {c["divide_by"]!r}  # pixel 0..255 -> pixel * LEVELS / 255 -> / DIVIDE_BY
MEAN, STD = {c["mean"]!r}, {c["std"]!r}  # then (x - MEAN[c]) / STD[c], per channel
INK = {c["ink"]!r}  # "light": strokes brighter than the background, as in training
SESSION_CONFIG = {config!r}  # session options chosen by measurement (manifest.json model.session_options)
GRAPH_OPTIMIZATION_LEVEL = {level!r}

BUNDLE = Path(__file__).resolve().parent.parent
LABELS = (BUNDLE / "labels.txt").read_text(encoding="utf-8").splitlines() if (BUNDLE / "labels.txt").exists() else []

if ort.__version__ != ORT_VERSION:
    print(f"note: onnxruntime {{ort.__version__}} is installed; this bundle was verified with {{ORT_VERSION}}",
          file=sys.stderr)
_options = ort.SessionOptions()
_options.intra_op_num_threads = THREADS
if GRAPH_OPTIMIZATION_LEVEL:
    _options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION_LEVEL)
for _key, _value in SESSION_CONFIG.items():
    _options.add_session_config_entry(_key, _value)
session = ort.InferenceSession(str(BUNDLE / "model.onnx"), _options, providers=["CPUExecutionProvider"])


def preprocess(image: Image.Image, invert: bool = False) -> np.ndarray:
    """A PIL image -> the model's input, shape INPUT_SHAPE. `invert=True` for dark strokes on a light
    background when INK is "light"."""
    image = ImageOps.exif_transpose(image).convert(COLOR)  # photos stored rotated, as the camera saw them
    if image.size != (WIDTH, HEIGHT):
        image = image.resize((WIDTH, HEIGHT), resample=getattr(Image.Resampling, RESAMPLE.upper()))
    pixels = np.asarray(image, dtype=np.float32)
    if invert:
        pixels = np.float32(255.0) - pixels
    x = pixels if LEVELS == 255.0 else pixels * np.float32(LEVELS / 255.0)
    x = x / np.float32(DIVIDE_BY)
    x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)  # HW / HWC -> CHW
    mean = np.asarray(MEAN, np.float32).reshape(-1, 1, 1)
    std = np.asarray(STD, np.float32).reshape(-1, 1, 1)
    return ((x - mean) / std)[None].astype(INPUT_DTYPE)


def predict(batch: np.ndarray) -> list[tuple[str, float]]:
    """(label, confidence) per row of an already preprocessed batch; confidence is the softmax probability."""
    scores = session.run([OUTPUT_NAME], {{INPUT_NAME: batch}})[0].reshape(len(batch), -1).astype(np.float64)
    probs = np.exp(scores - scores.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    best = probs.argmax(1)
    return [(LABELS[i] if i < len(LABELS) else str(i), float(probs[n, i])) for n, i in enumerate(best)]


def predict_image(image: Image.Image, invert: bool = False) -> tuple[str, float]:
    """(label, confidence) for one PIL image."""
    return predict(preprocess(image, invert))[0]


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print("usage: python predict.py IMAGE [IMAGE ...]", file=sys.stderr)
        sys.exit(2)
    for path in sys.argv[1:]:
        label, confidence = predict_image(Image.open(path))
        print(f"{{path}}\\t{{label}}\\t{{confidence:.4f}}")
'''


def _floats_kt(values: list[float]) -> str:
    return ", ".join(f"{v!r}f" for v in values)


def kotlin_snippet(spec: Mapping, meta: Mapping, model_file: str) -> str:
    c = _input(spec, meta)
    config = dict(c["options"].get("session_config") or {})
    level = c["options"].get("graph_optimization_level")
    kt_level = {"ORT_DISABLE_ALL": "NO_OPT", "ORT_ENABLE_BASIC": "BASIC_OPT", "ORT_ENABLE_EXTENDED": "EXTENDED_OPT",
                "ORT_ENABLE_ALL": "ALL_OPT"}.get(level or "")
    entries = "".join(f"\n            addConfigEntry({json.dumps(k)}, {json.dumps(str(v))})" for k, v in config.items())
    level_line = f"\n            setOptimizationLevel(OrtSession.SessionOptions.OptLevel.{kt_level})" if kt_level else ""
    return f'''// Android, with ONNX Runtime pinned to the version this bundle was verified with:
//   implementation("com.microsoft.onnxruntime:onnxruntime-android:{c["ort"]}")
// Put {model_file} in src/main/assets/.  Usage:
//   val model = EdgeModel(context.assets.open("{model_file}").readBytes())
//   val (label, confidence) = model.predict(bitmap)      // any Bitmap; resized to {c["width"]}x{c["height"]}
// Every constant below is copied from manifest.json ("image_input", "inputs", "outputs").
import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import android.graphics.Bitmap
import java.nio.FloatBuffer
import kotlin.math.exp

data class Prediction(val label: String, val confidence: Float)

class EdgeModel(modelBytes: ByteArray) : AutoCloseable {{
    companion object {{
        const val ORT_VERSION = "{c["ort"]}"
        const val THREADS = {c["threads"]}  // the latency in the model card was measured with this many threads
        const val INPUT_NAME = "{c["input_name"]}"
        const val INPUT_DTYPE = "{c["dtype"]}"
        val INPUT_SHAPE = longArrayOf({", ".join(f"{d}L" for d in [1, *c["dims"]])})  // NCHW
        const val OUTPUT_NAME = "{c["output_name"]}"
        const val COLOR = "{c["color"]}"  // L: one grey channel, luma as PIL computes it; RGB: three channels
        const val WIDTH = {c["width"]}
        const val HEIGHT = {c["height"]}
        const val CHANNELS = {c["channels"]}
        const val RESAMPLE = "{c["resample"]}"  // training's filter; Android's filtered scaling is used here
        const val LEVELS = {c["levels"]!r}f  // pixel 0..255 -> pixel * LEVELS / 255 -> / DIVIDE_BY
        const val DIVIDE_BY = {c["divide_by"]!r}f
        val MEAN = floatArrayOf({_floats_kt(c["mean"])})  // then (x - MEAN[c]) / STD[c]
        val STD = floatArrayOf({_floats_kt(c["std"])})
        const val INK = "{c["ink"] or ""}"  // "light": strokes brighter than the background, as in training
        val LABELS = listOf({", ".join(json.dumps(x) for x in c["labels"])})
    }}

    private val env = OrtEnvironment.getEnvironment()
    private val session: OrtSession = env.createSession(modelBytes, OrtSession.SessionOptions().apply {{
            setIntraOpNumThreads(THREADS){level_line}{entries}
        }})

    private fun value(pixel: Int, channel: Int): Float {{
        val x = (if (LEVELS == 255f) pixel.toFloat() else pixel * (LEVELS / 255f)) / DIVIDE_BY
        return (x - MEAN[channel]) / STD[channel]
    }}

    /** A Bitmap -> the model's input (NCHW floats). invert = true for dark strokes on a light background.
     *  Rotate camera photos upright first (EXIF orientation), as training did. */
    fun preprocess(bitmap: Bitmap, invert: Boolean = false): FloatBuffer {{
        val src = if (bitmap.width == WIDTH && bitmap.height == HEIGHT) bitmap
                  else Bitmap.createScaledBitmap(bitmap, WIDTH, HEIGHT, true)
        val argb = IntArray(WIDTH * HEIGHT)
        src.getPixels(argb, 0, WIDTH, 0, 0, WIDTH, HEIGHT)
        val plane = WIDTH * HEIGHT
        val out = FloatArray(CHANNELS * plane)
        for (i in argb.indices) {{
            var r = (argb[i] shr 16) and 0xFF
            var g = (argb[i] shr 8) and 0xFF
            var b = argb[i] and 0xFF
            if (invert) {{ r = 255 - r; g = 255 - g; b = 255 - b }}
            if (CHANNELS == 1) {{
                val luma = (r * 19595 + g * 38470 + b * 7471 + 0x8000) shr 16  // PIL's convert("L")
                out[i] = value(luma, 0)
            }} else {{
                out[i] = value(r, 0); out[plane + i] = value(g, 1); out[2 * plane + i] = value(b, 2)
            }}
        }}
        return FloatBuffer.wrap(out)
    }}

    fun predict(bitmap: Bitmap, invert: Boolean = false): Prediction {{
        OnnxTensor.createTensor(env, preprocess(bitmap, invert), INPUT_SHAPE).use {{ input ->
            session.run(mapOf(INPUT_NAME to input)).use {{ out ->
                @Suppress("UNCHECKED_CAST")
                val scores = (out[0].value as Array<FloatArray>)[0]
                val max = scores.maxOrNull() ?: 0f
                val e = scores.map {{ exp((it - max).toDouble()) }}
                val best = e.indices.maxByOrNull {{ e[it] }} ?: 0
                return Prediction(LABELS.getOrElse(best) {{ best.toString() }}, (e[best] / e.sum()).toFloat())
            }}
        }}
    }}

    override fun close() {{ session.close() }}
}}
'''


def swift_snippet(spec: Mapping, meta: Mapping, model_file: str) -> str:
    c = _input(spec, meta)
    name, ext = model_file.rsplit(".", 1)
    config = dict(c["options"].get("session_config") or {})
    level = c["options"].get("graph_optimization_level")
    sw_level = {"ORT_DISABLE_ALL": "none", "ORT_ENABLE_BASIC": "basic", "ORT_ENABLE_EXTENDED": "extended",
                "ORT_ENABLE_ALL": "all"}.get(level or "")
    entries = "".join(f"\n        try options.addConfigEntry(withKey: {json.dumps(k)}, value: {json.dumps(str(v))})"
                      for k, v in config.items())
    level_line = f"\n        try options.setGraphOptimizationLevel(.{sw_level})" if sw_level else ""
    return f'''// iOS, with ONNX Runtime pinned to the version this bundle was verified with:
//   Swift Package Manager: https://github.com/microsoft/onnxruntime-swift-package-manager, exact: "{c["ort"]}"
//   or CocoaPods: pod 'onnxruntime-objc', '{c["ort"]}'
// Add {model_file} to the app target.  Usage:
//   let model = try EdgeModel()
//   let (label, confidence) = try model.predict(uiImage.cgImage!)   // any CGImage; drawn at {c["width"]}x{c["height"]}
// Every constant below is copied from manifest.json ("image_input", "inputs", "outputs").
import CoreGraphics
import Foundation
import onnxruntime_objc

final class EdgeModel {{
    static let ortVersion = "{c["ort"]}"
    static let threads: Int32 = {c["threads"]}  // the latency in the model card was measured with this many threads
    static let inputName = "{c["input_name"]}"
    static let inputDtype = "{c["dtype"]}"
    static let inputShape: [NSNumber] = {json.dumps([1, *c["dims"]])}  // NCHW
    static let outputName = "{c["output_name"]}"
    static let color = "{c["color"]}"  // L: one grey channel, luma as PIL computes it; RGB: three channels
    static let width = {c["width"]}
    static let height = {c["height"]}
    static let channels = {c["channels"]}
    static let resample = "{c["resample"]}"  // training's filter; Core Graphics' high-quality scaling is used here
    static let levels: Float = {c["levels"]!r}  // pixel 0..255 -> pixel * levels / 255 -> / divideBy
    static let divideBy: Float = {c["divide_by"]!r}
    static let mean: [Float] = {json.dumps(c["mean"])}  // then (x - mean[c]) / std[c]
    static let std: [Float] = {json.dumps(c["std"])}
    static let ink = "{c["ink"] or ""}"  // "light": strokes brighter than the background, as in training
    static let labels: [String] = {json.dumps(c["labels"])}

    private let env: ORTEnv
    private let session: ORTSession

    init() throws {{
        env = try ORTEnv(loggingLevel: .warning)
        guard let path = Bundle.main.path(forResource: "{name}", ofType: "{ext}") else {{
            throw NSError(domain: "EdgeModel", code: 1, userInfo: [NSLocalizedDescriptionKey: "{model_file} missing"])
        }}
        let options = try ORTSessionOptions()
        try options.setIntraOpNumThreads(EdgeModel.threads){level_line}{entries}
        session = try ORTSession(env: env, modelPath: path, sessionOptions: options)
    }}

    private func value(_ pixel: Float, _ channel: Int) -> Float {{
        let x = (EdgeModel.levels == 255 ? pixel : pixel * (EdgeModel.levels / 255)) / EdgeModel.divideBy
        return (x - EdgeModel.mean[channel]) / EdgeModel.std[channel]
    }}

    /// A CGImage -> the model's input (NCHW floats). invert = true for dark strokes on a light background.
    /// A UIImage's cgImage ignores imageOrientation: draw camera photos upright first, as training did.
    func preprocess(_ image: CGImage, invert: Bool = false) -> [Float] {{
        let w = EdgeModel.width, h = EdgeModel.height, plane = w * h
        var rgba = [UInt8](repeating: 0, count: plane * 4)
        rgba.withUnsafeMutableBytes {{ buf in
            let ctx = CGContext(data: buf.baseAddress, width: w, height: h, bitsPerComponent: 8, bytesPerRow: w * 4,
                                space: CGColorSpaceCreateDeviceRGB(),
                                bitmapInfo: CGImageAlphaInfo.noneSkipLast.rawValue)!
            ctx.interpolationQuality = (image.width == w && image.height == h) ? .none : .high
            ctx.draw(image, in: CGRect(x: 0, y: 0, width: w, height: h))
        }}
        var out = [Float](repeating: 0, count: EdgeModel.channels * plane)
        for i in 0..<plane {{
            var r = Int(rgba[4 * i]), g = Int(rgba[4 * i + 1]), b = Int(rgba[4 * i + 2])
            if invert {{ r = 255 - r; g = 255 - g; b = 255 - b }}
            if EdgeModel.channels == 1 {{
                let luma = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16  // PIL's convert("L")
                out[i] = value(Float(luma), 0)
            }} else {{
                out[i] = value(Float(r), 0); out[plane + i] = value(Float(g), 1); out[2 * plane + i] = value(Float(b), 2)
            }}
        }}
        return out
    }}

    func predict(_ image: CGImage, invert: Bool = false) throws -> (label: String, confidence: Float) {{
        var x = preprocess(image, invert: invert)
        let data = NSMutableData(bytes: &x, length: x.count * MemoryLayout<Float>.size)
        let input = try ORTValue(tensorData: data, elementType: .float, shape: EdgeModel.inputShape)
        let out = try session.run(withInputs: [EdgeModel.inputName: input], outputNames: [EdgeModel.outputName],
                                  runOptions: nil)
        let bytes = try out[EdgeModel.outputName]!.tensorData() as Data
        let scores = bytes.withUnsafeBytes {{ Array($0.bindMemory(to: Float.self)) }}
        let top = scores.max() ?? 0
        let e = scores.map {{ exp(Double($0 - top)) }}
        let best = e.indices.max {{ e[$0] < e[$1] }} ?? 0
        let label = best < EdgeModel.labels.count ? EdgeModel.labels[best] : String(best)
        return (label, Float(e[best] / e.reduce(0, +)))
    }}
}}
'''


def image_snippets(spec: Mapping, meta: Mapping, mobile_file: str) -> dict[str, str]:
    """usage/ files for an image classifier (Python, Kotlin, Swift)."""
    return {"predict.py": python_snippet(spec, meta), "EdgeModel.kt": kotlin_snippet(spec, meta, mobile_file),
            "EdgeModel.swift": swift_snippet(spec, meta, mobile_file)}

