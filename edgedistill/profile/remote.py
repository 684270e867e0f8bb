"""Profiling on a remote device (Raspberry Pi, Jetson) over SSH.

The device needs only python3 with numpy and onnxruntime. We copy the self-contained `probe.py`, the
model(s) with their external data and the timing config into a fresh directory, run the probe there (it
spawns its own fresh worker per model, exactly as locally), read its JSON from stdout and remove the
directory. The system OpenSSH client is used so ~/.ssh/config, agents and known_hosts work as usual; files
travel as `cat > file` over plain exec channels, which every SSH server (OpenSSH, dropbear) supports.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import uuid
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..target import Target
from . import probe


def ssh_base(target: Target) -> list[str]:
    """The ssh command line up to (and including) the destination.

    Only the target's validated fields reach it (host, user, port, key and allow-listed -o options, see
    target.SSH_OPTIONS_ALLOWED); `--` ends ssh's options, so a destination can never be read as one."""
    cmd = ["ssh", "-p", str(target.ssh_port), "-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]
    if target.ssh_key:
        cmd += ["-i", str(Path(target.ssh_key).expanduser()), "-o", "IdentitiesOnly=yes"]
    for opt in target.ssh_options:
        cmd += ["-o", opt]
    return [*cmd, "--", target.ssh_destination]


def _ssh(target: Target, command: str, *, stdin: Any = None, data: bytes | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess:
    try:
        kw = {"input": data} if data is not None else {"stdin": stdin if stdin is not None else subprocess.DEVNULL}
        out = subprocess.run([*ssh_base(target), command], capture_output=True, timeout=timeout, **kw)
    except FileNotFoundError as exc:
        raise UserError("no ssh client on this machine", where=f"target {target.name}",
                        fix="install OpenSSH (apt-get install openssh-client)") from exc
    except subprocess.TimeoutExpired as exc:
        raise UserError(f"ssh command timed out after {timeout:.0f} s", where=f"target {target.name}: ssh_host",
                        fix="check the device, or lower runs / set time_budget_s in the target") from exc
    if out.returncode == 255:  # ssh's own failure (connect, auth), not the remote command's
        last = (out.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise UserError(f"cannot reach {target.ssh_destination}:{target.ssh_port} over ssh: {last}",
                        where=f"target {target.name}: ssh_host",
                        fix="check ssh_host/ssh_user/ssh_port/ssh_key; `ssh -p PORT USER@HOST true` must work "
                            "without a password prompt")
    return out


def model_files(path: Path) -> list[Path]:
    """The .onnx file plus every external-data file it references (they must travel together)."""
    import onnx

    files = [path]
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # the remote probe will report an unloadable file with a proper message
        return files
    seen = set()
    for t in model.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location" and entry.value not in seen:
                seen.add(entry.value)
                files.append(path.parent / entry.value)
    return files


def _put(target: Target, local: Path | bytes, remote: str) -> None:
    """Write a local file (streamed) or bytes to `remote`, creating its directory."""
    cmd = f"mkdir -p {shlex.quote(str(Path(remote).parent))} && cat > {shlex.quote(remote)}"
    if isinstance(local, bytes):
        out = _ssh(target, cmd, data=local)
    else:
        with open(local, "rb") as f:
            out = _ssh(target, cmd, stdin=f)
    if out.returncode != 0:
        raise UserError(f"cannot copy {Path(remote).name} to {target.ssh_destination}:{remote}: "
                        f"{out.stderr.decode(errors='replace').strip()[:300]}",
                        where=f"target {target.name}: remote_dir", fix="pick a writable remote_dir on the device")


def run_remote(files: dict[str, Path], target: Target, config: dict[str, Any]) -> dict[str, Any]:
    """Copy, run the probe on the device, fetch its JSON result, clean up. Same shape as probe.coordinate."""
    rdir = f"{target.remote_dir.rstrip('/')}/{uuid.uuid4().hex[:12]}"
    config = dict(config)
    try:
        _put(target, Path(probe.__file__), f"{rdir}/probe.py")
        remote_models = {}
        for i, (name, path) in enumerate(files.items()):
            for f in model_files(path):
                if not f.is_file():
                    raise UserError("external data file is missing", where=str(f),
                                    fix="keep the .onnx file and its .data file side by side")
                _put(target, f, f"{rdir}/m{i}/{f.name}")
            remote_models[name] = f"{rdir}/m{i}/{path.name}"
        if config.get("feed"):
            _put(target, Path(config["feed"]), f"{rdir}/feed.npz")
            config["feed"] = f"{rdir}/feed.npz"
        config["models"] = remote_models
        _put(target, json.dumps(config).encode(), f"{rdir}/config.json")
        run = _ssh(target, f"{target.remote_python} {shlex.quote(rdir + '/probe.py')} run "
                           f"{shlex.quote(rdir + '/config.json')}")
    finally:
        with contextlib.suppress(UserError):
            _ssh(target, f"rm -rf {shlex.quote(rdir)}", timeout=60)
    text = run.stdout.decode(errors="replace").strip()
    try:
        result = json.loads(text.splitlines()[-1]) if text else None
    except json.JSONDecodeError:
        result = None
    if result is None:
        err = (run.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise UserError(f"the profiling script failed on {target.ssh_destination}: {err}",
                        where=f"target {target.name}: remote_python",
                        fix=f"install numpy and onnxruntime for {target.remote_python} on the device")
    if "error" in result:
        raise UserError(f"profiling on {target.ssh_destination} failed: {result['error']}",
                        where=f"target {target.name}",
                        fix="check that the device's onnxruntime supports the model's operators and providers")
    return result

