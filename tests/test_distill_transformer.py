"""Transformer loss terms and per-stage training data in the distill stage, on a tiny random BERT.

Validation refuses what cannot work (exit 2 naming the field); a real `edgedistill compress` runs derivation →
general distillation on a corpus with every transformer term → task distillation → quantization → export.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from edgedistill.errors import UserError  # noqa: E402
from edgedistill.recipe import load_recipe  # noqa: E402
from edgedistill.tasks.text_base import trim_padding  # noqa: E402

from .builders import interrupt_at_call  # noqa: E402
from .conftest import STSB, run_cli  # noqa: E402

TINY = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 4,
        "intermediate_size": 64, "max_position_embeddings": 64}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """An unlabelled corpus: STS-B dev sentences (another source than the training sentences), one a line."""
    if not (STSB / "sts-dev.csv").exists():
        pytest.skip("needs ../shared/data/stsb")
    rows = [line.split("\t") for line in (STSB / "sts-dev.csv").read_text(encoding="utf-8").splitlines()]
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(r[5] for r in rows[:200]) + "\n", encoding="utf-8")
    return path


def write_recipe(tmp_path, stages: str, task: str = "text_embedding", data: str | None = None,
                 teacher: str | None = None, tokenizer: str = "unused") -> str:
    data = data or (f"{{name: sts, path: {STSB}, tokenizer: {tokenizer}, max_length: 24, batch_size: 32, "
                    "train_limit: 96, test_limit: 60, val_fraction: 0.05}")
    teacher = teacher or f"{{name: hf, config: {json.dumps(TINY)}}}"
    text = f"""name: tiny_transformer
task: {task}
data: {data}
teacher:
  model: {teacher}
stages:
{stages}
targets: [{tmp_path / "seq.yaml"}]
profile: {{runs: 5, warmup: 1}}
"""
    (tmp_path / "seq.yaml").write_text("name: seq_cpu\nthreads: 1\nbatch_sizes: [1]\nsequence_lengths: [16]\n")
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return str(path)


def refused(tmp_path, stages, *, where, match, **kw):
    path = write_recipe(tmp_path, stages, **kw)
    with pytest.raises(UserError, match=match) as info:
        load_recipe(path)
    assert where in info.value.where, info.value.where
    assert info.value.fix


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(("stages", "where", "match"), [
    ("  - {kind: distill, student: {name: hf_derived, layers: [1, 3]}, losses: [{name: hidden_mse, "
     "student_layers: [0, 2], teacher_layers: [1, 3]}]}", "stages.0.losses.0.student_layers", "student has 2"),
    ("  - {kind: distill, student: {name: hf_derived, layers: [1, 3]}, losses: [{name: attention_kl, "
     "student_layers: [1], teacher_layers: [4]}]}", "stages.0.losses.0.teacher_layers", "teacher has 4"),
    ("  - {kind: distill, losses: [{name: value_relation_kl, student_layers: [1]}]}",
     "stages.0.losses.0.teacher_layers", "both"),
    ("  - {kind: distill, losses: [{name: minilmv2_relations, evenly: 2}]}", "stages.0.losses.0.evenly", "index"),
    ("  - {kind: distill, losses: [{name: hidden_mse, relation_heads: 4}]}", "stages.0.losses.0.relation_heads",
     "minilmv2"),
    ("  - {kind: distill, losses: [{name: logits_kl}]}", "stages.0.losses.0.name", "no class logits"),
    ("  - {kind: distill, student: {name: cnn}, losses: [{name: hidden_mse}]}", "stages.0.student",
     "not one"),
    ("  - {kind: distill, data: {name: text_corpus, path: /no/such/corpus.txt}}", "stages.0.data.path",
     "not found"),
    ("  - {kind: distill, data: {name: text_corpus, pathh: corpus.txt}}", "stages.0.data.pathh",
     "did you mean"),
])
def test_transformer_terms_and_stage_data_are_checked_at_validation(tmp_path, stages, where, match):
    refused(tmp_path, stages, where=where, match=match)


def test_validate_exits_2_naming_the_field_and_the_fix(tmp_path):
    path = write_recipe(tmp_path, "  - {kind: distill, student: {name: hf_derived, layers: [1, 3]}, losses: "
                                  "[{name: hidden_mse, student_layers: [2], teacher_layers: [3]}]}")
    proc = run_cli("validate", path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "stages.0.losses.0.student_layers" in proc.stderr and "use student layer indices in 0..1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_transformer_terms_are_refused_for_image_tasks(tmp_path):
    refused(tmp_path, "  - {kind: distill, student: {name: cnn}, losses: [{name: attention_kl}]}",
            task="image_classification", data="{name: digits}", teacher="{name: cnn}",
            where="stages.0.losses.0.name", match="not a text task")


def test_an_unlabelled_stage_corpus_cannot_feed_label_losses(tmp_path, corpus):
    data = f"{{name: text_labelled, path: {corpus}, tokenizer: x}}"  # the path exists; its format is not checked here
    refused(tmp_path, f"  - {{kind: distill, data: {{name: text_corpus, path: {corpus}}}}}",
            task="text_classification", data=data, where="stages.0.losses", match="no labels")


def test_valid_terms_and_stage_data_pass_and_change_the_stage_key(tmp_path, corpus):
    base = ("  - {kind: distill, student: {name: hf_derived, layers: [1, 3]}, losses: [{name: hidden_mse, "
            "student_layers: [0, 1], teacher_layers: [1, 3]}, {name: minilmv2_relations, relation_heads: 8}]}")
    a = load_recipe(write_recipe(tmp_path, base))
    b = load_recipe(write_recipe(tmp_path, base.replace("losses:", f"data: {{name: text_corpus, path: {corpus}}}, losses:")))
    assert a.config.stages[0].losses[0].student_layers == [0, 1]
    assert b.config.stages[0].data == {"name": "text_corpus", "path": str(corpus)}
    assert a.stage_key(0) != b.stage_key(0)  # a resumed run never reuses a stage trained on other data


def test_default_layer_pairs_and_the_logits_term():
    from edgedistill.distill import transformer_losses as tl
    from edgedistill.distill.losses import LOGIT_LOSSES
    from edgedistill.distill.transformer_terms import default_pairs

    assert default_pairs("hidden_mse", 3, 6) == [(0, 1), (1, 3), (2, 5)]  # TinyBERT's uniform mapping
    assert default_pairs("hidden_mse", 2, 2) == [(0, 0), (1, 1)]
    assert default_pairs("attention_kl", 3, 6) == [(2, 5)]  # MiniLM: last to last
    s, t = torch.randn(4, 5), torch.randn(4, 5)
    term = LOGIT_LOSSES["logits_kl"](s, torch.softmax(t / 2.0, dim=-1), None, 2.0)
    torch.testing.assert_close(term, tl.logits_kl(s, t, 2.0))  # the recipe term is the plain function


# ---------------------------------------------------------------- padding


def test_trim_padding_drops_only_columns_every_row_pads():
    ids = np.arange(12).reshape(2, 6)
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0]])
    out = trim_padding({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids),
                        "a.input_ids": ids, "a.attention_mask": np.ones_like(mask)})
    assert out["input_ids"].shape == out["attention_mask"].shape == out["token_type_ids"].shape == (2, 4)
    assert out["a.input_ids"].shape == (2, 6)  # another prefix: its own (full) mask decides
    np.testing.assert_array_equal(out["input_ids"], ids[:, :4])
    t = trim_padding({"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)})
    assert t["input_ids"].shape == (2, 4) and isinstance(t["input_ids"], torch.Tensor)


# ---------------------------------------------------------------- a real run


STAGES = """  - kind: distill
    student: {name: hf_derived, layers: [1, 3]}
    data: {name: text_corpus, path: CORPUS, train_limit: 150}
    train: {epochs: 2, lr: 0.002}
    losses:
      - {name: embedding_mse, weight: 1.0}
      - {name: hidden_mse, weight: 1.0, student_layers: [0, 1], teacher_layers: [1, 3]}
      - {name: attention_kl, weight: 0.5}
      - {name: value_relation_kl, weight: 0.5}
      - {name: minilmv2_relations, weight: 0.5, relation_heads: 8}
  - kind: distill
    student: {name: hf, config: {model_type: bert, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 64}}
    train: {epochs: 1, lr: 0.002}
    losses:
      - {name: hidden_mse, weight: 1.0}
      - {name: minilmv2_relations, weight: 1.0, relation_heads: 4}
  - {kind: quantize, method: dynamic}
  - kind: export
"""


@pytest.mark.slow
def test_compress_with_every_transformer_term_and_a_general_distillation_stage(tmp_path, tiny_tokenizer, corpus):
    path = write_recipe(tmp_path, STAGES.replace("CORPUS", str(corpus)), tokenizer=str(tiny_tokenizer))
    out = tmp_path / "run"
    proc = run_cli("compress", "--recipe", path, "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    general, task_stage = report["stages"][1]["details"], report["stages"][2]["details"]
    assert general["train_data"] == {"name": "text_corpus", "path": str(corpus), "train_limit": 150}
    assert general["train_rows"] == 150  # the corpus (183 unique lines, limited here), not the recipe's 96 rows
    assert task_stage["train_data"] == "recipe" and task_stage["train_rows"] == 96
    terms = {t["loss"]: t for t in general["steps"][0]["transformer_terms"]}
    assert set(terms) == {"hidden_mse", "attention_kl", "value_relation_kl", "minilmv2_relations"}
    assert terms["hidden_mse"]["pairs"] == [[0, 1], [1, 3]] and terms["hidden_mse"]["projection_params"] == 0
    assert terms["attention_kl"]["pairs"] == [[1, 3]]  # default: last layer to last layer
    narrow = {t["loss"]: t for t in task_stage["steps"][0]["transformer_terms"]}
    assert narrow["hidden_mse"]["pairs"] == [[0, 1], [1, 3]]  # default: uniform mapping, 2 of 4 layers
    assert narrow["hidden_mse"]["projection_params"] == 2 * (16 * 32 + 32)  # learned 16 → 32, one per pair
    assert task_stage["steps"][0]["connector_update_norm"] > 0  # trained with the student
    for details in (general, task_stage):
        losses = [h["train_loss"] for h in details["history"]]
        assert all(np.isfinite(losses))
    assert np.isfinite(report["models"]["deployed"]["metric"])
    # the projections are not part of the student: the exported file holds the 16-wide student only
    import onnx

    deployed = onnx.load(str(out / report["models"]["deployed"]["path"]))
    widths = {d.dim_value for d in deployed.graph.output[0].type.tensor_type.shape.dim}
    assert 16 in widths and 32 not in widths


# ---------------------------------------------------------------- in-process: resume and frozen parameters


def stage_inputs(tmp_path, tokenizer, stages: str, run_dir):
    """A real recipe, the tiny BERT teacher and everything run_distill reads (as the pipeline hands them over)."""
    import copy

    from edgedistill.data import load_dataset
    from edgedistill.models import build_model
    from edgedistill.state import ModelState, RunContext
    from edgedistill.tasks import build_task

    recipe = load_recipe(write_recipe(tmp_path, stages, tokenizer=str(tokenizer)))
    data = load_dataset(recipe.config.data)
    task = build_task(recipe.config.task, data)
    spec = recipe.config.teacher.model
    torch.manual_seed(0)
    teacher = build_model(spec, data.input_shape, data.num_classes, task=task).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    (run_dir / "stages" / "1-distill").mkdir(parents=True, exist_ok=True)
    ctx = RunContext(run_dir=run_dir, stage_dir=run_dir / "stages" / "1-distill", data=data, recipe=recipe, index=1,
                     task=task)
    return ModelState(copy.deepcopy(teacher), spec, teacher, spec, None, []), recipe.config.stages[0], ctx


NARROW = ("  - kind: distill\n    student: {name: hf, config: {model_type: bert, hidden_size: 16, num_hidden_layers: 2, "
          "num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 64}}\n"
          "    train: {epochs: 3, lr: 0.003}\n    cache: {enabled: false}\n"
          "    losses: [{name: hidden_mse}, {name: minilmv2_relations, relation_heads: 4}]\n")


@pytest.mark.slow
def test_resume_mid_stage_restores_the_projections_exactly(tmp_path, tiny_tokenizer):
    """Interrupted (Ctrl-C) in epoch 2 and resumed, the student and its learned projections end bit-identical
    to an uninterrupted run: the projections and their optimizer state are in the in-stage checkpoint."""
    from edgedistill.distill.stage import run_distill

    def run(run_dir, interrupt_at=None, resume=False):
        state, cfg, ctx = stage_inputs(tmp_path, tiny_tokenizer, NARROW, run_dir)
        ctx.resume = resume
        with interrupt_at_call(state.teacher, interrupt_at) as calls:
            return run_distill(state, cfg, ctx), calls

    full, calls = run(tmp_path / "full")
    assert len(calls) == 1 + 3 * 3  # the dry pass that sizes the projections, then 3 steps × 3 epochs
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", interrupt_at=1 + 3 + 2)  # epoch 2, step 2
    resumed, _ = run(tmp_path / "cut", resume=True)
    a, b = full.lineage[-1].details["steps"][0], resumed.lineage[-1].details["steps"][0]
    assert b["resumed_from_epoch"] == 1
    assert a["connector_update_norm"] > 0 and a["connector_update_norm"] == b["connector_update_norm"]
    ha, hb = full.lineage[-1].details["history"], resumed.lineage[-1].details["history"]
    assert [(h["train_loss"], h["val_metric"]) for h in ha] == [(h["train_loss"], h["val_metric"]) for h in hb]
    sa, sb = full.model.state_dict(), resumed.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.slow
def test_frozen_parameters_stay_out_of_the_optimizer_and_stay_frozen(tmp_path, tiny_tokenizer):
    """A model whose word-embedding table is frozen trains everything else; the table never moves, is not in
    the optimizer (the checkpoint's optimizer lists only the trainable tensors), and is still frozen after."""
    from edgedistill.distill.stage import run_distill

    stages = "  - {kind: distill, train: {epochs: 1, lr: 0.01}, losses: [{name: embedding_mse}]}\n"
    state, cfg, ctx = stage_inputs(tmp_path, tiny_tokenizer, stages, tmp_path / "run")
    model = state.model
    for p in model.parameters():
        p.requires_grad_(True)
    table = model.encoder.embeddings.word_embeddings.weight
    table.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # start away from the teacher, so the loss has something to teach
        model.encoder.encoder.layer[0].output.dense.weight.mul_(0.5)
    out = run_distill(state, cfg, ctx)
    assert out.model is model and not table.requires_grad
    assert torch.equal(table, before["encoder.embeddings.word_embeddings.weight"])
    assert all(p.requires_grad for n, p in model.named_parameters() if "word_embeddings" not in n)
    assert not torch.equal(model.state_dict()["encoder.encoder.layer.1.output.dense.weight"],
                           before["encoder.encoder.layer.1.output.dense.weight"])
    saved = torch.load(ctx.stage_dir / "train_state-0.pt", weights_only=True)
    trainable = sum(1 for p in model.parameters() if p.requires_grad)
    assert len(saved["optimizer"]["param_groups"][0]["params"]) == trainable == len(list(model.parameters())) - 1


@pytest.mark.slow
def test_compress_a_text_classifier_with_logits_kl_and_attention_terms(tmp_path, tiny_tokenizer):
    """text_classification: logits_kl + ce with attention and hidden-state terms, a student derived from the
    teacher (2 of 4 layers), then static int8 and export; the deployed file is scored."""
    rows = [line.split("\t") for line in (STSB / "sts-train.csv").read_text(encoding="utf-8").splitlines()][::6]
    labelled = tmp_path / "genre.csv"
    labelled.write_text("text,label\n" + "".join(f'"{r[5].replace(chr(34), "")}",{r[0]}\n' for r in rows),
                        encoding="utf-8")
    data = (f"{{name: text_labelled, path: {labelled}, tokenizer: {tiny_tokenizer}, max_length: 24, "
            "batch_size: 32, train_limit: 160, test_limit: 80}")
    stages = """  - kind: distill
    student: {name: hf_derived, layers: [1, 3]}
    temperature: 2.0
    train: {epochs: 2, lr: 0.002}
    losses:
      - {name: logits_kl, weight: 0.8}
      - {name: ce, weight: 0.2}
      - {name: attention_kl, weight: 0.5, student_layers: [0, 1], teacher_layers: [1, 3]}
      - {name: value_relation_kl, weight: 0.5}
      - {name: hidden_mse, weight: 0.5}
  - {kind: quantize, method: dynamic}
  - kind: export
"""
    recipe = write_recipe(tmp_path, stages, task="text_classification", data=data)
    out = tmp_path / "run"
    proc = run_cli("compress", "--recipe", recipe, "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    step = report["stages"][1]["details"]["steps"][0]
    assert {t["loss"] for t in step["transformer_terms"]} == {"attention_kl", "value_relation_kl", "hidden_mse"}
    assert next(t for t in step["transformer_terms"] if t["loss"] == "attention_kl")["pairs"] == [[0, 1], [1, 3]]
    assert step["cache"]["use"] == "off"  # the attention terms need the live teacher at every step
    assert all(np.isfinite(h["train_loss"]) for h in report["stages"][1]["details"]["history"])
    assert 0.0 <= report["models"]["deployed"]["metric"] <= 1.0
