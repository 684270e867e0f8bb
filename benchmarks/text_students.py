"""The text students compared beside the shipped one: variants of the built-in `minilm_embedder` recipe, each
a real `edgedistill compress` run, chosen between by the selection half of STS-B dev only.

Each variant changes one thing in the recipe (issue #22: relational and intermediate-layer terms, token
dropout, a 3-layer narrower student at the same latency, the vocabulary cut) and keeps everything else, so
a difference is that one change's. The
variants' own profiling is cut short (one target, few runs): `text.py` times every file again, interleaved
with the teachers in one run, which is what the table reports.

    python benchmarks/run.py text                       # the shipped recipe and every variant below
    python benchmarks/run.py text --students relation,L3  # some of them (the shipped student is always measured)
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

RECIPE = "minilm_embedder"
FIRST = 12_000  # vocab_first: the first vocabulary ids kept instead of the common words (the recipe's cut until 2026-12-03)
# the variants' own profiling (text.py re-times every file side by side, so these figures are not used)
SHORT_PROFILE = ["targets=[x86_vnni]", "profile.runs=20", "profile.warmup=2", "profile.sequence_lengths=[128]"]


def _general(recipe: dict[str, Any]) -> dict[str, Any]:
    return recipe["stages"][0]


def _stage(recipe: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(s for s in recipe["stages"] if s["kind"] == kind)


Change = Callable[[dict[str, Any]], None]  # changes the recipe dict in place


def _add_loss(name: str, weight: float) -> Change:
    def change(recipe: dict[str, Any]) -> None:
        _general(recipe)["losses"].append({"name": name, "weight": weight})
    return change


def _augment(token_dropout: float) -> Change:
    def change(recipe: dict[str, Any]) -> None:
        _general(recipe)["augment"] = {"token_dropout": token_dropout}
    return change


def _student(**spec: Any) -> Change:
    def change(recipe: dict[str, Any]) -> None:
        _general(recipe)["student"].update(spec)
    return change


def _first_ids(recipe: dict[str, Any]) -> None:
    _stage(recipe, "vocab").update(keep_first=FIRST, keep_words=0)


# name -> (what changes against the shipped recipe, the change). Weights: embedding_mse on unit vectors is
# about 2(1 − cos)/384, so a hidden-state or attention-relation term at weight 1 would drown it; 0.01 puts
# them at the same order at the start of training (not tuned further).
VARIANTS: dict[str, tuple[str, Change]] = {
    "relation": ("general stage + embedding_relation (in-batch cosine matrices), weight 1",
                 _add_loss("embedding_relation", 1.0)),
    "hidden": ("general stage + hidden_mse (student layers 0, 1 ↔ teacher 2, 5), weight 0.01",
               _add_loss("hidden_mse", 0.01)),
    "minilmv2": ("general stage + minilmv2_relations (last layer, q-q/k-k/v-v), weight 0.01",
                 _add_loss("minilmv2_relations", 0.01)),
    "token_dropout": ("general stage on token-dropped sentences (10% per epoch, teacher on the same input)",
                      _augment(0.1)),
    "L3": ("3 layers (teacher 1, 3, 5), 6 heads, FFN 640: about the 2-layer student's multiply-adds",
           _student(layers=[1, 3, 5], heads=6, intermediate_size=640)),
    "vocab_first": (f"vocabulary cut keeps the first {FIRST:,} vocabulary ids instead of the pieces of the 10,000 "
                    "most frequent English words (wordfreq): about as many rows", _first_ids),
}


def variant_recipe(name: str) -> dict[str, Any]:
    """The built-in recipe with variant `name`'s change applied (a plain dict, as yaml.safe_load gives it)."""
    from edgedistill.recipe import read_recipe_text

    recipe = yaml.safe_load(read_recipe_text(RECIPE)[0])
    what, change = VARIANTS[name]
    out = copy.deepcopy(recipe)
    change(out)
    out["name"] = f"{RECIPE}_{name}"
    out["description"] = f"{RECIPE} with one change: {what}"
    return out


def compress(recipe: str | Path, run_dir: Path, sets: list[str]) -> None:
    """`edgedistill compress` into `run_dir`. An existing folder is resumed (`--resume`): every stage whose key
    still matches the recipe is reused and the rest is redone, so a folder made by an older recipe is never
    reported as this one (evaluation and the short profile always rerun). Exit 1 (a gate failed) still leaves a
    complete run and report."""
    from toolchain import edgedistill_command

    resume = ["--resume"] if (run_dir / "stages").is_dir() else []
    cmd = [*edgedistill_command(), "compress", "--recipe", str(recipe), "--out", str(run_dir), *resume,
           *[a for s in sets for a in ("--set", s)]]
    print("running:", " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"edgedistill compress failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def variant_run(name: str, work: Path, sets: list[str], shipped: Path | None = None) -> Path:
    """Variant `name`'s finished run folder under `work/runs/` (run or resumed as needed). A new folder starts
    from a copy of the `shipped` run's stages: `--resume` reuses each stage whose key (its settings and
    everything before it) is unchanged, e.g. all training for a vocabulary-cut variant, and redoes the rest."""
    run_dir = work / "runs" / name
    recipe_file = work / "recipes" / f"{name}.yaml"
    recipe_file.parent.mkdir(parents=True, exist_ok=True)
    recipe_file.write_text(yaml.safe_dump(variant_recipe(name), sort_keys=False))
    if shipped is not None and (shipped / "stages").is_dir() and not run_dir.exists():
        shutil.copytree(shipped / "stages", run_dir / "stages")
    compress(recipe_file, run_dir, [*sets, *SHORT_PROFILE])
    return run_dir


if __name__ == "__main__":  # train variants only: python benchmarks/text_students.py WORK SHIPPED_RUN NAME [...]
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    for n in sys.argv[3:]:
        variant_run(n, Path(sys.argv[1]), ["data.path=" + str(Path(__file__).resolve().parents[2] / "shared/data/stsb")],
                    Path(sys.argv[2]))
