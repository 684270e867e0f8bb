"""Progress on stderr, so stdout carries only results: bars on a terminal, plain lines in logs.

On a terminal, long loops (epochs, calibration, profiling) draw a transient rich bar that disappears when
done. Elsewhere (CI logs, `nohup`, pipes) a run that printed nothing for minutes looked hung, so there the
same loops print plain timestamped lines instead: one when a stage or loop starts and ends, and at most one
every `EDGEDISTILL_LOG_EVERY` seconds (default 30) inside it. `EDGEDISTILL_PROGRESS=0` silences both.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
DEFAULT_EVERY_S = 30.0


def _allowed() -> bool:
    return os.environ.get("EDGEDISTILL_PROGRESS", "1") != "0"


def enabled() -> bool:
    """Bars are drawn on stderr, and only when stdout is a terminal too (so `--json > file` stays quiet)."""
    return sys.stdout.isatty() and sys.stderr.isatty() and _allowed()


def logging_lines() -> bool:
    """Plain lines instead of bars: not on a terminal, not silenced, and (under torchrun) only on rank 0, so
    a log holds one copy of each line."""
    return _allowed() and not enabled() and os.environ.get("RANK", "0") == "0"


def log_every_s() -> float:
    try:
        return max(0.0, float(os.environ.get("EDGEDISTILL_LOG_EVERY", DEFAULT_EVERY_S)))
    except ValueError:
        return DEFAULT_EVERY_S


def log_line(text: str) -> None:
    """One timestamped line on stderr when output goes to a log (on a terminal the bars say it)."""
    if logging_lines():
        print(f"[edgedistill {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class _Heartbeat:
    """Prints `description: done/total` lines at most every `log_every_s()` seconds, plus a closing line."""

    def __init__(self, description: str, total: int | None) -> None:
        self.description, self.total = description, total
        self.start = self.last = time.monotonic()
        self.done = 0
        self.status = ""
        log_line(f"{description}: started" + (f" ({total} to do)" if total else ""))

    def update(self, done: int, total: int | None = None, status: str = "") -> None:
        self.done, self.total = done, total if total is not None else self.total
        self.status = status or self.status
        now = time.monotonic()
        if now - self.last >= log_every_s():
            self.last = now
            log_line(f"{self.description}: {self._count()}, {now - self.start:.0f} s" + self._status())

    def close(self) -> None:
        log_line(f"{self.description}: finished {self._count()} in {time.monotonic() - self.start:.1f} s"
                 + self._status())

    def _count(self) -> str:
        return f"{self.done}/{self.total}" if self.total else f"{self.done}"

    def _status(self) -> str:
        return f" ({self.status})" if self.status else ""


@contextlib.contextmanager
def progress_callback(description: str, total: int | None = None) -> Iterator[Callable[..., None] | None]:
    """For loops that run elsewhere (a profiling subprocess, ONNX Runtime's calibrator): yields
    `update(done, total=None, status="")`, or None when progress is silenced."""
    if logging_lines():
        beat = _Heartbeat(description, total)
        try:
            yield beat.update
        finally:
            beat.close()
        return
    if not enabled():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn())
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total, status="")

        def update(done: int, total: int | None = None, status: str = "") -> None:
            bar.update(task, completed=done, total=total if total is not None else bar.tasks[0].total,
                       status=status or bar.tasks[0].fields["status"])

        yield update


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate `items`, with a transient bar on a terminal or periodic lines in a log."""
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with progress_callback(description, total) as update:
        for done, item in enumerate(items, start=1):
            yield item
            if update is not None:
                update(done)
