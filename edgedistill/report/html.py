"""report.html: one self-contained page (no scripts, no external files) that a reviewer can open anywhere.

Stages, the metric / size / latency table, and inline SVG plots: metric versus latency per target with the
Pareto front, and the latency distribution of every model per target (from the raw samples the profiler
keeps in the latency dicts).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from ..io import write_text

COLORS = {"teacher": "#7b61ff", "student": "#1f9d8b", "deployed": "#e4572e"}
CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:right}
th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}.pass{color:#137333;font-weight:600}
.fail{color:#c5221f;font-weight:600}.muted{color:#777}.plots{display:flex;flex-wrap:wrap;gap:1rem}
figure{margin:0;max-width:500px}figcaption{font-size:.9rem;color:#555;overflow-wrap:anywhere}
.warn{color:#b06000;font-weight:600}svg text{font:11px system-ui,sans-serif}
"""


def _f(v: Any, nd: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return escape(str(v))


def _quantile(sorted_xs: Sequence[float], q: float) -> float:
    if not sorted_xs:
        return math.nan
    pos = (len(sorted_xs) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def pareto_front(points: Sequence[tuple[str, float, float]], higher_is_better: bool = True) -> list[str]:
    """Names of the points no other point beats on both latency (lower) and metric."""
    better = (lambda a, b: a > b) if higher_is_better else (lambda a, b: a < b)
    front, best = [], None
    for name, _lat, met in sorted(points, key=lambda p: (p[1], -p[2] if higher_is_better else p[2])):
        if best is None or better(met, best):
            front.append(name)
            best = met
    return front


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


LABEL_H, CHAR_W = 13.0, 6.5  # a label's line height and the width of one character at 11px


def label_positions(points: Sequence[tuple[str, float, float]], top: float, bottom: float) -> dict[str, tuple[float, float]]:
    """Label anchors (x, baseline y) beside each point, moved down until no two labels overlap.

    Coinciding points (the deployed file *is* the student when float ships) used to print their names on top
    of each other."""
    placed: list[tuple[float, float, float]] = []  # x0, x1, baseline y
    out: dict[str, tuple[float, float]] = {}
    for name, x, y in sorted(points, key=lambda p: (p[2], p[1])):
        lx, ly = x + 9, max(y - 8, top)
        width = CHAR_W * len(name)
        while any(lx < b1 and a0 < lx + width and abs(ly - py) < LABEL_H for a0, b1, py in placed):
            ly += LABEL_H
        if ly > bottom:  # no room below: put it left of the point instead
            lx, ly = x - 9 - width, max(y - 8, top)
        placed.append((lx, lx + width, ly))
        out[name] = (lx, ly)
    return out


def scatter_svg(target: str, points: list[tuple[str, float, float]], metric: str, higher: bool) -> str:
    """Metric versus p50 latency on one target, Pareto front drawn as a step line."""
    w, h, ml, mr, mt, mb = 500, 300, 60, 20, 20, 45
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    x0, x1 = 0.0, max(xs) * 1.15 or 1.0
    pad = (max(ys) - min(ys)) * 0.15 or 0.01
    y0, y1 = min(ys) - pad, max(ys) + pad
    sx = lambda x: ml + (x - x0) / (x1 - x0) * (w - ml - mr)  # noqa: E731
    sy = lambda y: h - mb - (y - y0) / (y1 - y0) * (h - mt - mb)  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
           f'aria-label="{escape(metric)} versus latency on {escape(target)}">',
           f'<rect x="{ml}" y="{mt}" width="{w - ml - mr}" height="{h - mt - mb}" fill="#fafafa" stroke="#ccc"/>']
    for t in _ticks(x0, x1):
        out.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{h - mb}" y2="{h - mb + 4}" stroke="#888"/>'
                   f'<text x="{sx(t):.1f}" y="{h - mb + 16}" text-anchor="middle">{t:g}</text>')
    for t in _ticks(y0, y1):
        out.append(f'<line x1="{ml - 4}" x2="{ml}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#888"/>'
                   f'<text x="{ml - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:.4g}</text>')
    out.append(f'<text x="{(w + ml) / 2}" y="{h - 8}" text-anchor="middle">p50 latency (ms)</text>'
               f'<text transform="translate(14,{(h - mb + mt) / 2}) rotate(-90)" text-anchor="middle">'
               f'{escape(metric)}</text>')
    front = pareto_front(points, higher)
    fp = sorted((p for p in points if p[0] in front), key=lambda p: p[1])
    if len(fp) > 1:
        pts = []
        for i, (_, x, y) in enumerate(fp):
            if i:
                pts.append(f"{sx(x):.1f},{sy(fp[i - 1][2]):.1f}")
            pts.append(f"{sx(x):.1f},{sy(y):.1f}")
        out.append(f'<polyline class="pareto" points="{" ".join(pts)}" fill="none" stroke="#444" '
                   f'stroke-dasharray="4 3"/>')
    labels = label_positions([(name, sx(x), sy(y)) for name, x, y in points], top=mt + 10, bottom=h - mb - 4)
    for name, x, y in points:
        color = COLORS.get(name, "#555")
        ring = ' stroke="#000" stroke-width="2"' if name in front else ""
        hollow = name not in COLORS  # an alternative the run measured (not one of its own three models)
        fill = (f'fill="#fff" stroke="{"#000" if ring else color}" stroke-width="2"' if hollow
                else f'fill="{color}"{ring}')
        lx, ly = labels[name]
        out.append(f'<circle class="point" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="6" {fill}>'
                   f'<title>{escape(name)}: {y:.4f} at {x:.3f} ms</title></circle>'
                   f'<text class="label" x="{lx:.1f}" y="{ly:.1f}">{escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def distribution_svg(target: str, rows: list[tuple[str, Mapping[str, Any]]]) -> str:
    """Per model: the raw samples as dots, a box (p25–p75) with the median, whiskers to p1/p99."""
    w, ml, mr, row_h, mt, mb = 500, 80, 20, 46, 10, 40
    h = mt + mb + row_h * len(rows)
    summaries = []
    for name, s in rows:
        xs = sorted(float(v) for v in s.get("samples_ms") or [])
        if xs:
            q = {k: _quantile(xs, p) for k, p in (("p1", .01), ("p25", .25), ("p50", .5), ("p75", .75), ("p99", .99))}
        else:  # only the summary survived: draw what is known
            q = {"p1": s.get("min_ms", s["p50_ms"]), "p25": s["p50_ms"], "p50": s["p50_ms"], "p75": s["p90_ms"],
                 "p99": s["p99_ms"]}
        summaries.append((name, xs, q))
    hi = max(q["p99"] for _, _, q in summaries) * 1.1 or 1.0
    sx = lambda x: ml + min(x, hi) / hi * (w - ml - mr)  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
           f'aria-label="latency distribution on {escape(target)}">']
    for t in _ticks(0, hi):
        out.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{mt}" y2="{h - mb}" stroke="#eee"/>'
                   f'<text x="{sx(t):.1f}" y="{h - mb + 15}" text-anchor="middle">{t:g}</text>')
    out.append(f'<text x="{(w + ml) / 2}" y="{h - 8}" text-anchor="middle">latency per run (ms)</text>')
    for i, (name, xs, q) in enumerate(summaries):
        cy = mt + row_h * i + row_h / 2
        color = COLORS.get(name, "#555")
        out.append(f'<text x="{ml - 8}" y="{cy + 4:.1f}" text-anchor="end">{escape(name)}</text>')
        for j, x in enumerate(xs[:: max(1, len(xs) // 400)]):
            jitter = ((j * 7919) % 17 - 8) * 1.2
            out.append(f'<circle cx="{sx(x):.1f}" cy="{cy + jitter:.1f}" r="1.6" fill="{color}" opacity=".35"/>')
        out.append(f'<line x1="{sx(q["p1"]):.1f}" x2="{sx(q["p99"]):.1f}" y1="{cy:.1f}" y2="{cy:.1f}" stroke="#333"/>'
                   f'<rect class="box" x="{sx(q["p25"]):.1f}" y="{cy - 9:.1f}" '
                   f'width="{max(sx(q["p75"]) - sx(q["p25"]), 1):.1f}" height="18" fill="none" stroke="#333"/>'
                   f'<line x1="{sx(q["p50"]):.1f}" x2="{sx(q["p50"]):.1f}" y1="{cy - 9:.1f}" y2="{cy + 9:.1f}" '
                   f'stroke="{color}" stroke-width="3"><title>{escape(name)} median {q["p50"]:.3f} ms</title></line>')
    out.append("</svg>")
    return "".join(out)


def ordered_targets(report: Mapping[str, Any], models: Mapping[str, Any]) -> list[str]:
    """Latency keys in the order the CLI summary and the model card use: the recipe's targets, then each
    target's other batch sizes / sequence lengths in the order they were measured."""
    keys: list[str] = []
    for m in models.values():
        keys += [k for k in (m.get("latency") or {}) if k not in keys]
    order = list(report.get("targets") or {})
    rank = {t: i for i, t in enumerate(order)}
    return sorted(keys, key=lambda k: (rank.get(k.split("@")[0], len(order)), keys.index(k)))


def alternatives(report: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Models the run measured besides its own three (e.g. `teacher_ptq`, a rejected int8 file), when the report
    has them: plotted beside the run's models so the choice can be weighed."""
    models = report.get("models") or {}
    return {n: m for n, m in models.items() if n not in COLORS and isinstance(m, Mapping)}


def _noisy(stats: Mapping[str, Any]) -> bool:
    cv = stats.get("cv")
    return isinstance(cv, (int, float)) and cv > 1


def render_html(report: Mapping[str, Any]) -> str:
    """The whole page as a string."""
    recipe, metric = report.get("recipe") or {}, report.get("metric") or {}
    models = {n: m for n, m in (report.get("models") or {}).items() if isinstance(m, Mapping)}
    mname, higher = metric.get("name", "metric"), bool(metric.get("higher_is_better", True))
    split = metric.get("split") or "test"
    targets = ordered_targets(report, models)
    passed = report.get("passed")
    env = report.get("environment") or {}
    parts = ["<!doctype html><html lang=en><head><meta charset=utf-8>",
             f"<title>edgedistill report: {escape(str(recipe.get('name', '')))}</title><style>{CSS}</style></head><body>",
             f"<h1>{escape(str(recipe.get('name', 'run')))} "
             f"<span class={'pass' if passed else 'fail'}>{'passed' if passed else 'FAILED'}</span></h1>",
             f"<p class=muted>task {escape(str(report.get('task', '')))} · recipe sha256 "
             f"{escape(str(recipe.get('sha256', ''))[:16])}… · {escape(str(env.get('cpu', '')))} · "
             f"torch {escape(str(env.get('torch', '')))} · onnxruntime {escape(str(env.get('onnxruntime', '')))}</p>"]

    teacher_lat = (models.get("teacher") or {}).get("latency") or {}
    parts.append("<h2>Models</h2><table><tr><th>model</th>"
                 f"<th>{escape(mname)} ({'↑' if higher else '↓'})<br>{escape(split)} split</th><th>size MB</th>"
                 "<th>params</th>"
                 + "".join(f"<th>p50 ms<br>{escape(t)}</th><th>p99 ms<br>{escape(t)}</th><th>speedup<br>{escape(t)}</th>"
                           for t in targets) + "</tr>")
    noisy: list[str] = []
    for name, m in models.items():
        lat = m.get("latency") or {}
        cells = []
        for t in targets:
            st = lat.get(t) or {}
            base, p50 = (teacher_lat.get(t) or {}).get("p50_ms"), st.get("p50_ms")
            speed = f"{base / p50:.2f}x" if isinstance(base, (int, float)) and isinstance(p50, (int, float)) and p50 > 0 \
                else "n/a"
            warn = ""
            if _noisy(st):
                warn = f' <span class=warn title="coefficient of variation {st["cv"]:.2f}">⚠ cv {st["cv"]:.2f}</span>'
                noisy.append(f"{name} on {t} (cv {st['cv']:.2f})")
            cells.append(f"<td>{_f(p50, 3)}{warn}</td><td>{_f(st.get('p99_ms'), 3)}</td><td>{speed}</td>")
        parts.append(f"<tr><td>{escape(name)}</td><td>{_f(m.get('metric'))}</td><td>{_f(m.get('size_mb'), 3)}</td>"
                     f"<td>{_f(m.get('params'))}</td>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    parts.append(f"<p class=muted>{escape(mname)} of every model on the {escape(split)} split "
                 f"({_f(metric.get('samples'))} samples), each file run in ONNX Runtime. Speedup: the teacher's p50 "
                 "divided by the model's, per target (as in the command-line summary).</p>")
    if noisy:
        parts.append("<p class=warn>⚠ Noisy latency (coefficient of variation over 1: the spread is larger than the "
                     "mean): " + escape("; ".join(noisy)) + ". Re-profile on a quieter machine before trusting "
                     "these milliseconds.</p>")
    dep = models.get("deployed") or {}
    if dep:
        parts.append(f"<p class=muted>The deployed metric was measured by running <code>{escape(str(dep.get('path')))}"
                     f"</code> in {escape(str(dep.get('metric_measured_on', 'onnxruntime')))}.</p>")
    skipped = {t: i for t, i in (report.get("targets") or {}).items() if not (i or {}).get("available", True)}
    if skipped:
        parts.append("<p>Not profiled here: " + "; ".join(
            f"<b>{escape(t)}</b> ({escape(str(i.get('reason')))})" for t, i in skipped.items()) + "</p>")

    gates = report.get("gates") or []
    parts.append("<h2>Gates</h2>")
    if gates:
        parts.append("<table><tr><th>gate</th><th>limit</th><th>value</th><th>result</th></tr>")
        parts += [f"<tr><td>{escape(str(g.get('name')))}</td><td>{_f(g.get('limit'))}</td><td>{_f(g.get('value'))}"
                  f"</td><td class={'pass' if g.get('passed') else 'fail'}>{'pass' if g.get('passed') else 'FAIL'}"
                  "</td></tr>" for g in gates]
        parts.append("</table>")
    else:
        parts.append("<p class=muted>No gates configured.</p>")

    parts.append("<h2>Stages</h2><table><tr><th>#</th><th>stage</th><th>seconds</th>"
                 f"<th>{escape(mname)} after<br>validation split</th></tr>")
    parts += [f"<tr><td>{i}</td><td>{escape(str(s.get('kind')))}</td><td>{_f(s.get('seconds'), 1)}</td>"
              f"<td>{_f(s.get('metric_after'))}</td></tr>" for i, s in enumerate(report.get("stages") or [])]
    parts.append("</table><p class=muted>Stage rows show the metric on the <b>validation</b> split (what the stages "
                 f"choose by); the models table above shows the <b>{escape(split)}</b> split.</p>")
    parts += _decisions(report)

    alt = alternatives(report)
    parts.append(f"<h2>{escape(mname)} versus latency</h2><div class=plots>")
    for t in targets:
        pts = [(n, float(m["latency"][t]["p50_ms"]), float(m["metric"])) for n, m in models.items()
               if t in (m.get("latency") or {}) and isinstance(m.get("metric"), (int, float))]
        if pts:
            extra = f" Hollow points: alternatives the run measured ({escape(', '.join(alt))})." if alt else ""
            parts.append(f"<figure>{scatter_svg(t, pts, mname, higher)}<figcaption>{escape(t)}: ringed points are "
                         f"on the Pareto front (no other model is both faster and better).{extra}</figcaption></figure>")
    if not targets:
        parts.append("<p class=muted>No target was profiled.</p>")
    parts.append("</div><h2>Latency distribution</h2><div class=plots>")
    for t in targets:
        rows = [(n, m["latency"][t]) for n, m in models.items() if t in (m.get("latency") or {})]
        s0 = rows[0][1]
        parts.append(f"<figure>{distribution_svg(t, rows)}<figcaption>{escape(t)}: batch {_f(s0.get('batch'))}, "
                     f"{_f(s0.get('threads'))} thread(s), {_f(s0.get('runs'))} runs per model, interleaved bursts, "
                     f"{_f(s0.get('rounds', 1))} round(s) of fresh processes per model. Dots are single runs; "
                     "the box spans p25-p75 with the median, whiskers p1-p99; runs beyond 1.1x the largest p99 "
                     "are drawn at the right edge.</figcaption></figure>")
    parts.append("</div></body></html>\n")
    return "".join(parts)


def _decisions(report: Mapping[str, Any]) -> list[str]:
    """What the quantize stage weighed: the file it did not ship, with the numbers that decided."""
    out = []
    for st in report.get("stages") or []:
        keep = ((st or {}).get("details") or {}).get("keep") if isinstance(st, Mapping) else None
        if isinstance(keep, Mapping) and keep.get("reason"):
            shipped = str(keep.get("shipped"))
            word = " (the quantized file was measured and rejected)" if shipped == "float" else ""
            out.append(f"<p><b>Quantization</b>: ships {escape(shipped)}{word}. {escape(str(keep.get('reason')))}</p>")
    return out


def write_html(report: Mapping[str, Any], path: Path) -> Path:
    return write_text(path, render_html(report))
