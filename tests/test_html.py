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


# ----------------------------------------------------------------------- issue 18: what misled readers
def _coinciding() -> dict:
    """float shipped: the deployed file is the student (same point); one latency is very noisy; the run also
    measured the teacher with PTQ only (an alternative); targets in recipe order avx2 before vnni."""
    rep = copy.deepcopy(_report())
    rep["models"]["deployed"]["metric"] = rep["models"]["student"]["metric"]
    for t in ("x86_vnni", "x86_avx2"):
        rep["models"]["deployed"]["latency"][t] = copy.deepcopy(rep["models"]["student"]["latency"][t])
    rep["models"]["deployed"]["latency"]["x86_avx2"]["cv"] = 1.7
    rep["models"]["teacher_ptq"] = {"params": 100, "size_mb": 1.1, "metric": 0.97,
                                    "latency": {"x86_vnni": _lat(1.2), "x86_avx2": _lat(1.6)}}
    rep["targets"] = {"x86_avx2": {"available": True}, "x86_vnni": {"available": True},
                      "arm64_mobile": {"available": False, "reason": "needs an aarch64 CPU"}}
    rep["metric"].update(split="test", samples=360)
    rep["stages"][1]["details"] = {"keep": {"shipped": "float", "reason": "keep: fastest ships the float file "
                                            "because int8 is NOT faster than float on this target: 1.31x"}}
    return rep


def test_page_says_which_split_orders_targets_and_warns(tmp_path):
    text = render_html(_coinciding())
    assert "accuracy (↑)<br>test split" in text and "accuracy after<br>validation split" in text
    assert text.index("p50 ms<br>x86_avx2") < text.index("p50 ms<br>x86_vnni")  # the recipe's order, as the CLI
    assert "speedup<br>x86_vnni" in text and "<td>4.00x</td>" in text  # teacher 2.0 ms / student 0.5 ms
    assert "⚠ cv 1.70" in text and "Noisy latency" in text
    assert "ships float (the quantized file was measured and rejected)" in text
    tags = _parse(text)
    hollow = [a for t, a in tags if t == "circle" and a.get("class") == "point" and a.get("fill") == "#fff"]
    assert len(hollow) >= 1 and "alternatives the run measured (teacher_ptq)" in text


def test_labels_of_coinciding_points_do_not_overlap():
    from edgedistill.report.html import CHAR_W, LABEL_H, label_positions

    pts = [("student", 100.0, 50.0), ("deployed", 100.0, 50.0), ("teacher", 104.0, 52.0)]
    pos = label_positions(pts, top=20, bottom=255)
    boxes = [(x, x + CHAR_W * len(n), y) for n, (x, y) in pos.items()]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not (a[0] < b[1] and b[0] < a[1] and abs(a[2] - b[2]) < LABEL_H), pos


MEASURE = """<script>
const MODELS = ["teacher", "student", "deployed", "teacher_ptq"];
window.addEventListener('load', () => {
  const out = {overlaps: [], clipped: [], captions: []};
  document.querySelectorAll('svg').forEach((svg, k) => {
    const box = svg.getBoundingClientRect();
    const labels = [...svg.querySelectorAll('text')].map(t => [t.textContent, t.getBoundingClientRect()]);
    labels.forEach(([name, r]) => {
      if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5)
        out.clipped.push(name);
    });
    const pts = labels.filter(([n, r]) => MODELS.includes(n));
    for (let i = 0; i < pts.length; i++) for (let j = i + 1; j < pts.length; j++) {
      const a = pts[i][1], b = pts[j][1];
      if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom)
        out.overlaps.push(pts[i][0] + '/' + pts[j][0] + ' in svg ' + k);
    }
  });
  document.querySelectorAll('figcaption').forEach(c => {
    if (c.scrollWidth > c.clientWidth + 1 || c.getBoundingClientRect().right > window.innerWidth)
      out.captions.push(c.textContent.slice(0, 40));
  });
  const pre = document.createElement('pre'); pre.id = 'measured'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="no headless Chromium: apt-get install -y chromium")
def test_chromium_shows_no_overlapping_labels_or_clipped_text(tmp_path):
    """Measured in a real browser: labels of coinciding points, axis text and captions (all used to collide
    or be clipped)."""
    import json
    import re

    page = tmp_path / "measure.html"
    page.write_text(render_html(_coinciding()).replace("</body>", MEASURE + "</body>"))
    proc = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,1800",
                           "--virtual-time-budget=5000", "--dump-dom", page.as_uri()], capture_output=True, text=True,
                          timeout=120, check=False)
    found = re.search(r'<pre id="measured">(.*?)</pre>', proc.stdout, re.S)
    assert found, proc.stderr[-500:]
    measured = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert measured == {"overlaps": [], "clipped": [], "captions": []}, measured
