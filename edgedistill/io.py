"""Atomic file writes and safe model checkpoints.

A killed run must never leave a half-written file that a later `--resume` trusts, so every file is written
to a temporary sibling and renamed into place. The temporary file is created private (mkstemp: 0600); it is
given the mode a plain `open()` would have (0666 minus the umask) before the rename, so the user's umask holds. Checkpoints are safetensors (no pickle), so loading one can
never execute code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it over `path`, on failure delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to `path`; on success it replaces `path` (a folder is whole or absent)."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~current_umask())
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def current_umask() -> int:
    """The process umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_size_mb(path: str | os.PathLike) -> float:
    """Size on disk in 10^6 bytes, counting an ONNX file's external-data sibling when there is one."""
    path = Path(path)
    total = path.stat().st_size
    data = path.with_name(path.name + ".data")
    if data.exists():
        total += data.stat().st_size
    return total / 1e6


def save_weights(model, path: str | os.PathLike) -> Path:
    """Save a module's weights as safetensors, atomically (shared tensors handled by safetensors)."""
    from safetensors.torch import save_model

    with atomic_path(path) as tmp:
        save_model(model, str(tmp))
    return Path(path)


def load_weights(model, path: str | os.PathLike) -> None:
    """Load safetensors weights into `model`; a mismatch is a UserError naming the file."""
    from safetensors.torch import load_model

    from .errors import UserError

    path = Path(path)
    if not path.exists():
        raise UserError("checkpoint not found", where=str(path), fix="check the path, or remove the field")
    try:
        load_model(model, str(path), strict=True)
    except Exception as exc:  # safetensors raises several types for corrupt or mismatched files
        raise UserError(
            f"cannot load checkpoint: {str(exc).splitlines()[0][:300]}",
            where=str(path),
            fix="the weights must match the model spec in the recipe (same architecture and sizes)",
        ) from exc
