"""Packed data: an image folder or a text file written once into Hugging Face `datasets` Arrow shards, then
streamed by every run (`data: {name: packed, path: OUT}`).

Why Arrow (`datasets.save_to_disk`) rather than webdataset tar shards: the trainer reads rows in a shuffled
order and each rank reads its share of every global batch, which needs random access by index. Arrow files
are memory-mapped and seekable (a row is a slice of a mapped file); a tar shard is read front to back, so
shuffling there is a buffer over a sequential stream and a resume or a rank's share has to skip through it.
Packing is measured against webdataset in `benchmarks/bench_pack.py`.

An image pack holds the encoded file bytes (JPEG/PNG as they were: packing never re-encodes) and the class
index; decoding, conversion and resizing happen when a row is read, in the loader's workers, exactly as for an
image folder. A text pack holds one line a row; tokenization happens when rows are read. `pack.json` beside
the shards says which kind a pack is and lists the class names.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..io import write_json
from .base import DataConfig, Dataset, Split, register_dataset, stratified_split
from .stream import LazyColumn

PACK_FILE = "pack.json"
FORMAT = "hf-datasets-arrow/1"


def _datasets():
    try:
        import datasets
    except ImportError as exc:
        raise UserError("packed data needs Hugging Face datasets", where="data",
                        fix='pip install "edgedistill[data]"') from exc
    return datasets


# ---------------------------------------------------------------- writing a pack


def _image_rows(root: Path, classes: list[str]) -> Iterator[dict[str, Any]]:
    from .image_folder import _check_header, _images

    for index, name in enumerate(classes):
        for path in _images(root / name):
            _check_header(path)
            yield {"image": path.read_bytes(), "label": index}


def _text_rows(path: Path) -> Iterator[dict[str, Any]]:
    from .text_files import read_corpus

    for line in read_corpus(path, "SRC"):
        yield {"text": line}


def pack(src: str | Path, out: str | Path, *, shard_mb: int = 256) -> dict[str, Any]:
    """Write `src` (a folder of class folders, or a text file of one sentence a line) as a pack in `out`.

    Rows stream from the source into Arrow files (one row group in memory at a time), so a pack can be larger
    than memory. Returns what `pack.json` records."""
    from ..progress import enabled

    datasets = _datasets()
    if not enabled():  # its own bars would land in logs and pipes
        datasets.disable_progress_bars()
    src, out = Path(src).expanduser(), Path(out).expanduser()
    if out.exists() and any(out.iterdir()):
        raise UserError("the output folder is not empty", where=str(out), fix="choose a new folder for the pack")
    if src.is_dir():
        from .image_folder import _classes

        classes = _classes(src, "SRC")
        features = datasets.Features({"image": datasets.Value("binary"), "label": datasets.Value("int64")})
        # a tuple: `datasets` would split a list argument across generator shards (each seeing one class as 0)
        gen, kwargs, meta = _image_rows, {"root": src, "classes": tuple(classes)}, {"kind": "images", "classes": classes}
    elif src.is_file():
        features = datasets.Features({"text": datasets.Value("string")})
        gen, kwargs, meta = _text_rows, {"path": src}, {"kind": "text"}
    else:
        raise UserError("not found", where=f"SRC ({src})", fix="give an image folder (one sub-folder per class) or a text file")
    scratch = out.parent / f".{out.name}.building-{os.getpid()}"
    try:
        ds = datasets.Dataset.from_generator(gen, gen_kwargs=kwargs, features=features, cache_dir=str(scratch),
                                             keep_in_memory=False)
        if len(ds) == 0:
            raise UserError("nothing to pack", where=str(src), fix="the source holds no images or lines")
        ds.save_to_disk(str(out), max_shard_size=f"{shard_mb}MB")
        del ds
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    meta = {"format": FORMAT, **meta, "rows": _rows_in(out), "source": str(src)}
    write_json(out / PACK_FILE, meta)
    return meta


def _rows_in(folder: Path) -> int:
    return len(_datasets().load_from_disk(str(folder)))


# ---------------------------------------------------------------- reading a pack


class PackedImages(LazyColumn):
    """Encoded images from an Arrow pack, decoded like image-folder files when rows are read."""

    def __init__(self, folder: Path, table: Any, mode: str, hw: tuple[int, int]) -> None:
        super().__init__(len(table), (1 if mode == "L" else 3, *hw), np.float32)
        self.folder, self.table, self.mode, self.hw = str(folder), table, mode, hw

    def _rows(self, indices: np.ndarray) -> np.ndarray:
        from .image_folder import _decode

        blobs = self.table.select_columns(["image"])[indices.tolist()]["image"]
        out = np.empty((len(indices), *self.sample_shape), dtype=np.float32)
        for j, (i, blob) in enumerate(zip(indices.tolist(), blobs, strict=True)):
            out[j] = _decode(io.BytesIO(blob), self.mode, self.hw, name=f"{self.folder} (row {i})")
        return np.divide(out, np.float32(255.0), out=out)

    def source_fingerprint(self) -> str:
        return f"{_files_fingerprint(Path(self.folder))}:{self.mode}:{self.hw}"


class PackedTokens(LazyColumn):
    """One tokenizer output (input_ids, attention_mask, ...) of a text pack, tokenized when rows are read and
    padded to `max_length` (fixed-width rows; the task trims all-padding columns per batch)."""

    def __init__(self, folder: Path, table: Any, tokenizer: Any, name: str, max_length: int) -> None:
        super().__init__(len(table), (max_length,), np.int64)
        self.folder, self.table, self.tokenizer, self.name, self.max_length = str(folder), table, tokenizer, name, max_length

    def _rows(self, indices: np.ndarray) -> np.ndarray:
        texts = self.table.select_columns(["text"])[indices.tolist()]["text"]
        enc = self.tokenizer(texts, max_length=self.max_length, truncation=True, padding="max_length",
                             return_tensors="np")
        return np.ascontiguousarray(enc[self.name], dtype=np.int64)

    def source_fingerprint(self) -> str:
        return f"{_files_fingerprint(Path(self.folder))}:{self.name}:{self.max_length}"


def _files_fingerprint(folder: Path) -> str:
    from .stream import files_fingerprint

    return files_fingerprint(sorted(p for p in folder.iterdir() if p.is_file()))


def read_meta(folder: Path, where: str = "data.path") -> dict[str, Any]:
    try:
        meta = json.loads((folder / PACK_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"not a pack (no readable {PACK_FILE})", where=f"{where} ({folder})",
                        fix="write one with: edgedistill data pack SRC OUT") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("kind") not in ("images", "text"):
        raise UserError(f"{PACK_FILE} does not describe a pack this version reads", where=str(folder / PACK_FILE),
                        fix="pack the source again with: edgedistill data pack SRC OUT")
    return meta


def _table(folder: Path, where: str) -> Any:
    try:
        return _datasets().load_from_disk(str(folder))
    except (OSError, ValueError, FileNotFoundError) as exc:
        raise UserError(f"cannot read the pack ({type(exc).__name__}: {str(exc)[:200]})", where=f"{where} ({folder})",
                        fix="pack the source again with: edgedistill data pack SRC OUT") from exc


def _image_split(folder: Path, cfg: DataConfig, where: str) -> tuple[Split, list[str]]:
    meta = read_meta(folder, where)
    if meta["kind"] != "images":
        raise UserError("this pack holds text, not images", where=f"{where} ({folder})",
                        fix="use a pack written from an image folder")
    table = _table(folder, where)
    mode = "L" if cfg.image_mode == "grayscale" else "RGB"
    labels = np.asarray(table.data.column("label").to_numpy(), dtype=np.int64)
    return Split(PackedImages(folder, table, mode, cfg.image_hw()), labels), list(meta["classes"])


@register_dataset("packed")
def load_packed(cfg: DataConfig) -> Dataset:
    """A pack written by `edgedistill data pack`: images (classification) or text lines (a corpus)."""
    if not cfg.path:
        raise UserError("the packed dataset needs a pack folder", where="data.path",
                        fix="set data.path to a folder written by: edgedistill data pack SRC OUT")
    folder = Path(cfg.path).expanduser()
    meta = read_meta(folder)
    if meta["kind"] == "text":
        return _load_text(folder, cfg)
    rest, classes = _image_split(folder, cfg, "data.path")
    if cfg.test_path:
        test, test_classes = _image_split(Path(cfg.test_path).expanduser(), cfg, "data.test_path")
        if test_classes != classes:
            raise UserError(f"the test pack's classes {test_classes} differ from the training pack's {classes}",
                            where="data.test_path", fix="pack both from folders with the same class folders")
    else:
        rest, test = stratified_split(rest.inputs, rest.targets, cfg.test_fraction, cfg.seed)
    train, val = stratified_split(rest.inputs, rest.targets, cfg.val_fraction, cfg.seed)
    from .image_folder import image_preprocessing

    return Dataset(name=folder.name, task="image_classification", train=train, val=val, test=test,
                   num_classes=len(classes), class_labels=classes,
                   preprocessing=image_preprocessing(cfg.image_hw(), "L" if cfg.image_mode == "grayscale" else "RGB"))


def _load_text(folder: Path, cfg: DataConfig) -> Dataset:
    """A packed corpus trains (unlabelled, tokenized on read); the STS pairs of `test_path` score it, as
    `text_corpus` does."""
    from .text import _hold_out, _limit, _text_dataset, pair_split, resolve_tokenizer, unlabelled
    from .text_files import read_sts

    if not cfg.test_path:
        raise UserError("a packed corpus needs data.test_path (STS-format pairs) to score the embedding",
                        where="data.test_path", fix="set it to an STS-format file, as for text_corpus")
    tokenizer, tdir = resolve_tokenizer(cfg)
    table = _table(folder, "data.path")
    probe = tokenizer(["a"], return_tensors="np")
    names = [n for n in tokenizer.model_input_names if n in probe]
    n = min(len(table), cfg.train_limit or len(table))
    train = Split({k: PackedTokens(folder, table, tokenizer, k, cfg.max_length) for k in names}, unlabelled(len(table)))
    train = train.head(n)
    test_pairs, val_pairs = _hold_out(read_sts(cfg.test_path, "data.test_path"), cfg.val_fraction, cfg.seed)
    return _text_dataset(folder.name, "text_embedding", train, pair_split(tokenizer, val_pairs, cfg.max_length),
                         pair_split(tokenizer, _limit(test_pairs, cfg.test_limit), cfg.max_length), tokenizer, tdir, cfg)
