"""Readers for text on disk: STS-Benchmark sentence pairs, a plain corpus of lines, labelled text (CSV/TSV/JSONL).

They return plain Python values (strings, floats, label strings) and know nothing about models or tokenizers,
so they can be tested on their own and reused by every text task. A malformed line is a `UserError` naming
the file and the line, never a traceback.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import jsonsafe
from ..errors import UserError

LABELLED_SUFFIXES = (".csv", ".tsv", ".jsonl")


@dataclass
class SentencePairs:
    """Pairs of sentences with a gold similarity score each (STS Benchmark)."""

    first: list[str]
    second: list[str]
    scores: np.ndarray  # float32, one per pair
    genres: list[str] | None = None  # column 0 of an STS file (main-captions, main-news, ...), for stratified splits

    def __len__(self) -> int:
        return len(self.first)

    def take(self, rows: Sequence[int]) -> SentencePairs:
        """The pairs at `rows`, in that order."""
        return SentencePairs([self.first[i] for i in rows], [self.second[i] for i in rows],
                             self.scores[np.asarray(rows, dtype=np.int64)],
                             None if self.genres is None else [self.genres[i] for i in rows])

    def head(self, n: int | None) -> SentencePairs:
        return self if n is None else self.take(range(min(n, len(self))))


def _existing(path: str | Path, where: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError("file not found", where=f"{where} ({path})", fix="check the path")
    return path


def _lines(path: Path) -> list[str]:
    """Lines split on \\n (and \\r\\n) only: str.splitlines() also splits on form feed, U+2028 and other
    separators that can sit inside a sentence, which would shift every later line number and pair."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", where=str(path),
                        fix="save the file as UTF-8") from exc
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def check_scored(pairs: SentencePairs, where: str) -> SentencePairs:
    """A split scored by correlation needs two pairs and two different scores: else the metric is NaN."""
    if len(pairs) and (len(pairs) < 2 or float(np.ptp(pairs.scores)) == 0.0):
        why = "one pair" if len(pairs) < 2 else f"{len(pairs)} pairs that all score {float(pairs.scores[0]):g}"
        raise UserError(f"a correlation cannot be computed on {why}", where=where,
                        fix="give at least two pairs with different gold scores (more data, or another val_fraction)")
    return pairs


def read_sts(path: str | Path, where: str = "data.path") -> SentencePairs:
    """STS Benchmark TSV: no header; column 4 is the gold score, 5 and 6 the sentences; extra columns are ignored.

    Split on tabs only (no CSV quoting): STS-B sentences contain quote characters that a CSV reader would eat."""
    path = _existing(path, where)
    first, second, scores, genres = [], [], [], []
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < 7:
            raise UserError(f"expected at least 7 tab-separated columns (score in column 4, sentences in 5 and 6), "
                            f"found {len(cols)}", where=f"{path}:{number}",
                            fix="use the STS Benchmark layout: genre, file, year, id, score, sentence 1, sentence 2")
        try:
            score = float(cols[4])
        except ValueError:
            raise UserError(f'the score column (4) holds "{cols[4][:40]}", not a number', where=f"{path}:{number}",
                            fix="put the gold similarity score in column 4 (0-based)") from None
        if not np.isfinite(score):
            raise UserError(f"the score is {cols[4]}, not a finite number", where=f"{path}:{number}", fix="use a finite number")
        if not cols[5].strip() or not cols[6].strip():
            raise UserError("a sentence column (5 or 6) is empty", where=f"{path}:{number}",
                            fix="give both sentences of the pair")
        first.append(cols[5])
        second.append(cols[6])
        scores.append(score)
        genres.append(cols[0].strip())
    if not scores:
        raise UserError("no sentence pairs in the file", where=str(path), fix="point at an STS Benchmark TSV file")
    return SentencePairs(first, second, np.asarray(scores, dtype=np.float32), genres)


def read_corpus(path: str | Path, where: str = "data.path", dedupe: bool = True) -> list[str]:
    """A plain corpus, one sentence a line (blank lines skipped); duplicates dropped in first-seen order."""
    path = _existing(path, where)
    lines = [s.strip() for s in _lines(path)]
    lines = [s for s in lines if s]
    if dedupe:
        lines = list(dict.fromkeys(lines))
    if not lines:
        raise UserError("the corpus holds no text", where=str(path), fix="write one sentence per line")
    return lines


def sts_sentences(pairs: SentencePairs) -> list[str]:
    """Both columns of a pair file, de-duplicated in first-seen order: an unlabelled corpus for distillation."""
    return list(dict.fromkeys(s.strip() for pair in zip(pairs.first, pairs.second, strict=True) for s in pair))


def read_labelled(path: str | Path, text_field: str = "text", label_field: str = "label",
                  where: str = "data.path") -> tuple[list[str], list[str]]:
    """Labelled text as CSV or TSV (with a header row) or JSONL (one object a line): (texts, label strings)."""
    path = _existing(path, where)
    suffix = path.suffix.lower()
    if suffix not in LABELLED_SUFFIXES:
        raise UserError(f'cannot tell the format of "{path.name}"', where=where,
                        fix=f"name the file with one of: {', '.join(LABELLED_SUFFIXES)}")
    rows: list[tuple[int, dict]] = []
    if suffix == ".jsonl":
        for number, line in enumerate(_lines(path), start=1):
            if not line.strip():
                continue
            try:
                obj = jsonsafe.loads(line)
            except ValueError as exc:
                raise UserError(f"not valid JSON: {getattr(exc, 'msg', exc)}", where=f"{path}:{number}",
                                fix='write one object per line, e.g. {"text": "...", "label": "positive"}') from None
            if not isinstance(obj, dict):
                raise UserError("each line must be a JSON object", where=f"{path}:{number}",
                                fix='e.g. {"text": "...", "label": "positive"}')
            rows.append((number, obj))
    else:
        lines = _lines(path)
        reader = csv.reader(lines, delimiter="\t" if suffix == ".tsv" else ",")
        try:
            header = next(reader, None)
            if header is None:
                raise UserError("the file is empty", where=str(path), fix=f"write a header row: {text_field},{label_field}")
            for values in reader:
                number = reader.line_num
                if not any(v.strip() for v in values):
                    continue
                if len(values) != len(header):
                    raise UserError(f"{len(values)} columns, the header has {len(header)}", where=f"{path}:{number}",
                                    fix="quote fields that contain the separator; every row needs every column")
                rows.append((number, dict(zip(header, values, strict=True))))
        except csv.Error as exc:
            raise UserError(f"malformed row: {exc}", where=f"{path}:{reader.line_num}", fix="check the quoting") from None
    texts, labels = [], []
    for number, row in rows:
        for field in (text_field, label_field):
            if field not in row:
                raise UserError(f'no "{field}" field', where=f"{path}:{number}",
                                fix=f"present: {', '.join(map(str, row)) or 'none'}; set data.text_field / data.label_field")
        text, label = row[text_field], row[label_field]
        if not isinstance(text, str) or not text.strip():
            raise UserError(f'"{text_field}" is empty or not a string', where=f"{path}:{number}", fix="give the text")
        if isinstance(label, bool) or not isinstance(label, str | int) or (isinstance(label, str) and not label.strip()):
            raise UserError(f'"{label_field}" must be a class name or an integer, got {label!r}',
                            where=f"{path}:{number}", fix="use a class name or an integer class index")
        texts.append(text)
        labels.append(str(label).strip())
    if not texts:
        raise UserError("no labelled rows in the file", where=str(path), fix="add rows under the header")
    return texts, labels


def encode_labels(labels: list[str], classes: list[str] | None = None, where: str = "data") -> tuple[np.ndarray, list[str]]:
    """Label strings -> int64 class indices, with the class names in index order.

    Integer labels keep their numeric order (0, 1, 2 ... not "10" before "2"); names sort alphabetically."""
    if classes is None:
        names = sorted(set(labels))
        if all(n.lstrip("-").isdigit() for n in names):
            names = sorted(names, key=int)
        classes = names
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise UserError(f"labels not seen in the training file: {', '.join(unknown[:5])}", where=where,
                        fix="every class in the test/val file must also occur in the training file")
    return np.asarray([index[v] for v in labels], dtype=np.int64), list(classes)
