"""Hardware targets: where the shipped file will run, and how to measure it there.

A target is a small YAML file (built-ins live in the top-level `targets/` folder and are found by name).
It names the runtime and providers, the threads and batch sizes to profile, and the quantization preset
that suits the hardware. A target this machine cannot run is reported unavailable with the reason; its
numbers are skipped, never faked.
"""

from __future__ import annotations

import platform
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import UserError, did_you_mean


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    arch: Literal["x86_64", "aarch64", "any"] = "x86_64"
    runtime: Literal["onnxruntime", "tensorrt"] = "onnxruntime"
    providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"])
    provider_options: dict[str, dict] = Field(default_factory=dict)
    cpu_flags: list[str] = Field(default_factory=list, description="CPU flags the target requires (from /proc/cpuinfo)")
    threads: int = Field(1, ge=1)
    batch_sizes: list[int] = Field(default_factory=lambda: [1])
    quant_preset: str = "x86_vnni"
    precision: Literal["fp32", "fp16", "int8"] = "int8"
    formats: list[Literal["onnx", "ort", "engine"]] = Field(default_factory=lambda: ["onnx"])


def _builtin_dir():
    return resources.files("edgedistill.targets")


def builtin_target_names() -> list[str]:
    return sorted(p.name[:-5] for p in _builtin_dir().iterdir() if p.name.endswith(".yaml"))


def load_target(name_or_path: str) -> Target:
    """A built-in name (`x86_vnni`) or a path to a target YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise UserError("target file not found", where=str(path), fix="check the path, or use a built-in name")
        text, where = path.read_text(), str(path)
    else:
        res = _builtin_dir() / f"{name_or_path}.yaml"
        if not res.is_file():
            names = builtin_target_names()
            raise UserError(f'unknown target "{name_or_path}"{did_you_mean(name_or_path, names)}', where="target",
                            fix=f"use one of: {', '.join(names)}, or a path to a target YAML file")
        text, where = res.read_text(), f"targets/{name_or_path}.yaml"
    data = yaml.safe_load(text) or {}
    try:
        return Target(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise UserError(f"{field}: {err['msg']}", where=where, fix="see the target reference in the README") from exc


def list_targets() -> list[Target]:
    return [load_target(n) for n in builtin_target_names()]


def cpu_flags() -> list[str]:
    """The CPU's feature flags, from /proc/cpuinfo (empty where it does not exist)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return sorted(line.split(":", 1)[1].split())
    except OSError:
        pass
    return []


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def availability(target: Target) -> tuple[bool, str]:
    """Can this machine run `target` for real? Returns (usable, reason)."""
    machine = platform.machine().lower().replace("amd64", "x86_64").replace("arm64", "aarch64")
    if target.arch != "any" and target.arch != machine:
        return False, f"needs a {target.arch} CPU; this machine is {machine}"
    missing = [f for f in target.cpu_flags if f not in cpu_flags()]
    if missing:
        return False, f"CPU lacks {', '.join(missing)}"
    if target.runtime == "tensorrt":
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return False, "the tensorrt Python package is not installed (pip install edgedistill[tensorrt], needs a GPU)"
    if target.runtime == "onnxruntime":
        import onnxruntime as ort

        have = ort.get_available_providers()
        lacking = [p for p in target.providers if p not in have]
        if lacking:
            return False, f"onnxruntime here lacks {', '.join(lacking)} (available: {', '.join(have)})"
    return True, "available"
