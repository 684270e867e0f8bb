"""The bundle's ExecuTorch part: `model.pte`, its manifest entry, snippets, model-card section and verify check.

`bundle.write_bundle` calls `PteArtifact.write` for each extra artifact of the run and files what it returns;
`verify_runtimes` is the receiving side: load `model.pte` in ExecuTorch's runtime, compare its inputs and outputs
with the manifest, run it once. The manifest's `runtimes.executorch` names the pinned runtime version the
snippets are written against, and which runtime each number was measured in.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io import atomic_path, write_text

LATENCY_KEYS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "cv", "throughput_per_s", "peak_rss_mb",
                "batch", "threads", "runs", "cpu", "remote", "runtime", "ratio_vs_teacher")


@dataclass
class PteArtifact:
    """An ExecuTorch program to ship, with its report entry (metric, latency, delegation)."""

    source: Path
    entry: dict[str, Any] = field(default_factory=dict)
    deployed_latency: dict[str, Any] = field(default_factory=dict)  # the ONNX file's, for the card's comparison
    key: str = "executorch"

    def write(self, bdir: Path, meta: Mapping[str, Any]) -> tuple[list[Path], dict[str, Any], str]:
        """Copy the .pte and write its snippets; returns (files written, manifest entry, model-card section)."""
        from ..export.executorch import EXECUTORCH_PIN, load_method, pte_io
        from .snippets_executorch import ANDROID_PACKAGE, SWIFT_PACKAGE, executorch_snippets

        dst = bdir / "model.pte"
        with atomic_path(dst) as tmp:
            shutil.copyfile(self.source, tmp)
        io = pte_io(load_method(dst))
        spec = {"inputs": [{"name": s["name"], **got} for s, got in zip(meta["inputs"], io["inputs"], strict=False)],
                "outputs": [{"name": s["name"], **got} for s, got in zip(meta["outputs"], io["outputs"], strict=False)]}
        written = [dst]
        for name, text in executorch_snippets(spec, meta, EXECUTORCH_PIN).items():
            written.append(write_text(bdir / "usage" / "executorch" / name, text))
        e = self.entry
        entry = {"file": "model.pte", "runtime": "executorch", "runtime_version": EXECUTORCH_PIN,
                 "android": f"{ANDROID_PACKAGE}:{EXECUTORCH_PIN}", "ios": f"{SWIFT_PACKAGE} (swiftpm-{EXECUTORCH_PIN})",
                 "delegate": e.get("delegate"), "precision": e.get("precision"), **spec,
                 "metric": {"value": e.get("metric"), "measured_on": "executorch"},
                 "size_mb": e.get("size_mb"), "portable_ops": e.get("portable_ops") or {},
                 "latency": {t: {k: s[k] for k in LATENCY_KEYS if k in s} for t, s in (e.get("latency") or {}).items()},
                 "snippets": [p.relative_to(bdir).as_posix() for p in written[1:]]}
        return written, entry, model_card_section(entry, self.deployed_latency)


def model_card_section(entry: Mapping[str, Any], onnx_latency: Mapping[str, Any]) -> str:
    """The card's ExecuTorch part: every number with the runtime it was measured in."""
    lines = ["## ExecuTorch (`model.pte`)", "",
             f"For Android (`{entry['android']}`) and iOS ({entry['ios']}); delegate **{entry['delegate']}**, "
             f"precision **{entry['precision']}**; the snippets in `usage/executorch/` are written against "
             f"executorch {entry['runtime_version']}.", "",
             f"- metric: {entry['metric']['value']:.4f}, measured by running `model.pte` in ExecuTorch's runtime "
             f"(the ONNX number above was measured in ONNX Runtime)" if entry["metric"]["value"] is not None
             else "- metric: not measured", f"- size: {entry['size_mb']} MB"]
    portable = entry.get("portable_ops") or {}
    lines.append("- ops on portable (non-delegated) kernels: " +
                 (", ".join(f"`{op}` ×{n}" for op, n in portable.items()) if portable else "none: the whole graph runs in "
                  f"{entry['delegate']}"))
    if entry["latency"]:
        lines += ["", "| target | file | runtime | p50 ms | p90 ms | threads | vs teacher (ONNX Runtime) |",
                  "|---|---|---|---|---|---|---|"]
        for t, s in entry["latency"].items():
            o = onnx_latency.get(t) or {}
            if o:
                lines.append(f"| {t} | model.onnx | {o.get('runtime', 'onnxruntime')} | {o['p50_ms']:.4f} | "
                             f"{o['p90_ms']:.4f} | {o.get('threads')} | {o.get('ratio_vs_teacher', 'n/a')} |")
            lines.append(f"| {t} | model.pte | executorch | {s['p50_ms']:.4f} | {s['p90_ms']:.4f} | {s.get('threads')} | "
                         f"{s.get('ratio_vs_teacher', 'n/a')} |")
        lines += ["", "Both files were timed in one run (interleaved bursts, a fresh process per file): compare them "
                  "as ratios, on this machine."]
    else:
        lines.append("- latency: no ExecuTorch target of the recipe runs on the machine that built this bundle")
    return "\n".join(lines) + "\n"


def verify_runtimes(bdir: Path, manifest: Mapping[str, Any]) -> list[str]:
    """Load and run every non-ONNX model the manifest lists (today: model.pte in ExecuTorch) once."""
    entry = (manifest.get("runtimes") or {}).get("executorch") if isinstance(manifest.get("runtimes"), dict) else None
    if not entry:
        return []
    return _run_pte_once(bdir / "model.pte", entry)


def _run_pte_once(path: Path, entry: Mapping[str, Any]) -> list[str]:
    import numpy as np

    from ..errors import UserError
    from ..export.executorch import executorch_status, load_method, pte_io

    if not path.is_file():
        return [f"{path.name}: listed under runtimes.executorch but missing"]
    ok, why = executorch_status()
    if not ok:
        raise UserError(f"cannot run {path.name}: {why}", where=str(path),
                        fix=f'pip install executorch=={entry.get("runtime_version")} to verify the ExecuTorch file')
    try:
        method = load_method(path)
    except Exception as exc:  # a load failure is damage
        return [f"{path.name}: does not load in executorch ({str(exc).splitlines()[0][:200]})"]
    io = pte_io(method)
    try:
        want = [{"shape": list(v["shape"]), "dtype": v["dtype"]} for v in entry.get("inputs", [])]
        want_out = [{"shape": list(v["shape"]), "dtype": v["dtype"]} for v in entry.get("outputs", [])]
    except (KeyError, TypeError) as exc:
        return [f"manifest.json: runtimes.executorch inputs/outputs are malformed ({type(exc).__name__}: {exc})"]
    if io["inputs"] != want or io["outputs"] != want_out:
        return [f"{path.name}: inputs/outputs {io['inputs']}/{io['outputs']} differ from the manifest's {want}/{want_out}"]
    import torch

    try:
        method([torch.from_numpy(np.zeros(v["shape"], dtype=v["dtype"])) for v in io["inputs"]])
    except Exception as exc:  # a run failure is damage too
        return [f"{path.name}: fails to run ({str(exc).splitlines()[0][:200]})"]
    return []
