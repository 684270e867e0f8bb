"""A distill stage's own training data: progressive distillation (ERNIE-Tiny) as stages of one recipe.

`data: {name: text_corpus, path: corpus.txt}` in a distill stage trains that stage on an unlabelled corpus
(general distillation), while a later stage without `data:` trains on the recipe's data (task distillation).
The stage's fields are merged over the recipe's `data:` section, so the tokenizer, `max_length` and the rest
stay the same unless the stage overrides them. Only the training split changes: validation, early stopping
and the final evaluation stay on the recipe's data, so every stage is measured the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..data import DATASETS, DataConfig
from ..errors import UserError, did_you_mean

if TYPE_CHECKING:
    from ..data import Split
    from ..tasks import Task

UNLABELLED = ("text_corpus",)  # loaders whose training split has no labels


def merged_config(recipe_data: DataConfig, override: dict[str, Any]) -> DataConfig:
    """The recipe's data section with the stage's fields on top (validated like the recipe's own)."""
    return DataConfig.model_validate({**recipe_data.model_dump(), **override})


def check_stage_data(recipe_data: DataConfig, override: dict[str, Any], label_terms: list[str]) -> tuple | None:
    """(field path under the stage, problem, fix) when the stage's `data:` cannot work, else None."""
    if not override:
        return (("data",), "the stage's data section is empty", "name the training data, e.g. {name: text_corpus, path: corpus.txt}, or remove data")
    allowed = list(DataConfig.model_fields)
    try:
        cfg = merged_config(recipe_data, override)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            return (("data", *loc), f'unknown key "{loc[-1]}"{did_you_mean(str(loc[-1]), allowed)}',
                    f"allowed keys here: {', '.join(allowed)}")
        return (("data", *loc), err["msg"].removeprefix("Value error, "), "see the recipe reference in the README")
    if cfg.name not in DATASETS:
        return (("data", "name"), f'unknown dataset "{cfg.name}"{did_you_mean(cfg.name, DATASETS)}',
                f"use one of: {', '.join(sorted(DATASETS))}")
    if cfg.name in UNLABELLED and not cfg.path:
        return (("data", "path"), f"{cfg.name} needs a path (one sentence a line)", "set data.path in this stage")
    if cfg.path and not Path(cfg.path).expanduser().exists():
        return (("data", "path"), f"path not found: {cfg.path}",
                "check the path (relative paths start from the current directory)")
    if cfg.name in UNLABELLED and label_terms:
        return (("losses",), f"an unlabelled {cfg.name} has no labels for {', '.join(label_terms)}",
                "distil without labels on this stage, e.g. losses: [{name: kl, weight: 1.0}]")
    return None


def load_stage_train(recipe_data: DataConfig, override: dict[str, Any], task: Task, where: str) -> Split:
    """The stage's training split, tokenized into the task's input names (a corpus: one sentence a row)."""
    from ..data import load_dataset

    cfg = merged_config(recipe_data, override)
    if cfg.name in UNLABELLED:
        from ..data import Split
        from ..data.text import resolve_tokenizer, unlabelled
        from ..data.text_files import read_corpus
        from ..data.tokenize import tokenize

        tokenizer, _ = resolve_tokenizer(cfg)
        texts = read_corpus(cfg.path, f"{where}.path")[: cfg.train_limit or None]
        split = Split(tokenize(tokenizer, texts, cfg.max_length, task.input_names), unlabelled(len(texts)))
    else:
        split = load_dataset(cfg).train
    missing = [n for n in task.input_names if n not in split.inputs]
    if missing:
        raise UserError(f"the stage's training data has no {', '.join(missing)} (it has {', '.join(split.inputs)})",
                        where=where, fix="train on data of the same kind as the recipe's (e.g. one text a row)")
    return split
