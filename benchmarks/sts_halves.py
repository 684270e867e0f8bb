"""Spearman of a text run's models on the two halves of STS-B dev: selection (for choices) and report (not).

For each run folder (`edgedistill compress --out RUN` of a text_embedding recipe, with or without
`data.dev_split`), the same seeded, genre-stratified halves (`--selection`, `--seed`) score, in PyTorch
unless named otherwise:

- the teacher (stages/0-teacher),
- the float student before the vocabulary cut (the last distill stage) and after it (the vocab stage, with
  the cut tokenizer), and the share of sentences whose tokenization the cut changes (train, each half),
- the shipped file, `bundle/model.onnx` in ONNX Runtime with the bundled tokenizer.

    python benchmarks/sts_halves.py --run /tmp/runA --run /tmp/runB [--json halves.json]

Choose between runs by the `selection` column only; `report` is for reporting.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _restore(stage_dir: Path, data: Any, task: Any, teacher: Any = None) -> Any:
    from edgedistill.io import load_weights
    from edgedistill.models import build_model

    spec = json.loads((stage_dir / "spec.json").read_text())
    model = build_model(spec, data.input_shape, data.num_classes, where=str(stage_dir), task=task, teacher=teacher)
    load_weights(model, stage_dir / "model.safetensors")
    return model.eval()


def _texts(path: Path, dev: Any) -> dict[str, list[str]]:
    from edgedistill.data.dev_split import split_pairs
    from edgedistill.data.text_files import read_sts, sts_sentences

    sel, rep = split_pairs(read_sts(path / "sts-dev.csv"), dev)
    return {"train": sts_sentences(read_sts(path / "sts-train.csv")), "selection": sts_sentences(sel),
            "report": sts_sentences(rep)}


def _changed(full: Any, cut: Any, texts: list[str]) -> float:
    """Share of texts whose word pieces differ between the full and the cut tokenizer."""
    return sum(full.tokenize(t) != cut.tokenize(t) for t in texts) / len(texts)


def measure(run: Path, selection: float, seed: int) -> dict[str, Any]:
    from edgedistill.data import load_dataset
    from edgedistill.data.dev_split import DevSplitConfig
    from edgedistill.data.tokenize import load_tokenizer
    from edgedistill.evaluate import evaluate_onnx, evaluate_torch
    from edgedistill.recipe import load_recipe
    from edgedistill.tasks import build_task

    recipe = load_recipe(str(run / "recipe.yaml"))
    dev = DevSplitConfig(selection=selection, seed=seed)
    cfg = recipe.config.data.model_copy(update={"dev_split": dev, "test_limit": None, "train_limit": None})
    data = load_dataset(cfg)
    task = build_task(recipe.config.task, data)
    stages = sorted((p for p in (run / "stages").iterdir() if p.is_dir()), key=lambda p: int(p.name.split("-")[0]))
    out: dict[str, Any] = {"run": str(run), "recipe": recipe.config.name, "rows": {}}

    def score(name: str, fn: Any, ds: Any) -> None:
        out["rows"][name] = {"selection": fn(ds.val), "report": fn(ds.test)}
        print(f"  {name:34s} selection {out['rows'][name]['selection']:.4f}  report {out['rows'][name]['report']:.4f}",
              flush=True)

    print(run, flush=True)
    teacher = _restore(stages[0], data, task)
    score("teacher fp32 (torch)", lambda s: evaluate_torch(teacher, s, task), data)
    distills = [p for p in stages if p.name.split("-", 1)[1] == "distill" and (p / "model.safetensors").exists()]
    vocab = next((p for p in stages if p.name.endswith("-vocab") and (p / "model.safetensors").exists()), None)
    if distills:
        student = _restore(distills[-1], data, task, teacher)
        score("student fp32, full vocabulary", lambda s: evaluate_torch(student, s, task), data)
    cut_data, cut_task = data, task
    if vocab is not None:
        cut_cfg = cfg.model_copy(update={"tokenizer": str(vocab / "tokenizer")})
        cut_data = load_dataset(cut_cfg)
        cut_task = build_task(recipe.config.task, cut_data)
        cut = _restore(vocab, cut_data, cut_task, teacher)
        score("student fp32, vocabulary cut", lambda s: evaluate_torch(cut, s, cut_task), cut_data)
        full_tok, cut_tok = load_tokenizer(Path(data.preprocessing["tokenizer_dir"])), load_tokenizer(vocab / "tokenizer")
        out["tokenization_changed"] = {k: _changed(full_tok, cut_tok, v) for k, v in _texts(Path(cfg.path), dev).items()}
        print("  tokenization changed by the cut: " + ", ".join(f"{k} {v:.1%}" for k, v in out["tokenization_changed"].items()))
    bundle = run / "bundle" / "model.onnx"
    if bundle.exists():
        score("deployed (bundle, ONNX Runtime)", lambda s: evaluate_onnx(bundle, s, cut_task), cut_data)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", required=True, help="a run folder (repeat for several)")
    ap.add_argument("--selection", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    results = [measure(Path(r), args.selection, args.seed) for r in args.run]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
