"""Embedding relation and labelled-pair terms (#22): each against its formula written out naively; stacked
pairs run as one batch and equal the sentences run alone; bad settings are exit 2 naming recipe file:line;
a task stage on sts_pairs trains (slow)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from edgedistill.data import DataConfig, load_dataset
from edgedistill.distill.pair_losses import PAIR_LOSSES, cosent, cosine_regression
from edgedistill.distill.stage import LossTerm
from edgedistill.distill.transformer_losses import embedding_relation
from edgedistill.tasks.text_base import trim_padding

from .conftest import STSB, run_cli

TINY = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64}
needs_stsb = pytest.mark.skipif(not (STSB / "sts-train.csv").exists(), reason="needs ../shared/data/stsb")


def _cos(u: torch.Tensor, v: torch.Tensor) -> float:
    return float(u @ v) / (float(u.norm()) * float(v.norm()))


def test_embedding_relation_is_the_mse_of_the_in_batch_cosine_matrices():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    naive = sum((_cos(s[i], s[j]) - _cos(t[i], t[j])) ** 2 for i in range(5) for j in range(5)) / 25
    assert float(embedding_relation(s, t)) == pytest.approx(naive, rel=1e-5)
    assert float(embedding_relation(3 * s, t)) == pytest.approx(naive, rel=1e-5)  # norms do not matter
    assert float(embedding_relation(s @ torch.linalg.qr(torch.randn(7, 7, generator=g))[0], s)) < 1e-10  # rotation
    # a stacked pair batch [b, 2, d] counts every sentence as a row
    pairs_s, pairs_t = s[:4].reshape(2, 2, 7), t[:4].reshape(2, 2, 7)
    assert float(embedding_relation(pairs_s, pairs_t)) == pytest.approx(float(embedding_relation(s[:4], t[:4])))


def test_cosent_matches_its_formula_and_only_the_order_of_scores_matters():
    cos = torch.tensor([0.9, 0.2, 0.5, 0.7])
    y = torch.tensor([4.0, 1.0, 1.0, 3.5])
    lam = 20.0
    naive = math.log(1 + sum(math.exp(lam * (float(cos[j]) - float(cos[i])))
                             for i in range(4) for j in range(4) if y[i] > y[j]))
    assert float(cosent(cos, y, lam)) == pytest.approx(naive, rel=1e-5)
    assert float(cosent(cos, y * 10 + 3, lam)) == pytest.approx(naive, rel=1e-5)  # any increasing map of y
    assert float(cosent(cos, torch.full((4,), 2.0), lam)) == 0.0  # no ordered pair: log 1
    # the gradient pushes the higher-scored pair's cosine up
    c = cos.clone().requires_grad_(True)
    cosent(c, y, lam).backward()
    assert c.grad[0] < 0 and c.grad[1] > 0


def test_cosine_regression_and_the_pair_term_wrappers():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(3, 2, 6, generator=g)
    y = torch.tensor([5.0, 0.0, 2.5])
    cos = torch.tensor([_cos(s[i, 0], s[i, 1]) for i in range(3)])
    naive = sum((float(cos[i]) - float(y[i]) / 5) ** 2 for i in range(3)) / 3
    assert float(cosine_regression(cos, y)) == pytest.approx(naive, rel=1e-5)
    assert float(PAIR_LOSSES["cosine_regression"](s, y, LossTerm(name="cosine_regression"))) == pytest.approx(naive, rel=1e-5)
    lo_hi = LossTerm(name="cosine_regression", score_range=[1, 3])
    naive2 = sum((float(cos[i]) - (float(y[i]) - 1) / 2) ** 2 for i in range(3)) / 3
    assert float(PAIR_LOSSES["cosine_regression"](s, y, lo_hi)) == pytest.approx(naive2, rel=1e-5)
    assert float(PAIR_LOSSES["cosent"](s, y, LossTerm(name="cosent", scale=5))) == pytest.approx(float(cosent(cos, y, 5)), rel=1e-5)


def test_trim_padding_cuts_stacked_pairs_to_their_longest_sentence():
    mask = np.array([[[1, 1, 0, 0], [1, 1, 1, 0]], [[1, 0, 0, 0], [1, 0, 0, 0]]])
    ids = mask * 7
    out = trim_padding({"input_ids": ids, "attention_mask": mask})
    assert out["input_ids"].shape == (2, 2, 3) and (out["attention_mask"] == mask[..., :3]).all()


@needs_stsb
def test_stacked_pairs_run_in_one_pass_and_equal_each_sentence_alone(tiny_tokenizer):
    from edgedistill.models import build_model
    from edgedistill.tasks import build_task

    ds = load_dataset(DataConfig(name="sts_pairs", path=str(STSB), tokenizer=str(tiny_tokenizer), max_length=24,
                                 train_limit=6, test_limit=10, val_fraction=0.05))
    ids = ds.train.inputs["input_ids"]
    assert ids.shape[:2] == (6, 2) and ds.train.targets.shape == (6,)
    task = build_task(None, ds)
    model = build_model({"name": "hf", "config": TINY}, (), 0, task=task).eval()
    x = task.to_torch(ds.train.inputs)
    with torch.no_grad():
        stacked = task.primary(task.forward(model, x))
        alone = torch.stack([task.primary(task.forward(model, {k: v[:, side] for k, v in x.items()}))
                             for side in (0, 1)], dim=1)
    assert stacked.shape == alone.shape == (6, 2, TINY["hidden_size"])
    torch.testing.assert_close(stacked, alone, atol=1e-5, rtol=1e-5)


def _write(tmp_path, tokenizer, stage: str, data_extra: str = "") -> str:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""name: pairs
task: text_embedding
data: {{name: sts, path: {STSB}, tokenizer: {tokenizer}, max_length: 24, batch_size: 16, train_limit: 120,
        test_limit: 60, val_fraction: 0.05{data_extra}}}
teacher: {{model: {{name: hf, config: {json.dumps(TINY)}}}}}
stages:
{stage}
  - kind: export
profile: {{runs: 5, warmup: 1}}
""")
    return str(recipe)


@needs_stsb
@pytest.mark.parametrize("stage, field, line", [
    ("  - {kind: distill, student: {name: hf_derived, layers: [1]}, losses: [{name: cosent}]}", "sts_pairs", 7),
    ("  - kind: distill\n    data: {name: sts_pairs}\n    losses: [{name: embedding_mse, scale: 3}]", "scale", 9),
    ("  - kind: distill\n    data: {name: sts_pairs}\n    losses: [{name: cosine_regression, score_range: [5, 0]}]",
     "score_range", 9),
    ("  - kind: distill\n    data: {name: sts_pairs}\n    augment: {token_dropout: 0.1}\n    losses: [{name: cosent}]",
     "augment", 9),
    ("  - kind: distill\n    augment: {token_dropout: 0.7}", "token_dropout", 8),
    ("  - kind: distill\n    augment: {token_span: 3}", "token_span", 8),
])
def test_bad_pair_and_augment_settings_are_exit_2_naming_recipe_line(tiny_tokenizer, tmp_path, stage, field, line):
    recipe = _write(tmp_path, tiny_tokenizer, stage)
    proc = run_cli("validate", recipe)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{recipe}:{line}" in proc.stderr and field in proc.stderr and "Traceback" not in proc.stderr


@needs_stsb
@pytest.mark.slow
def test_a_cosent_task_stage_after_general_distillation_trains_on_the_gold_scores(tiny_tokenizer, tmp_path):
    stages = """  - kind: distill
    student: {name: hf_derived, layers: [1]}
    losses: [{name: embedding_mse}, {name: embedding_relation}]
    augment: {token_dropout: 0.1, token_span: 2}
    train: {epochs: 1, lr: 0.002}
  - kind: distill
    data: {name: sts_pairs, train_limit: 64}
    losses: [{name: embedding_mse}, {name: embedding_relation}, {name: cosent, weight: 0.1}]
    train: {epochs: 1, lr: 0.001}"""
    recipe = _write(tmp_path, tiny_tokenizer, stages, ", dev_split: {selection: 0.5}")
    proc = run_cli("compress", "--recipe", recipe, "--out", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    general, task = report["stages"][1]["details"], report["stages"][2]["details"]
    assert general["cache"]["use"] == "per_epoch"  # the teacher labels each epoch's damaged sentences
    assert task["train_rows"] == 64 and np.isfinite(task["history"][0]["train_loss"])
    assert report["metric"]["name"] == "spearman" and report["metric"]["samples"] == 60  # test_limit caps the report half
    assert np.isfinite(report["models"]["deployed"]["metric"])
