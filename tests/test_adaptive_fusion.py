"""Adaptive fusion: per-query weights by hand, and the multilingual-model path end to end.

The multilingual model is built here: a WordPiece tokenizer trained on German, Chinese and
English sentences (so Chinese is tokenised, not [UNK]), a randomly initialised one-layer
BERT, saved with a model card naming its languages, and loaded through the library's own
dense branch loader.
"""

from __future__ import annotations

import pytest

from hybrid_retriever import Document, HybridRetriever, RetrieverConfig
from hybrid_retriever.config import DenseBranchConfig
from hybrid_retriever.fusion import BranchList
from hybrid_retriever.fusion.adaptive import BranchSignals, adaptive, adaptive_weights
from hybrid_retriever.models.card import branch_languages, card_languages
from tests.test_languages import CHINESE, ENGLISH, GERMAN


def test_adaptive_weights_by_hand():
    w = {"bm25": 0.5, "dense": 0.5}
    # Dense outside its languages, factor 0.3: 0.5·0.3 / (0.5 + 0.15) = 0.2308, BM25 0.5 / 0.65 = 0.7692.
    aw = adaptive_weights(w, {"dense": BranchSignals(in_language=False)}, foreign_weight=0.3)
    assert aw.weights == pytest.approx({"bm25": 0.5 / 0.65, "dense": 0.15 / 0.65})
    assert aw.factors == {"bm25": 1.0, "dense": 0.3} and aw.flags == {"bm25": [], "dense": ["out_of_language"]}
    # BM25 without query tokens: weight 0, dense takes all.
    aw = adaptive_weights(w, {"bm25": BranchSignals(no_query_tokens=True), "dense": BranchSignals(in_language=True)})
    assert aw.weights == {"bm25": 0.0, "dense": 1.0} and aw.flags["bm25"] == ["no_query_tokens"]
    # Both discounted to nothing: the configured weights stand.
    aw = adaptive_weights(w, {"bm25": BranchSignals(no_query_tokens=True), "dense": BranchSignals(in_language=False)}, 0.0)
    assert aw.weights == {"bm25": 0.5, "dense": 0.5}
    # Nothing known: unchanged (renormalised).
    assert adaptive_weights({"a": 2.0, "b": 6.0}, {}).weights == {"a": 0.25, "b": 0.75}
    with pytest.raises(ValueError, match="foreign_weight"):
        adaptive_weights(w, {}, foreign_weight=1.5)


def test_adaptive_fuses_with_its_weights():
    # Min-max over the union; a: x 1, y 0; b: y 1, x 0. Weights 0.2 (a) / 0.8 (b) after the
    # out-of-language factor 0.25 on a (0.5·0.25 = 0.125; 0.125/0.625 = 0.2).
    lists = {"a": BranchList(["x", "y"], [2.0, 1.0]), "b": BranchList(["y", "x"], [0.9, 0.1])}
    fused, aw = adaptive(lists, {"a": 0.5, "b": 0.5}, {"a": BranchSignals(in_language=False)}, "minmax", foreign_weight=0.25)
    assert {f.id: f.score for f in fused} == pytest.approx({"x": 0.2, "y": 0.8})
    assert aw.weights == pytest.approx({"a": 0.2, "b": 0.8})


def test_minilm_card_says_english():
    assert card_languages("sentence-transformers/all-MiniLM-L6-v2") == ["en"]
    assert branch_languages(DenseBranchConfig()) == frozenset({"english"})
    assert branch_languages(DenseBranchConfig(languages=["multilingual"])) is None
    assert branch_languages(DenseBranchConfig(languages=["de", "zh"])) == frozenset({"german", "chinese"})


@pytest.fixture(scope="module")
def multilingual_model(tmp_path_factory):
    """A tiny random BERT with a WordPiece vocabulary trained on German, Chinese and English text."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, trainers
    from tokenizers import models as tok_models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(tok_models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(handle_chinese_chars=True, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(GERMAN + CHINESE + ENGLISH, trainers.WordPieceTrainer(vocab_size=600, special_tokens=special))
    tokenizer = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                  sep_token="[SEP]", mask_token="[MASK]")
    path = tmp_path_factory.mktemp("tiny-multilingual") / "model"
    torch.manual_seed(0)
    dim = 16
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=dim, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=2 * dim, max_position_embeddings=64)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    SentenceTransformer(modules=[models.Transformer(str(path), max_seq_length=64), models.Pooling(dim, "mean")]).save(str(path))
    (path / "README.md").write_text("---\nlanguage:\n- de\n- zh\n- en\nlicense: apache-2.0\n---\n# tiny test model\n", encoding="utf-8")
    # Chinese is tokenised into known pieces, not [UNK].
    ids = tokenizer("熊猫以竹子为食")["input_ids"]
    assert tokenizer.unk_token_id not in ids
    return str(path)


def config(path, model, **dense):
    return RetrieverConfig.validate_data({
        "store": {"kind": "edge", "path": str(path)},
        "branches": [{"kind": "bm25"}, {"kind": "dense", "model": model, "device": "cpu", **dense}],
        "runtime": {"show_progress": False},
    })


def test_a_multilingual_model_keeps_its_weight_on_chinese(tmp_path, multilingual_model):
    assert card_languages(multilingual_model) == ["de", "zh", "en"]
    with HybridRetriever(config(tmp_path / "a", multilingual_model)) as r:
        r.add_documents([Document(text=t, id=f"zh{i}") for i, t in enumerate(CHINESE)])
        hits = r.search("熊猫吃什么", k=3)
        assert hits[0].id == "zh2"
        for h in hits:
            assert h.provenance["dense"].weight == pytest.approx(0.5) and h.provenance["dense"].flags == []


def test_a_model_declared_english_is_discounted_on_chinese(tmp_path, multilingual_model):
    # The configured languages override the card: declared English-only, the corpus is Chinese.
    with HybridRetriever(config(tmp_path / "b", multilingual_model, languages=["en"])) as r:
        r.add_documents([Document(text=t, id=f"zh{i}") for i, t in enumerate(CHINESE)])
        hits = r.search("熊猫吃什么", k=3)
        assert hits[0].id == "zh2"
        for h in hits:
            assert h.provenance["dense"].flags == ["out_of_language"]
            assert h.provenance["dense"].weight == pytest.approx(0.15 / 0.65)
            assert h.provenance["bm25"].weight == pytest.approx(0.5 / 0.65)
