"""Hardware targets: where the shipped file will run, and how to measure it there.

A target is a small YAML file (built-ins live in the top-level `targets/` folder and are found by name).
It names the runtime and providers, the threads, batch sizes and input shapes to profile, and the
quantization preset that suits the hardware. A target this machine cannot run is reported unavailable with
the reason; its numbers are skipped, never faked. A target with `ssh_host` is measured on that device.
"""

from __future__ import annotations

import platform
import shutil
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import UserError, did_you_mean

# Preference order for `default_target`: the most specific CPU target this machine can run wins.
DEFAULT_ORDER = ("x86_vnni", "x86_avx2", "arm64_mobile")


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    arch: Literal["x86_64", "aarch64", "any"] = "x86_64"
    runtime: Literal["onnxruntime", "tensorrt"] = "onnxruntime"
    providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"])
    provider_options: dict[str, dict] = Field(default_factory=dict)
    cpu_flags: list[str] = Field(default_factory=list, description="CPU flags the target requires (from /proc/cpuinfo)")
    gpu: bool = Field(False, description="needs an NVIDIA GPU (checked with nvidia-smi / the driver)")
    threads: int = Field(1, ge=1)
    batch_sizes: list[int] = Field(default_factory=lambda: [1])
    input_shapes: dict[str, list[int]] = Field(
        default_factory=dict, description="fixed shapes for named inputs; other symbolic dims get the batch size")
    quant_preset: str = "x86_vnni"
    precision: Literal["fp32", "fp16", "int8"] = "int8"
    formats: list[Literal["onnx", "ort", "engine"]] = Field(default_factory=lambda: ["onnx"])
    runs: int = Field(100, ge=1, description="timed runs per model (after warm-up)")
    warmup: int = Field(10, ge=0)
    time_budget_s: float | None = Field(None, gt=0, description="stop timing early once this many seconds pass")
    # Remote device: the profiler copies the artifact there and runs a self-contained script over SSH.
    ssh_host: str | None = None
    ssh_port: int = Field(22, ge=1, le=65535)
    ssh_user: str | None = None
    ssh_key: str | None = Field(None, description="private key file; default: your ssh agent / ~/.ssh/config")
    ssh_options: list[str] = Field(default_factory=list, description='extra "-o Key=Value" options for ssh')
    remote_python: str = "python3"
    remote_dir: str = "/tmp/edgedistill-profile"

    @field_validator("batch_sizes")
    @classmethod
    def _positive_batches(cls, v: list[int]) -> list[int]:
        if not v or any(b < 1 for b in v):
            raise ValueError("batch_sizes must be a non-empty list of positive integers")
        return v

    @property
    def remote(self) -> bool:
        return bool(self.ssh_host)

    @property
    def ssh_destination(self) -> str:
        return f"{self.ssh_user}@{self.ssh_host}" if self.ssh_user else str(self.ssh_host)


def _builtin_dir():
    return resources.files("edgedistill.targets")


def builtin_target_names() -> list[str]:
    return sorted(p.name[:-5] for p in _builtin_dir().iterdir() if p.name.endswith(".yaml"))


def load_target(name_or_path: str | Target) -> Target:
    """A built-in name (`x86_vnni`) or a path to a target YAML file (a Target passes through)."""
    if isinstance(name_or_path, Target):
        return name_or_path
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UserError("target file not found", where=str(path), fix="check the path, or use a built-in name")
        text, where = path.read_text(), str(path)
    else:
        res = _builtin_dir() / f"{name_or_path}.yaml"
        if not res.is_file():
            names = builtin_target_names()
            raise UserError(f'unknown target "{name_or_path}"{did_you_mean(name_or_path, names)}', where="target",
                            fix=f"use one of: {', '.join(names)}, or a path to a target YAML file")
        text, where = res.read_text(), f"targets/{name_or_path}.yaml"
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"not valid YAML: {str(exc).splitlines()[0]}", where=where, fix="fix the YAML syntax") from exc
    if not isinstance(data, dict):
        raise UserError("a target file must be a mapping of fields", where=where, fix="see docs/profiling.md")
    data.setdefault("name", path.stem if where == str(path) else str(name_or_path))
    try:
        return Target(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "target"
        raise UserError(f"{field}: {err['msg']}", where=where, fix="see the target reference in docs/profiling.md") from exc


def list_targets() -> list[Target]:
    return [load_target(n) for n in builtin_target_names()]


def cpu_flags() -> list[str]:
    """The CPU's feature flags, from /proc/cpuinfo (empty where it does not exist)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return sorted(line.split(":", 1)[1].split())
    except OSError:
        pass
    return []


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_arch() -> str:
    return platform.machine().lower().replace("amd64", "x86_64").replace("arm64", "aarch64")


def nvidia_gpu() -> tuple[bool, str]:
    """Is an NVIDIA GPU visible? Checked through the driver, without importing CUDA libraries."""
    if Path("/proc/driver/nvidia/gpus").is_dir() and any(Path("/proc/driver/nvidia/gpus").iterdir()):
        return True, "NVIDIA driver reports a GPU"
    if Path("/dev/nvhost-ctrl").exists() or Path("/etc/nv_tegra_release").exists():
        return True, "Jetson (Tegra) GPU"
    if shutil.which("nvidia-smi"):
        import subprocess

        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and "GPU" in out.stdout:
                return True, out.stdout.splitlines()[0]
        except (OSError, subprocess.SubprocessError):
            pass
    return False, "no NVIDIA GPU found (no driver in /proc/driver/nvidia, no nvidia-smi)"


def tensorrt_status() -> tuple[bool, str]:
    """(usable, reason): the tensorrt package imports and a GPU is visible."""
    try:
        import tensorrt
    except ImportError:
        return False, "the tensorrt Python package is not installed (pip install edgedistill[tensorrt], needs a GPU)"
    ok, why = nvidia_gpu()
    if not ok:
        return False, why
    return True, f"tensorrt {tensorrt.__version__}, {why}"


def availability(target: Target) -> tuple[bool, str]:
    """Can this machine run `target` for real? Returns (usable, reason).

    A remote target is measured on its own device, so only the local ssh client is checked here; whether
    the device answers is found out when profiling (doctor --probe checks it)."""
    if target.remote:
        if not shutil.which("ssh"):
            return False, "remote target needs the OpenSSH client (ssh) on this machine"
        return True, f"remote: profiled over ssh on {target.ssh_destination}:{target.ssh_port}"
    machine = machine_arch()
    if target.arch != "any" and target.arch != machine:
        return False, f"needs an {target.arch} CPU; this machine is {machine} (set ssh_host to profile on a device)"
    have = set(cpu_flags()) if target.cpu_flags else set()
    missing = [f for f in target.cpu_flags if f not in have]
    if missing:
        return False, f"CPU lacks {', '.join(missing)}"
    if target.gpu:
        ok, why = nvidia_gpu()
        if not ok:
            return False, why
    if target.runtime == "tensorrt":
        ok, why = tensorrt_status()
        if not ok:
            return False, why
    if target.runtime == "onnxruntime":
        import onnxruntime as ort

        have = ort.get_available_providers()
        lacking = [p for p in target.providers if p not in have]
        if lacking:
            return False, f"onnxruntime here lacks {', '.join(lacking)} (available: {', '.join(have)})"
    return True, "available"


def describe(target: Target, usable: bool | None = None, reason: str | None = None) -> dict[str, Any]:
    """One target as `targets` and `doctor` show it: what it is, and whether it runs here (and why not)."""
    if usable is None:
        usable, reason = availability(target)
    return {"name": target.name, "usable": usable, "reason": reason, "runtime": target.runtime,
            "precision": target.precision, "quant_preset": target.quant_preset, "threads": target.threads,
            "formats": target.formats, "remote": target.remote, "description": target.description}


def default_target() -> Target:
    """The most specific built-in CPU target this machine can run (what `profile` uses without --target)."""
    reasons = []
    for name in DEFAULT_ORDER:
        t = load_target(name)
        ok, why = availability(t)
        if ok:
            return t
        reasons.append(f"{name}: {why}")
    raise UserError("no built-in CPU target is usable here (" + "; ".join(reasons) + ")", where="--target",
                    fix="pass --target with a target YAML file that matches this machine (arch: any, no cpu_flags)")


def first_available(names: list[str]) -> tuple[Target | None, list[str]]:
    """The first of `names` this machine can really run, else None; plus why each skipped one is unusable.

    Stages that must measure latency on "the recipe's target" (pruning ratios, the quantization keep policy)
    use this, so they time on real hardware or say plainly that they could not.
    """
    reasons = []
    for name in names:
        target = load_target(name)
        usable, why = availability(target)
        if usable:
            return target, reasons
        reasons.append(f"{target.name}: {why}")
    return None, reasons
