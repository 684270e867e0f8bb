"""Where the CI gate's tolerances come from: the baseline or the CI's own policy file, never the candidate.

A change under review must not relax the gate that reviews it, so the candidate's recipe (its `gates:`
section, carried in its report.json) is ignored. In order of precedence, later winning:

1. defaults (`DEFAULTS`): accuracy, size and latency are always compared, even when nobody set a limit;
2. the baseline's recipe (`recipe.resolved.gates` of the baseline report: what main agreed to);
3. a policy file the CI owns (`check --policy FILE`, YAML: `gates: {...}` and `strict: true|false`);
4. command-line flags (`--accuracy-drop` ...), which also live in the CI's configuration.

Every tolerance must be a finite number (growths and drops >= 0): `accuracy_drop: .inf` is refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError, did_you_mean

GATE_KEYS = ("accuracy_drop", "size_growth", "latency_growth", "min_metric")
# compared on every check unless a source sets another limit: 1 point of metric, +10 % size, +10 % latency
DEFAULTS: dict[str, float] = {"accuracy_drop": 0.01, "size_growth": 0.10, "latency_growth": 0.10}
# the values a metric can take: a report outside them is not evidence of anything
METRIC_RANGES: dict[str, tuple[float, float]] = {"accuracy": (0.0, 1.0), "macro_f1": (0.0, 1.0), "f1": (0.0, 1.0),
                                                 "spearman": (-1.0, 1.0), "pearson": (-1.0, 1.0)}


@dataclass
class Policy:
    """The tolerances a check applies, each with the place it came from, and whether strict mode is on."""

    limits: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    strict: bool = False

    def source(self, key: str) -> str:
        return self.sources.get(key, "not set")


def finite_tolerance(value: Any, key: str, where: str) -> float:
    """A tolerance as a float: a number, finite, and >= 0 except `min_metric` (a level, not a growth)."""
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if not math.isfinite(number):
        raise UserError(f"{key}: expected a finite number, got {value!r:.60}", where=where,
                        fix=f"set {key} to a number such as {DEFAULTS.get(key, 0.9)}")
    if key != "min_metric" and number < 0:
        raise UserError(f"{key}: must not be negative (got {number})", where=where,
                        fix="a tolerance is the worsening allowed, >= 0")
    return number


def load_policy_file(path: str | Path) -> dict[str, Any]:
    """A CI-owned policy: `gates:` (any of GATE_KEYS) and `strict:` (a boolean). Unknown keys are refused."""
    from . import yamlsafe

    path = Path(path)
    if not path.is_file():
        raise UserError("policy file not found", where=str(path), fix="pass --policy a YAML file the CI owns")
    data = yamlsafe.load(yamlsafe.read_text(path), str(path)) or {}
    if not isinstance(data, dict):
        raise UserError("expected a mapping with `gates:` and `strict:`", where=str(path),
                        fix="write e.g.\n  gates: {accuracy_drop: 0.01, size_growth: 0.1, latency_growth: 0.1}\n"
                            "  strict: true")
    for key in data:
        if key not in ("gates", "strict"):
            raise UserError(f"unknown key {key!r}{did_you_mean(key, ('gates', 'strict'))}", where=str(path),
                            fix="a policy has only `gates:` and `strict:`")
    gates = data.get("gates") or {}
    if not isinstance(gates, dict):
        raise UserError("gates: expected a mapping", where=str(path), fix="gates: {accuracy_drop: 0.01}")
    for key in gates:
        if key not in GATE_KEYS:
            raise UserError(f"gates.{key}: unknown gate{did_you_mean(key, GATE_KEYS)}", where=str(path),
                            fix=f"use some of {', '.join(GATE_KEYS)}")
    strict = data.get("strict", False)
    if not isinstance(strict, bool):
        raise UserError(f"strict: expected true or false, got {strict!r:.40}", where=str(path), fix="strict: true")
    return {"gates": {k: finite_tolerance(v, f"gates.{k}", str(path)) for k, v in gates.items() if v is not None},
            "strict": strict, "path": str(path)}


def resolve_policy(baseline: Mapping[str, Any], policy_file: Mapping[str, Any] | None = None,
                   overrides: Mapping[str, float | None] | None = None, *, strict: bool | None = None) -> Policy:
    """The tolerances for one check (see the module docstring for the order). The candidate is not an argument."""
    out = Policy(limits=dict(DEFAULTS), sources={k: "default" for k in DEFAULTS})
    gates = ((baseline.get("recipe") or {}).get("resolved") or {}).get("gates") or {}
    if not isinstance(gates, dict):
        raise UserError("recipe.resolved.gates: expected a mapping", where=baseline.get("_path", "baseline"),
                        fix="re-run the baseline with a recipe whose gates section is a mapping")
    for key in GATE_KEYS:
        if gates.get(key) is not None:
            out.limits[key] = finite_tolerance(gates[key], f"recipe.resolved.gates.{key}", baseline.get("_path", ""))
            out.sources[key] = "the baseline's recipe"
    if policy_file:
        for key, value in policy_file["gates"].items():
            out.limits[key], out.sources[key] = value, f"policy {Path(policy_file['path']).name}"
        out.strict = bool(policy_file.get("strict", False))
    for key, value in (overrides or {}).items():
        if value is not None:
            flag = f"--{key.replace('_', '-')}"
            out.limits[key], out.sources[key] = finite_tolerance(value, flag, "command line"), flag
    if strict is not None:
        out.strict = strict
    return out


def metric_range(name: str | None) -> tuple[float, float] | None:
    """The closed interval a named metric lies in (None for a metric this gate does not know)."""
    return METRIC_RANGES.get(str(name or "").lower())
