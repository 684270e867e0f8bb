"""Tokenization at load time: text -> named int64 arrays, with the model's own tokenizer.

The tokenizer is a local directory (a model directory, or one written by `save_pretrained`) loaded offline.
Every row of a split is padded to one width (the longest row, at most `max_length`), so batches are plain
slices of the arrays and the exported graph sees the same inputs the torch model saw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError


def load_tokenizer(path: str | Path, where: str = "data.tokenizer") -> Any:
    """A fast tokenizer from a local directory, offline (never a hub download)."""
    from ..models.hf import transformers_module
    from ..models.remote_code import refuse_remote_code

    tf = transformers_module()
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UserError("tokenizer folder not found", where=f"{where} ({folder})",
                        fix="point at a folder holding tokenizer.json or vocab.txt (a model directory works)")
    refuse_remote_code(folder, where)
    try:
        return tf.AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # the folder is input: tokenizers raises bare Exception for a file it cannot parse
        raise UserError(f"cannot load a tokenizer: {(str(exc) or type(exc).__name__).splitlines()[0][:300]}", where=f"{where} ({folder})",
                        fix="the folder needs tokenizer files (tokenizer.json, or vocab.txt and tokenizer_config.json)") from exc


def tokenize(tokenizer: Any, texts: list[str], max_length: int,
             input_names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Tokenize `texts` into int64 arrays (input_ids, attention_mask, and token_type_ids when the tokenizer
    makes them), truncated to `max_length` and padded to the longest row."""
    if not texts:  # the fast tokenizer raises IndexError on an empty batch; an empty split is refused by its caller
        return {n: np.zeros((0, 0), dtype=np.int64) for n in input_names or tokenizer.model_input_names}
    enc = tokenizer(list(texts), max_length=max_length, truncation=True, padding="longest", return_tensors="np")
    names = input_names or tuple(n for n in tokenizer.model_input_names if n in enc)
    missing = [n for n in names if n not in enc]
    if missing:
        raise UserError(f"the tokenizer does not produce {', '.join(missing)}", where="data.tokenizer",
                        fix="use the tokenizer that belongs to the model")
    return {n: np.ascontiguousarray(enc[n], dtype=np.int64) for n in names}


def tokenizer_files(tokenizer: Any, folder: Path) -> list[Path]:
    """Write the tokenizer for the bundle (save_pretrained), returning the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    return sorted(Path(p) for p in tokenizer.save_pretrained(str(folder)) if Path(p).is_file())
