"""The registry of distillation terms (base.py says what a term is); importing this package registers them all."""

from __future__ import annotations

import importlib
import pkgutil

from .base import TERMS, Batch, Term, TermSetup, register_term

__all__ = ["TERMS", "Batch", "Term", "TermSetup", "register_term", "term_names"]

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name != "base":
        importlib.import_module(f"{__name__}.{_mod.name}")


def term_names() -> list[str]:
    return sorted(TERMS)
