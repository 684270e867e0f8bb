"""How many threads the run's own compute uses (PyTorch training, ONNX Runtime scoring and calibration).

Why a choice at all: PyTorch and ONNX Runtime default to one thread per core and spin while they wait. On a
2-core machine shared with one other busy job, that made the default recipe 6-10x slower than one thread
(measured; README "Threads"), because every parallel region waits for the thread the other job has
descheduled. `auto` therefore takes half of the CPUs this process may run on (at least 1): on a shared
2-core box that is 1 thread, on a 16-core server 8, leaving room for data-loader workers, the profiler's
worker processes and neighbours. Latency is timed with each target's own thread count, not this one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_chosen: Threads | None = None


@dataclass(frozen=True)
class Threads:
    count: int
    source: str  # "--threads", "recipe", "OMP_NUM_THREADS" or "auto"
    usable_cpus: int

    def to_json(self) -> dict[str, int | str]:
        return {"count": self.count, "source": self.source, "usable_cpus": self.usable_cpus}


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, so a container's or taskset's limit counts)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


# the user's own OMP_NUM_THREADS, read before `apply` sets it for libraries imported later
_USER_ENV = os.environ.get("OMP_NUM_THREADS", "")


def resolve(cli: int | None = None, recipe: int | str | None = None) -> Threads:
    """The thread count, by precedence: `--threads`, the recipe's `threads`, OMP_NUM_THREADS, then auto."""
    cpus = usable_cpus()
    if cli:
        return Threads(int(cli), "--threads", cpus)
    if isinstance(recipe, int) and recipe > 0:
        return Threads(recipe, "recipe", cpus)
    env = _USER_ENV.strip()
    if env.isdigit() and int(env) > 0:
        return Threads(int(env), "OMP_NUM_THREADS", cpus)
    return Threads(max(1, cpus // 2), "auto", cpus)


def apply(threads: Threads, import_torch: bool = True) -> Threads:
    """Use `threads` for PyTorch in this process and for ONNX Runtime sessions this process opens.

    OMP_NUM_THREADS is set too, for a torch imported later and for child processes (loader workers, torchrun
    ranks); `import_torch=False` (every command, at start) leaves torch unimported when it is not loaded yet,
    so a light command does not pay for importing it."""
    global _chosen
    import sys

    os.environ["OMP_NUM_THREADS"] = str(threads.count)  # torch imported later, and child processes
    if import_torch or "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads.count)
    _chosen = threads
    return threads


def current() -> int:
    """The count chosen for this run, or 0 (the runtime's own default) when nothing chose one."""
    return _chosen.count if _chosen is not None else 0


def chosen() -> Threads:
    """What `apply` chose for this process (auto's choice, unapplied, when nothing did)."""
    return _chosen if _chosen is not None else resolve()
