"""Does the whole pipeline beat what a user would ship instead? One command per workload, every row a real
run of the toolchain (or of the tool a user would pick instead), every latency measured in one run.

    python benchmarks/run.py vision [--quick]     # MNIST (../shared/data/mnist), ResNet teacher
    python benchmarks/run.py text [--quick] [--reuse-run RUN_DIR] [--students a,b]  # STS-B, all-MiniLM-L6-v2
    python benchmarks/run.py runtimes [--quick] [--reuse-run]      # ONNX Runtime vs ExecuTorch on two students
    python benchmarks/run.py kd [--quick] [--seeds N] [--methods a,b]  # distillation methods over seeds (kd.py)
    python benchmarks/run.py kd --text [--quick] [--seeds N] [--methods a,b]  # the same on STS-B embeddings (kd_text.py)
    python benchmarks/run.py diswot [--quick]     # DisWOT student choice at init vs training six cnn students

Writes benchmarks/results/<workload>.json (a list `rows`: name, onnx, metric, size_mb, p50/p90 at batch 1
and 32 on one thread, ratios to the teacher fp32 measured interleaved in the same profiler call, peak
memory) and <workload>.md beside it. The ONNX files measured stay in the work folder (default
~/.cache/edgedistill/bench/<workload>, outside git); the JSON records their paths so anyone can re-time
them. `--quick` shrinks every model and epoch count: it only keeps the script working (a slow test runs it
in CI); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


def measure_rows(files: dict[str, Path], metrics: dict[str, float], feeds: dict[int | str, dict], *, runs: int,
                 target_name: str = "x86_vnni", base: str = "teacher_fp32", macs: dict[str, int] | None = None,
                 model_options: dict[str, dict] | None = None) -> list[dict[str, Any]]:
    """One row per file: metric, size, p50/p90 per feed (all files timed interleaved in one call per feed,
    one thread), ratios to `base` (p50 over p50, and the burst-minimum interleaved ratio), peak memory.

    `feeds` is keyed by batch size (columns `_b1`, `_b32`) or by a column suffix such as "b1_s32" (a text
    model's sequence length); the batch is the feed's first dimension. `model_options` are ONNX Runtime session
    options per file (what a bundle ships with its model)."""
    from edgedistill.profile import profile_models
    from edgedistill.profile.compare import interleaved_ratio
    from edgedistill.target import load_target

    target = load_target(target_name)
    rows = {name: {"name": name, "onnx": str(path), "metric": metrics[name],
                   "size_mb": round(_size_mb(path), 4)} for name, path in files.items()}
    for key, feed in feeds.items():
        col = key if isinstance(key, str) else f"b{key}"
        batch = len(next(iter(feed.values())))
        stats = profile_models(files, target, batch=batch, threads=1, runs=runs, warmup=max(3, runs // 10), burst=10,
                               feed=feed, op_profile_runs=0, model_options=model_options)
        for name, s in stats.items():
            row = rows[name]
            row[f"p50_ms_{col}"] = round(s["p50_ms"], 5)
            row[f"p90_ms_{col}"] = round(s["p90_ms"], 5)
            row[f"ratio_{col}"] = round(s["p50_ms"] / stats[base]["p50_ms"], 4)
            row[f"ratio_{col}_interleaved"] = round(
                interleaved_ratio(stats[base]["samples_ms"], s["samples_ms"], 10)["ratio"], 4)
            row[f"peak_rss_mb_{col}"] = round(s["peak_rss_mb"], 1) if s.get("peak_rss_mb") is not None else None
            row["threads"] = s["threads"]
            row["cpu"] = s["cpu"]
    for name, row in rows.items():
        if macs and name in macs:
            row["macs_b1"] = macs[name]
    return list(rows.values())


def _size_mb(path: Path) -> float:
    data = path.with_name(path.name + ".data")
    return (path.stat().st_size + (data.stat().st_size if data.exists() else 0)) / 1e6


def markdown(result: dict[str, Any]) -> str:
    """The tables a README section shows, from the JSON alone.

    `result["tables"]` (optional) lists the tables as {"title", "columns": {suffix: label}}; the default is
    one table with batch 1 and batch 32; `result["extra_metric"]` ({"key", "label"}, optional) adds a second
    metric column. A row that could not be produced carries `error` instead of numbers."""
    metric = result["metric_name"]
    extra = result.get("extra_metric")
    tables = result.get("tables") or [{"title": None, "columns": {"b1": "b1", "b32": "b32"}}]
    lines = [f"### {result['workload']}: {result['title']}", "",
             f"`{result['command']}` — {result['when']}, {result['cpu']}, one thread; ratios are to "
             f"`{result['rows'][0]['name']}` in the same run (p50 over p50)."]
    for table in tables:
        cols = table["columns"]
        lines += ["", *([f"**{table['title']}**", ""] if table.get("title") else []),
                  f"| row | {metric} | " + (f"{extra['label']} | " if extra else "") + "size MB | "
                  + " | ".join(f"p50 ms {c} | p90 ms {c} | × teacher {c}" for c in cols.values())
                  + " | peak RSS MB |", "|---|---|---|" + ("---|" if extra else "") + "---|" * (3 * len(cols)) + "---|"]
        first = next(iter(cols))
        for r in result["rows"]:
            if r.get("error"):
                lines.append(f"| {r['name']} | failed: {r['error']} |" + " |" * (2 + bool(extra) + 3 * len(cols)))
                continue
            cells = [f"{r[f'p50_ms_{c}']:.3f} | {r[f'p90_ms_{c}']:.3f} | {r[f'ratio_{c}']:.3f}" for c in cols]
            lines.append(f"| {r['name']} | {r['metric']:.4f} | " + (f"{r[extra['key']]:.4f} | " if extra else "")
                         + f"{r['size_mb']:.3f} | " + " | ".join(cells)
                         + f" | {r.get(f'peak_rss_mb_{first}') or 0:.0f} |")
    for title, key in (("Targets", "targets"), ("Choice of student (selection half only)", "choice"),
                       ("Paired comparison on the held-out images", "paired"),
                       ("Hardware limit", "hardware"), ("Cost of the toolchain", "cost"),
                       ("Notes", "notes")):
        if result.get(key):
            lines += ["", f"**{title}**", "", *_bullets(result[key])]
    return "\n".join(lines) + "\n"


def _bullets(section: Any) -> list[str]:
    if isinstance(section, list):
        return [f"- {item}" for item in section]
    return [f"- {k}: {v}" for k, v in section.items()]


def write_result(result: dict[str, Any], out_dir: Path, render: Any = None) -> tuple[Path, Path]:
    """<workload>[_quick].json and .md; `render` makes the Markdown (default: the latency tables above)."""
    from edgedistill.io import write_json, write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    name = result["workload"] + ("_quick" if result.get("quick") else "")
    js, md = out_dir / f"{name}.json", out_dir / f"{name}.md"
    write_json(js, result)
    write_text(md, (render or markdown)(result))
    return js, md


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workload", choices=["vision", "text", "runtimes", "kd", "diswot"])
    ap.add_argument("--quick", action="store_true", help="tiny models and few steps: keeps the script working")
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="where the JSON and Markdown go")
    ap.add_argument("--work", type=Path, default=None, help="run folders, ONNX files and the teacher cache")
    ap.add_argument("--runs", type=int, default=None, help="timed runs per model and batch size")
    ap.add_argument("--reuse-run", nargs="?", const=True, default=False, metavar="RUN_DIR",
                    help="re-measure the files of the last finished pipeline run instead of running it again; "
                         "text: or of the finished `edgedistill compress` run folder RUN_DIR")
    ap.add_argument("--seeds", type=int, default=None, help="kd: seeds per method (default 8; --quick: 2)")
    ap.add_argument("--methods", default=None, help="kd: comma-separated method names (default: all of kd.METHODS)")
    ap.add_argument("--students", default=None,
                    help="text: comma-separated variants trained and measured beside the shipped student "
                         "(text_students.VARIANTS; default all, --quick none; 'none' for none)")
    ap.add_argument("--text", action="store_true",
                    help="kd: the text workload's general distillation (STS-B, all-MiniLM-L6-v2; kd_text.METHODS) "
                         "instead of MNIST; writes kd_text.json/.md")
    args = ap.parse_args(argv)
    if args.text and args.workload != "kd":
        ap.error("--text applies to the kd workload")
    if args.workload != "kd" and (args.seeds is not None or args.methods is not None):
        ap.error("--seeds and --methods apply to the kd workload")
    if args.students is not None:
        import text_students

        unknown = [s for s in args.students.split(",") if s.strip() not in (*text_students.VARIANTS, "none")]
        if args.workload != "text" or unknown:
            ap.error(f"--students applies to the text workload and takes {', '.join(text_students.VARIANTS)} "
                     f"or none (got {args.students!r})")
    if args.seeds is not None and args.seeds < 1:
        ap.error("--seeds must be at least 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("EDGEDISTILL_PROGRESS", "0")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgedistill" / "bench"
    workload = "kd_text" if args.text else args.workload
    work = (args.work or cache / workload).resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    reuse = Path(args.reuse_run).resolve() if isinstance(args.reuse_run, str) else args.reuse_run
    render = None
    if args.workload == "kd":
        import kd

        if reuse:
            ap.error("kd: --reuse-run does not apply (every method and seed is a fresh run)")
        methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
        if args.text:
            import kd_text

            result = kd_text.run(args.data_root / "stsb", work, quick=args.quick, seeds=args.seeds, methods=methods)
            render = kd_text.markdown
        else:
            result = kd.run(args.data_root / "mnist", work, quick=args.quick, seeds=args.seeds, methods=methods)
            render = kd.markdown
    elif args.workload == "vision":
        import vision

        if isinstance(reuse, Path):
            ap.error("vision: --reuse-run takes no folder (it reuses the run in the work folder)")
        result = vision.run(args.data_root / "mnist", work, quick=args.quick, runs=args.runs, reuse_run=reuse)
    elif args.workload == "diswot":
        import diswot

        if reuse:
            ap.error("diswot: --reuse-run does not apply (every candidate is trained each time)")
        result = diswot.run(args.data_root / "mnist", work, quick=args.quick, runs=args.runs)
        render = diswot.markdown
    elif args.workload == "runtimes":
        import runtimes

        result = runtimes.run(args.data_root, work, quick=args.quick, runs=args.runs, reuse_run=bool(reuse))
    else:
        import text

        students = None if args.students is None else [s.strip() for s in args.students.split(",")
                                                       if s.strip() and s.strip() != "none"]
        result = text.run(args.data_root / "stsb", work, quick=args.quick, runs=args.runs, reuse_run=reuse,
                          students=students)
    flags = [*(["--text"] if args.text else []), *(["--quick"] if args.quick else []),
             *([f"--seeds {args.seeds}"] if args.seeds is not None else []),
             *([f"--methods {args.methods}"] if args.methods else []),
             *([f"--students {args.students}"] if args.students is not None else []),
             *([f"--runs {args.runs}"] if args.runs is not None else []), *(["--reuse-run", *([args.reuse_run] if isinstance(reuse, Path) else [])] if reuse else [])]
    result.update(workload=workload, quick=args.quick, wall_s=round(time.time() - started, 1),
                  command=" ".join(["python benchmarks/run.py", args.workload, *flags]),
                  when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), python=platform.python_version())
    js, md = write_result(result, args.out, render)
    print(md.read_text())
    print(f"wrote {js} and {md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
