"""The `vocab` stage: cut the student's word-embedding table to the pieces its data uses, with a tokenizer
that agrees.

For a small sentence encoder the table is most of the file (all-MiniLM-L6-v2: 11.7M of 22.7M parameters),
so after distillation the stage keeps only the word pieces the training split uses, the special tokens,
every single-character piece (so any word of known characters still tokenizes, into characters at worst)
and optionally the first `keep_first` pieces of the vocabulary and the pieces of a text file's lines
(`keep_text`), or of a language's N most frequent words (`keep_words`, wordfreq's list): a general sample
keeps common words' tokenization on text the training split never had. The kept rows are copied unchanged
(`models.hf_derive.prune_vocab`) and the tokenizer is rebuilt over the same list, so ids and rows agree.

The stage writes the new tokenizer into its folder (`tokenizer/`); from then on the pipeline tokenizes the
recipe's data with it for the student (later stages, the evaluation of the student and shipped files, the
bundle), while the teacher keeps its own tokenization for the comparison in the report. Later stages may
only quantize and export: a teacher in the loop would need its own ids.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pydantic import Field

from ..config import Strict
from ..errors import UserError
from ..stages import register_stage
from ..state import ModelState, RunContext, StageRecord

TOKENIZER_DIR = "tokenizer"  # inside the stage folder; the pipeline re-tokenizes the data with it


class VocabConfig(Strict):
    keep_first: int = Field(0, ge=0, description="also keep the first N pieces of the teacher's vocabulary "
                                                 "(BERT vocabularies list common pieces first)")
    keep_characters: bool = Field(True, description="keep every single-character piece, so every word of known "
                                                    "characters still tokenizes (never [UNK])")
    keep_text: str | None = Field(None, description="also keep the pieces of this UTF-8 text file's lines (e.g. a "
                                                    "general word list or corpus sample), so text unlike the "
                                                    "training split keeps its tokenization")
    keep_words: int = Field(0, ge=0, description="also keep the pieces of the N most frequent words of "
                                                 "`keep_words_language` (wordfreq's general-text list; needs the "
                                                 "text extra): a general sample, not the training split's")
    keep_words_language: str = Field("en", min_length=2, description="language of keep_words (a wordfreq code)")

    def check(self) -> tuple[tuple[str, ...], str, str] | None:
        """A missing keep_text file is found when the recipe loads, before anything trains."""
        from pathlib import Path

        if self.keep_text and not Path(self.keep_text).expanduser().is_file():
            return (("keep_text",), f"file not found: {self.keep_text}",
                    "check the path (relative paths start from the current directory), or remove keep_text")
        return None


def common_words(n: int, language: str, where: str) -> list[str]:
    """The n most frequent words of `language` in wordfreq's general-text frequency list (web, subtitles,
    news, books, ...): text the training split may never contain."""
    try:
        import wordfreq
    except ImportError:
        raise UserError("keep_words needs the wordfreq package", where=f"{where}.keep_words",
                        fix='pip install "edgedistill[text]" (or pip install wordfreq), or remove keep_words') from None
    try:
        words = wordfreq.top_n_list(language, n)
    except LookupError:
        words = []
    if not words:
        raise UserError(f"wordfreq has no word list for language {language!r}", where=f"{where}.keep_words_language",
                        fix="use a language code wordfreq knows (e.g. en, de, fr), or remove keep_words")
    return words


def read_keep_text(path: str, where: str) -> list[str]:
    """The lines of `keep_text` (blank ones dropped); a missing or undecodable file is the recipe's error."""
    from pathlib import Path

    file = Path(path).expanduser()
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read keep_text {file}: {exc}", where=f"{where}.keep_text",
                        fix="give a UTF-8 text file (one word or sentence per line), or remove keep_text") from None
    return [line for line in lines if line.strip()]


def used_ids(inputs: dict[str, np.ndarray]) -> set[int]:
    """Every token id the split's rows use (padding excluded): the pieces the corpus needs."""
    used: set[int] = set()
    for name, ids in inputs.items():
        if not name.endswith("input_ids"):
            continue
        mask = inputs.get(name.replace("input_ids", "attention_mask"))
        for start in range(0, len(ids), 4096):  # in chunks: a packed corpus is tokenized as its rows are read
            chunk = np.asarray(ids[start : start + 4096])
            if mask is not None:
                chunk = chunk[np.asarray(mask[start : start + 4096]).astype(bool)]
            used.update(np.unique(chunk).tolist())
    return used


@register_stage("vocab", VocabConfig, may_follow={"distill", "prune"},
                summary="keep the word pieces the training data uses (text students); tokenizer rebuilt to agree")
def run_vocab(state: ModelState, cfg: VocabConfig, ctx: RunContext) -> ModelState:
    import copy

    from ..evaluate import evaluate_torch
    from ..io import atomic_dir
    from ..models.derive import hf_inside
    from ..models.hf_derive import prune_vocab

    t0 = time.perf_counter()
    where = f"stage {ctx.index} (vocab)"
    tokenizer = getattr(ctx.data, "tokenizer", None)
    if tokenizer is None:
        raise UserError("vocabulary pruning needs text data with a tokenizer", where=where,
                        fix="remove the vocab stage, or use a text dataset (data.tokenizer)")
    if state.spec.get("name") != "hf_derived":
        raise UserError(f'the student is a "{state.spec.get("name")}" model; the vocab stage prunes students derived '
                        "from the teacher", where=where, fix="use a student {name: hf_derived, layers: [...]}")
    before = evaluate_torch(state.model, ctx.data.val, ctx.task)
    old_size = len(tokenizer)
    lines = read_keep_text(cfg.keep_text, where) if cfg.keep_text else []
    words = common_words(cfg.keep_words, cfg.keep_words_language, where) if cfg.keep_words else []
    texts = lines + words
    model, new_tok, kept = prune_vocab(copy.deepcopy(state.model), tokenizer, texts, keep_characters=cfg.keep_characters,
                                       keep_first=cfg.keep_first, extra_ids=used_ids(ctx.data.train.inputs))
    with atomic_dir(ctx.stage_dir / TOKENIZER_DIR) as tmp:
        new_tok.save_pretrained(str(tmp))
    data, task = student_data(ctx.stage_dir, ctx.recipe, ctx.data, ctx.task)  # the pipeline reuses this load
    after = evaluate_torch(model, data.val, task)
    width = hf_inside(model).get_input_embeddings().embedding_dim
    details: dict[str, Any] = {"vocab_before": old_size, "vocab_after": len(kept), "keep_first": cfg.keep_first,
                               "keep_text_lines": len(lines), "keep_words": len(words),
                               "val_metric_before": before, "val_metric_after": after, "embedding_width": width}
    ctx.log(f"vocab: kept {len(kept)} of {old_size} word pieces; val {before:.4f} -> {after:.4f}")
    record = StageRecord(index=ctx.index, kind="vocab", settings=cfg.model_dump(mode="json"),
                         seconds=time.perf_counter() - t0, metric_after=after,
                         artifacts=[str((ctx.stage_dir / TOKENIZER_DIR).relative_to(ctx.run_dir))], details=details)
    return ModelState(model, {**state.spec, "vocab_size": len(kept)}, state.teacher, state.teacher_spec, None,
                      [*state.lineage, record])


_LOADED: dict[tuple[str, str], tuple[Any, Any]] = {}  # the last re-tokenized data, per (tokenizer folder, recipe)


def student_data(stage_dir: Any, recipe: Any, data: Any, task: Any) -> tuple[Any, Any]:
    """The data and task the student uses after `stage_dir`: re-tokenized when that stage pruned the
    vocabulary (it left `tokenizer/`), else unchanged. Loaded once: the stage scores with it, then the
    pipeline hands it to every later stage."""
    folder = stage_dir / TOKENIZER_DIR
    if not folder.is_dir():
        return data, task
    stamp = max(f.stat().st_mtime_ns for f in folder.iterdir())  # a rewritten tokenizer is loaded afresh
    key = (f"{folder.resolve()}@{stamp}", recipe.sha256)
    if key not in _LOADED:
        from ..data import load_dataset
        from ..tasks import build_task

        new = load_dataset(recipe.config.data.model_copy(update={"tokenizer": str(folder)}))
        _LOADED.clear()
        _LOADED[key] = (new, build_task(recipe.config.task, new))
    return _LOADED[key]
