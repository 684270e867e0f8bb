"""Text tasks on real STS-B sentences with a tokenizer built here: loaders, the metric path, export parity
for every output, and the whole pipeline (slow) for text_classification and text_embedding."""

from __future__ import annotations

import csv
import json
import runpy

import numpy as np
import pytest
import torch

from edgedistill.data import DataConfig, load_dataset
from edgedistill.errors import UserError
from edgedistill.evaluate.ranking import cosine_rows, spearman
from edgedistill.tasks import build_task

from .conftest import STSB, run_cli

TINY = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64}


@pytest.fixture(scope="module")
def genre_csv(tmp_path_factory):
    """Labelled text from STS-B: sentence 1 labelled with its genre (captions / news / forum, unbalanced)."""
    rows = [line.split("\t") for line in (STSB / "sts-train.csv").read_text(encoding="utf-8").splitlines()][::4]
    path = tmp_path_factory.mktemp("genre") / "genre.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([r[5], r[0]] for r in rows)
    return path


def _sts(tok, **kw):
    return load_dataset(DataConfig(name="sts", path=str(STSB), tokenizer=str(tok), max_length=24, test_limit=120,
                                   train_limit=300, **kw))


def test_sts_loader_trains_on_unlabelled_sentences_and_scores_pairs(tiny_tokenizer):
    ds = _sts(tiny_tokenizer)
    assert ds.task == "text_embedding" and ds.tokenizer is not None
    assert ds.train.targets.shape == (300, 0)  # a corpus: no labels
    assert set(ds.train.inputs) == {"input_ids", "attention_mask", "token_type_ids"}
    assert {k.split(".")[0] for k in ds.test.inputs} == {"a", "b"} and len(ds.test) == 120
    assert all(v.dtype == np.int64 and v.shape[1] <= 24 for v in ds.test.inputs.values())
    assert ds.test.targets.min() >= 0 and ds.test.targets.max() <= 5


def test_embedding_metric_is_spearman_of_pair_cosines(tiny_tokenizer):
    """The task pairs the two sides itself: a predictor returning known vectors gives the reference number."""
    ds = _sts(tiny_tokenizer)
    task = build_task(None, ds)
    rng = np.random.default_rng(0)
    table = rng.normal(size=(int(max(v.max() for v in ds.test.inputs.values())) + 1, 8))

    def embed(ids, mask):  # an "embedding" that depends on the tokens: sum of random vectors of the unpadded ids
        return (table[ids] * mask[..., None]).sum(axis=1)

    def predict(batch):
        return {"embedding": embed(batch["input_ids"], batch["attention_mask"])}

    a = embed(ds.test.inputs["a.input_ids"], ds.test.inputs["a.attention_mask"])
    b = embed(ds.test.inputs["b.input_ids"], ds.test.inputs["b.attention_mask"])
    want = spearman(cosine_rows(a, b), ds.test.targets)
    assert task.score(predict, ds.test, batch_size=32) == pytest.approx(want)
    assert np.isnan(task.score(predict, ds.train))  # a corpus has no gold scores


def test_labelled_loader_and_macro_f1(tiny_tokenizer, genre_csv):
    cfg = DataConfig(name="text_labelled", path=str(genre_csv), tokenizer=str(tiny_tokenizer), max_length=16)
    ds = load_dataset(cfg)
    assert ds.task == "text_classification" and ds.class_labels == ["main-captions", "main-forum", "main-news"]
    assert ds.num_classes == 3 and len(ds.train) + len(ds.val) + len(ds.test) == 1438
    from edgedistill.tasks.text_classification import TextClassificationConfig

    task = build_task(TextClassificationConfig(metric="macro_f1"), ds)
    majority = np.bincount(ds.test.targets).argmax()
    logits = np.eye(3)[np.full(len(ds.test), majority)]
    f1 = task.compute_metric({"logits": logits}, ds.test.targets)
    acc = float((ds.test.targets == majority).mean())
    assert f1 < acc  # unbalanced classes: the majority guess looks better in accuracy than in macro-F1


def test_malformed_sts_line_is_exit_2_naming_file_and_line(tiny_tokenizer, tmp_path):
    bad = tmp_path / "sts-train.csv"
    lines = (STSB / "sts-train.csv").read_text(encoding="utf-8").splitlines()[:20]
    lines[6] = "main-captions\tMSRvid\t2012test\t0001\tnot-a-score\ta\tb"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "sts-dev.csv").write_text("\n".join(lines[:5]) + "\n", encoding="utf-8")
    with pytest.raises(UserError) as exc:
        load_dataset(DataConfig(name="sts", path=str(tmp_path), tokenizer=str(tiny_tokenizer)))
    assert exc.value.where == f"{bad}:7"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""name: bad_sts
task: text_embedding
data: {{name: sts, path: {tmp_path}, tokenizer: {tiny_tokenizer}}}
teacher: {{model: {{name: hf, config: {json.dumps(TINY)}}}}}
stages: [{{kind: export}}]
""")
    proc = run_cli("validate", str(recipe))
    assert proc.returncode == 2, proc.stderr
    assert f"{bad}:7" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("kind", ["text_classification", "text_embedding"])
def test_export_parity_for_every_output_with_dynamic_batch_and_sequence(kind, tiny_tokenizer, genre_csv, tmp_path):
    import onnxruntime as ort

    from edgedistill.export.onnx import export_onnx
    from edgedistill.models import build_model

    if kind == "text_embedding":
        ds = _sts(tiny_tokenizer)
    else:
        ds = load_dataset(DataConfig(name="text_labelled", path=str(genre_csv), tokenizer=str(tiny_tokenizer),
                                     max_length=24))
    task = build_task(None, ds)
    torch.manual_seed(0)
    model = build_model({"name": "hf", "config": TINY}, ds.input_shape, ds.num_classes, task=task).eval()
    path = export_onnx(model, tmp_path / "m.onnx", task)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == list(task.input_names)
    assert all(i.type == "tensor(int64)" and i.shape == ["batch", "sequence"] for i in sess.get_inputs())
    assert [o.name for o in sess.get_outputs()] == list(task.output_names)
    for rows in (slice(0, 1), slice(0, 37)):  # batch 1 and 37; padded widths differ from the export example
        batch = task.feed(ds.test, rows)
        batch = {k: v[:, : 5 + rows.stop % 7] for k, v in batch.items()}  # and another sequence length
        got = dict(zip(task.output_names, sess.run(None, batch), strict=True))
        with torch.no_grad():
            ref = task.forward(model, task.to_torch(batch))
        for name in task.output_names:
            np.testing.assert_allclose(got[name], ref[name].numpy(), atol=1e-5)


def _recipe(tmp_path, name: str, task: str, data: str, student: str, extra_stages: str = "") -> str:
    text = f"""name: {name}
task: {task}
data: {data}
teacher:
  model: {{name: hf, config: {json.dumps(TINY)}}}
{"  train: {epochs: 1, lr: 0.002}" if "classification" in task else ""}
stages:
  - kind: distill
    student: {student}
    train: {{epochs: 1, lr: 0.002}}
  - kind: prune
    ratio: 0.5
    head_ratio: 0.5
    recover: {{train: {{epochs: 1}}}}
{extra_stages}  - kind: export
targets: [{tmp_path / "seq.yaml"}]
profile: {{runs: 10, warmup: 2}}
"""
    (tmp_path / "seq.yaml").write_text("name: seq_cpu\nthreads: 1\nbatch_sizes: [1]\nsequence_lengths: [64, 16]\n")
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return str(path)


def _check_run(out, task_name: str, output: str, tokenizer) -> dict:
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == task_name
    parity = next(s for s in report["stages"] if s["kind"] == "export")["details"]["parity"]
    assert set(parity["outputs"]) == {output}
    assert np.isfinite(report["models"]["deployed"]["metric"])
    lat = report["models"]["deployed"]["latency"]
    assert {k: v["sequence"] for k, v in lat.items()} == {"seq_cpu": 64, "seq_cpu@s16": 16}
    bundle = out / "bundle"
    assert (bundle / "tokenizer" / "tokenizer.json").is_file() and (bundle / "usage" / "predict.py").is_file()
    for args in (("verify", str(bundle)), ("check", str(out / "report.json"), "--baseline", str(out / "report.json"))):
        proc = run_cli(*args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    # the snippet tokenizes exactly as training did (same ids, mask and types) and its model call runs
    snippet = runpy.run_path(str(bundle / "usage" / "predict.py"))
    from edgedistill.data.tokenize import load_tokenizer, tokenize

    texts = ["A man is playing a flute.", "Three men are playing chess in the park today."]
    want = tokenize(load_tokenizer(tokenizer), texts, report["recipe"]["resolved"]["data"]["max_length"])
    got = snippet["encode"](texts)
    assert set(got) == set(want) and all(np.array_equal(got[k], want[k]) for k in want)
    return report


@pytest.mark.slow
def test_text_classification_pipeline(tmp_path, tiny_tokenizer, genre_csv):
    data = (f"{{name: text_labelled, path: {genre_csv}, tokenizer: {tiny_tokenizer}, max_length: 24, "
            "batch_size: 32, train_limit: 300, test_limit: 100}")
    student = json.dumps({"name": "hf", "config": {**TINY, "num_hidden_layers": 1}})
    recipe = _recipe(tmp_path, "text_cls", "{kind: text_classification, metric: macro_f1}", data, student,
                     "  - {kind: quantize, method: static, calibration: {samples: 64}}\n")
    out = tmp_path / "run"
    proc = run_cli("compress", "--recipe", recipe, "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = _check_run(out, "text_classification", "logits", tiny_tokenizer)
    assert report["metric"]["name"] == "macro_f1"
    assert (out / "bundle" / "labels.txt").read_text().split() == ["main-captions", "main-forum", "main-news"]


@pytest.mark.slow
def test_text_embedding_pipeline_with_a_derived_student(tmp_path, tiny_tokenizer):
    data = (f"{{name: sts, path: {STSB}, tokenizer: {tiny_tokenizer}, max_length: 24, batch_size: 32, "
            "train_limit: 300, test_limit: 100, val_fraction: 0.05}")
    recipe = _recipe(tmp_path, "text_emb", "text_embedding", data, "{name: hf_derived, layers: [1]}",
                     "  - {kind: quantize, method: dynamic}\n")
    out = tmp_path / "run"
    proc = run_cli("compress", "--recipe", recipe, "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = _check_run(out, "text_embedding", "embedding", tiny_tokenizer)
    assert report["metric"]["name"] == "spearman"
    assert report["stages"][0]["details"]["source"] == "builder"  # teacher kept as built (no labels to train on)
    distill = report["stages"][1]
    assert distill["details"]["params"] < report["models"]["teacher"]["params"]
    # a resumed run skips every stage, rebuilding the derived student from the restored teacher
    proc = run_cli("compress", "--recipe", recipe, "--out", str(out), "--resume")
    assert proc.returncode == 0, proc.stdout + proc.stderr
