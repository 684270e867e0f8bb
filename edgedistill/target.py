"""Hardware targets: where the shipped file will run, and how to measure it there.

A target is a small YAML file (built-ins live in the top-level `targets/` folder and are found by name).
It names the runtime and providers, the threads, batch sizes and input shapes to profile, and the
quantization preset that suits the hardware. A target this machine cannot run is reported unavailable with
the reason; its numbers are skipped, never faked. A target with `ssh_host` is measured on that device.
"""

from __future__ import annotations

import platform
import re
import shutil
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import UserError, did_you_mean
from .yamlsafe import load as load_yaml
from .yamlsafe import non_finite
from .yamlsafe import read_text as read_utf8

# A target file may come with a recipe from someone else, so it names a device and nothing more: ssh options
# that run local commands (ProxyCommand, LocalCommand, KnownHostsCommand, Match exec, ...) or forward ports are
# not accepted. Anything fancier belongs in the user's own ~/.ssh/config, under an alias used as ssh_host.
SSH_OPTIONS_ALLOWED = {k.lower(): k for k in (
    "AddressFamily", "BatchMode", "CheckHostIP", "Compression", "ConnectionAttempts", "ConnectTimeout",
    "GlobalKnownHostsFile", "HashKnownHosts", "HostKeyAlias", "IdentitiesOnly", "IdentityAgent", "LogLevel",
    "ServerAliveCountMax", "ServerAliveInterval", "StrictHostKeyChecking", "TCPKeepAlive", "UpdateHostKeys",
    "UserKnownHostsFile")}
_SSH_VALUE = re.compile(r"^[A-Za-z0-9_.,:/@~+-]+$")
_HOST = r"^[A-Za-z0-9_\[][A-Za-z0-9_.:%\[\]-]{0,252}$"  # a name, an address or an ssh-config alias; never "-o..."
_USER = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
_COMMAND = r"^[A-Za-z0-9_./~+][A-Za-z0-9_./~+-]*$"  # a program path: no spaces, quotes or shell syntax

# Preference order for `default_target`: the most specific CPU target this machine can run wins.
DEFAULT_ORDER = ("x86_vnni", "x86_avx2", "arm64_mobile")


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    arch: Literal["x86_64", "aarch64", "any"] = "x86_64"
    runtime: Literal["onnxruntime", "tensorrt", "executorch"] = "onnxruntime"
    delegate: Literal["xnnpack"] | None = Field(
        None, description="runtime executorch: the backend the .pte is lowered to (xnnpack: Android and iOS CPUs)")
    providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"])
    provider_options: dict[str, dict] = Field(default_factory=dict)
    cpu_flags: list[str] = Field(default_factory=list, description="CPU flags the target requires (from /proc/cpuinfo)")
    gpu: bool = Field(False, description="needs an NVIDIA GPU (checked with nvidia-smi / the driver)")
    threads: int = Field(1, ge=1)
    batch_sizes: list[int] = Field(default_factory=lambda: [1])
    sequence_lengths: list[int] = Field(
        default_factory=list, description="text models: token sequence lengths to profile (the first under the "
                                          "target's name, others as <target>@s<L>); empty: as the data comes")
    input_shapes: dict[str, list[int]] = Field(
        default_factory=dict, description="fixed shapes for named inputs; other symbolic dims get the batch size")
    quant_preset: str = "x86_vnni"
    precision: Literal["fp32", "fp16", "int8"] = "int8"
    formats: list[Literal["onnx", "ort", "engine", "pte"]] = Field(default_factory=lambda: ["onnx"])
    runs: int = Field(100, ge=1, description="timed runs per model (after warm-up)")
    warmup: int = Field(10, ge=0)
    time_budget_s: float | None = Field(None, gt=0, description="stop timing early once this many seconds pass")
    # Remote device: the profiler copies the artifact there and runs a self-contained script over SSH.
    ssh_host: str | None = Field(None, pattern=_HOST, description="host name, address, or an alias from your ~/.ssh/config")
    ssh_port: int = Field(22, ge=1, le=65535)
    ssh_user: str | None = Field(None, pattern=_USER)
    ssh_key: str | None = Field(None, description="private key file; default: your ssh agent / ~/.ssh/config")
    ssh_options: list[str] = Field(default_factory=list, description='extra "-o Key=Value" options for ssh, from a '
                                   'small allow-list (timeouts, known-hosts handling, logging); never commands')
    remote_python: str = Field("python3", pattern=_COMMAND, description="python on the device (a path, no arguments)")
    remote_dir: str = "/tmp/edgedistill-profile"

    @field_validator("batch_sizes")
    @classmethod
    def _positive_batches(cls, v: list[int]) -> list[int]:
        if not v or any(b < 1 for b in v):
            raise ValueError("batch_sizes must be a non-empty list of positive integers")
        return v

    @field_validator("ssh_options")
    @classmethod
    def _harmless_ssh_options(cls, v: list[str]) -> list[str]:
        for opt in v:
            key, sep, value = opt.partition("=")
            if key.strip().lower() not in SSH_OPTIONS_ALLOWED:
                raise ValueError(f'ssh option "{key.strip()}" is not allowed (allowed: {", ".join(sorted(SSH_OPTIONS_ALLOWED.values()))}); '
                                 "put anything else under a Host alias in your own ~/.ssh/config and use the alias as ssh_host")
            if not sep or not _SSH_VALUE.match(value.strip()):
                raise ValueError(f'ssh option "{opt}" must be Key=Value with a plain value (letters, digits, . , : / @ ~ + -)')
        return v

    @field_validator("sequence_lengths")
    @classmethod
    def _positive_lengths(cls, v: list[int]) -> list[int]:
        if any(s < 1 for s in v):
            raise ValueError("sequence_lengths must be positive integers")
        return v

    @model_validator(mode="after")
    def _executorch_fields(self) -> Target:
        """An ExecuTorch target ships a batch-1 .pte lowered to a delegate (XNNPACK unless it says otherwise)."""
        if self.runtime != "executorch":
            if self.delegate is not None:
                raise ValueError("delegate applies to runtime: executorch only")
            return self
        if self.batch_sizes != [1]:
            raise ValueError("runtime executorch: the .pte is exported for batch 1, so batch_sizes must be [1]")
        if self.precision == "fp16":
            raise ValueError("runtime executorch: precision must be int8 or fp32 (XNNPACK fp16 is not built here)")
        self.delegate = self.delegate or "xnnpack"
        if "pte" not in self.formats:
            self.formats = [*self.formats, "pte"]
        return self

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
        text, where = read_utf8(path), str(path)
    else:
        res = _builtin_dir() / f"{name_or_path}.yaml"
        if not res.is_file():
            names = builtin_target_names()
            raise UserError(f'unknown target "{name_or_path}"{did_you_mean(name_or_path, names)}', where="target",
                            fix=f"use one of: {', '.join(names)}, or a path to a target YAML file")
        text, where = res.read_text(), f"targets/{name_or_path}.yaml"
    data = load_yaml(text, where) or {}
    if isinstance(data, dict) and non_finite(data) is not None:
        field = ".".join(str(p) for p in non_finite(data))
        raise UserError(f"{field}: not a finite number (NaN or infinity)", where=where, fix="use a finite number")
    if not isinstance(data, dict):
        raise UserError("a target file must be a mapping of fields", where=where, fix="see docs/profiling.md")
    data.setdefault("name", path.stem if where == str(path) else str(name_or_path))
    try:
        return Target.model_validate(data)
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
    if target.runtime == "executorch":
        from .export.executorch import executorch_status

        ok, why = executorch_status()
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
    return {"name": target.name, "usable": usable, "reason": reason, "runtime": target.runtime, "delegate": target.delegate,
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
