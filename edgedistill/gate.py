"""The CI gate: compare a run's report.json against a baseline's and fail on regressions only.

What it trusts from the candidate: nothing it can measure itself, and no tolerance at all.
- **Tolerances** come from the baseline's recipe or the CI's policy file, with defaults for metric, size and
  latency (gate_policy.py); the candidate's own `gates:` are ignored, so a change cannot relax its own review.
- **Size** is measured from the candidate's file on disk (external data included), not read from its report.
- **Latency** is never read from the reports: milliseconds measured on two machines (or two moments on one
  shared machine) differ by 20–50 % with no change to the model. Both artifacts are re-profiled here, side by
  side, in interleaved bursts (a fresh process each, renewed over 3 rounds: one process can run an identical
  file 10-25% slower for its whole life), on every target the *baseline* profiled, with the baseline's batch
  size and threads; the gate compares current/baseline as the median over bursts of the ratio of burst
  minima (profile/compare.py says why minima). A target that cannot run here is reported; in strict mode it
  fails the check.
- **The metric** is read from the report (the gate has no data set), tied to the file by its sha256 and
  checked against the metric's range (an accuracy lies in [0, 1]).

The gate fails closed: a report without a finite deployed metric or a positive size, an artifact that is
missing or is not the file the report was measured on (its sha256, recorded in report.json), or two reports
of different tasks or metrics are bad input (exit 2), never a skipped check that passes. Every comparison is
printed with its limit and where the limit came from, including the ones that are not gated.
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
from .gate_policy import GATE_KEYS, Policy, metric_range, resolve_policy
from .io import file_size_mb, sha256_file, write_text

if TYPE_CHECKING:
    from .target import Target

__all__ = ["GATE_KEYS", "GateReport", "GateResult", "check", "load_report", "write_junit", "write_junit_error"]
EPS = 1e-12


@dataclass
class GateResult:
    """One comparison. `gated` False: printed for the record, no limit applies; `skipped`: could not be made."""

    name: str
    limit: float | None
    value: float | None
    passed: bool
    skipped: bool = False
    detail: str = ""
    source: str = ""
    gated: bool = True

    def line(self) -> str:
        word = "INFO" if not self.gated else "SKIP" if self.skipped else ("PASS" if self.passed else "FAIL")
        return f"{word} {self.name}: {self.detail}" + (f" [limit from {self.source}]" if self.source and self.gated
                                                         else "")


@dataclass
class GateReport:
    results: list[GateResult] = field(default_factory=list)
    tolerances: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    strict: bool = False

    @property
    def passed(self) -> bool:
        return all(r.passed or r.skipped or not r.gated for r in self.results)

    @property
    def failures(self) -> list[GateResult]:
        return [r for r in self.results if r.gated and not r.passed and not r.skipped]

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "strict": self.strict, "tolerances": self.tolerances,
                "tolerance_sources": self.sources, "gates": [asdict(r) for r in self.results]}


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


def _metric_ranges(current: Mapping, baseline: Mapping) -> list[GateResult]:
    """A metric outside its range (accuracy 2.0, 1e308) is not evidence: the candidate's fails the check, a
    baseline's is bad input."""
    name = (baseline.get("metric") or {}).get("name")
    bounds = metric_range(name)
    if bounds is None:
        return [GateResult("metric_range", None, current["models"]["deployed"]["metric"], True, gated=False,
                           detail=f"{name}: no known range, not checked")]
    lo, hi = bounds
    bm = baseline["models"]["deployed"]["metric"]
    if not lo <= bm <= hi:
        raise UserError(f"models.deployed.metric: {name} {bm!r:.30} is outside [{lo:g}, {hi:g}]",
                        where=baseline["_path"], fix="pass the report of a real run as the baseline")
    cm = current["models"]["deployed"]["metric"]
    ok = lo <= cm <= hi
    return [GateResult("metric_range", None, cm, ok, source="the metric's definition",
                       detail=f"{name} {cm:.6g} {'lies in' if ok else 'is outside'} [{lo:g}, {hi:g}]")]


def check(current: dict, baseline: dict, *, overrides: Mapping[str, float | None] | None = None,
          policy: Policy | None = None, policy_file: Mapping[str, Any] | None = None, strict: bool | None = None,
          runs: int = 300, burst: int = 10, warmup: int = 20, rounds: int = 3,
          allow_different_task: bool = False) -> GateReport:
    """Compare `current` against `baseline` under the baseline's (or the policy's) tolerances.

    Latency is re-measured here and size measured from the files (see the module docstring)."""
    if not allow_different_task:
        same_task(current, baseline)
    cpath, bpath = verify_artifact(current), verify_artifact(baseline)
    pol = policy or resolve_policy(baseline, policy_file, overrides, strict=strict)
    tol, src = pol.limits, pol.sources
    rep = GateReport(tolerances=dict(tol), sources=dict(src), strict=pol.strict)
    cur, base = current["models"]["deployed"], baseline["models"]["deployed"]
    higher = bool((baseline.get("metric") or {}).get("higher_is_better", True))
    mname = (baseline.get("metric") or {}).get("name", "metric")
    cm, bm = cur["metric"], base["metric"]
    rep.results += _metric_ranges(current, baseline)

    lim = tol["accuracy_drop"]
    drop = (bm - cm) if higher else (cm - bm)
    ok = drop <= lim + EPS
    rep.results.append(GateResult("accuracy_drop", lim, drop, ok, source=src["accuracy_drop"], detail=(
        f"{mname} {bm:.4f} -> {cm:.4f}, drop {drop:+.4f} ({'<=' if ok else '>'} limit {lim:.4f})")))

    word = "minimum" if higher else "maximum"
    if "min_metric" in tol:
        lim = tol["min_metric"]
        ok = cm >= lim - EPS if higher else cm <= lim + EPS
        rep.results.append(GateResult("min_metric", lim, cm, ok, source=src["min_metric"], detail=(
            f"{mname} {cm:.4f} {'meets' if ok else 'misses'} the {word} {lim:.4f} "
            f"({'>=' if ok == higher else '<'} limit)")))
    else:
        rep.results.append(GateResult("min_metric", None, cm, True, gated=False, detail=(
            f"{mname} {cm:.4f} (not gated: no {word} set by the baseline's recipe, the policy or the command line)")))

    rep.results.append(_size_gate(cur, base, cpath, bpath, tol["size_growth"], src["size_growth"]))
    rep.results.extend(latency_gates(current, baseline, tol["latency_growth"], runs=runs, burst=burst, rounds=rounds,
                                     warmup=warmup, strict=pol.strict, source=src["latency_growth"]))
    return rep


def _size_gate(cur: Mapping, base: Mapping, cpath: Path, bpath: Path, lim: float, source: str) -> GateResult:
    """Sizes measured from the two files (external data included); a report's own size_mb is only quoted."""
    cs, bs = file_size_mb(cpath), file_size_mb(bpath)
    g = cs / bs - 1 if bs > 0 else math.inf
    ok = g <= lim + EPS
    claim = cur.get("size_mb")
    note = (f"; the candidate's report claims {claim:.3f} MB" if isinstance(claim, (int, float))
            and abs(claim - cs) > 0.01 * cs + 1e-6 else "")
    return GateResult("size_growth", lim, g, ok, source=source, detail=(
        f"{bs:.3f} MB -> {cs:.3f} MB measured on disk, {g:+.1%} ({'<=' if ok else '>'} limit {lim:+.1%}){note}"))


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


def _positive_int(value: Any, what: str, where: str, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{what}: expected a positive integer, got {value!r:.40}", where=where,
                        fix="pass the report of a real run as the baseline")
    return value


def latency_gates(current: dict, baseline: dict, limit: float, *, runs: int, burst: int, warmup: int,
                  rounds: int = 3, strict: bool = False, source: str = "") -> list[GateResult]:
    """One result per target the baseline profiled: interleaved re-profile ratio current/baseline - 1.

    The targets, batch sizes and threads are the baseline's: a candidate whose report drops a target, or
    claims another batch size, is still timed the baseline's way. A target that cannot be measured here is a
    SKIP, or a FAIL in strict mode."""
    from .profile import interleaved_ratio, profile_models
    from .target import availability

    def unmeasured(name: str, why: str) -> GateResult:
        word = "cannot be measured here (strict mode: a configured latency gate must be measured)" if strict else \
            "not measured"
        return GateResult(name, limit, None, not strict, skipped=not strict, source=source,
                          detail=f"{word}: {why} (limit {limit:+.1%})")

    cur_lat = current["models"]["deployed"].get("latency") or {}
    base_lat = baseline["models"]["deployed"].get("latency") or {}
    if not base_lat:
        reasons = "; ".join(f"{t}: {(v or {}).get('reason')}" for t, v in (baseline.get("targets") or {}).items()
                            if isinstance(v, dict))
        return [unmeasured("latency_growth", "the baseline's report profiled no target"
                           + (f" ({reasons})" if reasons else ""))]
    cpath, bpath = verify_artifact(current), verify_artifact(baseline)  # never skipped: a missing file is refused
    out = []
    for name in sorted(base_lat):
        gname, entry = f"latency_growth[{name}]", base_lat[name]
        where = f"{baseline['_path']}: models.deployed.latency.{name}"
        if not isinstance(entry, dict):
            raise UserError("expected a mapping", where=where, fix="pass the report of a real run as the baseline")
        batch = _positive_int(entry.get("batch", 1), "batch", where)
        threads = _positive_int(entry.get("threads"), "threads", where, optional=True)
        sequence = _positive_int(entry.get("sequence"), "sequence", where, optional=True)
        try:
            target = target_of(baseline, name)
        except UserError as exc:
            out.append(unmeasured(gname, f"target {name}: {exc.message}"))
            continue
        ok, why = availability(target)
        if not ok:
            out.append(unmeasured(gname, f"target {name} is not usable on this machine: {why}"))
            continue
        stats = profile_models({"baseline": bpath, "current": cpath}, target, batch=batch, threads=threads,
                               runs=runs, warmup=warmup, burst=burst, rounds=rounds, op_profile_runs=0,
                               sequence=sequence)
        r = interleaved_ratio(stats["baseline"]["samples_ms"], stats["current"]["samples_ms"], burst)
        g = r["ratio"] - 1
        passed = g <= limit
        missing = "" if name in cur_lat else "; the candidate's report has no entry for this target, re-measured anyway"
        out.append(GateResult(gname, limit, g, passed, source=source, detail=(
            f"current/baseline {r['ratio']:.3f}x at batch {batch} (median of burst-minimum ratios over "
            f"{r['bursts']} interleaved bursts in {stats['current']['rounds']} rounds of fresh processes, IQR "
            f"{r['q25']:.3f}-{r['q75']:.3f}; burst medians {r['ratio_median']:.3f}x; p50 "
            f"{stats['baseline']['p50_ms']:.3f} -> {stats['current']['p50_ms']:.3f} ms), "
            f"{g:+.1%} ({'<=' if passed else '>'} limit {limit:+.1%}){missing}")))
    return out


def _junit(cases: list[ET.Element], *, failures: int = 0, errors: int = 0, skipped: int = 0) -> str:
    suite = ET.Element("testsuite", name="edgedistill.check", tests=str(len(cases)), failures=str(failures),
                       errors=str(errors), skipped=str(skipped))
    suite.extend(cases)
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(rep: GateReport, path: str | Path) -> Path:
    """JUnit XML: one testcase per comparison, so CI UIs show each regression with its numbers and limit."""
    cases = []
    for r in rep.results:
        case = ET.Element("testcase", classname="edgedistill.gate", name=r.name, time="0")
        text = r.detail + (f"\nlimit from {r.source}" if r.source and r.gated else "")
        if r.skipped or not r.gated:
            ET.SubElement(case, "skipped", message=r.detail)
        elif not r.passed:
            ET.SubElement(case, "failure", message=r.detail, type="regression").text = text
        else:
            ET.SubElement(case, "system-out").text = text
        cases.append(case)
    return write_text(path, _junit(cases, failures=len(rep.failures),
                                   skipped=sum(r.skipped or not r.gated for r in rep.results)))


def write_junit_error(message: str, path: str | Path, kind: str = "bad input") -> Path:
    """JUnit XML for a check that could not compare (exit 2 or 3): one error testcase carrying the message."""
    case = ET.Element("testcase", classname="edgedistill.gate", name="check", time="0")
    ET.SubElement(case, "error", message=message.splitlines()[0][:500], type=kind).text = message
    return write_text(path, _junit([case], errors=1))
