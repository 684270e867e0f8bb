"""The human summary printed at the end of a run: teacher vs student vs deployed."""

from __future__ import annotations

from typing import Any


def format_summary(report: dict[str, Any], run_dir: str, wall_seconds: float | None = None) -> str:
    """`wall_seconds`: this command's wall time up to now (else the report's, taken when it was written)."""
    models, metric = report["models"], report["metric"]["name"]
    targets = [t for t, info in report.get("targets", {}).items() if info.get("available")]
    lines = [f"edgedistill: {report['recipe']['name']} → {run_dir}"]
    header = f"  {'model':<9} {metric:>9} {'size MB':>9} {'params':>10}"
    for t in targets:
        header += f" {'p50 ms ' + t:>18} {'speedup':>8}"
    lines.append(header)
    for name in ("teacher", "student", "deployed", "deployed_executorch"):
        if name not in models:
            continue
        m = models[name]
        label = "model.pte" if name == "deployed_executorch" else name  # a second runtime's file
        row = f"  {label:<9} {m['metric']:>9.4f} {m['size_mb']:>9.3f} {m['params']:>10,}"
        for t in targets:
            if t not in m["latency"]:  # a .pte is timed on ExecuTorch targets only
                row += f" {'-':>18} {'':>8}"
                continue
            p50, base = m["latency"][t]["p50_ms"], models["teacher"]["latency"][t]["p50_ms"]
            row += f" {p50:>18.4f} {base / p50:>7.2f}x"
        lines.append(row)
    for t, info in report.get("targets", {}).items():
        if not info.get("available"):
            lines.append(f"  target {t}: not profiled ({info.get('reason')})")
    measured = models["deployed"]["metric_measured_on"]
    lines.append(f"  deployed metric measured by running bundle/model.onnx in {measured} "
                 f"on {report['metric']['samples']} {report['metric']['split']} samples")
    if "deployed_executorch" in models:
        et = models["deployed_executorch"]
        lines.append(f"  model.pte ({et.get('precision')}, {et.get('delegate')}) metric measured in executorch; ops on "
                     f"portable kernels: {', '.join(et.get('portable_ops') or {}) or 'none'}")
    for g in report["gates"]:
        lines.append(f"  gate {g['name']}: {'pass' if g['passed'] else 'FAIL'} (value {g['value']:.4g}, limit {g['limit']})")
    verdict = "PASSED" if report["passed"] else "FAILED"
    run = report.get("invocation")
    if run is None:  # a report from before invocations were recorded
        lines.append(f"  {verdict} in {report.get('total_seconds', 0):.1f} s")
        return "\n".join(lines)
    threads = run.get("threads") or {}
    wall = wall_seconds if wall_seconds is not None else run["wall_seconds"]
    lines.append(f"  {verdict} in {wall:.1f} s wall for this command "
                 f"({threads.get('count', '?')} thread(s), {threads.get('source', '?')})")
    reused = run.get("reused_stages") or []
    if reused:
        seconds = sum(s["seconds"] for s in report["stages"] if f"{s['index']}-{s['kind']}" in reused)
        lines.append(f"  reused from the earlier run: {', '.join(reused)} (their {seconds:.1f} s not repeated)")
    return "\n".join(lines)
