"""Atomic file writes and safe model checkpoints.

A killed run must never leave a half-written file that a later `--resume` trusts, so every file is written
to a temporary sibling and renamed into place. The temporary file is created private (mkstemp: 0600); it is
given the mode a plain `open()` would have (0666 minus the umask) before the rename, so the user's umask holds. Checkpoints are safetensors (no pickle), so loading one can
never execute code.

A rename replaces whatever the name points at. Run as root in CI, `--junit /dev/full` would turn a device into a
regular file, and a symlink planted at an output name would be swapped for our file. So an output name that
exists must be a regular file (never a link, device, FIFO, socket or folder), checked again just before the
rename, and a path that cannot hold a file (under a file, under /proc, a name too long) is a UserError naming
it, not an internal error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import UserError

_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def special_kind(path: str | os.PathLike) -> str | None:
    """What `path` is when it exists and is not a regular file ("a symbolic link", "a FIFO", ...); else None."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    return next((what for test, what in _KINDS if test(mode)), None if stat.S_ISREG(mode) else "not a regular file")


def check_output_file(path: str | os.PathLike) -> Path:
    """Refuse, before any work is done, an output file name that exists and is not a regular file."""
    path = Path(path)
    _refuse_special(path)
    parent = special_kind(path.parent)
    if parent not in (None, "a folder", "a symbolic link"):
        raise UserError(f"the output file's folder is {parent}", where=str(path), fix="choose a path in a folder")
    if parent is None and path.parent.exists():
        raise UserError("the output file's folder is a file", where=str(path), fix="choose a path in a folder")
    return path


def _refuse_special(path: Path, expect_dir: bool = False) -> None:
    kind = special_kind(path)
    if kind is None or (expect_dir and kind == "a folder"):
        return
    if kind.startswith("unreadable"):  # a name too long, a folder we may not search
        raise UserError(f"cannot write here: {kind[12:-1]}", where=str(path),
                        fix="choose a writable path in an existing folder (names under 255 bytes)")
    raise UserError(f"the output path is {kind}; edgedistill writes a new file and renames it into place, which would "
                    "replace it", where=str(path), fix="choose a path that does not exist yet or is a regular file")


def _output_error(exc: OSError, path: Path) -> UserError:
    return UserError(f"cannot write here: {exc.strerror or exc}", where=str(path),
                     fix="choose a writable path in an existing folder (not under a file or /proc, names under 255 bytes)")


def output_dir(path: str | os.PathLike) -> Path:
    """Create the folder `path` (and its parents); a path that cannot be one is a UserError naming it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"the output folder is {special_kind(path) or 'a file'}", where=str(path),
                        fix="choose another path") from None
    except OSError as exc:
        raise _output_error(exc, path) from None
    return path


def _temp_sibling(path: Path, make: Any) -> Any:
    output_dir(path.parent)
    try:
        return make(prefix=f".{path.name[:100]}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _output_error(exc, path) from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it over `path`, on failure delete it.

    `path` must not exist or be a regular file (see the module docstring)."""
    path = Path(path)
    _refuse_special(path)
    fd, tmp = _temp_sibling(path, tempfile.mkstemp)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~current_umask())
        _refuse_special(path)  # again: the name may have been replaced while the file was written
        try:
            os.replace(tmp_path, path)
        except (IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
            raise _output_error(exc, path) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to `path`; on success it replaces `path` (a folder is whole or absent)."""
    import shutil

    path = Path(path)
    _refuse_special(path, expect_dir=True)
    tmp = Path(_temp_sibling(path, tempfile.mkdtemp))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~current_umask())
        _refuse_special(path, expect_dir=True)
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
