"""Mixed precision for training: autocast of the forward pass in bf16 or fp16, where this machine has it.

Training runs on the CPU; bf16 needs oneDNN's bf16 kernels (AVX-512 BF16 or AMX), fp16 its fp16 kernels
(AMX-FP16). Where they are missing the run is refused before training with a message naming the field,
rather than silently emulated at a fraction of fp32's speed. fp16 scales the loss (`GradScaler`) so small
gradients do not underflow; bf16 has fp32's range and needs no scaling.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import UserError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_supports(precision: str) -> bool:
    """Whether this CPU has native kernels for `precision` (fp32 always)."""
    if precision == "fp32":
        return True
    probe = {"bf16": "_is_mkldnn_bf16_supported", "fp16": "_is_mkldnn_fp16_supported"}[precision]
    try:
        return bool(getattr(torch.ops.mkldnn, probe)())
    except (AttributeError, RuntimeError):
        return False


@dataclass
class Precision:
    """The autocast context and the (possibly scaled) backward/step for one training run."""

    name: str
    scaler: Any = None

    def autocast(self):
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type="cpu", dtype=DTYPES[self.name])

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:  # so gradient clipping sees the true gradients
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()


def autocast_for(precision: str, label: str) -> Precision:
    """The precision helper for `train.precision`; a UserError (exit 2) where the CPU lacks it."""
    if not cpu_supports(precision):
        raise UserError(f"train.precision is {precision}, but this CPU has no {precision} kernels "
                        f"({'AVX-512 BF16 or AMX' if precision == 'bf16' else 'AMX-FP16'} is needed)",
                        where=f"{label}: train.precision",
                        fix="use precision: fp32 here" + (", or bf16 (this CPU has it)" if cpu_supports("bf16")
                                                          and precision != "bf16" else ""))
    scaler = torch.amp.GradScaler("cpu") if precision == "fp16" else None
    return Precision(precision, scaler)
