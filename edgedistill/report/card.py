"""MODEL_CARD.md: the bundle's human-readable summary, written from the manifest and the report only.

It says what the file is (precision per file, and when int8 was measured and rejected), what runs it (the
ONNX Runtime version it was verified with, the threads its latency was measured with), where it was
measured (a phone target profiled on x86 says so), and how an image becomes its input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# the order the CLI summary and report.html use
MODEL_ORDER = ("teacher", "student", "deployed")


def _fmt(v: Any, nd: int = 4) -> str:
    return "n/a" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def _quality(m: Mapping[str, Any], models: Mapping[str, Any]) -> list[str]:
    metric = m["metric"]
    lines = ["## Quality", "",
             f"`{metric['name']}` ({'higher' if metric.get('higher_is_better', True) else 'lower'} is better), "
             f"measured by running each file in {metric.get('measured_on', 'onnxruntime')}"
             + (f" on the `{metric['split']}` split ({metric.get('samples')} samples)" if metric.get("split") else "")
             + ".", "", "| model | metric | size (MB) | params |", "|---|---|---|---|"]
    for name in MODEL_ORDER:
        if name in models:
            d = models[name]
            lines.append(f"| {name} | {_fmt(d.get('metric'))} | {_fmt(d.get('size_mb'), 3)} | {d.get('params', 'n/a')} |")
    return lines


def _precision(m: Mapping[str, Any]) -> list[str]:
    model = m["model"]
    lines = ["", "## What ships", ""]
    lines += [f"- `{f}`: **{p}**" for f, p in (model.get("precision") or {}).items()]
    q = model.get("quantization")
    where = f" (timed on `{q['timed_on']}` only; other targets may differ)" if q and q.get("timed_on") else ""
    if q and q.get("shipped") == "float":
        lines.append(f"- int8 was built and measured, and **rejected**: {q.get('reason')}{where}")
    elif q:
        lines.append(f"- {q.get('reason')}{where}")
    for t in m["targets"]:
        if t.get("requested_precision") and t.get("requested_precision") != t.get("precision"):
            lines.append(f"- target `{t['name']}` asks for {t['requested_precision']}; it gets the file above "
                         f"({t.get('precision')}).")
    rt = m.get("runtime") or {}
    lines.append(f"- Runtime: ONNX Runtime **{rt.get('onnxruntime')}** (this bundle was loaded and run with it; "
                 "every snippet pins it).")
    if rt.get("threads"):
        lines.append(f"- Threads: the latency below was measured with **{rt['threads']}** intra-op thread(s); "
                     "the snippets set the same.")
    return lines


def _session_options(m: Mapping[str, Any], report: Mapping[str, Any]) -> list[str]:
    """The measured speed needs the bundle's ONNX Runtime session options: say what they are worth, where the
    app team reads (an app that opens the file with ORT's defaults is slower than the latency table)."""
    options = (m.get("model") or {}).get("session_options") or {}
    config = options.get("session_config") or {}
    if not config:
        return []
    chosen = next((s["details"]["session_options"] for s in report.get("stages") or []
                   if isinstance((s.get("details") or {}).get("session_options"), dict)
                   and s["details"]["session_options"].get("measured")), None)
    entries = ", ".join(f"`{k}` = `{v}`" for k, v in config.items())
    line = f"- Session options: {entries} (`model.session_options` in `manifest.json`; `usage/` sets them)."
    if chosen and chosen.get("chosen") in (chosen.get("ratios") or {}):
        ratio = chosen["ratios"][chosen["chosen"]]
        line += (f" On `{chosen.get('target')}` they measured **{ratio:.2f}×** the latency of ONNX Runtime's "
                 f"defaults: an app that opens `model.onnx` without them is about {1 / ratio - 1:.0%} slower than "
                 "the latency below.")
    return [line]


def _latency(m: Mapping[str, Any]) -> list[str]:
    lines = ["", "## Latency", ""]
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
        lines.append(f"- `{t['name']}` not measured here: {t.get('reason')}"
                     + (f". {t['measured_note']}" if t.get("measured_note") else ""))
    return lines


def _io(m: Mapping[str, Any]) -> list[str]:
    lines = ["", "## Inputs and outputs", "", "| | name | shape | dtype |", "|---|---|---|---|"]
    lines += [f"| input | `{v['name']}` | {v['shape']} | {v['dtype']} |" for v in m["inputs"]]
    lines += [f"| output | `{v['name']}` | {v['shape']} | {v['dtype']} |" for v in m["outputs"]]
    img = m.get("image_input")
    if img:
        mean, std = img["mean"], img["std"]
        lines += ["", "## From an image to the input", "",
                  f"1. Convert to `{img['color']}` ({'8-bit luma, PIL: L = (299 R + 587 G + 114 B) / 1000' if img['color'] == 'L' else 'RGB'}).",
                  f"2. Resize to {img['width']}x{img['height']} ({img['resample']}, aspect ratio not kept) if it is not that size.",
                  f"3. Each pixel p in 0..255 becomes p * {img['levels']:g} / 255 / {img['divide_by']:g}, then "
                  f"(x - {mean}) / {std} per channel, laid out NCHW with a batch of 1.",
                  *([f"4. Ink: the model was trained on **{img['ink']}** strokes on a darker background; invert "
                     "images with dark strokes on white (the snippets take `invert`)."] if img.get("ink") else []),
                  "", "`usage/predict.py` (PIL), `usage/EdgeModel.kt` (Android `Bitmap`) and `usage/EdgeModel.swift` "
                  "(iOS `CGImage`) do exactly this and return the label with its confidence."]
    lines += ["", "## Preprocessing (as in training)", "", "```json", json.dumps(m["preprocessing"], indent=2), "```", ""]
    if m.get("class_labels"):
        lines += [f"Class labels ({len(m['class_labels'])}, in output order): "
                  + ", ".join(f"`{c}`" for c in m["class_labels"][:50])
                  + (" …" if len(m["class_labels"]) > 50 else "") + " (also in `labels.txt`).", ""]
    return lines


def model_card(manifest: Mapping[str, Any], report: Mapping[str, Any]) -> str:
    m, models = manifest, report.get("models", {})
    lines = [f"# Model card: {m['recipe']['name']}", "",
             f"Produced by edgedistill {m['versions']['edgedistill']} from recipe `{m['recipe']['name']}` "
             f"(sha256 `{str(m['recipe']['sha256'])[:16]}…`). Task: **{m['task']}**.", ""]
    lines += _quality(m, models) + _precision(m) + _session_options(m, report) + _latency(m) + _io(m)
    stages = report.get("stages") or []
    if stages:
        lines += ["## How it was made", "",
                  "| stage | seconds | metric after (validation split) |", "|---|---|---|"]
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
