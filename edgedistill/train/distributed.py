"""Running under `torchrun --nproc-per-node N`: process group set-up, rank helpers, and the few collectives
the trainer needs.

Nothing here does anything in a single process, so every caller can use it unconditionally. The trainer
wraps the model in DistributedDataParallel (gloo on CPU, nccl when GPUs exist); every rank runs the same
pipeline in lockstep, and only rank 0 writes files.
"""

from __future__ import annotations

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_distributed() -> bool:
    return world_size() > 1


def is_main_process() -> bool:
    """True in a single process and on rank 0: the only process that writes files."""
    return rank() == 0


def setup() -> str | None:
    """Join the process group torchrun describes (once); returns the backend, or None in a single process."""
    if not is_distributed():
        return None
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_backend()


def barrier() -> None:
    if setup():
        import torch.distributed as dist

        dist.barrier()


def broadcast_module_state(module) -> None:
    """Copy rank 0's parameters and buffers (BatchNorm statistics) to every rank, so validation agrees."""
    if not setup():
        return
    import torch.distributed as dist

    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)


def broadcast_float(value: float) -> float:
    """Rank 0's value on every rank (used so early stopping and best-epoch choices never diverge)."""
    if not setup():
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64)
    dist.broadcast(t, src=0)
    return float(t.item())


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on at least one (so all ranks take the same branch of a collective)."""
    if not setup():
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather_interleaved(local, total: int):
    """The rows of a batch of `total` rows that the ranks computed interleaved (rank r holds rows r, r+world, ...),
    put back in order on every rank. `local` is this rank's (k, ...) tensor; a rank with no rows passes None."""
    import torch

    if not setup():
        return local
    import torch.distributed as dist

    world = world_size()
    width = torch.tensor([local.shape[1] if local is not None and len(local) else 0])
    dist.all_reduce(width, op=dist.ReduceOp.MAX)
    dtype = local.dtype if local is not None else torch.float32
    per = -(-total // world)
    padded = torch.zeros(per, int(width), dtype=dtype)
    if local is not None and len(local):
        padded[: len(local)] = local
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    out = torch.empty(total, int(width), dtype=dtype)
    for r, part in enumerate(parts):
        count = len(range(r, total, world))
        out[r::world] = part[:count]
    return out
