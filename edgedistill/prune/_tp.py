"""The one place Torch-Pruning is imported, so a missing install is a clear UserError, not a traceback."""

from __future__ import annotations

from types import ModuleType

from ..errors import UserError

INSTALL = 'pip install "edgedistill[prune]"  (torch-pruning==1.6.1)'


def torch_pruning() -> ModuleType:
    """Import Torch-Pruning lazily: only the prune stage and pruned checkpoints need it."""
    try:
        import torch_pruning
    except ImportError as exc:
        raise UserError("structured pruning needs Torch-Pruning, which is not installed", where="prune",
                        fix=INSTALL) from exc
    return torch_pruning
