"""data.dev_split: the evaluation pairs cut into a selection half (validation) and a report half (test),
seeded, disjoint, covering every pair, stratified by genre; a bad setting is exit 2 naming recipe file:line."""

from __future__ import annotations

import collections
import json

import pytest

from edgedistill.data import DataConfig, load_dataset
from edgedistill.data.dev_split import DevSplitConfig, split_pairs, split_rows
from edgedistill.data.text_files import read_sts

from .conftest import STSB, run_cli

DEV = STSB / "sts-dev.csv"
needs_stsb = pytest.mark.skipif(not DEV.exists(), reason="needs ../shared/data/stsb")


def _key(pairs) -> list[tuple[str, str, float]]:
    return [(a, b, float(s)) for a, b, s in zip(pairs.first, pairs.second, pairs.scores, strict=True)]


@needs_stsb
def test_real_dev_halves_are_disjoint_cover_all_pairs_and_keep_the_genre_mix():
    dev = read_sts(DEV)
    sel_rows, rep_rows = split_rows(len(dev), dev.genres, DevSplitConfig())
    assert not set(sel_rows) & set(rep_rows)
    assert sorted([*sel_rows, *rep_rows]) == list(range(len(dev)))
    whole = collections.Counter(dev.genres)
    sel, rep = split_pairs(dev, DevSplitConfig())
    for half in (sel, rep):
        counts = collections.Counter(half.genres)
        assert set(counts) == set(whole) == {"main-captions", "main-news", "main-forums"}
        for genre, n in whole.items():  # each genre's share is half of it, to one pair
            assert abs(counts[genre] - n / 2) <= 1
    assert sorted(_key(sel) + _key(rep)) == sorted(_key(dev))


def test_split_is_deterministic_for_the_seed_and_changes_with_it():
    genres = ["x"] * 30 + ["y"] * 12 + ["z"] * 5
    a = split_rows(len(genres), genres, DevSplitConfig(seed=3))
    b = split_rows(len(genres), genres, DevSplitConfig(seed=3))
    c = split_rows(len(genres), genres, DevSplitConfig(seed=4))
    assert all((u == v).all() for u, v in zip(a, b, strict=True))
    assert (a[0].tolist(), a[1].tolist()) != (c[0].tolist(), c[1].tolist())
    sel = a[0]
    assert [sum(genres[i] == g for i in sel) for g in "xyz"] == [15, 6, 3]  # share · group size, halves rounded up


def test_share_and_unstratified_split():
    rows = split_rows(100, None, DevSplitConfig(selection=0.3, stratify="none"))
    assert (len(rows[0]), len(rows[1])) == (30, 70)


@needs_stsb
def test_sts_loader_validates_on_the_selection_half_and_tests_on_the_report_half(tiny_tokenizer):
    split = DevSplitConfig()
    ds = load_dataset(DataConfig(name="sts", path=str(STSB), tokenizer=str(tiny_tokenizer), max_length=24,
                                 dev_split=split))
    sel, rep = split_pairs(read_sts(DEV), split)
    assert (len(ds.val), len(ds.test)) == (len(sel), len(rep))
    assert ds.val.targets.tolist() == sel.scores.tolist() and ds.test.targets.tolist() == rep.scores.tolist()
    # every training pair trains (none held out for validation): the corpus is all train sentences
    plain = load_dataset(DataConfig(name="sts", path=str(STSB), tokenizer=str(tiny_tokenizer), max_length=24,
                                    val_fraction=0.05))
    assert len(ds.train) > len(plain.train) and len(plain.test) == len(sel) + len(rep)


@pytest.mark.parametrize("setting, field", [("{selection: 1.5}", "selection"), ("{stratify: year}", "stratify"),
                                            ("{selektion: 0.5}", "selektion")])
def test_bad_dev_split_is_exit_2_naming_recipe_line(tiny_tokenizer, tmp_path, setting, field):
    recipe = tmp_path / "r.yaml"
    tiny = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 64}
    recipe.write_text(f"""name: bad_split
task: text_embedding
data:
  name: sts
  path: {STSB}
  tokenizer: {tiny_tokenizer}
  dev_split: {setting}
teacher: {{model: {{name: hf, config: {json.dumps(tiny)}}}}}
stages: [{{kind: export}}]
""")
    proc = run_cli("validate", str(recipe))
    assert proc.returncode == 2, proc.stderr
    assert f"{recipe}:7" in proc.stderr and field in proc.stderr and "Traceback" not in proc.stderr
