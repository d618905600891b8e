"""Adaptive fusion: per-query weights by hand, and the multilingual-model path end to end.

The multilingual model is built here: a WordPiece tokenizer trained on German, Chinese and
English sentences (so Chinese is tokenised, not [UNK]), a randomly initialised one-layer
BERT, saved with a model card naming its languages, and loaded through the library's own
dense branch loader.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybrid_retriever import Document, HybridRetriever, RetrieverConfig
from hybrid_retriever.config import DenseBranchConfig, FusionConfig
from hybrid_retriever.fusion import BranchList
from hybrid_retriever.fusion.adaptive import BranchSignals, adaptive, adaptive_weights, clarity, support
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
    # Min-max over the union; a: x 1, y 0; b: y 1, x 0. Clarity off: weights 0.2 (a) / 0.8 (b)
    # after the out-of-language factor 0.25 on a (0.5·0.25 = 0.125; 0.125/0.625 = 0.2).
    lists = {"a": BranchList(["x", "y"], [2.0, 1.0]), "b": BranchList(["y", "x"], [0.9, 0.1])}
    fused, aw = adaptive(lists, {"a": 0.5, "b": 0.5}, {"a": BranchSignals(in_language=False)}, "minmax",
                         foreign_weight=0.25, clarity_weight=0.0)
    assert {f.id: f.score for f in fused} == pytest.approx({"x": 0.2, "y": 0.8})
    assert aw.weights == pytest.approx({"a": 0.2, "b": 0.8})


def test_clarity_by_hand():
    # NQC of [3, 2, 1]: population std sqrt(2/3) = 0.81650 over mean 2 = 0.40825.
    assert clarity([3.0, 2.0, 1.0]) == pytest.approx(0.408248, abs=1e-6)
    # Only the top `depth` scores count; NaN is dropped before taking them.
    assert clarity([3.0, float("nan"), 2.0, 1.0, 100.0], depth=3) == pytest.approx(0.408248, abs=1e-6)
    # [2, 1]: std 0.5 / mean 1.5 = 1/3; equal scores: 0; one score: unknown.
    assert clarity([2.0, 1.0]) == pytest.approx(1 / 3)
    assert clarity([0.5, 0.5, 0.5]) == 0.0 and clarity([1.0]) is None and clarity([]) is None
    # Mean not positive: no clarity (0); a mean near 0 with a wide spread is capped at 1.
    assert clarity([-0.1, -0.3]) == 0.0 and clarity([0.5, -0.5]) == 0.0
    assert clarity([1.0, -0.9]) == 1.0  # std 0.95 / mean 0.05 = 19 -> cap


def test_clarity_moves_weights_by_hand():
    w = {"bm25": 0.5, "dense": 0.5}
    # BM25 (sparse) clarity 0.4, dense 0.1, clarity_weight 2, offset 0.125:
    # factors exp(2·(0.4 − 0.125)) = 1.73325 and exp(2·0.1) = 1.22140; weights 0.58662 / 0.41338.
    sig = {"bm25": BranchSignals(clarity=0.4, sparse=True), "dense": BranchSignals(clarity=0.1)}
    aw = adaptive_weights(w, sig, clarity_weight=2.0, sparse_clarity_offset=0.125)
    assert aw.weights == pytest.approx({"bm25": 0.586618, "dense": 0.413382}, abs=1e-6)
    assert aw.factors == pytest.approx({"bm25": 1.733253, "dense": 1.221403}, abs=1e-6)
    assert aw.signals == {"bm25": {"clarity": 0.4}, "dense": {"clarity": 0.1}}
    # Clarity off: the configured weights.
    assert adaptive_weights(w, sig, clarity_weight=0.0).weights == {"bm25": 0.5, "dense": 0.5}
    # No query tokens stays 0 whatever the clarity.
    sig["bm25"] = BranchSignals(no_query_tokens=True, clarity=1.0, sparse=True)
    assert adaptive_weights(w, sig).weights == {"bm25": 0.0, "dense": 1.0}
    with pytest.raises(ValueError, match="clarity_weight"):
        adaptive_weights(w, {}, clarity_weight=-1.0)
    with pytest.raises(ValueError, match="sparse_clarity_offset"):
        adaptive_weights(w, {}, sparse_clarity_offset=float("nan"))


def test_adaptive_measures_clarity_from_the_lists():
    # a: [2, 1] -> clarity 1/3, b: [0.9, 0.1] -> std 0.4 / mean 0.5 = 0.8, neither sparse; a out of
    # language (0.25): factors 0.25·exp(2/3) = 0.48692 and exp(1.6) = 4.95303 -> a 0.08951, b 0.91049.
    lists = {"a": BranchList(["x", "y"], [2.0, 1.0]), "b": BranchList(["y", "x"], [0.9, 0.1])}
    fused, aw = adaptive(lists, {"a": 0.5, "b": 0.5}, {"a": BranchSignals(in_language=False)}, "minmax",
                         foreign_weight=0.25, clarity_weight=2.0)
    assert aw.weights == pytest.approx({"a": 0.089510, "b": 0.910490}, abs=1e-6)
    assert {n: v["clarity"] for n, v in aw.signals.items()} == pytest.approx({"a": 1 / 3, "b": 0.8})
    assert [f.id for f in fused] == ["y", "x"]
    assert {f.id: f.score for f in fused} == pytest.approx({"x": 0.089510, "y": 0.910490}, abs=1e-6)


scores = st.one_of(st.floats(-50, 50, allow_nan=False), st.just(float("nan")), st.sampled_from([0.0, 1.0]))


@st.composite
def branch_lists(draw):
    ids = draw(st.lists(st.sampled_from("abcdefgh"), unique=True, max_size=8))
    # Completion scores candidates the branch did not return (the other branch's finds).
    others = draw(st.lists(st.sampled_from("abcdefgh"), unique=True, max_size=4))
    return BranchList(ids, [draw(scores) for _ in ids], extra={i: draw(scores) for i in others if i not in ids})


@settings(max_examples=200, deadline=None)
@given(a=branch_lists(), b=branch_lists(), wa=st.floats(0, 5), wb=st.floats(0, 5), beta=st.floats(0, 10),
       offset=st.floats(-1, 1), gamma=st.floats(0, 10), foreign=st.booleans(), blind=st.booleans())
def test_adaptive_weights_are_a_distribution_on_any_lists(a, b, wa, wb, beta, offset, gamma, foreign, blind):
    sig = {"a": BranchSignals(no_query_tokens=blind, sparse=True), "b": BranchSignals(in_language=not foreign)}
    fused, aw = adaptive({"a": a, "b": b}, {"a": wa, "b": wb}, sig, "zscore", clarity_weight=beta,
                         sparse_clarity_offset=offset, support_weight=gamma)
    c = {n: clarity(bl.scores) for n, bl in (("a", a), ("b", b))}
    for n, v in c.items():
        assert v is None or 0.0 <= v <= 1.0
        assert aw.signals.get(n, {}).get("clarity") == v
        sup = aw.signals.get(n, {}).get("support")
        assert sup is None or 0.0 <= sup <= 1.0
    if wa + wb > 0:
        assert sum(aw.weights.values()) == pytest.approx(1.0)
    assert all(0.0 <= w <= 1.0 and math.isfinite(w) for w in aw.weights.values())
    if blind and wb > 0:
        assert aw.weights["a"] == 0.0
    # Every candidate with a score in either branch is ranked once, with a finite score (a completed
    # score needs its branch to have returned a score to normalise against).
    expected = {i for bl in (a, b) for i, s in list(zip(bl.ids, bl.scores)) if not math.isnan(s)}
    expected |= {i for bl in (a, b) if bl.ranked() for i, s in bl.extra.items() if not math.isnan(s)}
    assert sorted(f.id for f in fused) == sorted(expected)
    assert all(math.isfinite(f.score) for f in fused)


@settings(max_examples=200, deadline=None)
@given(ca=st.floats(0, 1), cb=st.floats(0, 1), step=st.floats(0, 1), beta=st.floats(0, 10), sa=st.floats(0, 1),
       sb=st.floats(0, 1), gamma=st.floats(0, 10))
def test_more_clarity_or_support_never_lowers_a_weight(ca, cb, step, beta, sa, sb, gamma):
    w = {"a": 0.5, "b": 0.5}

    def weight_a(ca, sa):
        sig = {"a": BranchSignals(clarity=ca, support=sa), "b": BranchSignals(clarity=cb, support=sb)}
        return adaptive_weights(w, sig, clarity_weight=beta, support_weight=gamma).weights["a"]

    assert weight_a(min(1.0, ca + step), sa) >= weight_a(ca, sa) - 1e-12
    assert weight_a(ca, min(1.0, sa + step)) >= weight_a(ca, sa) - 1e-12
    # Equal signals on two dense branches: the configured weights.
    same = adaptive_weights(w, {"a": BranchSignals(clarity=ca, support=sa), "b": BranchSignals(clarity=ca, support=sa)},
                            clarity_weight=beta, support_weight=gamma)
    assert same.weights == pytest.approx(w)


def test_support_by_hand():
    assert support(["x", "y", "z"], {"y", "w"}) == pytest.approx(1 / 3)
    assert support(["x", "y"], {"x", "y"}) == 1.0 and support(["x"], {"y"}) == 0.0
    assert support([], {"x"}) is None and support(["x"], set()) is None
    # Only the top `depth` ids count.
    assert support(["a", "b", "c", "d"], {"c", "d"}, depth=2) == 0.0
    # Lists bm25 [x, y, z], dense [y, w]: support 1/3 and 1/2; support_weight 3, clarity off:
    # factors exp(1) = 2.71828 and exp(1.5) = 4.48169 -> weights 0.377541 / 0.622459.
    lists = {"bm25": BranchList(["x", "y", "z"], [3.0, 2.0, 1.0]), "dense": BranchList(["y", "w"], [0.9, 0.8])}
    fused, aw = adaptive(lists, {"bm25": 0.5, "dense": 0.5}, {}, "minmax", clarity_weight=0.0, support_weight=3.0)
    assert aw.weights == pytest.approx({"bm25": 0.377541, "dense": 0.622459}, abs=1e-6)
    assert aw.signals["bm25"]["support"] == pytest.approx(1 / 3) and aw.signals["dense"]["support"] == 0.5
    # Min-max per branch over the union: y = 0.377541·0.5 + 0.622459·1 (completion absent: x, z floored in dense).
    assert fused[0].id == "y" and fused[0].score == pytest.approx(0.377541 * 0.5 + 0.622459, abs=1e-6)
    with pytest.raises(ValueError, match="support_weight"):
        adaptive_weights({"a": 1.0}, {}, support_weight=float("inf"))



def test_underflow_and_extreme_weights():
    # 5e-324 times the foreign factor may underflow to 0: the branch not discounted to 0 still takes all the weight, the blind one none.
    aw = adaptive_weights({"a": 1.0, "b": 5e-324}, {"a": BranchSignals(no_query_tokens=True), "b": BranchSignals(in_language=False)})
    assert aw.weights == {"a": 0.0, "b": 1.0}
    # An extreme signal weight neither overflows nor divides by zero: the supported branch takes (nearly) all.
    aw = adaptive_weights({"a": 0.5, "b": 0.5}, {"a": BranchSignals(support=1.0), "b": BranchSignals(support=0.0)},
                          support_weight=1e6)
    assert aw.weights["a"] == pytest.approx(1.0) and math.isfinite(aw.weights["b"])


def test_one_branch_empty_and_ties():
    # One branch returned nothing: no clarity for it, the other takes all the weight it has.
    lists = {"a": BranchList([], []), "b": BranchList(["x", "y"], [0.7, 0.7])}
    fused, aw = adaptive(lists, {"a": 0.5, "b": 0.5}, {}, "dbsf")
    assert aw.signals == {"b": {"clarity": 0.0}} and aw.factors["a"] == 1.0
    # Tied scores in b: order by the best rank (x first), DBSF maps a degenerate list to 0.5.
    assert [f.id for f in fused] == ["x", "y"] and [f.score for f in fused] == pytest.approx([0.25, 0.25])


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


BETA, OFFSET, GAMMA = FusionConfig().clarity_weight, FusionConfig().sparse_clarity_offset, FusionConfig().support_weight


def signal_factor(score, offset):
    """exp(β·(clarity − offset) + γ·support) from a hit's provenance (a signal not measured counts 0)."""
    c, s = score.signals.get("clarity"), score.signals.get("support")
    return math.exp((0.0 if c is None else BETA * (c - offset)) + (0.0 if s is None else GAMMA * s))


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
            assert h.provenance["dense"].flags == []
            # Only clarity and support move the weights: w_bm25 / w_dense = factor_bm25 / factor_dense.
            b, d = h.provenance["bm25"], h.provenance["dense"]
            expected = signal_factor(b, OFFSET) / signal_factor(d, 0.0)
            assert b.weight / d.weight == pytest.approx(expected) and b.weight + d.weight == pytest.approx(1.0)
            assert "clarity" in d.signals and "support" in d.signals  # the dense branch returns every document
            assert h.as_dict()["provenance"]["dense"]["signals"] == d.signals


def test_a_model_declared_english_is_discounted_on_chinese(tmp_path, multilingual_model):
    # The configured languages override the card: declared English-only, the corpus is Chinese.
    with HybridRetriever(config(tmp_path / "b", multilingual_model, languages=["en"])) as r:
        r.add_documents([Document(text=t, id=f"zh{i}") for i, t in enumerate(CHINESE)])
        hits = r.search("熊猫吃什么", k=3)
        assert hits[0].id == "zh2"
        for h in hits:
            assert h.provenance["dense"].flags == ["out_of_language"]
            # The foreign factor on top of the signals: w_bm25 / w_dense = factor_bm25 / factor_dense / foreign, where
            # foreign = foreign_weight · exp(−fragmentation_weight · fragmentation) (the query's, under the model's tokenizer).
            b, d = h.provenance["bm25"], h.provenance["dense"]
            f = FusionConfig()
            foreign = f.foreign_weight * math.exp(-f.fragmentation_weight * d.signals["fragmentation"])
            expected = signal_factor(b, OFFSET) / signal_factor(d, 0.0) / foreign
            assert b.weight / d.weight == pytest.approx(expected) and b.weight + d.weight == pytest.approx(1.0)


def test_config_defaults_are_the_fusion_defaults():
    import importlib

    module = importlib.import_module("hybrid_retriever.fusion.adaptive")

    f = FusionConfig()
    assert (f.clarity_weight, f.sparse_clarity_offset, f.support_weight, f.foreign_weight, f.fragmentation_weight) == (
        module.DEFAULT_CLARITY_WEIGHT, module.DEFAULT_SPARSE_CLARITY_OFFSET, module.DEFAULT_SUPPORT_WEIGHT,
        module.DEFAULT_FOREIGN_WEIGHT, module.DEFAULT_FRAGMENTATION_WEIGHT)


def test_the_card_decides_per_language_and_fragmentation_moves_the_dense_weight(tmp_path, multilingual_model):
    """A multilingual model whose card names German and English: a German corpus keeps the dense weight (flag off),
    a Chinese one is out of its languages (flag on) and the query's fragmentation under the model's own tokenizer,
    measured at search time, lowers the dense weight further: w_bm25 / w_dense = factors / (foreign · exp(-w · frag))."""
    from transformers import AutoTokenizer

    from hybrid_retriever.models.fragmentation import fragmentation

    card = tmp_path / "de-en"
    import shutil

    shutil.copytree(multilingual_model, card)
    (card / "README.md").write_text("---\nlanguage: [de, en]\n---\n# tiny test model, German and English\n", encoding="utf-8")
    fusion = {"foreign_weight": 0.5, "fragmentation_weight": 2.0}
    cfg = config(tmp_path / "de", str(card)).model_dump()
    cfg["fusion"].update(fusion)
    with HybridRetriever(RetrieverConfig.validate_data(cfg)) as r:
        r.add_documents([Document(text=t, id=f"de{i}") for i, t in enumerate(GERMAN)])
        for h in r.search(GERMAN[1].split(".")[0], k=3):
            b, d = h.provenance["bm25"], h.provenance["dense"]
            assert d.flags == [] and "fragmentation" not in d.signals
            assert b.weight / d.weight == pytest.approx(signal_factor(b, OFFSET) / signal_factor(d, 0.0))
    cfg["store"]["path"] = str(tmp_path / "zh")
    query = "熊猫吃什么"
    frag = fragmentation(AutoTokenizer.from_pretrained(str(card)), [query])[0]
    assert frag is not None and 0.0 < frag <= 1.0
    with HybridRetriever(RetrieverConfig.validate_data(cfg)) as r:
        r.add_documents([Document(text=t, id=f"zh{i}") for i, t in enumerate(CHINESE)])
        hits = r.search(query, k=3)
        for h in hits:
            b, d = h.provenance["bm25"], h.provenance["dense"]
            assert d.flags == ["out_of_language"] and d.signals["fragmentation"] == pytest.approx(frag)
            foreign = 0.5 * math.exp(-2.0 * frag)
            assert b.weight / d.weight == pytest.approx(signal_factor(b, OFFSET) / signal_factor(d, 0.0) / foreign)


def test_fragmentation_by_hand():
    """Continuation and unknown pieces counted on a tokenizer built here (WordPiece, a tiny vocabulary)."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tok_models
    from transformers import PreTrainedTokenizerFast

    from hybrid_retriever.models.fragmentation import fragmentation

    vocab = {"[UNK]": 0, "the": 1, "cat": 2, "sat": 3, "un": 4, "##sat": 5, "##is": 6, "##fied": 7}
    tok = Tokenizer(tok_models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    # "unsatisfied" -> un ##sat ##is ##fied (3 continuations of 4); "dog" -> [UNK]; "" -> no pieces.
    fast.pad_token = "[UNK]"
    before = fast(["the cat", "the unsatisfied cat"], padding=True)["input_ids"]
    assert fragmentation(fast, ["the cat sat", "the unsatisfied cat", "the dog", ""]) == [0.0, 3 / 6, 1 / 2, None]
    # Measured on a private copy: the tokenizer the model encodes with keeps its padding behaviour.
    assert fast(["the cat", "the unsatisfied cat"], padding=True)["input_ids"] == before and len(before[0]) == len(before[1])


def test_adaptive_weights_fragmentation_by_hand():
    s = {"dense": BranchSignals(in_language=False, fragmentation=0.5), "bm25": BranchSignals()}
    aw = adaptive_weights({"bm25": 0.5, "dense": 0.5}, s, foreign_weight=0.4, fragmentation_weight=2.0)
    f = 0.4 * math.exp(-1.0)
    assert aw.factors["dense"] == pytest.approx(f) and aw.weights["dense"] == pytest.approx(f / (1 + f))
    assert aw.signals["dense"] == {"fragmentation": 0.5}
    # In its languages the fragmentation does not count (a multilingual model shreds scripts it reads well).
    s["dense"] = BranchSignals(in_language=True, fragmentation=0.9)
    assert adaptive_weights({"bm25": 0.5, "dense": 0.5}, s, fragmentation_weight=2.0).weights["dense"] == 0.5
    with pytest.raises(ValueError, match="fragmentation_weight"):
        adaptive_weights({"bm25": 1.0}, {}, fragmentation_weight=-1.0)


def test_the_evaluation_grid_carries_every_adaptive_setting():
    """Every setting adaptive fusion reads from the configuration is a field of FusionParams and survives
    from_config / apply, so eval and tune cannot score a fusion search does not run."""
    from dataclasses import fields

    from hybrid_retriever.evaluation import FusionParams
    from hybrid_retriever.fusion import ADAPTIVE_OPTIONS, adaptive_options

    assert set(ADAPTIVE_OPTIONS) <= {f.name for f in fields(FusionParams)}
    assert set(ADAPTIVE_OPTIONS) <= set(FusionConfig.model_fields)
    odd = {"foreign_weight": 0.45, "clarity_weight": 0.7, "sparse_clarity_offset": 0.1, "support_weight": 1.5,
           "fragmentation_weight": 3.0}
    cfg = RetrieverConfig.validate_data({"branches": [{"kind": "bm25"}, {"kind": "dense"}], "fusion": odd})
    p = FusionParams.from_config(cfg)
    assert p.adaptive_options() == odd == adaptive_options(cfg.fusion)
    assert adaptive_options(p.apply(RetrieverConfig.validate_data({"branches": [{"kind": "bm25"}, {"kind": "dense"}]})).fusion) == odd
