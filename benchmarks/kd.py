"""Workload KD: do the distillation methods differ on a task small enough that the teacher's knowledge matters?

MNIST test file (../shared/data/mnist), split three ways so no image is reused:
- images 0..5,999: the teacher's (a ResNet, ~0.67M parameters; 15% of them validate it), trained once with
  the toolchain's own trainer and cached under the work folder, keyed by a hash of everything it depends on;
- images 6,000..7,999: the student's pool. Per seed, 500 class-balanced images train the student and 500
  others (also 50 a class) are its validation split (the pipeline keeps the best validation epoch);
- images 8,000..9,999: held out. Every method and seed is scored on these same 2,000 images, from its
  exported ONNX file run by ONNX Runtime.

Per seed, every method trains the same student (same initial weights: the distill stage seeds them from the
recipe's seed) on the same 500 images in the same batch order, through the pipeline's own stage functions:
a recipe is generated per method and seed (validated by `load_recipe` like any user's), the teacher comes in
as its checkpoint (`prepare_teacher`, stage 0), then the recipe's `distill` and `export` stages run as
`edgedistill compress` runs them. Only the data is given in memory (the subsets above) instead of loaded
from `data:`, and the report/profiling step of compress is skipped (latency is not what this measures).

Statistics (scipy is not a declared dependency, so no scipy here): per method the mean, sample standard
deviation and range over seeds; against the method's reference (Hinton KD on the same student) an exact
paired sign-flip permutation test over seeds (all 2^n sign flips of the per-seed differences; with 5 seeds
its smallest two-sided p is 2/32 = 0.0625, so 6+ seeds are needed for p < 0.05) and the exact McNemar test
on the 2,000 held-out images, per seed and pooled over seeds (discordant images summed).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

TEACHER = {"name": "resnet", "channels": [32, 64, 160], "blocks": 1}
TEACHER_TRAIN = {"epochs": 10, "lr": 0.003}
STUDENT = {"name": "cnn", "channels": [8, 16, 32]}
# The MLP-Mixer student of the cross-architecture rows (the `mixer` builder is being added on another branch;
# fix these arguments here if its signature differs): ~6-7k parameters, like the CNN student.
MIXER = {"name": "mixer", "patch": 7, "dim": 24, "depth": 2, "token_hidden": 16, "channel_hidden": 48}
TEACHER_ROWS = 6000  # images [0, 6000) of the file train (and validate) the teacher
POOL = (6000, 8000)  # the students' images are drawn from here
HELD_OUT = (8000, 10000)  # every exported file is scored on these
SEEDS = 8  # the default: the exact sign-flip test over seeds cannot reach p < 0.05 with fewer than 6
TRAIN_PER_CLASS, VAL_PER_CLASS = 50, 50  # 500 training and 500 validation images per seed
EPOCHS, LR, TEMPERATURE, BATCH = 40, 0.01, 4.0, 64
QUICK = {"teacher": {"name": "resnet", "channels": [8, 16], "blocks": 1}, "teacher_train": {"epochs": 1, "lr": 0.003},
         "epochs": 3, "seeds": 2}

HINTON = [{"name": "kl", "weight": 0.9}, {"name": "ce", "weight": 0.1}]
# name -> the distill stage's recipe fragment. `reference`: the method the paired tests compare against (Hinton KD
# on the same student); `student`: the student spec when it is not STUDENT.
METHODS: dict[str, dict[str, Any]] = {
    # labels only: what KD must beat
    "no_kd": {"losses": [{"name": "ce", "weight": 1.0}], "reference": "hinton"},
    # Hinton et al. 2015: alpha·T²·KL(p_T ‖ q_T) + (1 − alpha)·CE, alpha 0.9, T 4
    "hinton": {"losses": HINTON},
    # the project's dynamic temperature schedule (docs/distillation.md): T follows the teacher-student gap, 4 → 1
    "dts": {"losses": HINTON, "temperature_schedule": {"kind": "dynamic", "end": 1.0}, "reference": "hinton"},
    # TAID (Shing et al. 2025): KL to a target interpolated from the student toward the teacher (settings: defaults)
    "taid": {"losses": [{"name": "taid", "weight": 0.9}, {"name": "ce", "weight": 0.1}], "reference": "hinton"},
    # USKD (Yang et al. 2023): teacher-free, the student's own normalised non-target logits and soft target
    "uskd": {"losses": [{"name": "uskd", "weight": 1.0}, {"name": "ce", "weight": 1.0}], "reference": "hinton"},
    # CRD (Tian et al. 2020): contrastive representation distillation on top of Hinton KD
    "crd": {"losses": [{"name": "crd", "weight": 0.8}, *HINTON], "reference": "hinton"},
    # OFA only applies across architectures: the same CNN teacher into an MLP-Mixer student, against Hinton KD
    # and labels only on that student
    "no_kd_mixer": {"student": MIXER, "losses": [{"name": "ce", "weight": 1.0}], "reference": "hinton_mixer"},
    "hinton_mixer": {"student": MIXER, "losses": HINTON},
    "ofa": {"student": MIXER, "losses": [{"name": "ofa", "weight": 1.0}, {"name": "ce", "weight": 1.0}],
            "reference": "hinton_mixer"},
}
DEFAULT_METHODS = list(METHODS)


# ------------------------------------------------------------------------------------------------ statistics
def summarize(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (n − 1), min and max: the spread over seeds is the point."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(values), "max": max(values), "n": n}


def sign_flip_p(diffs: list[float]) -> float:
    """Exact two-sided paired permutation test: under H0 each seed's difference is as likely negated, so the
    p-value is the share of all 2^n sign flips whose |mean| reaches the observed |mean| (ties count)."""
    n = len(diffs)
    if n == 0:
        return 1.0
    observed = abs(sum(diffs))
    hits = sum(abs(sum(s * d for s, d in zip(signs, diffs, strict=True))) >= observed - 1e-12
               for signs in itertools.product((1, -1), repeat=n))
    return hits / 2**n


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar test: the discordant images split as Binomial(n, 1/2) under H0."""
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def paired(correct: dict[str, dict[int, Any]], method: str, ref: str, accs: dict[str, dict[int, float]],
           seeds: list[int]) -> dict[str, Any]:
    """`method` against `ref` on the same seeds: per-seed McNemar, pooled McNemar, sign-flip test on accuracy."""
    per_seed, pooled_a, pooled_b = [], 0, 0
    for s in seeds:
        a, b = correct[method][s], correct[ref][s]
        only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
        pooled_a, pooled_b = pooled_a + only_a, pooled_b + only_b
        per_seed.append({"seed": s, "only_method": only_a, "only_reference": only_b, "p": mcnemar_p(only_a, only_b)})
    diffs = [accs[method][s] - accs[ref][s] for s in seeds]
    p_seeds = sign_flip_p(diffs)
    return {"reference": ref, "diff_mean": sum(diffs) / len(diffs), "diffs": diffs, "sign_flip_p": p_seeds,
            "sign_flip_min_p": 2 / 2 ** len(diffs), "significant": p_seeds < 0.05,
            "mcnemar_per_seed": per_seed, "mcnemar_significant_seeds": sum(r["p"] < 0.05 for r in per_seed),
            "mcnemar_pooled": {"only_method": pooled_a, "only_reference": pooled_b,
                               "p": mcnemar_p(pooled_a, pooled_b)}}


# ------------------------------------------------------------------------------------------------ methods
def unavailable(spec: dict[str, Any]) -> str | None:
    """Why a method cannot run in this checkout (a term or a model builder not registered yet), or None."""
    from edgedistill.distill.terms import TERMS
    from edgedistill.models.registry import MODELS

    missing = [t["name"] for t in spec["losses"] if t["name"] not in TERMS]
    if missing:
        return f"loss term {', '.join(missing)} not registered in edgedistill.distill.terms.TERMS"
    student = spec.get("student", STUDENT)
    if student["name"] not in MODELS:
        return f"model builder {student['name']} not registered in edgedistill.models"
    return None


def select(names: list[str], methods: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Methods in run order (of `methods`, default METHODS); a method's reference runs too, first."""
    methods = METHODS if methods is None else methods
    unknown = [n for n in names if n not in methods]
    if unknown:
        raise SystemExit(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(methods)}")
    wanted = set(names) | {methods[n]["reference"] for n in names if "reference" in methods[n]}
    return [n for n in methods if n in wanted]


# ------------------------------------------------------------------------------------------------ data
def load_splits(data_dir: Path):
    """The MNIST file as (images, labels), normalised as the toolchain's mnist loader does."""
    from edgedistill.data import DataConfig, load_dataset

    ds = load_dataset(DataConfig(name="mnist", path=str(data_dir), val_fraction=0.0))
    import numpy as np

    x = np.concatenate([ds.train.x, ds.test.x])  # the loader's 8,000 + 2,000, back in file order
    y = np.concatenate([ds.train.y, ds.test.y])
    return ds, x, y


def dataset(ds, train, val, test):
    from edgedistill.data import Dataset

    return Dataset(name="mnist", task=ds.task, train=train, val=val, test=test, num_classes=ds.num_classes,
                   class_labels=ds.class_labels, preprocessing=ds.preprocessing)


def student_rows(y, seed: int) -> tuple[Any, Any]:
    """50 training and 50 validation images a class from the pool, drawn by `seed` (same for every method)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lo, hi = POOL
    train, val = [], []
    for c in range(10):
        rows = lo + np.flatnonzero(y[lo:hi] == c)
        rows = rng.permutation(rows)
        train.append(rows[:TRAIN_PER_CLASS])
        val.append(rows[TRAIN_PER_CLASS : TRAIN_PER_CLASS + VAL_PER_CLASS])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def cached_teacher(ds, x, y, data_dir: Path, work: Path, spec: dict, train: dict) -> Path:
    """Train the teacher once on images [0, 6000) with the toolchain's trainer; later runs reuse the file."""
    from edgedistill.config import TeacherConfig, TrainConfig
    from edgedistill.data import ArrayData
    from edgedistill.data.base import stratified_split
    from edgedistill.io import save_weights, write_json
    from edgedistill.tasks import build_task
    from edgedistill.teacher import prepare_teacher

    digest = hashlib.sha256(json.dumps({"model": spec, "train": train, "rows": TEACHER_ROWS, "val": 0.15,
                                        "seed": 0, "batch": BATCH}, sort_keys=True).encode())
    for f in sorted(data_dir.iterdir()):
        digest.update(f.name.encode() + f.read_bytes())
    path = work / "teachers" / f"teacher-{digest.hexdigest()[:16]}.safetensors"
    if path.exists():
        return path
    print(f"training the teacher once ({spec}); cached as {path}", file=sys.stderr)
    t_train, t_val = stratified_split(x[:TEACHER_ROWS], y[:TEACHER_ROWS], 0.15, 0)
    data = dataset(ds, t_train, t_val, ArrayData(x[HELD_OUT[0]:], y[HELD_OUT[0]:]))
    tmp = work / "teachers" / "train"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model, record = prepare_teacher(TeacherConfig(model=spec, train=TrainConfig(**train)), data, build_task(None, data), seed=0,
                                    batch_size=BATCH, stage_dir=tmp, resume=False)
    save_weights(model, path)
    write_json(path.with_suffix(".json"), record.to_json())
    shutil.rmtree(tmp, ignore_errors=True)
    return path


# ------------------------------------------------------------------------------------------------ one run
def recipe_dict(method: str, seed: int, data_dir: Path, teacher_spec: dict, teacher_ckpt: Path,
                epochs: int) -> dict[str, Any]:
    """The recipe a user would write for this method and seed (the distill stage from METHODS)."""
    spec = METHODS[method]
    stage: dict[str, Any] = {"kind": "distill", "student": spec.get("student", STUDENT), "temperature": TEMPERATURE,
                             "losses": spec["losses"], "train": {"epochs": epochs, "lr": LR}}
    if "temperature_schedule" in spec:
        stage["temperature_schedule"] = spec["temperature_schedule"]
    return {"name": f"kd_{method}_seed{seed}", "seed": seed, "threads": 1,
            "data": {"name": "mnist", "path": str(data_dir), "batch_size": BATCH},
            "teacher": {"model": teacher_spec, "checkpoint": str(teacher_ckpt)},
            "stages": [stage, {"kind": "export"}]}


def run_one(method: str, seed: int, data, data_dir: Path, work: Path, teacher_spec: dict, teacher_ckpt: Path,
            epochs: int) -> tuple[Path, dict[str, Any]]:
    """Stage 0 (teacher from its checkpoint), then the recipe's distill and export stages, as the pipeline runs
    them; returns the exported file and the distill stage's record details."""
    return run_stages(recipe_dict(method, seed, data_dir, teacher_spec, teacher_ckpt, epochs),
                      work / "runs" / f"{method}-seed{seed}", data)


def run_stages(recipe_d: dict[str, Any], run_dir: Path, data) -> tuple[Path, dict[str, Any]]:
    """Write `recipe_d` to run_dir/recipe.yaml, load it as a user's recipe, then run stage 0 (the teacher) and the
    recipe's stages on the in-memory `data` as the pipeline runs them (shared by the kd and kd_text workloads)."""
    import torch
    import yaml

    from edgedistill.io import write_text
    from edgedistill.recipe import load_recipe
    from edgedistill.stages import load_stages
    from edgedistill.state import ModelState, RunContext
    from edgedistill.tasks import build_task
    from edgedistill.teacher import prepare_teacher

    shutil.rmtree(run_dir, ignore_errors=True)
    (run_dir / "stages").mkdir(parents=True)
    write_text(run_dir / "recipe.yaml", yaml.safe_dump(recipe_d, sort_keys=False))
    recipe = load_recipe(str(run_dir / "recipe.yaml"))
    cfg = recipe.config
    task = build_task(cfg.task, data)
    teacher, t_record = prepare_teacher(cfg.teacher, data, task, seed=cfg.seed, batch_size=cfg.data.batch_size,
                                        stage_dir=run_dir / "stages" / "0-teacher", resume=False)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    start = copy.deepcopy(teacher)
    for p in start.parameters():
        p.requires_grad_(True)
    state = ModelState(start, dict(cfg.teacher.model), teacher, dict(cfg.teacher.model), None, [t_record])
    stages = load_stages()
    for i, stage_cfg in enumerate(cfg.stages, start=1):
        sdir = run_dir / "stages" / f"{i}-{stage_cfg.kind}"
        sdir.mkdir(parents=True)
        ctx = RunContext(run_dir=run_dir, stage_dir=sdir, data=data, recipe=recipe, index=i, task=task)
        with torch.random.fork_rng():
            state = stages[stage_cfg.kind].run(state, stage_cfg, ctx)
    return state.onnx, state.lineage[1].details


def score(path: Path, split, task) -> tuple[float, Any]:
    """Accuracy of the exported file and per-image correctness, from one pass (vision.score_file)."""
    from vision import score_file

    acc, correct = score_file(path, split, task)
    return float(acc), correct


# ------------------------------------------------------------------------------------------------ workload
def run(data_dir: Path, work: Path, *, quick: bool, seeds: int | None = None,
        methods: list[str] | None = None) -> dict[str, Any]:
    import torch

    from edgedistill.data import ArrayData
    from edgedistill.export import export_onnx
    from edgedistill.models import build_model, load_checkpoint
    from edgedistill.tasks import build_task

    if not data_dir.exists():
        raise SystemExit(f"MNIST not found at {data_dir}; pass --data-root")
    torch.set_num_threads(1)
    names = select(methods or DEFAULT_METHODS)
    n_seeds = seeds or (QUICK["seeds"] if quick else SEEDS)
    seed_list = list(range(n_seeds))
    teacher_spec = QUICK["teacher"] if quick else TEACHER
    epochs = QUICK["epochs"] if quick else EPOCHS
    ds, x, y = load_splits(data_dir)
    held = ArrayData(x[HELD_OUT[0]:HELD_OUT[1]], y[HELD_OUT[0]:HELD_OUT[1]])
    teacher_ckpt = cached_teacher(ds, x, y, data_dir, work, teacher_spec,
                                  QUICK["teacher_train"] if quick else TEACHER_TRAIN)
    files = work / ("files_quick" if quick else "files")
    files.mkdir(parents=True, exist_ok=True)
    probe = dataset(ds, held, held, held)
    task = build_task(None, probe)
    teacher = build_model(teacher_spec, probe.input_shape, probe.num_classes)
    load_checkpoint(teacher, teacher_ckpt, where=str(teacher_ckpt))
    teacher_acc, _ = score(export_onnx(teacher, files / "teacher.onnx", task), held, task)
    teacher_params = sum(p.numel() for p in teacher.parameters())

    skipped = {n: why for n in names if (why := unavailable(METHODS[n]))}
    accs: dict[str, dict[int, float]] = {}
    correct: dict[str, dict[int, Any]] = {}
    info: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    for seed in seed_list:
        train_rows, val_rows = student_rows(y, seed)
        data = dataset(ds, ArrayData(x[train_rows], y[train_rows]), ArrayData(x[val_rows], y[val_rows]), held)
        for name in names:
            if name in skipped or name in failed:
                continue
            t0 = time.perf_counter()
            try:
                onnx_path, details = run_one(name, seed, data, data_dir, work, teacher_spec, teacher_ckpt, epochs)
            except Exception as exc:  # a method that fails (e.g. a term's settings after a merge) is a row saying why
                failed[name] = f"{type(exc).__name__}: {str(exc)[:300]}"
                print(f"{name} seed {seed} failed: {failed[name]}", file=sys.stderr)
                continue
            kept = shutil.copyfile(onnx_path, files / f"{name}-seed{seed}.onnx")
            acc, ok = score(Path(kept), held, task)
            accs.setdefault(name, {})[seed] = acc
            correct.setdefault(name, {})[seed] = ok
            step = details["steps"][0]
            rec = info.setdefault(name, {"params": step["params"], "runs": []})
            rec["runs"].append({"seed": seed, "accuracy": acc, "val_metric": step["val_metric"],
                                "best_epoch": step["best_epoch"], "temperature_final": step["temperature_final"],
                                "seconds": round(time.perf_counter() - t0, 1), "onnx": str(kept)})
            print(f"{name} seed {seed}: {acc:.4f} held-out ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)

    rows = []
    for name in names:
        spec = METHODS[name]
        row: dict[str, Any] = {"name": name, "losses": spec["losses"], "student": spec.get("student", STUDENT),
                               **({"temperature_schedule": spec["temperature_schedule"]}
                                  if "temperature_schedule" in spec else {})}
        if name in skipped:
            row["skipped"] = skipped[name]
        elif name in failed:
            row["error"] = failed[name]
        else:
            row.update(summarize([accs[name][s] for s in seed_list]), params=info[name]["params"],
                       runs=info[name]["runs"])
            row["param_ratio"] = teacher_params / info[name]["params"]
            ref = spec.get("reference")
            if ref and ref in accs:
                row["paired"] = paired(correct, name, ref, accs, seed_list)
        rows.append(row)
    return {
        "title": "MNIST, 500 labelled images: which distillation method helps a ~6k-parameter student?",
        "metric_name": "accuracy",
        "data": {"path": str(data_dir), "teacher_images": f"0–{TEACHER_ROWS - 1:,} (15% of them validate)",
                 "student_pool": f"{POOL[0]:,}–{POOL[1] - 1:,}", "train_per_seed": 10 * TRAIN_PER_CLASS,
                 "val_per_seed": 10 * VAL_PER_CLASS, "held_out": f"{HELD_OUT[0]:,}–{HELD_OUT[1] - 1:,}"},
        "teacher": {"spec": teacher_spec, "checkpoint": str(teacher_ckpt), "params": teacher_params,
                    "accuracy": teacher_acc, "onnx": str(files / "teacher.onnx")},
        "setting": {"epochs": epochs, "lr": LR, "temperature": TEMPERATURE, "batch_size": BATCH,
                    "seeds": seed_list, "threads": 1},
        "stats": "mean ± sample std over seeds; paired vs the reference on the same seeds: exact sign-flip "
                 "permutation test over seeds (2^n flips; scipy is not a declared dependency) and exact McNemar "
                 "on the 2,000 held-out images per seed and pooled over seeds",
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    """The README table from the JSON alone: accuracy over seeds, and which differences are significant."""
    t = result["teacher"]
    s = result["setting"]
    n = len(s["seeds"])
    lines = [f"### kd: {result['title']}", "",
             f"`{result['command']}` — {result['when']}, one thread, {n} seeds, {s['epochs']} epochs, T = "
             f"{s['temperature']}; accuracy of each exported ONNX file (ONNX Runtime) on the same 2,000 held-out "
             "images.", "",
             f"Teacher: {t['spec']['name']} {t['spec'].get('channels')}, {t['params']:,} parameters, "
             f"**{100 * t['accuracy']:.2f}%** on the held-out images.", "",
             "| method | loss | student params (teacher ×) | accuracy % mean ± std | min–max | Δ vs reference | "
             "sign-flip p (seeds) | McNemar p pooled | seeds with McNemar p < 0.05 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        loss = " + ".join(f"{t_['weight']:g}·{t_['name']}" for t_ in r["losses"])
        if "temperature_schedule" in r:
            loss += f" ({r['temperature_schedule']['kind']} T → {r['temperature_schedule']['end']:g})"
        if r.get("skipped") or r.get("error"):
            why = f"skipped: {r['skipped']}" if r.get("skipped") else f"failed: {r['error']}"
            lines.append(f"| {r['name']} | {loss} | {why} | | | | | | |")
            continue
        cells = [f"{r['params']:,} ({r['param_ratio']:.0f}×)", f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}",
                 f"{100 * r['min']:.2f}–{100 * r['max']:.2f}"]
        p = r.get("paired")
        if p:
            star = " *" if p["significant"] else ""
            pool = p["mcnemar_pooled"]
            cells += [f"{100 * p['diff_mean']:+.2f} vs {p['reference']}{star}", f"{p['sign_flip_p']:.3f}",
                      f"{pool['p']:.2g} ({pool['only_method']} vs {pool['only_reference']})",
                      f"{p['mcnemar_significant_seeds']}/{len(p['mcnemar_per_seed'])}"]
        else:
            cells += ["reference", "", "", ""]
        lines.append(f"| {r['name']} | {loss} | " + " | ".join(cells) + " |")
    lines += ["", "**Significance**", "",
              f"- `*`: the sign-flip permutation test over the {n} seeds gives p < 0.05. With {n} seeds its smallest "
              f"possible two-sided p is {2 / 2 ** n:.4f}" + (" — so no difference can reach p < 0.05 at this seed "
                                                            "count; run `--seeds 6` or more." if 2 / 2 ** n >= 0.05
                                                            else "."),
              "- McNemar pooled: discordant held-out images summed over seeds (method right only / reference right "
              "only); the same 2,000 images recur in every seed, so the pooled test treats seeds as independent "
              "repetitions of the same images — a supporting figure, not a replacement for the seed-level test."]
    for r in result["rows"]:
        p = r.get("paired")
        if p and not r.get("skipped"):
            verdict = []
            if p["significant"]:
                verdict.append("significant over seeds")
            if p["mcnemar_pooled"]["p"] < 0.05:
                verdict.append("significant pooled McNemar")
            lines.append(f"- {r['name']} vs {p['reference']}: {100 * p['diff_mean']:+.2f} points; "
                         + (", ".join(verdict) if verdict else "not significant") + "; per seed "
                         + ", ".join(f"{100 * d:+.2f}" for d in p["diffs"]))
    skipped = [r for r in result["rows"] if r.get("skipped")]
    if skipped:
        lines += ["", "**Not run**", ""] + [f"- {r['name']}: {r['skipped']}" for r in skipped]
    lines += ["", "**Setting**", "",
              f"- data: MNIST test file; teacher trained on images {result['data']['teacher_images']}; per seed "
              f"{result['data']['train_per_seed']} class-balanced training and {result['data']['val_per_seed']} "
              f"validation images drawn from images {result['data']['student_pool']}; scored on images "
              f"{result['data']['held_out']}",
              "- per seed every method starts from the same student weights and sees the same images in the same "
              "order; the best validation epoch is kept (as the pipeline does)",
              f"- {result['stats']}"]
    return "\n".join(lines) + "\n"
