"""The CI examples in docs/ are safe to paste: a failed main run never becomes a baseline, the baseline's
bundle travels with its report, the gate is strict, reads the policy from the base branch, and keeps JUnit."""

from __future__ import annotations

from pathlib import Path

import yaml

from edgedistill.gate_policy import load_policy_file

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _steps(doc: dict) -> dict[str, dict]:
    return {s.get("name", s.get("uses", "")): s for s in doc["jobs"]["compress-and-gate"]["steps"]}


def test_github_actions_example():
    doc = yaml.safe_load((DOCS / "ci-example.yml").read_text())
    steps = _steps(doc)
    text = (DOCS / "ci-example.yml").read_text()
    assert "|| test $? -eq 1" not in text  # used to let a main run whose gates failed become the baseline
    store = next(s for n, s in steps.items() if n.startswith("Store this main run"))
    assert store["if"] == "success() && github.event_name == 'push'"
    assert store["with"]["name"] == "edgedistill-baseline"
    assert {"runs/current/report.json", "runs/current/bundle/"} <= set(store["with"]["path"].split())
    fetch = next(s for n, s in steps.items() if n.startswith("Fetch the baseline"))
    assert "--status success" in fetch["run"] and "--name edgedistill-baseline" in fetch["run"]
    gate = steps["Gate against the baseline"]["run"]
    assert "--strict" in gate and "--policy" in gate and "--junit" in gate
    policy = next(s for n, s in steps.items() if n.startswith("The CI's policy"))["run"]
    assert policy.startswith('git show "origin/$BASE_REF:')  # the base branch's copy, not the PR's
    compress = steps["Compress"]["run"]
    assert '"$EVENT" != pull_request' in compress and "${{" not in compress  # no expression in the script
    assert doc["permissions"] == {"contents": "read", "actions": "read"}
    last = next(s for n, s in steps.items() if n.startswith("The run's own gates"))
    assert "steps.compress.outputs.rc != '0'" in last["if"]


def test_gitlab_example():
    doc = yaml.safe_load((DOCS / "ci-example.gitlab-ci.yml").read_text())
    base, gate = doc["baseline"], doc["gate"]
    assert base["artifacts"]["when"] == "on_success"
    assert {"runs/current/report.json", "runs/current/bundle/"} <= set(base["artifacts"]["paths"])
    assert not any("||" in line for line in base["script"])  # any non-zero exit fails the baseline job
    script = "\n".join(gate["script"])
    assert "jobs/artifacts/$CI_DEFAULT_BRANCH/download?job=baseline" in script
    assert "--strict" in script and "--policy policy.yml" in script and 'FETCH_HEAD:' in script
    assert gate["artifacts"]["when"] == "always" and gate["artifacts"]["reports"]["junit"] == "runs/current/gate.xml"


def test_policy_example_loads():
    pol = load_policy_file(DOCS / "ci-policy.yml")
    assert pol["strict"] is True and set(pol["gates"]) == {"accuracy_drop", "size_growth", "latency_growth"}
