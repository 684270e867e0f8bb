"""The CI gate: regressions fail with their numbers, identical artifacts pass, latency is re-measured."""

from __future__ import annotations

import copy
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from edgedistill import gate
from edgedistill.errors import UserError
from edgedistill.io import sha256_file
from edgedistill.profile.synthetic import synthetic_mlp
from edgedistill.target import availability, load_target

from .conftest import run_cli

TARGET = next((n for n in ("x86_vnni", "x86_avx2") if availability(load_target(n))[0]), None)
needs_cpu_target = pytest.mark.skipif(TARGET is None, reason="no built-in x86 target usable on this CPU")


def _report(metric: float, size_mb: float, gates: dict, *, target: str | None = TARGET, p50: float = 1.0) -> dict:
    lat = {"p50_ms": p50, "p90_ms": p50, "p99_ms": p50, "mean_ms": p50, "std_ms": 0.0, "batch": 8, "threads": 1,
           "runs": 10}
    model = {"params": 10, "size_mb": size_mb, "metric": metric, "latency": {target: lat} if target else {}}
    return {"schema_version": 1, "recipe": {"name": "t", "sha256": "0" * 64, "resolved": {"gates": gates}},
            "environment": {"python": "3", "torch": "x", "onnxruntime": "x", "cpu": "x"}, "task": "classification",
            "metric": {"name": "accuracy", "higher_is_better": True},
            "models": {"teacher": copy.deepcopy(model), "student": copy.deepcopy(model),
                       "deployed": {**model, "path": "bundle/model.onnx", "metric_measured_on": "onnxruntime"}},
            "stages": [], "gates": [], "passed": True}


def _run(root: Path, name: str, onnx_file: Path | None, report: dict) -> Path:
    """A run folder: report.json and its artifact, whose sha256 the report records (unless the test set one).

    Without `onnx_file` the artifact is placeholder bytes of the report's size_mb (the gate measures the size
    from the file): only the latency gate loads it."""
    d = root / name
    (d / "bundle").mkdir(parents=True)
    artifact = d / "bundle" / "model.onnx"
    if onnx_file:
        shutil.copyfile(onnx_file, artifact)
    else:
        size = report["models"]["deployed"].get("size_mb")
        n = int(size * 1e6) if isinstance(size, (int, float)) and 0 < size < 100 else 64
        artifact.write_bytes(f"placeholder artifact of {name}".encode().ljust(n, b"."))
    report["models"]["deployed"].setdefault("sha256", sha256_file(artifact))
    (d / "report.json").write_text(json.dumps(report))
    return d / "report.json"


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    # width 1024 (~0.5 ms at batch 8): at width 384 (~0.08 ms, near ORT's per-call floor) the A-vs-A ratio
    # spread 0.90-1.04 over 20 trials. The slowed copy measures 1.5-1.6x.
    d = tmp_path_factory.mktemp("gate_models")
    return {"base": synthetic_mlp(d / "base.onnx", width=1024, depth=3),
            "same": synthetic_mlp(d / "same.onnx", width=1024, depth=3),  # identical content, another file
            "slow": synthetic_mlp(d / "slow.onnx", width=1024, depth=3, extra_ops=120)}


def _latency(rep: gate.GateReport) -> list[gate.GateResult]:
    return [r for r in rep.results if r.name.startswith("latency_growth")]


def _check(tmp_path, cur: dict, base: dict, cur_file=None, base_file=None, **kw) -> gate.GateReport:
    c = gate.load_report(_run(tmp_path, "cur", cur_file, cur), "CURRENT")
    b = gate.load_report(_run(tmp_path, "base", base_file, base), "--baseline")
    return gate.check(c, b, **kw)


def test_accuracy_and_size_gates_report_their_numbers(tmp_path):
    gates = {"accuracy_drop": 0.01, "size_growth": 0.05, "min_metric": 0.9}
    rep = _check(tmp_path, _report(0.93, 1.2, gates, target=None), _report(0.95, 1.0, gates, target=None))
    by = {r.name: r for r in rep.results}
    assert not rep.passed
    assert not by["accuracy_drop"].passed and by["accuracy_drop"].value == pytest.approx(0.02)
    assert "0.9500 -> 0.9300" in by["accuracy_drop"].detail
    assert not by["size_growth"].passed and by["size_growth"].value == pytest.approx(0.2)
    assert by["min_metric"].passed and by["metric_range"].passed
    assert by["accuracy_drop"].source == by["size_growth"].source == "the baseline's recipe"


def test_within_tolerance_passes_and_cli_overrides_win(tmp_path):
    gates = {"accuracy_drop": 0.01, "size_growth": 0.05}
    rep = _check(tmp_path, _report(0.945, 1.04, gates, target=None), _report(0.95, 1.0, gates, target=None))
    assert rep.passed and not rep.failures
    rep = _check(tmp_path / "o", _report(0.945, 1.04, gates, target=None), _report(0.95, 1.0, gates, target=None),
                 overrides={"accuracy_drop": 0.001})
    assert not rep.passed and rep.tolerances["accuracy_drop"] == 0.001


def test_lower_is_better_metric(tmp_path):
    cur, base = _report(0.30, 1, {"accuracy_drop": 0.05}, target=None), _report(0.20, 1, {}, target=None)
    cur["metric"]["higher_is_better"] = base["metric"]["higher_is_better"] = False
    rep = _check(tmp_path, cur, base)
    (r,) = [r for r in rep.results if r.name == "accuracy_drop"]
    assert not rep.passed and r.value == pytest.approx(0.10) and r.source == "default"


# The tests gate at 20%, not the 10% a recipe would use: they run on shared machines, and a test asserts a
# wide, robust ratio. What the 10% gate's A-vs-A spread is, with and without rounds of fresh processes, is
# measured by benchmarks/bench_profiler.py (docs/profiling.md, "Measured"). CI once saw one process pair at
# 0.882x for identical files, over all 30 bursts: a per-process draw, which rounds now outvote.
LIMIT = 0.20


@needs_cpu_target
@pytest.mark.slow
def test_gate_flags_a_slowed_model_every_time(tmp_path, onnx_files):
    for i in range(3):
        rep = _check(tmp_path / str(i), _report(0.95, 1.0, {"latency_growth": LIMIT}),
                     _report(0.95, 1.0, {"latency_growth": LIMIT}), onnx_files["slow"], onnx_files["base"])
        (r,) = _latency(rep)
        assert r.name == f"latency_growth[{TARGET}]"
        assert not r.passed and r.value > LIMIT, r.detail
        assert "interleaved" in r.detail


@needs_cpu_target
@pytest.mark.slow
def test_gate_passes_an_identical_model_every_time(tmp_path, onnx_files):
    for i in range(5):
        # the reports' own milliseconds differ 3x (another machine): they must be ignored
        rep = _check(tmp_path / str(i), _report(0.95, 1.0, {"latency_growth": LIMIT}, p50=3.0),
                     _report(0.95, 1.0, {"latency_growth": LIMIT}, p50=1.0), onnx_files["same"], onnx_files["base"])
        (r,) = _latency(rep)
        assert r.passed and abs(r.value) < LIMIT, r.detail
        assert "3 rounds of fresh processes" in r.detail


def test_missing_or_replaced_artifact_is_refused_not_skipped(tmp_path):
    """Used to skip the latency gate (and pass) when the artifact was missing; a replaced file went unnoticed."""
    gates = {"accuracy_drop": 0.1, "latency_growth": 0.1}
    cur = gate.load_report(_run(tmp_path, "cur", None, _report(0.95, 1.0, gates)), "CURRENT")
    base = gate.load_report(_run(tmp_path, "base", None, _report(0.95, 1.0, gates)), "--baseline")
    (tmp_path / "cur" / "bundle" / "model.onnx").write_bytes(b"another model")  # a later run replaced it
    with pytest.raises(UserError, match="not the file this report was measured on") as err:
        gate.check(cur, base)
    assert "models.deployed.sha256" in err.value.where
    (tmp_path / "cur" / "bundle" / "model.onnx").unlink()
    with pytest.raises(UserError, match="is missing"):
        gate.check(cur, base)
    del base["models"]["deployed"]["sha256"]  # a report that cannot be tied to any file
    with pytest.raises(UserError, match="sha256 is missing"):
        gate.check(base, base)


@pytest.mark.parametrize(("field", "value"), [
    ("metric", None), ("metric", float("inf")), ("metric", float("nan")), ("metric", "missing"),
    ("size_mb", 0), ("size_mb", -1.0), ("size_mb", None), ("size_mb", float("inf")), ("size_mb", "missing"),
])
def test_a_report_without_evidence_is_refused(tmp_path, field, value):
    """check used to exit 0 when the deployed metric was null/Infinity or the size missing or 0 (gates skipped)."""
    rep = _report(0.95, 1.0, {"accuracy_drop": 0.1, "size_growth": 0.1, "min_metric": 0.5}, target=None)
    if value == "missing":
        del rep["models"]["deployed"][field]
    else:
        rep["models"]["deployed"][field] = value
    path = _run(tmp_path, "cur", None, rep)
    with pytest.raises(UserError, match=f"models.deployed.{field}"):
        gate.load_report(path, "CURRENT")


def test_reports_of_different_tasks_are_not_compared_unless_told(tmp_path):
    cur, base = _report(0.9, 1.0, {}, target=None), _report(0.95, 1.0, {"accuracy_drop": 0.5}, target=None)
    cur["task"], cur["metric"] = "text_embedding", {"name": "spearman", "higher_is_better": True}
    with pytest.raises(UserError, match="different things"):
        _check(tmp_path, copy.deepcopy(cur), copy.deepcopy(base))
    rep = _check(tmp_path / "told", cur, base, allow_different_task=True)
    assert rep.passed and "accuracy_drop" in {r.name for r in rep.results}


def test_bad_inputs(tmp_path):
    with pytest.raises(UserError, match="not found"):
        gate.load_report(tmp_path / "nope.json", "--baseline")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(UserError, match="JSON"):
        gate.load_report(bad, "CURRENT")
    bad.write_text('{"schema_version": 7}')
    with pytest.raises(UserError, match="schema_version"):
        gate.load_report(bad, "CURRENT")
    with pytest.raises(UserError, match="accuracy_drop"):
        _check(tmp_path / "x", _report(1, 1, {}, target=None), _report(1, 1, {"accuracy_drop": "lots"}, target=None))
    with pytest.raises(UserError, match="finite"):  # the baseline's own limits must be real numbers too
        _check(tmp_path / "y", _report(1, 1, {}, target=None),
               _report(1, 1, {"accuracy_drop": float("inf")}, target=None))


@pytest.mark.slow  # each CLI start imports torch (~4 s here)
def test_cli_exit_codes_and_junit(tmp_path):
    gates = {"accuracy_drop": 0.01, "size_growth": 0.05}
    cur = _run(tmp_path, "cur", None, _report(0.90, 1.0, gates, target=None))
    base = _run(tmp_path, "base", None, _report(0.95, 1.0, gates, target=None))
    junit = tmp_path / "out" / "gate.xml"
    proc = run_cli("check", str(cur), "--baseline", str(base), "--junit", str(junit))
    assert proc.returncode == 1, proc.stderr
    assert "FAIL accuracy_drop" in proc.stdout and "0.0500" in proc.stdout and "PASS size_growth" in proc.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == "1" and suite.get("errors") == "0"
    assert {c.get("name") for c in suite} >= {"accuracy_drop", "size_growth", "min_metric", "metric_range",
                                              "latency_growth"}
    failure = suite.find("testcase[@name='accuracy_drop']/failure")
    assert failure is not None and "0.9500 -> 0.9000" in failure.get("message")
    proc = run_cli("check", str(cur.parent), "--baseline", str(base), "--accuracy-drop", "0.1", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["passed"] is True
    proc = run_cli("check", str(cur), "--baseline", str(tmp_path / "missing.json"))
    assert proc.returncode == 2 and "--baseline" in proc.stderr and "Traceback" not in proc.stderr


@needs_cpu_target
def test_custom_target_stored_in_the_report_is_re_profiled(tmp_path, onnx_files):
    """A target that is not a built-in (a user's YAML) travels in report.json, so the gate can still time on it."""
    spec = {**load_target(TARGET).model_dump(mode="json"), "name": "my_box", "description": "a user's own target"}
    reports = []
    for _ in range(2):
        rep = _report(0.95, 1.0, {"latency_growth": 0.10}, target="my_box")
        rep["targets"] = {"my_box": {"available": True, "reason": "available", "spec": spec}}
        reports.append(rep)
    (r,) = _latency(_check(tmp_path, reports[0], reports[1], onnx_files["slow"], onnx_files["base"]))
    assert r.name == "latency_growth[my_box]" and not r.skipped
    assert not r.passed and r.value > 0.10, r.detail
    del reports[1]["targets"]  # without the stored spec the name means nothing here: skipped, with the reason
    (r,) = _latency(_check(tmp_path / "again", reports[0], reports[1], onnx_files["slow"], onnx_files["base"]))
    assert r.skipped and "my_box" in r.detail


def test_invalid_stored_target_spec_skips_latency_with_the_reason(tmp_path, onnx_files):
    reports = []
    for _ in range(2):
        rep = _report(0.95, 1.0, {"latency_growth": 0.10}, target="my_box")
        rep["targets"] = {"my_box": {"available": True, "spec": {"name": "my_box", "from_a_newer_version": 1}}}
        reports.append(rep)
    (r,) = _latency(_check(tmp_path, reports[0], reports[1], onnx_files["slow"], onnx_files["base"]))
    assert r.skipped and "my_box" in r.detail and "from_a_newer_version" in r.detail


def test_malformed_report_fields_are_user_errors(tmp_path):
    for i, (field, mutate) in enumerate((("recipe", lambda r: r.update(recipe="x")),
                                         ("models.deployed.metric", lambda r: r["models"]["deployed"].update(metric="0.9")),
                                         ("models.deployed.size_mb", lambda r: r["models"]["deployed"].update(size_mb=True)),
                                         ("metric", lambda r: r.update(metric="accuracy")))):
        rep = _report(0.9, 1.0, {"accuracy_drop": 0.1}, target=None)
        mutate(rep)
        with pytest.raises(UserError, match=field):
            gate.load_report(_run(tmp_path / str(i), "cur", None, rep), "CURRENT")


def test_a_real_run_ties_its_report_to_its_artifact(fast_run, tmp_path):
    """A fresh run killed early into an existing --out used to leave the old report passing `check`."""
    run = tmp_path / "run"
    shutil.copytree(fast_run, run)
    report = json.loads((run / "report.json").read_text())
    assert report["models"]["deployed"]["sha256"] == sha256_file(run / "bundle" / "model.onnx")
    cur = gate.load_report(run, "CURRENT")
    assert {r.name for r in gate.check(cur, cur).results} >= {"accuracy_drop"}
    shutil.copyfile(run / "compare" / "teacher.onnx", run / "bundle" / "model.onnx")  # another run's file
    proc = run_cli("check", str(run), "--baseline", str(fast_run))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "model.onnx is not the file this report was measured on" in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------ issue 18: the gate trusts the baseline, not the candidate
def test_a_candidate_cannot_loosen_its_own_gates(tmp_path):
    """A branch that set gates.accuracy_drop=0.6 and min_metric=0.4 used to pass with a model at 0.47."""
    loose = {"accuracy_drop": 0.6, "min_metric": 0.4, "size_growth": 100.0, "latency_growth": 100.0}
    rep = _check(tmp_path, _report(0.4722, 1.0, loose, target=None),
                 _report(0.95, 1.0, {"accuracy_drop": 0.03, "min_metric": 0.95}, target=None))
    by = {r.name: r for r in rep.results}
    assert not rep.passed and {r.name for r in rep.failures} == {"accuracy_drop", "min_metric"}
    assert by["accuracy_drop"].limit == 0.03 and by["min_metric"].limit == 0.95
    assert "misses the minimum 0.9500" in by["min_metric"].detail and "exceeds" not in by["min_metric"].detail
    # a baseline without gates still gets the defaults, never the candidate's
    rep = _check(tmp_path / "d", _report(0.4722, 1.0, {"accuracy_drop": float("inf")}, target=None),
                 _report(0.95, 1.0, {}, target=None))
    assert [r.name for r in rep.failures] == ["accuracy_drop"] and rep.tolerances["accuracy_drop"] == 0.01


def test_size_is_measured_from_the_file_not_the_report(tmp_path):
    """A 1.754 MB file claimed as 0.008 MB used to pass --size-growth 0.1; a 3.9x larger one passed without gates."""
    cur, base = _report(0.95, 1.754, {}, target=None), _report(0.95, 0.45, {}, target=None)
    cur_path, base_path = _run(tmp_path, "cur", None, cur), _run(tmp_path, "base", None, base)
    lie = json.loads(cur_path.read_text())
    lie["models"]["deployed"]["size_mb"] = 0.008
    cur_path.write_text(json.dumps(lie))
    rep = gate.check(gate.load_report(cur_path, "CURRENT"), gate.load_report(base_path, "--baseline"),
                     overrides={"size_growth": 0.1})
    (size,) = [r for r in rep.results if r.name == "size_growth"]
    assert not size.passed and size.value == pytest.approx(1.754 / 0.45 - 1, rel=1e-3)
    assert "claims 0.008 MB" in size.detail and size.source == "--size-growth"


@pytest.mark.parametrize("metric", [2.0, 1e308, -0.5])
def test_a_metric_outside_its_range_fails(tmp_path, metric):
    rep = _check(tmp_path, _report(metric, 1.0, {}, target=None), _report(0.95, 1.0, {}, target=None))
    assert "metric_range" in {r.name for r in rep.failures}
    with pytest.raises(UserError, match="outside"):  # a baseline like that is not a baseline
        _check(tmp_path / "b", _report(0.95, 1.0, {}, target=None), _report(metric, 1.0, {}, target=None))


def test_every_comparison_is_printed_with_its_limit_even_ungated_ones(tmp_path):
    rep = _check(tmp_path, _report(0.95, 1.0, {}, target=None), _report(0.95, 1.0, {}, target=None))
    lines = [r.line() for r in rep.results]
    assert rep.passed and any(x.startswith("INFO min_metric") and "not gated" in x for x in lines), lines
    assert any(x.startswith("SKIP latency_growth") and "profiled no target" in x and "+10.0%" in x for x in lines)
    assert rep.tolerances == {"accuracy_drop": 0.01, "size_growth": 0.10, "latency_growth": 0.10}


def test_policy_file_wins_and_is_validated(tmp_path):
    from edgedistill.gate_policy import load_policy_file

    pol = tmp_path / "policy.yml"
    pol.write_text("gates: {accuracy_drop: 0.2, min_metric: 0.5}\nstrict: true\n")
    rep = _check(tmp_path / "a", _report(0.80, 1.0, {}, target=None),
                 _report(0.95, 1.0, {"accuracy_drop": 0.01}, target=None), policy_file=load_policy_file(pol))
    by = {r.name: r for r in rep.results}
    assert by["accuracy_drop"].passed and by["accuracy_drop"].source == "policy policy.yml"
    assert rep.strict and not by["latency_growth"].passed  # strict: a latency gate that was not measured fails
    for text, word in (("gates: {accuracy_drop: .inf}", "finite"), ("gates: {accuracy_drop: -1}", "negative"),
                       ("gates: {acuracy_drop: 0.1}", "did you mean"), ("strict: maybe", "true or false"),
                       ("tolerance: 1", "unknown key")):
        pol.write_text(text)
        with pytest.raises(UserError, match=word):
            load_policy_file(pol)


def test_strict_mode_fails_an_unmeasurable_latency_gate(tmp_path):
    """A latency gate whose target cannot run here used to be skipped and the check passed."""
    def pair(sub):
        cur, base = _report(0.95, 1.0, {}, target="arm64_mobile"), _report(0.95, 1.0, {}, target="arm64_mobile")
        return sub, cur, base

    rep = _check(*pair(tmp_path / "lax"))
    (lat,) = _latency(rep)
    assert rep.passed and lat.skipped and "aarch64" in lat.detail
    rep = _check(*pair(tmp_path / "strict"), strict=True)
    (lat,) = _latency(rep)
    assert not rep.passed and not lat.passed and not lat.skipped and "strict" in lat.detail


def test_the_baseline_decides_batch_and_targets(tmp_path):
    base = _report(0.95, 1.0, {})
    base["models"]["deployed"]["latency"][TARGET or "x86_vnni"]["batch"] = 0
    with pytest.raises(UserError, match="batch: expected a positive integer"):
        _check(tmp_path, _report(0.95, 1.0, {}), base)


@pytest.mark.slow
def test_cli_junit_for_every_exit_code(tmp_path):
    junit = tmp_path / "gate.xml"
    cur = _run(tmp_path, "cur", None, _report(0.4722, 1.0, {"accuracy_drop": 0.6, "min_metric": 0.4}, target=None))
    base = _run(tmp_path, "base", None, _report(0.95, 1.0, {"min_metric": 0.95}, target=None))
    proc = run_cli("check", str(cur), "--baseline", str(base), "--junit", str(junit))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL min_metric: accuracy 0.4722 misses the minimum 0.9500" in proc.stdout
    assert "tolerances never come from CURRENT" in proc.stdout
    failure = ET.parse(junit).getroot().find("testsuite/testcase[@name='min_metric']/failure")
    assert "misses the minimum 0.9500" in failure.text and "exceeds" not in failure.text
    (base.parent / "bundle" / "model.onnx").unlink()  # the baseline's bundle did not travel: exit 2, JUnit still
    junit.unlink()
    proc = run_cli("check", str(cur), "--baseline", str(base), "--junit", str(junit))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("errors") == "1" and "is missing" in suite.find("testcase/error").get("message")
    phone = {}  # a latency gate on a target this machine cannot run: SKIP, or with --strict a FAIL (exit 1)
    for name in ("pc", "pb"):
        phone[name] = _run(tmp_path, name, None, _report(0.95, 1.0, {"latency_growth": 0.1}, target="arm64_mobile"))
    proc = run_cli("check", str(phone["pc"]), "--baseline", str(phone["pb"]), "--junit", str(junit))
    assert proc.returncode == 0 and "SKIP latency_growth[arm64_mobile]" in proc.stdout, proc.stdout + proc.stderr
    proc = run_cli("check", str(phone["pc"]), "--baseline", str(phone["pb"]), "--strict", "--junit", str(junit))
    assert proc.returncode == 1 and "FAIL latency_growth[arm64_mobile]" in proc.stdout, proc.stdout + proc.stderr
    assert ET.parse(junit).getroot().find("testsuite/testcase[@name='latency_growth[arm64_mobile]']/failure") is not None
    proc = run_cli("check", str(cur), "--baseline", str(base), "--runs", "many", "--junit", str(junit))
    assert proc.returncode == 2 and "many" in ET.parse(junit).getroot().find("testsuite/testcase/error").get("message")
    proc = run_cli("check", str(cur), "--baseline", str(base), "--policy", str(tmp_path / "nope.yml"),
                   "--junit", str(junit))
    assert proc.returncode == 2 and "policy file not found" in ET.parse(junit).getroot().find(
        "testsuite/testcase/error").get("message")


@needs_cpu_target
@pytest.mark.slow
def test_larger_slower_candidate_without_gates_or_latency_entry_fails(tmp_path, onnx_files):
    """3.9x larger and 1.9x slower used to pass with no gates set; a report that dropped its latency entry: SKIP."""
    big = synthetic_mlp(tmp_path / "big.onnx", width=2048, depth=3)
    cur = _report(0.95, 1.0, {}, target=None)  # no latency entry at all, no gates
    rep = _check(tmp_path, cur, _report(0.95, 1.0, {}), big, onnx_files["base"])
    assert {r.name for r in rep.failures} == {"size_growth", f"latency_growth[{TARGET}]"}, [r.line() for r in rep.results]
    (lat,) = _latency(rep)
    assert "re-measured anyway" in lat.detail and lat.source == "default"
