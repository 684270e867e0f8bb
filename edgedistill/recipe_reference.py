"""Generate the recipe reference (every key, its type, default and meaning) from the live schema.

The README's reference table is produced by `python -m edgedistill.recipe_reference`, and a test checks
that every key the schema accepts is documented there, so the docs cannot drift from the code.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined


def _type_name(ann: Any) -> str:
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:  # a constrained type: its base type (the range is in the description)
        return _type_name(typing.get_args(ann)[0])
    if origin is typing.Literal:
        return " \\| ".join(repr(a).replace("'", "") for a in typing.get_args(ann))
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(ann)
        names = " \\| ".join(_type_name(a) for a in args if a is not type(None))
        return names + (" \\| null" if type(None) in args else "")
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(ann))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(ann, "__name__", str(ann))


def _submodel(ann: Any) -> type[BaseModel] | None:
    for a in (ann, *typing.get_args(ann)):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def walk(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key path, type, default, description) for every field, recursing into nested sections."""
    rows = []
    for name, field in model.model_fields.items():
        if name == "kind" and prefix.startswith("stages"):
            continue
        path = f"{prefix}{name}"
        sub = _submodel(field.annotation)
        default = field.default
        if default is PydanticUndefined:
            shown = "required" if field.default_factory is None else "(section defaults)"
        else:
            shown = "(section defaults)" if isinstance(default, BaseModel) else repr(default)
        typ = "list of stages (below)" if path == "stages" else "section" if sub else _type_name(field.annotation)
        rows.append((path, typ, shown, (field.description or "").replace("|", "\\|")))
        if sub is not None:
            rows.extend(walk(sub, path + "."))
    return rows


def all_rows() -> list[tuple[str, str, str, str]]:
    from .recipe import _recipe_model
    from .stages import load_stages

    rows = [r for r in walk(_recipe_model()) if not r[0].startswith("stages.")]
    for kind, spec in sorted(load_stages().items()):
        rows.append((f"stages[].kind: {kind}", "stage", "", spec.summary))
        rows.extend((f"  {p}", t, d, desc) for p, t, d, desc in walk(spec.config))
    return rows


def markdown() -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for path, typ, default, desc in all_rows():
        lines.append(f"| `{path.strip()}` | {typ} | {default} | {desc} |".replace("`  ", "`"))
    return "\n".join(lines)


START, END = "<!-- recipe-reference:start -->", "<!-- recipe-reference:end -->"


def update_readme(path: str) -> None:
    """Replace the table between the README's markers with the current one."""
    from pathlib import Path

    from .io import write_text

    text = Path(path).read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    write_text(path, f"{head}{START}\n{markdown()}\n{END}{tail}")


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--write"]:
        update_readme(sys.argv[2])
    else:
        print(markdown())
