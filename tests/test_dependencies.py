"""Every third-party module the tests and benchmarks import is declared in the `test` extra.

A package installed by hand once made CI green on the machine that had it and red on the next one
(benchmarks/text.py needed optimum, which no extra declared). This test reads the imports from the source, so it
fails on any machine, however much is installed there. `pytest.importorskip` counts as an import too: a skip
would otherwise hide the missing declaration.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from pathlib import Path

from .conftest import ROOT

# imported only where present, with the reason; everything else must come with `pip install ".[test]"`
OPTIONAL = {
    "tensorrt": "needs an NVIDIA GPU; the [tensorrt] extra, tests skip without a GPU",
    "sentence_transformers": "a cross-check against the reference library, skipped without it",
}
LOCAL = {"edgedistill", "tests", "benchmarks",
         "predict"}  # a bundle's own usage/predict.py, imported from the bundle folder


def _imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "importorskip" and node.args and isinstance(node.args[0], ast.Constant)):
            names.add(str(node.args[0].value).split(".")[0])
    return names


def _declared(dist: str, extras: tuple[str, ...], seen: set[str]) -> set[str]:
    """The distributions `dist[extras]` pulls in, transitively (names normalised)."""
    from packaging.requirements import Requirement

    key = re.sub(r"[-_.]+", "-", dist).lower()
    if (key, extras) in seen:
        return set()
    seen.add((key, extras))
    out = {key}
    try:
        requires = md.requires(dist) or []
    except md.PackageNotFoundError:
        return out
    for line in requires:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (*extras, "")):
            out |= _declared(req.name, tuple(sorted(req.extras)), seen)
    return out


def test_every_third_party_import_of_tests_and_benchmarks_is_in_the_test_extra():
    files = [*ROOT.glob("tests/*.py"), *ROOT.glob("benchmarks/*.py")]
    local = LOCAL | {p.stem for p in ROOT.glob("benchmarks/*.py")} | {p.stem for p in ROOT.glob("tests/*.py")}
    modules = set().union(*(_imported(f) for f in files)) - set(sys.stdlib_module_names) - local - set(OPTIONAL)
    declared = _declared("edgedistill", ("test",), set())
    providers = md.packages_distributions()
    missing = {}
    for module in sorted(modules):
        dists = {re.sub(r"[-_.]+", "-", d).lower() for d in providers.get(module, [])}
        if not dists & declared:
            missing[module] = sorted(dists) or "not installed here"
    assert not missing, f"imported by tests/benchmarks but not declared in edgedistill[test]: {missing}"
