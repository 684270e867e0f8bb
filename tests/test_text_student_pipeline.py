"""The pieces the built-in `minilm_embedder` recipe strings together, on a tiny BERT teacher built from a
config: a derived, narrowed student with a frozen word-embedding table, the `vocab` stage (the table cut to
the pieces the data uses, the tokenizer rebuilt to agree, the data re-tokenized for the student), dynamic
int8 with a 4-bit embedding table, session options chosen by measurement and carried to the bundle."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from edgedistill.errors import UserError
from edgedistill.io import atomic_dir
from edgedistill.vocab.stage import used_ids

from .conftest import STSB, run_cli

TINY = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2,
        "intermediate_size": 64}


def _teacher():
    """A tiny BERT inside the sentence-encoder wrapper, as the text_embedding task builds teachers."""
    from edgedistill.models import build_model
    from edgedistill.models.pooling import SentenceEncoder

    torch.manual_seed(0)
    return SentenceEncoder(build_model({"name": "hf", "config": {**TINY, "vocab_size": 120}}, (), 0))


def test_derived_student_is_narrowed_frozen_and_rebuilds_at_the_pruned_vocabulary_size():
    from edgedistill.models import build_model

    teacher = _teacher()
    student = build_model({"name": "hf_derived", "layers": [0, 2], "intermediate_size": 32,
                           "freeze_word_embeddings": True}, (), 0, teacher=teacher)
    inner = student.encoder
    assert len(inner.encoder.layer) == 2 and inner.encoder.layer[0].intermediate.dense.out_features == 32
    table = inner.get_input_embeddings().weight
    assert not table.requires_grad and torch.equal(table, teacher.encoder.get_input_embeddings().weight)
    assert all(p.requires_grad for n, p in student.named_parameters() if "word_embeddings" not in n)
    # what `--resume` rebuilds after a vocab stage: the same architecture with the cut table
    again = build_model({"name": "hf_derived", "layers": [0, 2], "intermediate_size": 32, "vocab_size": 50}, (), 0,
                        teacher=teacher)
    assert again.encoder.get_input_embeddings().num_embeddings == 50
    with pytest.raises(UserError, match="vocab_size"):
        build_model({"name": "hf_derived", "layers": [0], "vocab_size": 500}, (), 0, teacher=teacher)


def test_used_ids_ignore_padding_and_read_both_sides_of_pairs():
    ids = np.array([[1, 5, 7, 0], [1, 9, 0, 0]])
    mask = (ids != 0).astype(np.int64)
    assert used_ids({"input_ids": ids, "attention_mask": mask}) == {1, 5, 7, 9}
    pairs = {"a.input_ids": ids, "a.attention_mask": mask, "b.input_ids": ids + 20, "b.attention_mask": mask}
    assert used_ids(pairs) == {1, 5, 7, 9, 21, 25, 27, 29}


def test_atomic_dir_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "tok"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (target / "a.txt").read_text() == "1"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("2")
        raise RuntimeError("killed half way")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]  # the old folder is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["tok"]  # and no temporary folder is left behind


KEEP_TEXT = ["Photosynthesis regulates chlorophyll.", "quantum entanglement experiments"]  # not STS-B train words


def _recipe(tmp_path, tokenizer, quantize: str) -> str:
    (tmp_path / "words.txt").write_text("\n".join(KEEP_TEXT) + "\n\n")
    (tmp_path / "seq.yaml").write_text("name: seq_cpu\nthreads: 1\nbatch_sizes: [1]\nsequence_lengths: [32]\n")
    text = f"""name: text_student
task: text_embedding
data: {{name: sts, path: {STSB}, tokenizer: {tokenizer}, max_length: 24, batch_size: 32, train_limit: 200,
        test_limit: 80, val_fraction: 0.05}}
teacher:
  model: {{name: hf, config: {json.dumps(TINY)}}}
stages:
  - kind: distill
    student: {{name: hf_derived, layers: [0, 2], intermediate_size: 32, freeze_word_embeddings: true}}
    train: {{epochs: 1, lr: 0.002}}
  - {{kind: vocab, keep_text: {tmp_path / "words.txt"}}}
  - {quantize}
  - kind: export
targets: [{tmp_path / "seq.yaml"}]
profile: {{runs: 10, warmup: 2}}
gates: {{max_latency_ratio: 100.0}}
"""
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.slow
def test_vocab_stage_int4_table_and_session_options_reach_the_bundle(tmp_path, tiny_tokenizer):
    from safetensors.numpy import load_file

    from edgedistill.data.tokenize import load_tokenizer

    recipe = _recipe(tmp_path, tiny_tokenizer, "{kind: quantize, method: dynamic, int4: [Gather], "
                                               "session_options: auto, keep: quantized}")
    out = tmp_path / "run"
    proc = run_cli("compress", "--recipe", recipe, "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    vocab = next(s for s in report["stages"] if s["kind"] == "vocab")["details"]
    assert vocab["vocab_after"] < vocab["vocab_before"] == len(load_tokenizer(tiny_tokenizer))

    # the bundled tokenizer is the pruned one, and its ids index the cut table
    bundle = out / "bundle"
    tok = load_tokenizer(bundle / "tokenizer")
    assert len(tok) == vocab["vocab_after"]
    # keep_text: its lines tokenize into the same pieces with the cut tokenizer as with the full one
    full = load_tokenizer(tiny_tokenizer)
    assert vocab["keep_text_lines"] == len(KEEP_TEXT)
    assert all(tok.tokenize(line) == full.tokenize(line) for line in KEEP_TEXT)
    # the kept rows are exactly the teacher's (the table was frozen while distilling, then cut)
    teacher = load_file(str(out / "stages" / "0-teacher" / "model.safetensors"))
    student = load_file(str(out / "stages" / "2-vocab" / "model.safetensors"))
    key = next(k for k in student if k.endswith("word_embeddings.weight"))
    old, new = load_tokenizer(tiny_tokenizer).get_vocab(), tok.get_vocab()
    kept = [old[piece] for piece, _ in sorted(new.items(), key=lambda kv: kv[1])]
    assert np.array_equal(student[key], teacher[key][kept])

    # 4-bit table: the shipped file gathers from GatherBlockQuantized
    import onnx

    ops = {n.op_type for n in onnx.load(str(bundle / "model.onnx")).graph.node}
    assert "GatherBlockQuantized" in ops and ("MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops)

    # session options: measured, recorded, carried into the manifest and the snippet
    chosen = next(s for s in report["stages"] if s["kind"] == "quantize")["details"]["session_options"]
    from edgedistill.quantize.session import CANDIDATES

    assert chosen["measured"] and set(chosen["ratios"]) == set(CANDIDATES)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["model"]["session_options"] == chosen["options"]
    card = (bundle / "MODEL_CARD.md").read_text()  # where the app team reads what the options are worth
    config = chosen["options"].get("session_config") or {}
    assert ("Session options" in card) == bool(config) and all(f"`{k}`" in card for k in config)
    for flag, want in (("--bundle-options", chosen["options"]), ("--default-options", {})):  # re-timing a bundle
        proc = run_cli("profile", str(bundle / "model.onnx"), "--runs", "5", "--no-ops", "--json", flag)
        assert proc.returncode == 0 and json.loads(proc.stdout)["session_options"] == want, proc.stderr
    snippet = runpy.run_path(str(bundle / "usage" / "predict.py"))
    emb = snippet["embed"](["A man is playing a flute.", "Some words the corpus never saw: zyxwv"])
    assert emb.shape[0] == 2 and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3)

    # teacher scored on its own tokenization, the student and shipped file on the pruned one; latency gate ran
    assert all(np.isfinite(report["models"][m]["metric"]) for m in ("teacher", "student", "deployed"))
    gate = next(g for g in report["gates"] if g["name"] == "max_latency_ratio")
    assert gate["value"] is not None and gate["value"] > 0
    assert run_cli("verify", str(bundle)).returncode == 0

    # --resume rebuilds the cut student from its spec and the data from the stage's tokenizer: nothing re-runs
    proc = run_cli("compress", "--recipe", recipe, "--out", str(out), "--resume")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    again = json.loads((out / "report.json").read_text())
    assert again["models"]["deployed"]["sha256"] == report["models"]["deployed"]["sha256"]
    assert again["models"]["deployed"]["metric"] == report["models"]["deployed"]["metric"]


def test_int4_needs_dynamic_and_vocab_cannot_come_first(tmp_path, tiny_tokenizer):
    recipe = _recipe(tmp_path, tiny_tokenizer, "{kind: quantize, method: static, int4: [Gather]}")
    proc = run_cli("validate", recipe)
    assert proc.returncode == 2 and "int4" in proc.stderr and "Traceback" not in proc.stderr
    text = Path(recipe).read_text().replace("  - kind: distill\n", "  - kind: vocab\n  - kind: distill\n", 1)
    (tmp_path / "bad.yaml").write_text(text.replace("static, int4: [Gather]", "dynamic"))
    proc = run_cli("validate", str(tmp_path / "bad.yaml"))
    assert proc.returncode == 2 and "vocab" in proc.stderr and "Traceback" not in proc.stderr


def test_model_card_says_what_the_session_options_are_worth():
    from edgedistill.report.card import _session_options

    manifest = {"model": {"session_options": {"session_config": {"session.set_denormal_as_zero": "1"}}}}
    details = {"session_options": {"measured": True, "chosen": "flush_denormals", "target": "x86_vnni",
                                   "ratios": {"default": 1.0, "flush_denormals": 0.8}}}
    [line] = _session_options(manifest, {"stages": [{"kind": "quantize", "details": details}]})
    assert "`session.set_denormal_as_zero` = `1`" in line and "0.80×" in line and "25% slower" in line
    assert _session_options({"model": {"session_options": {}}}, {"stages": []}) == []


def test_keep_words_reads_a_general_word_list_and_names_a_bad_language():
    from edgedistill.vocab.stage import common_words

    words = common_words(50, "en", "stages.1")
    assert len(words) == 50 and words[0] == "the" and len(set(words)) == 50  # frequency order, no repeats
    with pytest.raises(UserError, match="no word list for language") as err:
        common_words(50, "xx-not-a-language", "stages.1")
    assert err.value.where == "stages.1.keep_words_language"


def test_missing_keep_text_file_stops_the_recipe_before_training(tmp_path, tiny_tokenizer):
    recipe = _recipe(tmp_path, tiny_tokenizer, "{kind: quantize, method: dynamic}")
    (tmp_path / "words.txt").unlink()
    proc = run_cli("validate", recipe)
    assert proc.returncode == 2 and "keep_text" in proc.stderr and "words.txt" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_step_check_skips_only_frozen_parameters():
    from edgedistill.finite import model_nonfinite

    net = torch.nn.Sequential(torch.nn.Embedding(4, 2), torch.nn.Linear(2, 2))
    net[0].weight.requires_grad_(False)
    with torch.no_grad():
        net[0].weight[0, 0] = float("nan")
    assert model_nonfinite(net) == ["0.weight"]  # a loaded checkpoint is checked whole
    assert model_nonfinite(net, trainable_only=True) == []  # a step cannot change a frozen table
    with torch.no_grad():
        net[1].bias[0] = float("inf")
    assert model_nonfinite(net, trainable_only=True) == ["1.bias"]


def test_shipped_session_options_come_from_the_bundle_manifest_only(tmp_path):
    from edgedistill.report.bundle import shipped_session_options

    model = tmp_path / "model.onnx"
    model.write_bytes(b"")
    assert shipped_session_options(model) == {}  # no manifest: ORT's defaults
    options = {"session_config": {"session.set_denormal_as_zero": "1"}}
    (tmp_path / "manifest.json").write_text(json.dumps({"model": {"file": "model.onnx", "session_options": options}}))
    assert shipped_session_options(model) == {}  # a manifest without verified checksums is not trusted
    assert shipped_session_options(tmp_path / "other.onnx") == {}  # a file the manifest does not describe
    (tmp_path / "manifest.json").write_text("not json")
    assert shipped_session_options(model) == {}
