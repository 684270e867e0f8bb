"""Progress bars that only exist on a terminal, drawn on stderr so stdout carries only results.

Long loops (epochs, calibration, profiling) report through `track` or `progress_callback`; on a terminal
they draw a transient rich bar that disappears when done, elsewhere (CI logs, pipes, `--json`) they draw
nothing, so captured output stays clean.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def enabled() -> bool:
    """Bars are drawn on stderr, and only when stdout is a terminal too (so `--json > file` stays quiet)."""
    return sys.stdout.isatty() and sys.stderr.isatty() and os.environ.get("EDGEDISTILL_PROGRESS", "1") != "0"


@contextlib.contextmanager
def progress_callback(description: str, total: int | None = None) -> Iterator[Callable[[int, int | None], None] | None]:
    """For loops that run elsewhere (a profiling subprocess, ONNX Runtime's calibrator): yields
    `update(done, total)` on a terminal, None otherwise."""
    if not enabled():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn())
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done, total=None: bar.update(task, completed=done, total=total if total is not None else bar.tasks[0].total)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate `items`, with a transient bar on a terminal."""
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


def log_line(text: str) -> None:
    """One status line (e.g. an epoch's samples/s and data-wait share) on stderr where progress is shown."""
    if enabled():
        print(text, file=sys.stderr, flush=True)
