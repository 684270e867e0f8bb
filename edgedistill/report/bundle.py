"""The bundle handed to app teams: everything needed to ship the model, nothing from the training code.

`bundle/` holds the model (ONNX, plus ORT format and its required-operators config for mobile targets),
`manifest.json` (checksums, I/O spec read from the graph, preprocessing, labels, metric and latency per
target, versions, recipe hash), `MODEL_CARD.md`, `labels.txt` and usage snippets. The I/O spec is read
from the file itself, never from the recipe, so it cannot disagree with what ships. `verify_bundle` is the
receiving side's check: checksums, then load and run once.
"""

from __future__ import annotations

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
from .card import model_card
from .image_input import image_input
from .image_snippets import image_snippets
from .shipped import measured_threads, onnx_precision, quantization_decision
from .verify import MANIFEST, integrity, read_manifest, run_once, verify_bundle

__all__ = ["verify_bundle", "write_bundle"]

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


def write_engines(bdir: Path, targets: Sequence[Target]) -> dict[str, Path | None]:
    """A TensorRT engine per target that asks for one, built only where TensorRT and a GPU exist.

    Engines are specific to the GPU and TensorRT version that built them, so none is faked or copied from
    elsewhere: without TensorRT the target gets no engine and the manifest's target entry says why."""
    from ..profile.tensorrt import build_engine, tensorrt_status

    ok, _ = tensorrt_status()
    return {t.name: build_engine(bdir / "model.onnx", bdir / f"model.{t.name}.engine", t) if ok else None
            for t in targets}


Snippets = Callable[[Mapping, Mapping, str], dict[str, str]]


def runtime_facts(report: Mapping[str, Any], targets: Sequence[Target], options: Mapping[str, Any]) -> dict[str, Any]:
    """What every snippet must set to get the measured behaviour: the ONNX Runtime version (the one this bundle
    is verified with, here), the threads the latency was measured with, the chosen session options."""
    import onnxruntime

    threads = measured_threads(report) or (targets[0].threads if targets else 1)
    return {"onnxruntime_version": onnxruntime.__version__, "threads": int(threads or 1),
            "session_options": dict(options or {})}


def _measured_note(report: Mapping[str, Any], t: Target, measured: Sequence[str]) -> str | None:
    """For a target that could not run here: where the bundle's latency was measured instead."""
    env = report.get("environment") or {}
    if not measured:
        return None
    return (f"Its latency was not measured; the latency in this bundle was measured on {env.get('machine', 'this')} "
            f"({env.get('cpu', 'the build machine')}) for {', '.join(measured)}. Measure on the device "
            f"(a target with ssh_host) before relying on speed; {t.arch} differs.")


def write_bundle(run_dir: Path, onnx_path: Path, *, dataset_meta: dict, report: dict, targets: list[Target],
                 snippets: Snippets | None = None, extras: Sequence[Any] = ()) -> Path:
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
    dep = (report.get("models") or {}).get("deployed") or {}
    tinfo = report.get("targets") or {}
    options = dep.get("session_options") or dataset_meta.get("session_options") or {}
    runtime = runtime_facts(report, targets, options)
    img = image_input(pre, dataset_meta.get("input_shape")) if dataset_meta.get("input_shape") else None
    meta = {**dataset_meta, **runtime, "image_input": img}
    for name, text in (snippets or image_snippets)(spec, meta, mobile_file).items():
        written.append(write_text(bdir / "usage" / name, text))
    runtimes, cards = {}, []  # other runtimes' files (ExecuTorch's model.pte: report/bundle_executorch.py)
    for extra in extras:
        files_, runtimes[extra.key], card_part = extra.write(bdir, dataset_meta)
        written += files_
        cards.append(card_part)
    precision = onnx_precision(bdir / "model.onnx")
    measured = list(dep.get("latency") or {})
    manifest: dict[str, Any] = {
        "manifest_version": 1,
        "task": dataset_meta.get("task") or report.get("task"),
        "model": {"file": "model.onnx", "external_data": [p.name for p in written if p.name == "model.onnx.data"],
                  "mobile_file": mobile_file if ort_targets else None,
                  "required_operators": "model.required_operators.config" if ort_targets else None,
                  # measured on the target by the quantize stage: the app must set these to get the measured speed
                  "session_options": options,
                  # what each shipped file computes in, read from the file (model.ort is converted from model.onnx)
                  "precision": {"model.onnx": precision, **({"model.ort": precision} if ort_targets else {})},
                  "quantization": quantization_decision(report)},
        # the runtime the snippets pin (and this bundle was loaded and run with), and the threads they set
        "runtime": {"onnxruntime": runtime["onnxruntime_version"], "threads": runtime["threads"], "verified": None},
        "image_input": img,
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
        "targets": [{"name": t.name, "precision": precision, "requested_precision": t.precision,
                     "quant_preset": t.quant_preset, "formats": t.formats, "arch": t.arch,
                     "available": (tinfo.get(t.name) or {}).get("available", t.name in (dep.get("latency") or {})),
                     "reason": (tinfo.get(t.name) or {}).get("reason"),
                     "measured_note": None if t.name in measured else _measured_note(report, t, measured),
                     **({"engine": engines[t.name].name if engines[t.name] else None,
                         "engine_note": None if engines[t.name] else "not built: TensorRT or a GPU is missing here; "
                         "build it on the device (edgedistill doctor says why)"} if t.name in engines else {})}
                    for t in targets],
        **({"runtimes": runtimes} if runtimes else {}),
        "versions": _versions(),
        "recipe": {"name": (report.get("recipe") or {}).get("name"), "sha256": (report.get("recipe") or {}).get("sha256")},
        "files": {},
    }
    problems = [p for f in ("model.onnx", "model.ort") if (bdir / f).is_file() for p in run_once(bdir / f, manifest)]
    manifest["runtime"]["verified"] = not problems  # loaded and run once with this onnxruntime
    if problems:
        manifest["runtime"]["problems"] = problems
    files = sorted({p.resolve() for p in written})
    manifest["files"] = {p.relative_to(bdir.resolve()).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                         for p in files}
    card = "\n".join([model_card(manifest, report), *cards])
    card_path = write_text(bdir / "MODEL_CARD.md", card)
    manifest["files"]["MODEL_CARD.md"] = {"sha256": sha256_file(card_path), "bytes": card_path.stat().st_size}
    manifest["integrity"] = integrity(manifest)
    write_json(bdir / MANIFEST, manifest)
    return bdir


def shipped_session_options(model: str | Path) -> dict[str, Any]:
    """The ONNX Runtime session options a bundle ships for its model file: re-timing a bundle without them
    would not measure what the app gets.

    {} unless `model` is the model of a bundle whose checksums all verify (an edited manifest or file is not
    trusted), and only the keys that are session options (`only_session_options`): a manifest never sets the
    batch, shapes, providers or threads the profiler uses."""
    from ..quantize.session import only_session_options
    from .verify import checksums_ok

    model = Path(model)
    manifest, _ = read_manifest(model.parent)
    entry = manifest.get("model") if manifest else None
    if not isinstance(entry, dict) or entry.get("file") != model.name or not checksums_ok(model.parent, manifest):
        return {}
    return only_session_options(entry.get("session_options"))
