"""report.html: self-contained, complete, and the plots show what the numbers say."""

from __future__ import annotations

import copy
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from edgedistill.report.html import pareto_front, render_html, write_html


def _lat(p50: float, n: int = 100) -> dict:
    samples = [p50 * (1 + 0.01 * ((i * 37) % 11 - 5)) for i in range(n)]
    return {"p50_ms": p50, "p90_ms": p50 * 1.05, "p99_ms": p50 * 1.1, "mean_ms": p50, "std_ms": 0.01 * p50,
            "batch": 1, "threads": 1, "runs": n, "samples_ms": samples}


def _report() -> dict:
    def model(metric, size, p50):
        return {"params": 100, "size_mb": size, "metric": metric,
                "latency": {"x86_vnni": _lat(p50), "x86_avx2": _lat(p50 * 1.4)}}
    return {"schema_version": 1, "recipe": {"name": "mobile <demo>", "sha256": "c" * 64, "resolved": {}},
            "environment": {"cpu": "Test CPU", "torch": "2.13.0", "onnxruntime": "1.x"}, "task": "classification",
            "metric": {"name": "accuracy", "higher_is_better": True},
            "models": {"teacher": model(0.98, 4.0, 2.0), "student": model(0.96, 1.0, 0.5),
                       "deployed": {**model(0.955, 0.3, 0.3), "path": "bundle/model.onnx",
                                    "metric_measured_on": "onnxruntime"}},
            "targets": {"arm64_mobile": {"available": False, "reason": "needs an aarch64 CPU"}},
            "stages": [{"kind": "distill", "seconds": 12.5, "metric_after": 0.96},
                       {"kind": "quantize", "seconds": 2.0, "metric_after": 0.955}],
            "gates": [{"name": "accuracy_drop", "limit": 0.03, "value": 0.025, "passed": True}], "passed": True}


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _parse(text: str) -> list[tuple[str, dict]]:
    p = _Collect()
    p.feed(text)
    return p.tags


def test_pareto_front():
    pts = [("teacher", 2.0, 0.98), ("student", 0.5, 0.96), ("deployed", 0.3, 0.955), ("bad", 1.0, 0.90)]
    assert pareto_front(pts) == ["deployed", "student", "teacher"]
    assert pareto_front(pts, higher_is_better=False) == ["deployed", "bad"]
    assert pareto_front([("a", 1.0, 0.5), ("b", 1.0, 0.7)]) == ["b"]


def test_page_is_self_contained_and_complete(tmp_path):
    path = write_html(_report(), tmp_path / "report.html")
    text = path.read_text()
    tags = _parse(text)
    names = [t for t, _ in tags]
    assert "script" not in names and "link" not in names and "img" not in names  # nothing to fetch
    assert all(not v.startswith("http") for _, a in tags for k, v in a.items() if k != "xmlns" and v)
    assert names.count("svg") == 4  # scatter + distribution for two targets
    for word in ("distill", "quantize", "12.5", "0.9550", "x86_vnni", "x86_avx2", "needs an aarch64 CPU",
                 "accuracy_drop", "Pareto"):
        assert word in text
    assert "mobile &lt;demo&gt;" in text and "<demo>" not in text  # escaped
    circles = [a for t, a in tags if t == "circle" and a.get("class") == "point"]
    assert len(circles) == 6
    ringed = [a for a in circles if a.get("stroke") == "#000"]
    assert len(ringed) == 6  # each model is on the front: faster ones are less accurate
    assert sum(1 for t, a in tags if t == "polyline" and a.get("class") == "pareto") == 2
    assert sum(1 for t, a in tags if t == "rect" and a.get("class") == "box") == 6


def test_dominated_model_is_off_the_front_and_summary_only_latency_renders(tmp_path):
    rep = copy.deepcopy(_report())
    rep["models"]["teacher"]["metric"] = 0.5  # slower and worse: dominated
    for m in rep["models"].values():
        for lat in m["latency"].values():
            del lat["samples_ms"]
    tags = _parse(render_html(rep))
    ringed = [a for t, a in tags if t == "circle" and a.get("class") == "point" and a.get("stroke") == "#000"]
    assert len(ringed) == 4
    assert sum(1 for t, a in tags if t == "rect" and a.get("class") == "box") == 6


def test_page_without_profiling_or_metrics(tmp_path):
    rep = _report()
    for m in rep["models"].values():
        m["latency"] = {}
    rep["passed"] = False
    text = render_html(rep)
    assert "No target was profiled" in text and "FAILED" in text


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "chrome")
                 if shutil.which(n)), None)


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="no headless Chromium: apt-get install -y chromium")
def test_headless_chromium_screenshot(tmp_path):
    page = write_html(_report(), tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1200,1800", page.as_uri()], capture_output=True, timeout=120, check=False)
    assert shot.is_file() and shot.stat().st_size > 20_000  # a blank page compresses to a few KB
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_report_html_of_a_real_run(fast_run: Path):
    text = (fast_run / "report.html").read_text()
    assert "<svg" in text and "deployed" in text
