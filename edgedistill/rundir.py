"""Owning a run folder: one run at a time, never another run's results by accident, never a stale report.

A fresh run into a folder that already holds results refuses unless the user says what to do (`--resume`
continues them, `--overwrite` replaces them); `--overwrite` deletes only the names a run writes, and only in a
folder a run wrote. A lock file holding the owner's pid stops a second run on the same folder (a lock whose
process is gone is taken over, and so is an empty or unreadable one: a full disk leaves the lock empty, and
a live run's lock is never empty because it is written whole and then linked into place). The old report is
removed before anything else happens, so a run killed early can leave no report beside files it has already
replaced.

Whatever a run reads or deletes in its folder must be what a run made: a symlink (or FIFO, socket, device)
among the run's own names would send `--resume` or `--overwrite` to delete or write files outside the folder,
so one is refused, naming it, before anything is touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import UserError
from .io import output_dir, special_kind

LOCK = ".edgedistill.lock"
REPORTS = ("report.json", "report.html")
RUN_DIRS = ("stages", "bundle", "compare")
RUN_FILES = ("recipe.yaml", "recipe.resolved.json", *REPORTS)
MARKER = "recipe.resolved.json"  # written first by every run: the folder is a run folder
OWN_NAMES = (*RUN_DIRS, "cache", *RUN_FILES, LOCK)  # what a run reads, writes or deletes in its folder


def holds_results(run_dir: Path) -> bool:
    return any((run_dir / n).exists() for n in (*RUN_DIRS, *RUN_FILES))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _lock_text() -> str:
    return f"{os.getpid()} {socket.gethostname()}\n"


def _owner(lock: Path) -> tuple[int, str] | None:
    """(pid, host) written in a lock file; None when it is empty, garbled or unreadable (a full disk, a crash)."""
    try:
        pid_s, _, host = lock.read_text().strip().partition(" ")
        pid = int(pid_s)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return (pid, host) if pid > 0 else None


def _create(lock: Path) -> bool:
    """Create `lock` holding our pid, atomically and whole; False when it already exists."""
    fd, tmp = tempfile.mkstemp(prefix=".edgedistill-lock.", dir=lock.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(_lock_text())
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, lock)  # fails if it exists; never shows a half-written lock
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: exclusive create, then write
            try:
                fd2 = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd2, "w") as f:
                f.write(_lock_text())
        return True
    finally:
        os.unlink(tmp)


def _inode(path: Path) -> int | None:
    try:
        return os.lstat(path).st_ino
    except OSError:
        return None


def _acquire(lock: Path) -> None:
    for _ in range(2):
        if _create(lock):
            return
        kind = special_kind(lock)
        if kind not in (None, "a symbolic link"):
            raise UserError(f"the lock file is {kind}", where=str(lock), fix=f"remove {lock}, or use another --out")
        seen = _inode(lock)
        owner = _owner(lock)
        pid, host = owner if owner else (-1, "")
        if owner is None or (host == socket.gethostname() and (pid == os.getpid() or not _alive(pid))):
            # its run died (kill -9, power loss, a full disk left it empty; or its pid is ours now, reused):
            # take the folder over, unless another run took it over first (the lock is a new file then)
            if _inode(lock) == seen:
                lock.unlink(missing_ok=True)
            continue
        who = f"pid {pid} on {host}" if pid > 0 else "another process"
        raise UserError(f"another edgedistill run ({who}) is using this run folder", where=str(lock.parent),
                        fix=f"wait for it to finish, or use another --out; if no run is active, delete {lock}")
    raise UserError("could not lock the run folder (another run keeps taking it)", where=str(lock.parent),
                    fix="use another --out")


def _refuse_links(run_dir: Path) -> None:
    """Every entry under the run's own names must be a regular file or a real folder (see the docstring)."""
    for name in OWN_NAMES:
        top = run_dir / name
        kind = special_kind(top)
        if kind is not None and kind != "a folder":
            raise UserError(f"{name} in the run folder is {kind}; a run folder holds only what a run made",
                            where=str(top), fix=f"remove {top}, or choose another --out")
        if kind != "a folder":
            continue
        for root, dirs, files in os.walk(top):
            for entry in (*dirs, *files):
                path = Path(root) / entry
                kind = special_kind(path)
                if kind is not None and kind != "a folder":
                    raise UserError(f"{path.relative_to(run_dir)} in the run folder is {kind}; a run folder holds "
                                    "only what a run made", where=str(path), fix=f"remove {path}, or choose another --out")


def _clear(run_dir: Path, overwrite: bool) -> None:
    for name in REPORTS:  # first: no state of this folder may look like a finished, checked run
        (run_dir / name).unlink(missing_ok=True)
    if not overwrite:
        return
    for name in RUN_DIRS:
        path = run_dir / name
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)


@contextlib.contextmanager
def claim(run_dir: Path, *, resume: bool, overwrite: bool) -> Iterator[Path]:
    """Lock `run_dir` for this run and make it ready: checked, old report removed, replaced results deleted."""
    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other", where="compress",
                        fix="--resume continues the run in the folder, --overwrite starts it again; pick one")
    output_dir(run_dir)  # a path that cannot be a folder (a file, under a file or /proc, too long) is named here
    lock = run_dir / LOCK
    _acquire(lock)
    try:
        _refuse_links(run_dir)
        if not resume and holds_results(run_dir):
            if not overwrite:
                raise UserError("this folder holds the results of an earlier run", where=str(run_dir),
                                fix="add --resume to continue that run, --overwrite to replace it, or choose another --out")
            if not (run_dir / MARKER).is_file():
                names = ", ".join(n for n in (*RUN_DIRS, *RUN_FILES) if (run_dir / n).exists())
                raise UserError(f"not a run folder (no {MARKER}), but it holds {names}; --overwrite would delete them",
                                where=str(run_dir), fix="choose an empty folder with --out")
        _clear(run_dir, overwrite=overwrite and not resume)
        yield run_dir
    finally:
        with contextlib.suppress(OSError):
            if lock.read_text() == _lock_text():
                lock.unlink()
