"""YAML for files a stranger may have written: `safe_load` semantics plus limits.

PyYAML's SafeLoader never runs code, but it still lets a few hundred bytes of aliases expand into billions
of nodes (an "alias bomb": harmless while shared, fatal once validated or hashed), lets nesting recurse the
interpreter to death, and silently keeps the last of two equal keys (also when they are spelled differently:
`1` and `0x1`, `on` and `true`). A 5000-digit integer raises Python's own digit limit (a ValueError from deep in
the constructor). This loader refuses all of these, with the line numbers.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from .errors import UserError

MAX_DEPTH = 64  # recipes nest 5 or 6 levels; anything deeper is a mistake or an attack
MAX_NODES = 100_000  # nodes after alias expansion; the largest built-in recipe has a few hundred
MAX_INT_DIGITS = 64  # no recipe value needs more than 20; Python refuses to parse more than 4300
_INT = "tag:yaml.org,2002:int"


class _Limited(yaml.SafeLoader):
    """SafeLoader that bounds nesting while composing and the alias-expanded size of the document."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):  # (PyYAML's signature)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            _check_tree(node)
        return node

    def construct_yaml_int(self, node):  # (PyYAML's signature)
        _check_int(node)
        return super().construct_yaml_int(node)


_Limited.add_constructor(_INT, _Limited.construct_yaml_int)
_SCALARS = yaml.constructor.SafeConstructor()  # turns a key node into the value it loads as


def _check_int(node: yaml.Node) -> None:
    if len(node.value) > MAX_INT_DIGITS:
        raise yaml.constructor.ConstructorError(None, None, f"an integer of {len(node.value)} characters (at most "
                                                f"{MAX_INT_DIGITS})", node.start_mark)


def _key_identity(node: yaml.ScalarNode) -> tuple:
    """Two keys are the same when they load as the same value: `1`/`0x1`/`1.0`, `on`/`yes`/`true`, `~`/`null`
    (a Python dict keeps only the last of them); a quoted "1" stays a different key from 1."""
    if node.tag == _INT:
        _check_int(node)
    make = yaml.SafeLoader.yaml_constructors.get(node.tag)
    if node.tag == "tag:yaml.org,2002:str" or make is None:
        return (node.tag, node.value)
    try:
        return ("value", make(_SCALARS, node))
    except (yaml.YAMLError, ValueError, TypeError):
        return (node.tag, node.value)


def _check_tree(root: yaml.Node) -> None:
    """Count nodes with aliases expanded (memoised, so the count itself stays cheap) and find duplicate keys."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_:
            raise yaml.composer.ComposerError(None, None, "an alias refers to the node that contains it",
                                              node.start_mark)
        open_.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
                if total > MAX_NODES:
                    break
        elif isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value != "<<":
                    ident = _key_identity(k)
                    if ident in seen:
                        first = seen[ident].start_mark.line + 1
                        raise yaml.constructor.ConstructorError(
                            None, None, f'duplicate key "{k.value}" (first on line {first})', k.start_mark)
                    seen[ident] = k
                total += size(k) + size(v)
                if total > MAX_NODES:
                    break
        open_.discard(key)
        if total > MAX_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"more than {MAX_NODES} values once aliases (*name) are expanded", node.start_mark)
        sizes[key] = total
        return total

    size(root)


def _user_error(exc: yaml.YAMLError, source: str) -> UserError:
    mark = getattr(exc, "problem_mark", None)
    where = f"{source}:{mark.line + 1}" if mark else source
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return UserError(f"not valid YAML: {problem}", where=where, fix="fix the YAML")


def load(text: str, source: str) -> Any:
    """`yaml.safe_load` with the limits above; any problem is a UserError naming `source` and the line."""
    try:
        return yaml.load(text, Loader=_Limited)  # (_Limited is a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise _user_error(exc, source) from None
    except RecursionError:  # a parser path we did not bound; never a traceback
        raise UserError(f"not valid YAML: nested deeper than {MAX_DEPTH} levels", where=source,
                        fix="flatten the file") from None


def compose(text: str, source: str) -> yaml.Node | None:
    """The node tree (for line numbers), with the same limits as `load`."""
    try:
        return yaml.compose(text, Loader=_Limited)
    except yaml.YAMLError as exc:
        raise _user_error(exc, source) from None
    except RecursionError:
        raise UserError(f"not valid YAML: nested deeper than {MAX_DEPTH} levels", where=source,
                        fix="flatten the file") from None


def read_text(path, source: str | None = None) -> str:  # (str or Path)
    """A text file as UTF-8; anything else (a binary, another encoding) is a UserError, not a traceback."""
    try:
        return path.read_text(encoding="utf-8") if hasattr(path, "read_text") else open(path, encoding="utf-8").read()
    except UnicodeDecodeError as exc:
        raise UserError(f"not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r})",
                        where=source or str(path), fix="save the file as UTF-8") from None
    except IsADirectoryError:
        raise UserError("is a directory, not a file", where=source or str(path), fix="pass the YAML file") from None


def non_finite(obj: Any, path: tuple = ()) -> tuple | None:
    """The key path of the first NaN or infinite number in a loaded document (None when all are finite)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return path
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list):
        items = enumerate(obj)
    else:
        return None
    for k, v in items:
        found = non_finite(v, (*path, k))
        if found is not None:
            return found
    return None
