"""The bundle handed to app teams: everything needed to ship the model, nothing from the training code.

`bundle/` holds the model (ONNX, plus ORT format and its required-operators config for mobile targets),
`manifest.json` (checksums, I/O spec read from the graph, preprocessing, labels, metric and latency per
target, versions, recipe hash), `MODEL_CARD.md`, `labels.txt` and usage snippets. The I/O spec is read
from the file itself, never from the recipe, so it cannot disagree with what ships. `verify_bundle` is the
receiving side's check: checksums, then load and run once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..export.onnx import copy_onnx
from ..io import atomic_path, sha256_file, write_json, write_text
from ..target import Target

MANIFEST = "manifest.json"
LATENCY_KEYS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "cv", "throughput_per_s", "peak_rss_mb",
                "batch", "threads", "runs", "cpu", "remote")


# ------------------------------------------------------------------------------------------------ model


def io_spec(onnx_file: Path) -> dict[str, list[dict[str, Any]]]:
    """Input and output names, shapes (ints, or the symbolic name) and numpy dtypes, from the graph."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    graph = onnx.load(str(onnx_file), load_external_data=False).graph
    inits = {t.name for t in graph.initializer}

    def describe(v) -> dict[str, Any]:
        tt = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
        return {"name": v.name, "shape": dims, "dtype": str(tensor_dtype_to_np_dtype(tt.elem_type))}

    return {"inputs": [describe(v) for v in graph.input if v.name not in inits],
            "outputs": [describe(v) for v in graph.output]}


def write_ort(onnx_file: Path, out_dir: Path, *, arm: bool) -> list[Path]:
    """ONNX Runtime mobile format plus the required-operators config for a reduced build.

    Mirrors onnxruntime.tools.convert_onnx_models_to_ort (fixed optimizations, no NCHWc layout, which is
    x86-specific), without its prints."""
    import logging

    import onnxruntime as ort
    from onnxruntime.tools.ort_format_model import create_config_from_models

    ort_path, config_path = out_dir / "model.ort", out_dir / "model.required_operators.config"
    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".ort-") as tmp:
        tmp_ort, tmp_cfg = Path(tmp) / ort_path.name, Path(tmp) / config_path.name
        so = ort.SessionOptions()
        so.optimized_model_filepath = str(tmp_ort)
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.add_session_config_entry("session.save_model_format", "ORT")
        so.add_session_config_entry("session.qdqisint8allowed", "1" if arm else "0")
        so.log_severity_level = 3
        ort.InferenceSession(str(onnx_file), sess_options=so, providers=["CPUExecutionProvider"],
                             disabled_optimizers=["NchwcTransformer"])
        create_config_from_models([tmp_ort], tmp_cfg, enable_type_reduction=False)
        text = tmp_cfg.read_text().replace(str(tmp_ort), ort_path.name)  # no temp paths in the shipped file
        tmp_cfg.write_text(text)
        os.replace(tmp_ort, ort_path)
        os.replace(tmp_cfg, config_path)
    return [ort_path, config_path]


# --------------------------------------------------------------------------------------------- snippets
def _pre(meta: Mapping[str, Any]) -> dict[str, Any]:
    p = dict(meta.get("preprocessing") or {})
    return {"scale": float(p.get("scale", 1.0)), "mean": [float(m) for m in p.get("mean", [])],
            "std": [float(s) for s in p.get("std", [])]}


def python_snippet(spec: Mapping, meta: Mapping) -> str:
    pre, inp, out = _pre(meta), spec["inputs"][0], spec["outputs"][0]
    shape = [1, *meta.get("input_shape", [])] if meta.get("input_shape") else [
        d if isinstance(d, int) else 1 for d in inp["shape"]]
    return f'''"""Run the bundled model with ONNX Runtime (pip install onnxruntime numpy).

Usage: python usage/predict.py   (from the bundle directory or anywhere else)
"""

from pathlib import Path

import numpy as np
import onnxruntime as ort

BUNDLE = Path(__file__).resolve().parent.parent
INPUT_NAME, INPUT_SHAPE = {inp["name"]!r}, {shape!r}  # first dim is the batch
OUTPUT_NAME = {out["name"]!r}
SCALE, MEAN, STD = {pre["scale"]!r}, {pre["mean"]!r}, {pre["std"]!r}  # per channel
LABELS = (BUNDLE / "labels.txt").read_text().splitlines() if (BUNDLE / "labels.txt").exists() else []

session = ort.InferenceSession(str(BUNDLE / "model.onnx"), providers=["CPUExecutionProvider"])


def preprocess(raw: np.ndarray) -> np.ndarray:
    """Raw values (as in the training data) of shape INPUT_SHAPE -> the model's input."""
    x = np.asarray(raw, dtype=np.{inp["dtype"]}) * SCALE
    if MEAN:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        x = (x - np.asarray(MEAN, x.dtype).reshape(shape)) / np.asarray(STD, x.dtype).reshape(shape)
    return x


def predict(raw: np.ndarray) -> list:
    """Class label (or index) per item of the batch."""
    scores = session.run([OUTPUT_NAME], {{INPUT_NAME: preprocess(raw)}})[0]
    best = scores.reshape(len(scores), -1).argmax(1)
    return [LABELS[i] if i < len(LABELS) else int(i) for i in best]


if __name__ == "__main__":
    example = np.zeros(INPUT_SHAPE, dtype=np.float32)
    print("prediction for an all-zero input:", predict(example))
'''


def _dims(meta: Mapping, spec: Mapping) -> list[int]:
    if meta.get("input_shape"):
        return [int(d) for d in meta["input_shape"]]
    return [d if isinstance(d, int) else 1 for d in spec["inputs"][0]["shape"][1:]]


def kotlin_preprocess(meta: Mapping, per_channel: int) -> str:
    """The Kotlin class members every Android snippet shares: preprocessing constants, labels, `preprocess`."""
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


def kotlin_snippet(spec: Mapping, meta: Mapping, model_file: str) -> str:
    dims = _dims(meta, spec)
    per_channel = math.prod(dims[1:]) or 1  # dims are (channels, ...) without the batch
    return f'''// Android, with the ONNX Runtime mobile package:
//   implementation("com.microsoft.onnxruntime:onnxruntime-android:latest.release")
// Put {model_file} in src/main/assets/.  Usage:
//   val model = EdgeModel(context.assets.open("{model_file}").readBytes())
//   val label = model.predict(rawValues)   // FloatArray of {math.prod(dims)} values, layout {"x".join(map(str, dims))}
import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import java.nio.FloatBuffer

class EdgeModel(modelBytes: ByteArray) : AutoCloseable {{
    private val env = OrtEnvironment.getEnvironment()
    private val session: OrtSession =
        env.createSession(modelBytes, OrtSession.SessionOptions().apply {{ setIntraOpNumThreads(4) }})
    private val shape = longArrayOf(1, {", ".join(f"{d}L" for d in dims)})
{kotlin_preprocess(meta, per_channel)}

    fun predict(raw: FloatArray): String {{
        val x = preprocess(raw)
        OnnxTensor.createTensor(env, FloatBuffer.wrap(x), shape).use {{ input ->
            session.run(mapOf("{spec["inputs"][0]["name"]}" to input)).use {{ out ->
                @Suppress("UNCHECKED_CAST")
                val scores = (out[0].value as Array<FloatArray>)[0]
                val best = scores.indices.maxByOrNull {{ scores[it] }} ?: 0
                return labels.getOrElse(best) {{ best.toString() }}
            }}
        }}
    }}

    override fun close() {{ session.close() }}
}}
'''


def swift_snippet(spec: Mapping, meta: Mapping, model_file: str) -> str:
    pre, dims = _pre(meta), _dims(meta, spec)
    per_channel = math.prod(dims[1:]) or 1  # dims are (channels, ...) without the batch
    name, ext = model_file.rsplit(".", 1)
    return f'''// iOS, with ONNX Runtime (Swift Package: onnxruntime-swift-package-manager, or pod 'onnxruntime-objc').
// Add {model_file} to the app target.  Usage:
//   let model = try EdgeModel()
//   let label = try model.predict(rawValues)   // [Float] of {math.prod(dims)} values, layout {"x".join(map(str, dims))}
import Foundation
import onnxruntime_objc

final class EdgeModel {{
    private let env: ORTEnv
    private let session: ORTSession
    private let shape: [NSNumber] = [1, {", ".join(str(d) for d in dims)}]
    private let scale: Float = {pre["scale"]}
    private let mean: [Float] = {pre["mean"] or [0.0]}
    private let std: [Float] = {pre["std"] or [1.0]}
    let labels: [String] = {json.dumps([str(c) for c in meta.get("class_labels") or []])}

    init() throws {{
        env = try ORTEnv(loggingLevel: .warning)
        guard let path = Bundle.main.path(forResource: "{name}", ofType: "{ext}") else {{
            throw NSError(domain: "EdgeModel", code: 1, userInfo: [NSLocalizedDescriptionKey: "{model_file} missing"])
        }}
        session = try ORTSession(env: env, modelPath: path, sessionOptions: nil)
    }}

    func predict(_ raw: [Float]) throws -> String {{
        var x = raw.enumerated().map {{ i, v -> Float in
            let c = min(i / {per_channel}, mean.count - 1)
            return (v * scale - mean[c]) / std[c]
        }}
        let data = NSMutableData(bytes: &x, length: x.count * MemoryLayout<Float>.size)
        let input = try ORTValue(tensorData: data, elementType: .float, shape: shape)
        let out = try session.run(withInputs: ["{spec["inputs"][0]["name"]}": input],
                                  outputNames: ["{spec["outputs"][0]["name"]}"], runOptions: nil)
        let bytes = try out["{spec["outputs"][0]["name"]}"]!.tensorData() as Data
        let scores = bytes.withUnsafeBytes {{ Array($0.bindMemory(to: Float.self)) }}
        let best = scores.indices.max {{ scores[$0] < scores[$1] }} ?? 0
        return best < labels.count ? labels[best] : String(best)
    }}
}}
'''


# ------------------------------------------------------------------------------------------- model card
def _fmt(v: Any, nd: int = 4) -> str:
    return "n/a" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def model_card(manifest: Mapping[str, Any], report: Mapping[str, Any]) -> str:
    m, models = manifest, report.get("models", {})
    metric = m["metric"]
    lines = [f"# Model card: {m['recipe']['name']}", "",
             f"Produced by edgedistill {m['versions']['edgedistill']} from recipe `{m['recipe']['name']}` "
             f"(sha256 `{m['recipe']['sha256'][:16]}…`). Task: **{m['task']}**.", "",
             "## Quality", "",
             f"`{metric['name']}` ({'higher' if metric.get('higher_is_better', True) else 'lower'} is better), "
             f"measured by running the shipped file in {metric.get('measured_on', 'onnxruntime')}"
             + (f" on the `{metric['split']}` split ({metric.get('samples')} samples)" if metric.get("split") else "")
             + ".", "",
             "| model | metric | size (MB) | params |", "|---|---|---|---|"]
    for name in ("teacher", "student", "deployed"):
        if name in models:
            d = models[name]
            lines.append(f"| {name} | {_fmt(d.get('metric'))} | {_fmt(d.get('size_mb'), 3)} | {d.get('params', 'n/a')} |")
    lines += ["", "## Latency", ""]
    if m["latency"]:
        lines += ["| target | p50 ms | p90 ms | p99 ms | throughput/s | peak RSS MB | batch | threads | measured on |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for t, s in m["latency"].items():
            lines.append(f"| {t} | {_fmt(s.get('p50_ms'), 3)} | {_fmt(s.get('p90_ms'), 3)} | {_fmt(s.get('p99_ms'), 3)}"
                         f" | {_fmt(s.get('throughput_per_s'), 1)} | {_fmt(s.get('peak_rss_mb'), 1)} | {s.get('batch')}"
                         f" | {s.get('threads')} | {s.get('remote') or s.get('cpu', '')} |")
    else:
        lines.append("No target could be profiled on the machine that built this bundle.")
    skipped = [t for t in m["targets"] if not t.get("available", True)]
    if skipped:
        lines.append("")
    for t in skipped:
        lines.append(f"- `{t['name']}` not measured: {t.get('reason')}")
    lines += ["", "## Inputs and outputs", "", "| | name | shape | dtype |", "|---|---|---|---|"]
    lines += [f"| input | `{v['name']}` | {v['shape']} | {v['dtype']} |" for v in m["inputs"]]
    lines += [f"| output | `{v['name']}` | {v['shape']} | {v['dtype']} |" for v in m["outputs"]]
    lines += ["", "## Preprocessing", "", "```json", json.dumps(m["preprocessing"], indent=2), "```", ""]
    if m.get("class_labels"):
        lines += [f"Class labels ({len(m['class_labels'])}, in output order): "
                  + ", ".join(f"`{c}`" for c in m["class_labels"][:50])
                  + (" …" if len(m["class_labels"]) > 50 else "") + " (also in `labels.txt`).", ""]
    stages = report.get("stages") or []
    if stages:
        lines += ["## How it was made", "", "| stage | seconds | metric after |", "|---|---|---|"]
        lines += [f"| {s.get('kind')} | {_fmt(s.get('seconds'), 1)} | {_fmt(s.get('metric_after'))} |" for s in stages]
        lines.append("")
    lines += ["## Limitations", "",
              "- The metric holds for data like the evaluation split; check it on your own data before shipping.",
              "- Latency was measured on the listed CPU/device; other hardware differs. int8 results can differ "
              "between CPU vendors (VPMADDUBSW saturation); the target's quantization preset accounts for this.",
              "- Latencies are medians of interleaved bursts in a fresh process per model; compare them as ratios "
              "measured in one run, not across machines.", "",
              "## Files", "", "`edgedistill verify bundle/` checks every checksum below and runs the model once.", ""]
    lines += [f"- `{f}`  {info['bytes']} bytes  sha256 `{info['sha256'][:16]}…`" for f, info in m["files"].items()]
    lines += ["", f"Versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}.", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ write
def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    from .. import __version__

    out = {"edgedistill": __version__, "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__,
           "python": platform.python_version()}
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:  # a bundle can be rewritten without torch
        pass
    return out


def _integrity(manifest: Mapping[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without this field, so edits to the manifest are caught too."""
    body = {k: v for k, v in manifest.items() if k != "integrity"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_engines(bdir: Path, targets: Sequence[Target]) -> dict[str, Path | None]:
    """A TensorRT engine per target that asks for one, built only where TensorRT and a GPU exist.

    Engines are specific to the GPU and TensorRT version that built them, so none is faked or copied from
    elsewhere: without TensorRT the target gets no engine and the manifest's target entry says why."""
    from ..profile.tensorrt import build_engine, tensorrt_status

    ok, _ = tensorrt_status()
    return {t.name: build_engine(bdir / "model.onnx", bdir / f"model.{t.name}.engine", t) if ok else None
            for t in targets}


Snippets = Callable[[Mapping, Mapping, str], dict[str, str]]


def image_snippets(spec: Mapping, meta: Mapping, mobile_file: str) -> dict[str, str]:
    """usage/ files for one preprocessed float image in, class scores out (Python, Kotlin, Swift)."""
    return {"predict.py": python_snippet(spec, meta), "EdgeModel.kt": kotlin_snippet(spec, meta, mobile_file),
            "EdgeModel.swift": swift_snippet(spec, meta, mobile_file)}


def write_bundle(run_dir: Path, onnx_path: Path, *, dataset_meta: dict, report: dict, targets: list[Target],
                 snippets: Snippets = image_snippets, extras: Sequence[Any] = ()) -> Path:
    """Fill `<run_dir>/bundle/` and return its path. Files are written atomically; the manifest goes last.

    `snippets(spec, meta, mobile_file)` writes `usage/<name>` files; the task supplies it (`Task.snippets`),
    since how an app prepares the inputs (an image, tokenized text) is the task's knowledge."""
    run_dir, onnx_path = Path(run_dir), Path(onnx_path)
    bdir = run_dir / "bundle"
    bdir.mkdir(parents=True, exist_ok=True)
    written = copy_onnx(onnx_path, bdir / "model.onnx")
    spec = io_spec(bdir / "model.onnx")
    ort_targets = [t for t in targets if "ort" in t.formats]
    if ort_targets:
        written += write_ort(bdir / "model.onnx", bdir, arm=any(t.arch == "aarch64" for t in ort_targets))
    engines = write_engines(bdir, [t for t in targets if "engine" in t.formats])
    written += [p for p in engines.values() if p is not None]
    labels = [str(c) for c in dataset_meta.get("class_labels") or []]
    if labels:
        written.append(write_text(bdir / "labels.txt", "\n".join(labels) + "\n"))
    pre = dict(dataset_meta.get("preprocessing") or {})
    tok = pre.get("tokenizer_dir")
    if tok and Path(tok).is_dir():
        for f in sorted(Path(tok).rglob("*")):
            if f.is_file():
                dst = bdir / "tokenizer" / f.relative_to(tok)
                with atomic_path(dst) as tmp:
                    shutil.copyfile(f, tmp)
                written.append(dst)
        pre["tokenizer_dir"] = "tokenizer"
    mobile_file = "model.ort" if ort_targets else "model.onnx"
    for name, text in snippets(spec, dataset_meta, mobile_file).items():
        written.append(write_text(bdir / "usage" / name, text))
    runtimes, cards = {}, []  # other runtimes' files (ExecuTorch's model.pte: report/bundle_executorch.py)
    for extra in extras:
        files_, runtimes[extra.key], card_part = extra.write(bdir, dataset_meta)
        written += files_
        cards.append(card_part)

    dep = (report.get("models") or {}).get("deployed") or {}
    tinfo = report.get("targets") or {}
    manifest: dict[str, Any] = {
        "manifest_version": 1,
        "task": dataset_meta.get("task") or report.get("task"),
        "model": {"file": "model.onnx", "external_data": [p.name for p in written if p.name == "model.onnx.data"],
                  "mobile_file": mobile_file if ort_targets else None,
                  "required_operators": "model.required_operators.config" if ort_targets else None,
                  # measured on the target by the quantize stage: the app must set these to get the measured speed
                  "session_options": dep.get("session_options") or {}},
        **spec,
        "input_shape": dataset_meta.get("input_shape"),
        "preprocessing": pre,
        "num_classes": dataset_meta.get("num_classes"),
        "class_labels": labels,
        "metric": {**(report.get("metric") or {}), "value": dep.get("metric"),
                   "measured_on": dep.get("metric_measured_on", "onnxruntime")},
        "size_mb": dep.get("size_mb"),
        "params": dep.get("params"),
        "latency": {t: {k: s[k] for k in LATENCY_KEYS if k in s} for t, s in (dep.get("latency") or {}).items()},
        "targets": [{"name": t.name, "precision": t.precision, "quant_preset": t.quant_preset, "formats": t.formats,
                     "available": (tinfo.get(t.name) or {}).get("available", t.name in (dep.get("latency") or {})),
                     "reason": (tinfo.get(t.name) or {}).get("reason"),
                     **({"engine": engines[t.name].name if engines[t.name] else None,
                         "engine_note": None if engines[t.name] else "not built: TensorRT or a GPU is missing here; "
                         "build it on the device (edgedistill doctor says why)"} if t.name in engines else {})}
                    for t in targets],
        **({"runtimes": runtimes} if runtimes else {}),
        "versions": _versions(),
        "recipe": {"name": (report.get("recipe") or {}).get("name"), "sha256": (report.get("recipe") or {}).get("sha256")},
        "files": {},
    }
    files = sorted({p.resolve() for p in written})
    manifest["files"] = {p.relative_to(bdir.resolve()).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                         for p in files}
    card = "\n".join([model_card(manifest, report), *cards])
    card_path = write_text(bdir / "MODEL_CARD.md", card)
    manifest["files"]["MODEL_CARD.md"] = {"sha256": sha256_file(card_path), "bytes": card_path.stat().st_size}
    manifest["integrity"] = _integrity(manifest)
    write_json(bdir / MANIFEST, manifest)
    return bdir


def shipped_session_options(model: str | Path) -> dict[str, Any]:
    """The ONNX Runtime session options a bundle ships for its model file ({} when `model` is not a bundle's
    model or the bundle ships none): re-timing a bundle without them would not measure what the app gets."""
    model = Path(model)
    try:
        manifest = json.loads((model.parent / MANIFEST).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    entry = manifest.get("model") if isinstance(manifest, dict) else None
    if not isinstance(entry, dict) or entry.get("file") != model.name:
        return {}
    options = entry.get("session_options")
    return dict(options) if isinstance(options, dict) else {}


# ----------------------------------------------------------------------------------------------- verify
def verify_bundle(path: str | Path) -> tuple[bool, list[str]]:
    """Checksums of every listed file, no file that is not listed, the manifest's own integrity, then load and
    run the model once. An extra file is damage too: an app team ships the whole folder."""
    bdir = Path(path)
    problems: list[str] = []
    try:
        manifest = json.loads((bdir / MANIFEST).read_text())
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return False, [f"{MANIFEST}: unreadable ({exc})"]
    if manifest.get("integrity") != _integrity(manifest):
        problems.append(f"{MANIFEST}: contents changed after it was written (integrity hash mismatch)")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return False, [*problems, f"{MANIFEST}: no files listed"]
    root = bdir.resolve()
    for rel, info in files.items():
        f = bdir / rel
        if not f.resolve().is_relative_to(root):  # a manifest must not point checks at files outside the bundle
            problems.append(f"{rel}: points outside the bundle")
            continue
        if not f.is_file():
            problems.append(f"{rel}: missing")
            continue
        digest, expected = sha256_file(f), info.get("sha256") if isinstance(info, dict) else None
        if digest != expected:
            problems.append(f"{rel}: sha256 {digest[:16]}… does not match the manifest's {str(expected)[:16]}…")
    listed = {MANIFEST, *files}
    extra = sorted(p.relative_to(bdir).as_posix() for p in bdir.rglob("*")
                   if (p.is_file() or p.is_symlink()) and p.relative_to(bdir).as_posix() not in listed)
    problems += [f"{rel}: unexpected file (not in the manifest; added after the bundle was written)" for rel in extra]
    for model_file in ("model.onnx", "model.ort"):
        if model_file in files and (bdir / model_file).is_file():
            problems += _run_once(bdir / model_file, manifest)
    if "model.onnx" not in files:
        problems.append(f"{MANIFEST}: model.onnx is not listed")
    from .bundle_executorch import verify_runtimes

    problems += verify_runtimes(bdir, manifest)  # model.pte: loaded and run in ExecuTorch
    return not problems, problems


def _run_once(model: Path, manifest: Mapping[str, Any]) -> list[str]:
    import numpy as np
    import onnxruntime as ort

    try:
        so = ort.SessionOptions()
        so.log_severity_level = 4
        sess = ort.InferenceSession(str(model), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # any load failure means a damaged or incompatible file
        return [f"{model.name}: does not load in onnxruntime ({str(exc).splitlines()[0][:200]})"]
    try:  # a damaged manifest is a finding like any other, never a traceback
        want_in = [v["name"] for v in manifest.get("inputs", [])]
        want_out = [v["name"] for v in manifest.get("outputs", [])]
        want_shapes = [[d if isinstance(d, int) else "?" for d in v["shape"]] for v in manifest.get("inputs", [])]
        dtypes = [np.dtype(v["dtype"]) for v in manifest.get("inputs", [])]
    except (KeyError, TypeError, ValueError) as exc:
        return [f"{MANIFEST}: inputs/outputs are malformed ({type(exc).__name__}: {exc})"]
    got_in, got_out = [i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()]
    if got_in != want_in or got_out != want_out:
        return [f"{model.name}: inputs/outputs {got_in}/{got_out} differ from the manifest's {want_in}/{want_out}"]
    # the feed is shaped from the model's own graph (symbolic dims = 1): a manifest claiming a huge shape is
    # reported as a mismatch, never allocated
    got_shapes = [[d if isinstance(d, int) else "?" for d in i.shape] for i in sess.get_inputs()]
    if got_shapes != want_shapes:
        return [f"{model.name}: input shapes {got_shapes} differ from the manifest's {want_shapes}"]
    feed = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], dtype=dt)
            for i, dt in zip(sess.get_inputs(), dtypes, strict=True)}
    try:
        sess.run(None, feed)
    except Exception as exc:  # a run failure is damage too
        return [f"{model.name}: fails to run ({str(exc).splitlines()[0][:200]})"]
    return []
