"""Text readers: STS-B pairs, a corpus of lines, labelled CSV/TSV/JSONL; malformed input names file and line."""

from __future__ import annotations

import numpy as np
import pytest

from edgedistill.data.text_files import encode_labels, read_corpus, read_labelled, read_sts, sts_sentences
from edgedistill.errors import UserError

from .conftest import SHARED_DATA

STSB = SHARED_DATA / "stsb"


def _sts_line(score: str = "3.5", a: str = "A man plays.", b: str = "A man is playing.", extra: str = "") -> str:
    return "\t".join(["main-captions", "MSRvid", "2012test", "0001", score, a, b]) + extra


def test_sts_reads_score_and_both_sentences_ignoring_extra_columns(tmp_path):
    f = tmp_path / "pairs.tsv"
    f.write_text(_sts_line("5.000", 'He said "hi".', "b one") + "\n\n"
                 + _sts_line("0.25", "c", "d", extra="\tnoise\tmore") + "\n")
    pairs = read_sts(f)
    assert pairs.first == ['He said "hi".', "c"]  # quotes survive: split on tabs, not CSV
    assert pairs.second == ["b one", "d"]
    np.testing.assert_allclose(pairs.scores, [5.0, 0.25])
    assert pairs.scores.dtype == np.float32


@pytest.mark.parametrize("line, problem", [
    ("a\tb\tc", "expected at least 7"),
    (_sts_line("high"), "not a number"),
    (_sts_line("nan"), "finite"),
    (_sts_line(b=" "), "empty"),
])
def test_sts_malformed_line_names_file_and_line(tmp_path, line, problem):
    f = tmp_path / "bad.tsv"
    f.write_text(_sts_line() + "\n" + line + "\n")
    with pytest.raises(UserError) as exc:
        read_sts(f)
    assert exc.value.where == f"{f}:2"
    assert problem in exc.value.message


def test_sts_missing_and_non_utf8_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        read_sts(tmp_path / "nope.tsv")
    f = tmp_path / "latin1.tsv"
    f.write_bytes(_sts_line(a="caf\xe9").encode("latin-1"))
    with pytest.raises(UserError, match="UTF-8"):
        read_sts(f)


@pytest.mark.skipif(not (STSB / "sts-train.csv").exists(), reason="needs ../shared/data/stsb")
def test_real_stsb_files_parse_completely():
    train, dev = read_sts(STSB / "sts-train.csv"), read_sts(STSB / "sts-dev.csv")
    assert (len(train), len(dev)) == (5749, 1500)  # the counts the data README gives
    assert train.scores.min() >= 0.0 and train.scores.max() <= 5.0
    corpus = sts_sentences(train)
    assert len(corpus) == len(set(corpus)) and 5749 < len(corpus) < 2 * 5749


def test_corpus_skips_blank_lines_and_duplicates(tmp_path):
    f = tmp_path / "corpus.txt"
    f.write_text("one\n\n  two \none\nthree\n")
    assert read_corpus(f) == ["one", "two", "three"]
    assert read_corpus(f, dedupe=False) == ["one", "two", "one", "three"]
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(UserError, match="no text"):
        read_corpus(tmp_path / "empty.txt")


@pytest.mark.parametrize("name, body", [
    ("l.csv", 'text,label\n"good, really",pos\nbad,neg\n'),
    ("l.tsv", "text\tlabel\ngood, really\tpos\nbad\tneg\n"),
    ("l.jsonl", '{"text": "good, really", "label": "pos"}\n\n{"text": "bad", "label": "neg"}\n'),
])
def test_labelled_formats(tmp_path, name, body):
    f = tmp_path / name
    f.write_text(body)
    texts, labels = read_labelled(f)
    assert texts == ["good, really", "bad"] and labels == ["pos", "neg"]


@pytest.mark.parametrize("name, body, line, problem", [
    ("l.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": \n', 2, "not valid JSON"),
    ("l.jsonl", '{"text": "a", "label": 1}\n[1, 2]\n', 2, "JSON object"),
    ("l.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n', 2, 'no "label" field'),
    ("l.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": 0.5}\n', 2, "class name or an integer"),
    ("l.csv", "text,label\na,1\nb,1,extra\n", 3, "3 columns"),
    ("l.csv", "text,label\na,1\n,1\n", 3, "empty"),
])
def test_labelled_malformed_line_names_file_and_line(tmp_path, name, body, line, problem):
    f = tmp_path / name
    f.write_text(body)
    with pytest.raises(UserError) as exc:
        read_labelled(f)
    assert exc.value.where == f"{f}:{line}"
    assert problem in exc.value.message


def test_labelled_custom_fields_and_unknown_suffix(tmp_path):
    f = tmp_path / "l.csv"
    f.write_text("sentence,y\nhello,1\n")
    assert read_labelled(f, text_field="sentence", label_field="y") == (["hello"], ["1"])
    (tmp_path / "l.txt").write_text("x")
    with pytest.raises(UserError, match="cannot tell the format"):
        read_labelled(tmp_path / "l.txt")


def test_encode_labels_numeric_order_and_unknown_classes():
    y, classes = encode_labels(["10", "2", "1", "2"])
    assert classes == ["1", "2", "10"] and y.tolist() == [2, 1, 0, 1]
    y, classes = encode_labels(["neg", "pos", "neg"])
    assert classes == ["neg", "pos"] and y.dtype == np.int64
    with pytest.raises(UserError, match="not seen"):
        encode_labels(["neu"], classes)
