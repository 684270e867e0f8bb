"""The CI gate: compare a run's report.json against a baseline's and fail on regressions only.

Tolerances come from the recipe (`recipe.resolved.gates`: accuracy_drop, size_growth, latency_growth,
min_metric), overridable from the command line. Accuracy and size are read from the reports. Latency is
never read from them: milliseconds measured on two machines (or two moments on one shared machine) differ
by 20–50 % with no change to the model. Instead both artifacts are re-profiled here, side by side, in
interleaved bursts (a fresh process each, renewed over 3 rounds: one process can run an identical file
10-25% slower for its whole life), and the gate compares current/baseline as the median over bursts of
the ratio of burst minima (profile/compare.py says why minima).

The gate fails closed: a report without a finite deployed metric or a positive size, an artifact that is
missing or is not the file the report was measured on (its sha256, recorded in report.json), or two reports
of different tasks or metrics are bad input (exit 2), never a skipped check that passes.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import jsonsafe
from .errors import UserError
from .io import sha256_file, write_text

if TYPE_CHECKING:
    from .target import Target

GATE_KEYS = ("accuracy_drop", "size_growth", "latency_growth", "min_metric")


@dataclass
class GateResult:
    name: str
    limit: float | None
    value: float | None
    passed: bool
    skipped: bool = False
    detail: str = ""

    def line(self) -> str:
        word = "SKIP" if self.skipped else ("PASS" if self.passed else "FAIL")
        return f"{word} {self.name}: {self.detail}"


@dataclass
class GateReport:
    results: list[GateResult] = field(default_factory=list)
    tolerances: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(r.passed or r.skipped for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "tolerances": self.tolerances, "gates": [asdict(r) for r in self.results]}


def load_report(path: str | Path, flag: str) -> dict[str, Any]:
    """Read and sanity-check a report.json; every problem is a UserError naming the file and field."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise UserError("report not found", where=str(path), fix=f"pass {flag} a run's report.json (or its run dir)")
    try:
        report = jsonsafe.loads(path.read_bytes())
    except (ValueError, OSError) as exc:  # (JSONDecodeError, UnicodeDecodeError and too deep are ValueErrors)
        raise UserError(f"not valid JSON: {exc}", where=str(path), fix="pass an edgedistill report.json") from exc
    if not isinstance(report, dict) or report.get("schema_version") != 1:
        raise UserError("schema_version: expected 1", where=str(path), fix="pass an edgedistill report.json")
    dep = report.get("models", {}).get("deployed") if isinstance(report.get("models"), dict) else None
    if not isinstance(dep, dict):
        raise UserError("models.deployed: missing", where=str(path), fix="pass the report of a finished run")
    # the fields the gate reads: a hand-edited or foreign file fails here with its field, not later with a traceback
    fields = {"recipe": (report.get("recipe"), dict), "metric": (report.get("metric"), dict),
              "targets": (report.get("targets"), dict), "models.deployed.latency": (dep.get("latency"), dict),
              "models.deployed.metric": (dep.get("metric"), (int, float)),
              "models.deployed.size_mb": (dep.get("size_mb"), (int, float))}
    if isinstance(report.get("recipe"), dict):
        fields["recipe.resolved"] = (report["recipe"].get("resolved"), dict)
        if isinstance(report["recipe"].get("resolved"), dict):
            fields["recipe.resolved.gates"] = (report["recipe"]["resolved"].get("gates"), dict)
    fields.update({f"models.deployed.{k}": (dep.get(k), str) for k in ("path", "sha256", "data_sha256")})
    fields.update({"task": (report.get("task"), str)})
    if isinstance(report.get("metric"), dict):
        fields.update({"metric.name": (report["metric"].get("name"), str),
                       "metric.higher_is_better": (report["metric"].get("higher_is_better"), bool)})
    for group in ("targets", "models.deployed.latency"):  # each target's entry is a mapping too
        entries = fields[group][0]
        if isinstance(entries, dict):
            fields.update({f"{group}.{k}": (v, dict) for k, v in entries.items()})
    names = {dict: "a mapping", str: "a string", bool: "true or false"}
    for name, (value, kind) in fields.items():
        numeric = kind == (int, float)
        if value is not None and (not isinstance(value, kind) or (numeric and isinstance(value, bool))):
            raise UserError(f"{name}: expected {names.get(kind, 'a number')}, got {value!r:.60}",
                            where=str(path), fix="pass an edgedistill report.json")
    for target, lat in (dep.get("latency") or {}).items():  # the settings a re-profile reuses
        for key in ("batch", "threads", "sequence"):
            value = lat.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**20):
                raise UserError(f"models.deployed.latency.{target}.{key}: expected a positive integer, got {value!r:.60}",
                                where=str(path), fix="pass an edgedistill report.json")
    _require_evidence(dep, str(path))
    report["_path"] = str(path.resolve())
    return report


def _require_evidence(dep: Mapping[str, Any], where: str) -> None:
    """The numbers a gate compares must be there and be real: a missing, null or non-finite one is refused."""
    metric, size = dep.get("metric"), dep.get("size_mb")
    if not isinstance(metric, (int, float)) or isinstance(metric, bool) or not math.isfinite(metric):
        raise UserError(f"models.deployed.metric: expected a finite number, got {metric!r:.60}", where=where,
                        fix="pass the report of a finished run; a run whose metric is missing or not finite has no evidence to gate")
    if not isinstance(size, (int, float)) or isinstance(size, bool) or not math.isfinite(size) or size <= 0:
        raise UserError(f"models.deployed.size_mb: expected a positive number, got {size!r:.60}", where=where,
                        fix="pass the report of a finished run (size_mb is the artifact's size on disk)")


def verify_artifact(report: Mapping[str, Any]) -> Path:
    """The report's artifact exists and is byte for byte the file its numbers were measured on.

    A stale report beside a replaced or removed bundle (a run killed early into the same --out, a second run
    writing the same folder, a hand-copied model) must not pass the gate on the old numbers."""
    dep, where = report["models"]["deployed"], report["_path"]
    path = artifact_path(report)
    if not path.is_file():
        raise UserError(f"the deployed artifact {path} is missing", where=f"{where}: models.deployed.path",
                        fix="keep the run's bundle/ next to its report.json (the gate re-profiles it and checks its sha256)")
    digests = {"sha256": path, "data_sha256": path.with_name(path.name + ".data")}
    if not isinstance(dep.get("sha256"), str):
        raise UserError("models.deployed.sha256 is missing, so the artifact cannot be tied to this report",
                        where=where, fix="re-run the recipe with this edgedistill version (reports now record it)")
    for key, file in digests.items():
        want = dep.get(key)
        if want is None and key == "data_sha256" and not file.exists():
            continue
        got = sha256_file(file) if file.is_file() else "missing"
        if got != want:
            raise UserError(f"{file.name} is not the file this report was measured on "
                            f"(sha256 {got[:16]}…, the report says {str(want)[:16]}…)", where=f"{where}: models.deployed.{key}",
                            fix="the bundle changed after the report was written (another or an interrupted run?): "
                                "re-run the recipe, or restore the matching bundle")
    return path


def same_task(current: Mapping[str, Any], baseline: Mapping[str, Any]) -> None:
    """Comparing accuracy with Spearman, or a classifier with an embedder, means nothing: refuse it."""
    def what(rep: Mapping[str, Any]) -> tuple:
        m = rep.get("metric") or {}
        return rep.get("task"), m.get("name"), m.get("higher_is_better", True)

    if what(current) != what(baseline):
        c, b = what(current), what(baseline)
        word = lambda t: f"{t[0]}/{t[1]} ({'higher' if t[2] else 'lower'} is better)"  # noqa: E731
        raise UserError(f"the reports measure different things: current {word(c)}, baseline {word(b)}",
                        where=f"{current['_path']} vs {baseline['_path']}",
                        fix="compare runs of the same task and metric, or pass --allow-different-task if you mean it")


def tolerances(current: Mapping, baseline: Mapping, overrides: Mapping[str, float | None]) -> dict[str, float]:
    """The recipe's gates (current run's, else the baseline's), with non-None overrides on top."""
    out: dict[str, float] = {}
    for rep in (baseline, current):  # current wins
        gates = ((rep.get("recipe") or {}).get("resolved") or {}).get("gates") or {}
        if not isinstance(gates, dict):
            raise UserError("recipe.resolved.gates: expected a mapping", where=rep["_path"],
                            fix="re-run with a recipe whose gates section is a mapping")
        for key in GATE_KEYS:
            if gates.get(key) is not None:
                out[key] = _number(gates[key], f"recipe.resolved.gates.{key}", rep["_path"])
    for key, val in overrides.items():
        if val is not None:
            out[key] = _number(val, f"--{key.replace('_', '-')}", "command line")
    for key in ("accuracy_drop", "size_growth", "latency_growth"):
        if key in out and out[key] < 0:
            raise UserError(f"{key} must not be negative", where=key, fix="tolerances are allowed worsening, >= 0")
    return out


def _number(v: Any, field_name: str, where: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        f = math.nan
    if math.isnan(f):
        raise UserError(f"{field_name}: expected a number, got {v!r}", where=where, fix="use e.g. 0.01")
    return f


def check(current: dict, baseline: dict, *, overrides: Mapping[str, float | None] | None = None,
          runs: int = 300, burst: int = 10, warmup: int = 20, rounds: int = 3,
          allow_different_task: bool = False) -> GateReport:
    """Run every configured gate. Latency is re-measured here (see the module docstring)."""
    if not allow_different_task:
        same_task(current, baseline)
    for rep_ in (current, baseline):
        verify_artifact(rep_)
    tol = tolerances(current, baseline, overrides or {})
    rep = GateReport(tolerances=tol)
    cur, base = current["models"]["deployed"], baseline["models"]["deployed"]
    higher = bool((current.get("metric") or {}).get("higher_is_better", True))
    mname = (current.get("metric") or {}).get("name", "metric")
    cm, bm = cur.get("metric"), base.get("metric")
    if "accuracy_drop" in tol:
        lim = tol["accuracy_drop"]
        drop = (bm - cm) if higher else (cm - bm)
        rep.results.append(GateResult("accuracy_drop", lim, drop, drop <= lim + 1e-12,
                                      detail=f"{mname} {bm:.4f} -> {cm:.4f}, drop {drop:+.4f} "
                                             f"({'<=' if drop <= lim + 1e-12 else '>'} limit {lim:.4f})"))
    if "min_metric" in tol:
        lim = tol["min_metric"]
        ok = cm >= lim if higher else cm <= lim
        rep.results.append(GateResult("min_metric", lim, cm, ok, detail=f"{mname} {cm:.4f} "
                                      f"{'meets' if ok else 'misses'} {'minimum' if higher else 'maximum'} {lim:.4f}"))
    if "size_growth" in tol:
        lim = tol["size_growth"]
        cs, bs = cur["size_mb"], base["size_mb"]  # load_report made sure both are positive numbers
        g = cs / bs - 1
        rep.results.append(GateResult("size_growth", lim, g, g <= lim + 1e-12,
                                      detail=f"{bs:.3f} MB -> {cs:.3f} MB, {g:+.1%} "
                                             f"({'<=' if g <= lim + 1e-12 else '>'} limit {lim:+.1%})"))
    if "latency_growth" in tol:
        rep.results.extend(latency_gates(current, baseline, tol["latency_growth"], runs=runs, burst=burst, rounds=rounds,
                                         warmup=warmup))
    return rep


def artifact_path(report: Mapping) -> Path:
    """`models.deployed.path` is relative to the directory holding report.json."""
    p = Path(report["models"]["deployed"].get("path") or "bundle/model.onnx")
    return p if p.is_absolute() else Path(report["_path"]).parent / p


def target_of(report: dict, name: str) -> Target:
    """The target a report was profiled on: the spec stored in the report (custom targets too), else the built-in."""
    from pydantic import ValidationError

    from .target import Target, load_target

    name = name.split("@")[0]  # "<target>@b<N>", "@s<L>": the same target at another batch size / sequence length
    spec = ((report.get("targets") or {}).get(name) or {}).get("spec")
    if not spec:
        return load_target(name)
    try:
        return Target.model_validate(spec)
    except ValidationError as exc:  # e.g. a report written by a version whose targets have more fields
        err = exc.errors()[0]
        raise UserError(f"stored spec is not a valid target here: {'.'.join(map(str, err['loc']))}: {err['msg']}",
                        where=f"{report['_path']}: targets.{name}.spec",
                        fix="re-run the recipe with this edgedistill version") from exc


def latency_gates(current: dict, baseline: dict, limit: float, *, runs: int, burst: int,
                  warmup: int, rounds: int = 3) -> list[GateResult]:
    """One result per target both reports profiled: interleaved re-profile ratio current/baseline - 1."""
    from .profile import interleaved_ratio, profile_models
    from .target import availability

    cur_lat = current["models"]["deployed"].get("latency") or {}
    base_lat = baseline["models"]["deployed"].get("latency") or {}
    names = sorted(set(cur_lat) & set(base_lat))
    if not names:
        return [GateResult("latency_growth", limit, None, True, True, "no target was profiled in both reports")]
    cpath, bpath = verify_artifact(current), verify_artifact(baseline)  # never skipped: a missing file is refused
    out = []
    for name in names:
        gname = f"latency_growth[{name}]"
        try:
            target = target_of(current, name)
        except UserError as exc:
            out.append(GateResult(gname, limit, None, True, True, f"target {name}: {exc.message}"))
            continue
        ok, why = availability(target)
        if not ok:
            out.append(GateResult(gname, limit, None, True, True, f"target not usable here: {why}"))
            continue
        lat = cur_lat[name]
        stats = profile_models({"baseline": bpath, "current": cpath}, target, batch=int(lat.get("batch", 1)),
                               threads=lat.get("threads"), runs=runs, warmup=warmup, burst=burst, rounds=rounds,
                               op_profile_runs=0, sequence=lat.get("sequence"))
        r = interleaved_ratio(stats["baseline"]["samples_ms"], stats["current"]["samples_ms"], burst)
        g = r["ratio"] - 1
        passed = g <= limit
        out.append(GateResult(gname, limit, g, passed, detail=(
            f"current/baseline {r['ratio']:.3f}x (median of burst-minimum ratios over {r['bursts']} interleaved "
            f"bursts in {stats['current']['rounds']} rounds of fresh processes, IQR {r['q25']:.3f}-{r['q75']:.3f}; "
            f"burst medians {r['ratio_median']:.3f}x; p50 {stats['baseline']['p50_ms']:.3f} -> "
            f"{stats['current']['p50_ms']:.3f} ms), "
            f"{g:+.1%} ({'<=' if passed else '>'} limit {limit:+.1%})")))
    return out


def write_junit(rep: GateReport, path: str | Path) -> Path:
    """JUnit XML: one testcase per gate, so CI UIs show each regression with its numbers."""
    suite = ET.Element("testsuite", name="edgedistill.check", tests=str(len(rep.results)),
                       failures=str(sum(not r.passed and not r.skipped for r in rep.results)),
                       skipped=str(sum(r.skipped for r in rep.results)), errors="0")
    for r in rep.results:
        case = ET.SubElement(suite, "testcase", classname="edgedistill.gate", name=r.name, time="0")
        if r.skipped:
            ET.SubElement(case, "skipped", message=r.detail)
        elif not r.passed:
            ET.SubElement(case, "failure", message=r.detail, type="regression").text = (
                f"{r.name}: value {r.value} exceeds limit {r.limit}\n{r.detail}")
        else:
            ET.SubElement(case, "system-out").text = r.detail
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return write_text(path, '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n")
