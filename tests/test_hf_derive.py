"""Student derivation from a tiny randomly initialised BERT (built from a config: no downloads)."""

from __future__ import annotations

import pytest
import torch

from edgedistill.errors import UserError

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from edgedistill.models import hf_derive  # noqa: E402

WORDS = ["the", "cat", "sat", "on", "mat", "dog", "play", "##ing", "run", "un", "##known"]


def tiny_bert(layers: int = 4, hidden: int = 32, heads: int = 4, vocab: int | None = None):
    cfg = transformers.BertConfig(vocab_size=vocab or 128, hidden_size=hidden, num_hidden_layers=layers,
                                  num_attention_heads=heads, intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    return transformers.BertModel(cfg).eval()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """A real WordPiece BertTokenizerFast over a small vocabulary: specials, whole words, pieces, characters."""
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *WORDS, *chars, *[f"##{c}" for c in chars]]
    path = tmp_path_factory.mktemp("tok") / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n")
    return transformers.BertTokenizerFast(vocab_file=str(path))


def test_layer_selection_keeps_the_teachers_weights():
    teacher = tiny_bert(layers=6)
    assert hf_derive.resolve_layers("every_other", 6) == [1, 3, 5]
    assert hf_derive.resolve_layers(2, 6) == [0, 1]
    student, layers = hf_derive.keep_layers(teacher, [1, 4])
    assert layers == [1, 4] and student.config.num_hidden_layers == 2 and len(teacher.encoder.layer) == 6
    for new, old in zip(student.encoder.layer, [teacher.encoder.layer[1], teacher.encoder.layer[4]], strict=False):
        for (n, a), (_, b) in zip(new.state_dict().items(), old.state_dict().items(), strict=False):
            assert torch.equal(a, b), n
    ids = torch.randint(5, 100, (2, 7))
    assert student(ids).last_hidden_state.shape == (2, 7, 32)
    for bad in ([6], [1, 1], [], 0, "every_third"):
        with pytest.raises(UserError):
            hf_derive.resolve_layers(bad, 6)


def test_narrowing_ffn_heads_and_hidden_runs_and_keeps_kept_weights():
    model = tiny_bert(layers=2)
    ffn_before = model.encoder.layer[0].intermediate.dense.weight.detach().clone()
    hf_derive.narrow(model, intermediate_size=32, heads=2)
    layer = model.encoder.layer[0]
    assert model.config.intermediate_size == 32 and model.config.num_attention_heads == 2
    assert layer.intermediate.dense.out_features == 32 and layer.attention.self.query.out_features == 16
    kept_rows = [any(torch.equal(r, k) for k in ffn_before) for r in layer.intermediate.dense.weight]
    assert all(kept_rows)  # every surviving FFN neuron is one of the teacher's, unchanged
    hf_derive.narrow(model, hidden_size=24)
    assert model.config.hidden_size == 24 and model.embeddings.word_embeddings.embedding_dim == 24
    ids = torch.randint(5, 100, (2, 7))
    out = model(ids)
    assert out.last_hidden_state.shape == (2, 7, 24) and out.pooler_output.shape == (2, 24)
    with pytest.raises(UserError):
        hf_derive.narrow(model, heads=5)


def test_vocab_pruning_keeps_kept_embeddings_and_tokenization(tokenizer, tmp_path):
    model = tiny_bert(vocab=len(tokenizer))
    table = model.embeddings.word_embeddings.weight.detach().clone()
    corpus = ["the cat sat on the mat.", "dogs playing"]
    model, small, kept = hf_derive.prune_vocab(model, tokenizer, corpus)
    assert kept == sorted(kept) and small.vocab_size == len(kept) < len(tokenizer)
    assert torch.equal(model.embeddings.word_embeddings.weight, table[kept])  # kept rows identical
    assert model.config.vocab_size == len(kept)
    for text in corpus:  # words whose pieces were all kept tokenize exactly as before (old ids = kept[new])
        assert [kept[i] for i in small(text)["input_ids"]] == tokenizer(text)["input_ids"]
    assert "run" not in small.get_vocab()  # unused word pruned ...
    pieces = small.tokenize("run unknown zebra")  # ... yet unseen words still tokenize, into kept pieces
    assert "[UNK]" not in pieces and "".join(p.removeprefix("##") for p in pieces) == "rununknownzebra"
    small.save_pretrained(str(tmp_path))  # the bundle's files reload to the same tokenizer
    again = transformers.AutoTokenizer.from_pretrained(str(tmp_path), trust_remote_code=False)
    assert again("run the dogs")["input_ids"] == small("run the dogs")["input_ids"]
    ids = torch.tensor([small("the cat")["input_ids"]])
    ref = tiny_bert(vocab=len(tokenizer))(torch.tensor([tokenizer("the cat")["input_ids"]])).last_hidden_state
    torch.testing.assert_close(model(ids).last_hidden_state, ref)  # same model on kept words


def test_kept_vocab_can_add_the_most_frequent_pieces(tokenizer):
    corpus_only = hf_derive.kept_vocab(tokenizer, ["the cat"])
    with_first = hf_derive.kept_vocab(tokenizer, ["the cat"], keep_first=12)
    assert set(range(12)) <= set(with_first) and set(corpus_only) < set(with_first)
    assert hf_derive.kept_vocab(tokenizer, ["the cat"], keep_characters=False) == sorted(
        {tokenizer.convert_tokens_to_ids(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat")})
