"""JSON for files a stranger may have written: `json.loads` plus a nesting limit.

The standard parser recurses once per level: a few kilobytes of `[[[[...` end in RecursionError, which is no
kind of "bad input" a caller catches, and a document just under that limit still crashes the first recursive
walk over it (a schema check, a deep copy, a hash). `loads` refuses both as a ValueError, the error a caller
already handles for malformed JSON, so every reader of report.json, manifest.json, model configs and JSONL
data ends bad input with a message instead of an internal error.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 100  # edgedistill's own files nest under 12 levels; recipes are capped at 64 (yamlsafe)


class TooDeep(ValueError):
    """A JSON document nested deeper than MAX_DEPTH."""


def loads(text: str | bytes) -> Any:
    """`json.loads`, raising ValueError (never RecursionError) for a document nested deeper than MAX_DEPTH."""
    try:
        obj = json.loads(text)
    except RecursionError:
        raise TooDeep(f"nested deeper than {MAX_DEPTH} levels") from None
    if depth(obj) > MAX_DEPTH:
        raise TooDeep(f"nested deeper than {MAX_DEPTH} levels")
    return obj


def depth(obj: Any) -> int:
    """Nesting depth of lists and dicts, walked without recursion (1 for a scalar)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        if isinstance(node, dict):
            stack.extend((v, level + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, level + 1) for v in node)
    return deepest
