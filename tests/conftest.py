"""Shared fixtures: a shortened mobile recipe and one finished run reused by several tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("EDGEDISTILL_PROGRESS", "0")
# Python subprocesses of the tests (`python -c`, `python -m`) must import the installed edgedistill: CI installs
# it non-editable, and the checkout's source tree (the tests' working directory) would otherwise come first on
# sys.path and shadow it, without `edgedistill.cli` (Python 3.11+; a test that needs the current folder on
# sys.path puts it there itself)
os.environ["PYTHONSAFEPATH"] = "1"
# one thread, as `threads: auto` picks on the 2-core CI machine: PyTorch's default (every core, spinning) made runs
# several times slower on a shared machine, and results are only bit-repeatable at a fixed thread count
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# The mobile recipe, shortened so the whole pipeline runs in a few seconds.
FAST = [
    "teacher.train.epochs=6",
    "stages.0.train.epochs=6",
    "teacher.model.channels=[32,64,128]",  # the recipe's wide teacher is for the demo; tests need a quick one
    "teacher.model.hidden=128",
    "stages.1.calibration.samples=64",
    "profile.runs=20",
    "profile.warmup=2",
    "targets=[x86_vnni]",
]


def set_args(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def cli_command() -> list[str]:
    """The installed console script next to this interpreter (`python -m` where there is none)."""
    exe = Path(sys.executable).with_name("edgedistill")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "edgedistill.cli.main"]


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed console script for real (exit codes, stdout/stderr separation)."""
    return subprocess.run([*cli_command(), *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=900)


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits with the default split (loaded once per test session)."""
    from edgedistill.data import DataConfig, load_dataset

    return load_dataset(DataConfig(name="digits"))


@pytest.fixture(scope="session")
def fast_run(tmp_path_factory) -> Path:
    """One real end-to-end run of the shortened mobile recipe; returns its run directory."""
    out = tmp_path_factory.mktemp("run") / "mobile"
    proc = run_cli("compress", "--recipe", "mobile", "--out", str(out), *set_args(FAST))
    assert proc.returncode in (0, 1), proc.stderr
    return out


@pytest.fixture(scope="session")
def fast_report(fast_run) -> dict:
    return json.loads((fast_run / "report.json").read_text())


STSB = SHARED_DATA / "stsb"


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory) -> Path:
    """A 1,000-token WordPiece tokenizer trained here on the STS-B train sentences (no download), saved as a
    BertTokenizerFast folder, so tiny BERTs built from a config have a real vocabulary."""
    if not (STSB / "sts-train.csv").exists():
        pytest.skip("needs ../shared/data/stsb")
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    from edgedistill.data.text_files import read_sts, sts_sentences

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(sts_sentences(read_sts(STSB / "sts-train.csv")),
                            trainers.WordPieceTrainer(vocab_size=1000, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(  # [CLS] ... [SEP], as BERT tokenizers do
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]")
    folder = tmp_path_factory.mktemp("tokenizer")
    fast.save_pretrained(str(folder))
    return folder
