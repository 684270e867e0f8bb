"""What an exception means for the exit code, and where an internal error's traceback goes.

CI reads the exit code alone, so each code means one thing: 0 passed, 1 a gate failed, 2 bad input or a bad
environment (a message naming the file or field and the fix), 3 an internal error. A crash must never look
like a regression (1) or like a pass, and its traceback must not bury the one line the user needs: it goes
to a crash file (in the run folder once one is known, else a temporary file) and the terminal gets a pointer.
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import tempfile
import traceback
from pathlib import Path

from .errors import UserError

EXIT_PASSED, EXIT_GATE_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3

_run_dir: Path | None = None

_ENV_ERRNOS = {
    errno.ENOSPC: ("the disk is full", "free some space on that disk, or write the run elsewhere with --out"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space, or write the run elsewhere with --out"),
    errno.EACCES: ("permission denied", "check the permissions of that path, or choose another one"),
    errno.EPERM: ("operation not permitted", "check the permissions of that path, or choose another one"),
    errno.EROFS: ("the file system is read-only", "write the run elsewhere with --out"),
    errno.EMFILE: ("too many open files", "raise the open-file limit (ulimit -n)"),
}
_ENV_TEXT = {  # libraries that wrap the OS error in their own exception keep only its text
    "No space left on device": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT,
    "Permission denied": errno.EACCES,
    "Read-only file system": errno.EROFS,
}
_OOM_TEXT = ("can't allocate memory", "DefaultCPUAllocator: not enough memory", "out of memory")


def set_run_dir(path: str | os.PathLike | None) -> None:
    """Remember the run folder, so a crash from here on is written next to the run it broke."""
    global _run_dir
    _run_dir = Path(path) if path is not None else None


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def environment_error(exc: BaseException) -> UserError | None:
    """A full disk, missing permissions or exhausted memory, as a UserError naming the path; else None."""
    for e in _chain(exc):
        if isinstance(e, MemoryError) or any(t in str(e) for t in _OOM_TEXT):
            return UserError("out of memory", where="this machine",
                             fix="lower data.batch_size or the model size, or close other programs")
        code = e.errno if isinstance(e, OSError) else None
        if code is None:
            code = next((c for text, c in _ENV_TEXT.items() if text in str(e)), None)
        if code in _ENV_ERRNOS:
            what, fix = _ENV_ERRNOS[code]
            path = getattr(e, "filename", None) or (str(_run_dir) if _run_dir else "a file being written")
            return UserError(f"bad environment: {what}", where=str(path), fix=fix)
    return None


def write_crash_file(exc: BaseException) -> Path | None:
    """Write the traceback to <run dir>/crash-<time>.txt, or a temporary file; None only if both fail."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    candidates = []
    if _run_dir is not None and _run_dir.is_dir():
        candidates.append(lambda: _run_dir / f"crash-{stamp}-{os.getpid()}.txt")
    candidates.append(lambda: Path(tempfile.mkstemp(prefix=f"edgedistill-crash-{stamp}-", suffix=".txt")[1]))
    for make in candidates:
        try:
            path = make()
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return None


def crash_line(exc: BaseException, path: Path | None) -> str:
    """The one line an internal error prints."""
    first = (str(exc).splitlines() or [""])[0][:200]
    where = f"traceback in {path}" if path else "the traceback could not be written (use --debug to see it)"
    return (f"internal error (exit 3, a bug in edgedistill, not your input): {type(exc).__name__}: {first}; "
            f"{where}")
