"""N:M sparsity patterns ("2:4"), parsed without torch so that recipe validation can check them cheaply."""

from __future__ import annotations

from ..errors import UserError


def parse_pattern(pattern: str) -> tuple[int, int]:
    """'2:4' -> (2, 4): keep N of every M consecutive weights."""
    try:
        n, m = (int(p) for p in pattern.split(":"))
    except ValueError:
        raise UserError(f'N:M pattern must look like "2:4", got "{pattern}"', where="prune.pattern",
                        fix='use "2:4" (NVIDIA sparse tensor cores)') from None
    if not 0 < n < m:
        raise UserError(f"N:M pattern needs 0 < N < M, got {pattern}", where="prune.pattern", fix='use "2:4"')
    return n, m
