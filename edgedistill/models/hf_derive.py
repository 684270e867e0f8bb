"""Derive a small student from a Hugging Face BERT-like teacher, keeping the teacher's weights.

A student initialised from the teacher's own weights starts far closer than a random one (DistilBERT,
TinyBERT and the all-MiniLM family itself are built this way), so each operation here *removes* structure
and copies what stays:

- `keep_layers`: a subset of the encoder layers (the first N, every other one ending at the top, or an
  explicit list), through `derive.keep_layers` (the `hf_derived` builder's copy). Which layers matter: on all-MiniLM-L6-v2 keeping layers 1, 3, 5 distils to a far better
  student than 0, 2, 4 (docs/text.md), hence "every other" ends at the top layer.
- `narrow`: fewer FFN neurons and attention heads (the project's Torch-Pruning path, `prune_structured`,
  which keeps the residual width), and optionally a narrower hidden size (Torch-Pruning's dependency graph
  cuts every layer coupled to the residual stream: embeddings, LayerNorms, all projections).
- `prune_vocab`: keep only the word pieces a corpus uses, plus the special tokens and every single-character
  piece, so any word still tokenizes (into characters at worst, never into [UNK] when its characters are in
  the teacher's vocabulary). The tokenizer is rebuilt on the same kept list so ids agree with the table.
  WordPiece is greedy longest-match, so a word whose pieces were all kept tokenizes exactly as before.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import UserError

LayerSpec = int | str | Sequence[int]


def _bert(model: nn.Module) -> nn.Module:
    """The base model (BertModel-like: .embeddings and .encoder.layer) inside a task head, or the model itself."""
    if hasattr(model, "encoder") and hasattr(model, "embeddings"):
        return model
    inner = getattr(model, "encoder", None)  # a task wrapper (the sentence encoder) around the HF model
    if isinstance(inner, nn.Module) and hasattr(inner, "embeddings") and hasattr(inner, "encoder"):
        return inner
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if base is not None and hasattr(base, "encoder") and hasattr(base, "embeddings"):
        return base
    raise UserError(f"{type(model).__name__} is not a BERT-like encoder (no .embeddings and .encoder.layer)",
                    where="student.derive", fix="derive students from BERT/MiniLM/RoBERTa-style Hugging Face models")


def resolve_layers(spec: LayerSpec, n_layers: int) -> list[int]:
    """Teacher layer indices to keep: an int N (the first N), "every_other" (…, n-3, n-1: ends at the top), or a list."""
    where = "student.layers"
    if isinstance(spec, bool):
        raise UserError("layers must be a number, a list of indices or every_other", where=where, fix="e.g. layers: [1, 3, 5]")
    if isinstance(spec, int):
        if not 1 <= spec <= n_layers:
            raise UserError(f"cannot keep {spec} of {n_layers} layers", where=where, fix=f"use 1..{n_layers}")
        return list(range(spec))
    if isinstance(spec, str):
        if spec in ("every_other", "every-other"):
            return list(range(n_layers - 1, -1, -2))[::-1]
        raise UserError(f'unknown layer selection "{spec}"', where=where, fix="use every_other, a number or a list")
    layers = [int(i) for i in spec]
    bad = [i for i in layers if not 0 <= i < n_layers]
    if not layers or bad or len(set(layers)) != len(layers):
        raise UserError(f"layer list {layers} is not a set of distinct indices in 0..{n_layers - 1}", where=where,
                        fix="list each kept teacher layer once, counted from 0")
    return sorted(layers)


def keep_layers(model: nn.Module, spec: LayerSpec) -> tuple[nn.Module, list[int]]:
    """A deep copy of `model` with only the chosen layers (weights copied, `derive.keep_layers`); returns it and
    the kept teacher indices."""
    from .derive import keep_layers as keep
    from .derive import layer_stack

    layers = resolve_layers(spec, len(layer_stack(model)[1]))
    return keep(model, layers), layers


def narrow(model: nn.Module, *, intermediate_size: int | None = None, heads: int | None = None,
           hidden_size: int | None = None, example: torch.Tensor | None = None) -> nn.Module:
    """Fewer FFN neurons / attention heads / hidden channels, in place, keeping the weights of what stays.

    FFN and heads go through `prune_structured` (L2 magnitude, Torch-Pruning); the hidden size through a
    Torch-Pruning group rooted at the word embeddings, which reaches every residual-stream layer."""
    from ..prune.structured import prune_structured

    base = _bert(model)
    cfg = model.config
    if example is None:
        example = torch.arange(1, 17).reshape(1, 16) % cfg.vocab_size
    if intermediate_size is not None or heads is not None:
        ffn = cfg.intermediate_size
        n_heads = cfg.num_attention_heads
        if intermediate_size is not None and not 8 <= intermediate_size <= ffn:
            raise UserError(f"intermediate_size {intermediate_size} is not in 8..{ffn}", where="student.intermediate_size",
                            fix=f"pick a smaller FFN width than the teacher's {ffn}")
        if heads is not None and not 1 <= heads <= n_heads:
            raise UserError(f"heads {heads} is not in 1..{n_heads}", where="student.heads",
                            fix=f"keep between 1 and the teacher's {n_heads} heads")
        ratio = 0.0 if intermediate_size is None else 1.0 - intermediate_size / ffn
        head_ratio = 0.0 if heads is None else 1.0 - heads / n_heads
        prune_structured(model, example, ratio=ratio, head_ratio=head_ratio, round_to=8 if ratio else 1)
        first = base.encoder.layer[0]
        cfg.intermediate_size = first.intermediate.dense.out_features
        cfg.num_attention_heads = first.attention.self.num_attention_heads
    if hidden_size is not None and hidden_size != cfg.hidden_size:
        _narrow_hidden(model, hidden_size, example)
    return model


def _narrow_hidden(model: nn.Module, hidden_size: int, example: torch.Tensor) -> None:
    from ..prune._tp import torch_pruning
    from ..prune.plan import build_graph, traced_output

    tp = torch_pruning()
    base = _bert(model)
    width = model.config.hidden_size
    if not 8 <= hidden_size < width:
        raise UserError(f"hidden_size {hidden_size} is not in 8..{width - 1}", where="student.hidden_size",
                        fix=f"pick a width below the teacher's {width}")
    was_training = model.training
    model.eval()
    dg = build_graph(model, example, traced_output(model))
    group = dg.get_pruning_group(base.embeddings.word_embeddings, tp.prune_embedding_out_channels, list(range(width)))
    scores = tp.importance.MagnitudeImportance(p=2)(group)
    drop = sorted(torch.argsort(scores)[: width - hidden_size].tolist())
    dg.get_pruning_group(base.embeddings.word_embeddings, tp.prune_embedding_out_channels, drop).prune()
    pooler = getattr(base, "pooler", None)  # not on the traced path (the first output), so not in the graph
    if pooler is not None and pooler.dense.in_features == width:
        tp.prune_linear_in_channels(pooler.dense, drop)
        tp.prune_linear_out_channels(pooler.dense, drop)
    model.train(was_training)
    model.config.hidden_size = hidden_size


# ---------------------------------------------------------------- vocabulary


def _special_ids(tokenizer: Any) -> set[int]:
    return set(tokenizer.all_special_ids)


def character_ids(tokenizer: Any) -> set[int]:
    """Ids of the single-character pieces ("a", "##a"): with them every word of known characters still tokenizes."""
    prefix = getattr(getattr(tokenizer.backend_tokenizer, "model", None), "continuing_subword_prefix", "##") or "##"
    return {i for t, i in tokenizer.get_vocab().items()
            if len(t) == 1 or (t.startswith(prefix) and len(t) == len(prefix) + 1)}


def used_token_ids(tokenizer: Any, texts: Iterable[str], batch: int = 1024) -> set[int]:
    """Every id the tokenizer produces on `texts` (no truncation: a long text's tail counts too)."""
    used: set[int] = set()
    chunk: list[str] = []
    for text in texts:
        chunk.append(text)
        if len(chunk) == batch:
            used.update(i for ids in tokenizer(chunk, add_special_tokens=False)["input_ids"] for i in ids)
            chunk = []
    if chunk:
        used.update(i for ids in tokenizer(chunk, add_special_tokens=False)["input_ids"] for i in ids)
    return used


def kept_vocab(tokenizer: Any, texts: Iterable[str], *, keep_characters: bool = True, keep_first: int = 0,
               extra_ids: Iterable[int] = ()) -> list[int]:
    """Old ids to keep, sorted: what `texts` use, the special tokens, [UNK], every single-character piece, and
    the first `keep_first` ids that are real pieces (BERT numbers its WordPiece vocabulary by frequency after
    the character block, so this keeps the most common words a corpus happened not to use)."""
    keep = used_token_ids(tokenizer, texts) | _special_ids(tokenizer) | set(extra_ids)
    if keep_characters:
        keep |= character_ids(tokenizer)
    if tokenizer.unk_token_id is not None:
        keep.add(tokenizer.unk_token_id)
    if keep_first:
        placeholder = re.compile(r"^\[unused\d+\]$")
        keep |= {i for t, i in tokenizer.get_vocab().items() if i < keep_first and not placeholder.match(t)}
    return sorted(keep)


def prune_vocab(model: nn.Module, tokenizer: Any, texts: Iterable[str], *, keep_characters: bool = True,
                keep_first: int = 0, extra_ids: Iterable[int] = ()) -> tuple[nn.Module, Any, list[int]]:
    """Keep the word pieces of `kept_vocab(...)` in `model`'s word-embedding table, in place.

    Returns (model, a new fast tokenizer over the kept list, kept old ids in new-id order). Kept rows of the
    word-embedding table are copied unchanged; the kept ids keep their relative order, so [PAD]=0 stays 0
    for BERT vocabularies."""
    if not getattr(tokenizer, "is_fast", False):
        raise UserError("vocabulary pruning needs a fast (tokenizers-backed) tokenizer", where="student.prune_vocab",
                        fix="load the tokenizer with use_fast=True")
    kept = kept_vocab(tokenizer, texts, keep_characters=keep_characters, keep_first=keep_first, extra_ids=extra_ids)
    keep = set(kept)
    new_tok = pruned_tokenizer(tokenizer, kept)
    base = _bert(model)
    old = base.embeddings.word_embeddings
    emb = nn.Embedding(len(kept), old.embedding_dim, padding_idx=None)
    with torch.no_grad():
        emb.weight.copy_(old.weight[torch.tensor(kept)])
    if old.padding_idx is not None and old.padding_idx in keep:
        emb.padding_idx = kept.index(old.padding_idx)
    base.embeddings.word_embeddings = emb
    model.config.vocab_size = len(kept)
    if getattr(model.config, "pad_token_id", None) is not None and model.config.pad_token_id in keep:
        model.config.pad_token_id = kept.index(model.config.pad_token_id)
    return model, new_tok, kept


def pruned_tokenizer(tokenizer: Any, kept: list[int]) -> Any:
    """The same tokenizer (normaliser, pre-tokenizer, template, padding) over the kept pieces, renumbered."""
    from tokenizers import Tokenizer

    inv = {i: t for t, i in tokenizer.get_vocab().items()}
    remap = {old: new for new, old in enumerate(kept)}
    data = json.loads(tokenizer.backend_tokenizer.to_str())
    model = data["model"]
    if model.get("type") != "WordPiece":
        raise UserError(f"vocabulary pruning supports WordPiece tokenizers, not {model.get('type')}",
                        where="student.prune_vocab", fix="turn prune_vocab off for this teacher")
    model["vocab"] = {inv[old]: new for new, old in enumerate(kept)}
    for tok in data.get("added_tokens") or []:
        tok["id"] = remap[tok["id"]]
    _remap_post_processor(data.get("post_processor"), remap)
    if data.get("padding") and data["padding"].get("pad_id") in remap:
        data["padding"]["pad_id"] = remap[data["padding"]["pad_id"]]
    new = copy.deepcopy(tokenizer)
    new._tokenizer = Tokenizer.from_str(json.dumps(data))
    return new


def _remap_post_processor(proc: dict | None, remap: dict[int, int]) -> None:
    if not proc:
        return
    for sub in proc.get("processors") or []:  # Sequence of processors
        _remap_post_processor(sub, remap)
    for key in ("cls", "sep"):  # BertProcessing / RobertaProcessing: [token, id]
        if isinstance(proc.get(key), list):
            proc[key][1] = remap[proc[key][1]]
    for spec in (proc.get("special_tokens") or {}).values():  # TemplateProcessing
        spec["ids"] = [remap[i] for i in spec["ids"]]
