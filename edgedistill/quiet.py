"""Silence third-party messages known to be harmless, by exact pattern, so real warnings still show.

Every command used to print torchao's "Failed to load ..._C_*.so" lines (its CUDA/fp8 kernels, which a CPU
build of torch cannot load and edgedistill never uses) and torch's pytree note about torchao registering an
Enum. Users read them as errors. Each filter matches one message; anything else from the same logger passes.
"""

from __future__ import annotations

import logging
import re

# (logger name, pattern of a message that is known to be harmless here, why)
HARMLESS = (
    ("torchao", r"^Failed to load .*_C_\w*.*\.so", "torchao's GPU kernels; a CPU build of torch cannot load them"),
    ("torch.utils._pytree", r"is an Enum subclass and is now natively supported by torch\.compile",
     "torchao registers an Enum the old way; nothing to do for a user"),
)


class _Drop(logging.Filter):
    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            return not self.pattern.search(record.getMessage())
        except Exception:  # a message that cannot be formatted is not ours to judge
            return True


def install() -> None:
    """Attach the filters (idempotent); call before the libraries are imported."""
    for name, pattern, _why in HARMLESS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Drop) and f.pattern.pattern == pattern for f in logger.filters):
            logger.addFilter(_Drop(pattern))
