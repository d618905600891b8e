"""Language-aware BM25: detection, the analyzer per language, the manifest, empty queries, the CLI summary."""

from __future__ import annotations

import json
import logging

import pytest

from hybrid_retriever import Document, HybridRetriever, RetrieverConfig
from hybrid_retriever.config import BM25BranchConfig
from hybrid_retriever.errors import ConfigError, IndexMismatchError
from hybrid_retriever.languages import (
    DOCUMENTS_TO_SETTLE,
    Analyzer,
    analyzer_for,
    detect_language,
    language_name,
    model_languages,
)

GERMAN = [
    "Die Stadt liegt am Ufer des Flusses und ist für ihre alten Brücken bekannt.",
    "Im Winter fällt in den Bergen oft so viel Schnee, dass die Straßen gesperrt werden.",
    "Der Bäcker verkauft jeden Morgen frisches Brot und Brötchen an die Nachbarn.",
    "Die Regierung hat beschlossen, die Steuern für kleine Unternehmen zu senken.",
    "Viele Kinder lernen in der Schule zwei Fremdsprachen, meistens Englisch und Französisch.",
    "Das Museum zeigt Gemälde aus dem neunzehnten Jahrhundert und moderne Skulpturen.",
]
CHINESE = [
    "北京是中国的首都，也是全国的政治和文化中心。",
    "长江是亚洲最长的河流，流经多个省份。",
    "熊猫主要生活在四川的山区，以竹子为食。",
    "上海是中国最大的城市之一，拥有繁忙的港口。",
    "茶在中国有几千年的历史，绿茶最受欢迎。",
    "故宫是明清两代的皇家宫殿，现在是博物馆。",
]
ENGLISH = [
    "The river runs through the old town and under seven stone bridges.",
    "Heavy snow closed the mountain roads for most of the winter.",
    "The bakery sells fresh bread every morning to the neighbours.",
    "The government decided to lower taxes for small businesses.",
]


def bm25_only(path, **bm25):
    return RetrieverConfig.validate_data({
        "store": {"kind": "edge", "path": str(path)},
        "branches": [{"kind": "bm25", **bm25}],
        "runtime": {"show_progress": False},
    })


def docs_of(texts, prefix):
    return [Document(text=t, id=f"{prefix}{i}") for i, t in enumerate(texts)]


# ------------------------------------------------------------------------------- analyzers


@pytest.mark.parametrize(
    "language, expected",
    [
        ("english", Analyzer("english", "word", True, True)),
        ("German", Analyzer("german", "word", True, True)),
        ("chinese", Analyzer("chinese", "multilingual", False, True)),
        ("japanese", Analyzer("japanese", "multilingual", False, True)),
        ("korean", Analyzer("korean", "multilingual", False, False)),
        ("thai", Analyzer("thai", "multilingual", False, False)),
        ("polish", Analyzer("polish", "word", False, False)),
        ("tamil", Analyzer("tamil", "word", True, False)),
    ],
)
def test_analyzer_per_language(language, expected):
    assert analyzer_for(language) == expected


def test_explicit_options_override_the_language_defaults():
    assert analyzer_for("german", stemmer=False, tokenizer="multilingual") == Analyzer("german", "multilingual", False, True)


@pytest.mark.parametrize(
    "bm25, fragments",
    [
        ({"language": "klingon"}, ["'klingon' is unknown", "'auto'", "german"]),
        ({"language": "chinese", "stemmer": True}, ["no stemmer", "'chinese'", "bm25.stemmer to null"]),
        ({"language": "polish", "stopwords": True}, ["no stopwords", "bm25.stopwords to null"]),
    ],
)
def test_unsupported_analyzer_settings_are_config_errors_naming_the_fix(tmp_path, bm25, fragments):
    with pytest.raises(ConfigError) as info:
        bm25_only(tmp_path, **bm25)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_language_codes_and_model_languages():
    assert [language_name(c) for c in ("en", "de", "zh", "nb", "deu", "Chinese", "xx")] == [
        "english", "german", "chinese", "norwegian", "german", "chinese", None,
    ]
    assert model_languages(["en"]) == frozenset({"english"})
    assert model_languages(["multilingual"]) is None and model_languages(None) is None and model_languages([]) is None
    # A card that says multilingual and lists its languages: the list decides (a language it lacks is flagged).
    assert model_languages(["multilingual", "de", "zh"]) == frozenset({"german", "chinese"})
    assert model_languages(["xx"]) is None  # nothing recognisable: unknown, never discounted


# ------------------------------------------------------------------------------- detection


def test_detection_of_one_language_corpora():
    for texts, lang in ((GERMAN, "german"), (CHINESE, "chinese"), (ENGLISH, "english")):
        det = detect_language(texts)
        assert det.language == lang and det.share == 1.0 and not det.mixed, (lang, det)


def test_detection_of_a_mixed_corpus():
    det = detect_language(GERMAN[:4] + ENGLISH)
    assert det.language in ("german", "english") and det.mixed
    assert det.counts == {"german": 4, "english": 4}


def test_detection_of_nothing():
    det = detect_language(["", "   ", "1234 5678"])
    assert det.language is None


# --------------------------------------------------------------------- BM25 with language auto


def test_auto_detects_chinese_records_it_and_matches_chinese_queries(tmp_path):
    path = tmp_path / "zh"
    with HybridRetriever(bm25_only(path)) as r:
        assert r.config.branches[0].language == "auto"
        r.add_documents(docs_of(CHINESE, "zh"))
        stored = r.store.read_manifest()["branches"]["bm25"]
        assert (stored["language"], stored["tokenizer"], stored["stemmer"], stored["stopwords"]) == ("chinese", "multilingual", False, True)
        assert stored["language_detection"]["language"] == "chinese"
        hits = r.search("熊猫吃什么", k=3)
        assert hits and hits[0].id == "zh2"
    # Reopened: the analyzer comes from the index, so queries are analysed as the documents were.
    with HybridRetriever.open(str(path)) as r:
        assert r.branches["bm25"].analyzer == Analyzer("chinese", "multilingual", False, True)
        assert r.search("熊猫吃什么", k=1)[0].id == "zh2"
    with pytest.raises(IndexMismatchError, match="language is 'chinese' in the index, 'english'"):
        HybridRetriever(bm25_only(path, language="english"))


def test_the_english_analyzer_is_blind_on_chinese(tmp_path):
    # Why auto matters: Qdrant's word tokenizer keeps a whole Chinese clause as one token.
    with HybridRetriever(bm25_only(tmp_path / "en", language="english")) as r:
        r.add_documents(docs_of(CHINESE, "zh"))
        assert r.search("熊猫吃什么", k=3) == []


def test_auto_detects_german_and_stems(tmp_path):
    with HybridRetriever(bm25_only(tmp_path / "de")) as r:
        r.add_documents(docs_of(GERMAN, "de"))
        assert r.branches["bm25"].analyzer == Analyzer("german", "word", True, True)
        # "Brücke" only matches "Brücken" through the German stemmer.
        assert r.search("Brücke", k=1)[0].id == "de0"


def test_a_query_without_bm25_tokens_is_flagged_and_logged_once(tmp_path, caplog):
    with HybridRetriever(bm25_only(tmp_path / "de")) as r:
        r.add_documents(docs_of(GERMAN, "de"))
        with caplog.at_level(logging.WARNING, logger="hybrid_retriever.branches.bm25"):
            for _ in range(3):
                r.search_branches(["und der die"])  # German stopwords only
        warnings = [rec for rec in caplog.records if "no BM25 tokens" in rec.getMessage()]
        assert len(warnings) == 1 and "bm25.language" in warnings[0].getMessage()


def test_no_query_tokens_in_provenance_with_a_dense_branch(make_retriever):
    r = make_retriever("edge")
    r.add_documents(docs_of(ENGLISH, "en"))
    hits = r.search("the and of", k=2)  # English stopwords only: BM25 is blind, dense ranks
    assert hits
    for h in hits:
        assert h.provenance["bm25"].flags == ["no_query_tokens"]
        assert h.provenance["bm25"].weight == 0.0 and h.provenance["dense"].weight == 1.0
        assert h.as_dict()["provenance"]["bm25"]["flags"] == ["no_query_tokens"]


def test_a_mixed_corpus_with_one_analyzer_is_warned_about(tmp_path, caplog):
    with HybridRetriever(bm25_only(tmp_path / "mix", language_per_document=False)) as r:
        with caplog.at_level(logging.WARNING, logger="hybrid_retriever.branches.bm25"):
            r.add_documents(docs_of(GERMAN[:4] + ENGLISH, "m"))
        assert any("mixed-language" in rec.getMessage() and "language_per_document" in rec.getMessage() for rec in caplog.records)
        assert r.branches["bm25"].detection.mixed and not r.branches["bm25"].per_language


def test_explicit_language_keeps_working_and_is_described_as_configured():
    from hybrid_retriever.branches.bm25 import BM25Branch

    b = BM25Branch(BM25BranchConfig(language="polish"))
    assert b.analyzer == Analyzer("polish", "word", False, False)
    assert "no stemmer for polish" in b.describe() and "(configured)" in b.describe()


def test_index_command_says_the_analyzer(tmp_path):
    from typer.testing import CliRunner

    from hybrid_retriever.cli import app

    src = tmp_path / "docs.jsonl"
    import json

    src.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(GERMAN)), encoding="utf-8")
    cfg = tmp_path / "bm25.yaml"
    bm25_only(tmp_path / "unused").save(cfg)
    out = CliRunner().invoke(app, ["index", str(src), "--index", str(tmp_path / "idx"), "--config", str(cfg), "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "BM25 branch 'bm25': language german" in out.output and "detected in 100% of 6 sampled documents" in out.output


# ------------------------------------------------------------------ mixed-language corpora

#: Six German, five Chinese and four English documents: no language reaches 80%, German leads.
MIXED = docs_of(GERMAN, "de") + docs_of(CHINESE[:5], "zh") + docs_of(ENGLISH, "en")


def _direct_bm25(language: str, avg_len: float):
    """Qdrant's own BM25 for one language, configured here by hand: the reference for routed vectors."""
    import qdrant_edge as qe

    from hybrid_retriever.branches.bm25 import DEFAULT_K1

    a = analyzer_for(language)
    return qe.Bm25(qe.Bm25Config(
        k=DEFAULT_K1, b=0.75, avg_len=avg_len, language=None, lowercase=True, ascii_folding=False, min_token_len=None, max_token_len=None,
        tokenizer=qe.TokenizerType.Multilingual if a.tokenizer == "multilingual" else qe.TokenizerType.Word,
        stemmer=qe.SnowballParams(getattr(qe.SnowballLanguage, language.capitalize())) if a.stemmer else qe.DisabledStemmer(),
        stopwords=qe.StopwordsSet(languages={getattr(qe.Language, language.capitalize())}),
    ))


def test_detect_each_places_texts_among_the_corpus_languages_only():
    from hybrid_retriever.languages import corpus_languages, detect_each

    langs = ["german", "chinese", "english"]
    assert detect_each([GERMAN[0], CHINESE[0], ENGLISH[0]], langs) == ["german", "chinese", "english"]
    # Nothing to place (empty, digits): the majority, the first language.
    assert detect_each(["", "   ", "1234 5678"], langs) == ["german"] * 3
    # Dutch is not a corpus language here: a Dutch sentence goes to the closest one that is.
    assert detect_each(["De rivier stroomt door de oude stad en onder zeven stenen bruggen."], ["chinese", "english"]) == ["english"]
    assert corpus_languages(detect_language([d.text for d in MIXED])) == ["german", "chinese", "english"]


def test_a_mixed_corpus_is_analysed_per_document_and_queries_in_their_own_language(tmp_path):
    with HybridRetriever(bm25_only(tmp_path / "mix")) as r:
        r.add_documents(MIXED)
        b = r.branches["bm25"]
        assert b.languages == ["german", "chinese", "english"]  # the majority first
        assert b.analyzer.language == "german" and b.content_language == "german"
        assert "each document and query in its own language" in b.describe()
        # Each language's avg_len is its own documents' mean length in its own tokens.
        for lang, texts in (("german", GERMAN), ("chinese", CHINESE[:5]), ("english", ENGLISH)):
            mine = [b.token_count(t, lang) for t in texts]
            assert b.avg_lens[lang] == pytest.approx(sum(mine) / len(mine))
            ref = _direct_bm25(lang, b.avg_lens[lang])
            for t, v in zip(texts, b.encode_documents(texts)):
                expected = ref.embed_document(t)
                assert v.indices == list(expected.indices) and v.values == pytest.approx(list(expected.values))
        manifest = b.manifest()["per_document_languages"]
        assert list(manifest) == ["german", "chinese", "english"]
        assert manifest["chinese"] == {"tokenizer": "multilingual", "stemmer": False, "stopwords": True, "avg_len": b.avg_lens["chinese"]}
        # Queries: each analysed in its own language, which the query vector carries.
        q = b.encode_queries(["Brücke", "熊猫吃竹子", "bridges"])
        assert [v.language for v in q] == ["german", "chinese", "english"]
        assert r.search("Brücke", k=1)[0].id == "de0"  # German stemming: Brücken ~ Brücke
        assert r.search("熊猫吃竹子", k=1)[0].id == "zh2"  # segmented Chinese
        assert r.search("bridge", k=1)[0].id == "en0"  # English stemming: bridges ~ bridge
        before = [[h.id for h in r.search(t, k=5)] for t in ("Brücke", "熊猫吃竹子", "bridge", "Schnee im Winter")]
    # Reopened: the same analyzers in the same order, so queries are analysed as before.
    with HybridRetriever.open(str(tmp_path / "mix")) as r:
        b = r.branches["bm25"]
        assert b.languages == ["german", "chinese", "english"]
        assert b.avg_lens == pytest.approx({k: v["avg_len"] for k, v in manifest.items()})
        assert [[h.id for h in r.search(t, k=5)] for t in ("Brücke", "熊猫吃竹子", "bridge", "Schnee im Winter")] == before


def test_one_analyzer_for_a_mixed_corpus_misses_the_minority_scripts(tmp_path):
    # The contrast to the test above: German rules for everything leave Chinese unsegmented.
    with HybridRetriever(bm25_only(tmp_path / "one", language_per_document=False)) as r:
        r.add_documents(MIXED)
        assert r.branches["bm25"].languages == ["german"]
        assert "per_document_languages" not in r.branches["bm25"].manifest()
        assert [h.id for h in r.search("熊猫吃竹子", k=1)] != ["zh2"]


def test_language_per_document_settings(tmp_path):
    with pytest.raises(ConfigError, match="language_per_document needs bm25.language 'auto'"):
        bm25_only(tmp_path / "x", language="german", language_per_document=True)
    # Asked for on a one-language corpus: there is nothing to split, one analyzer serves.
    with HybridRetriever(bm25_only(tmp_path / "de", language_per_document=True)) as r:
        r.add_documents(docs_of(GERMAN, "de"))
        assert r.branches["bm25"].languages == ["german"] and not r.branches["bm25"].per_language
        assert r.search("Brücke", k=1)[0].id == "de0"


def test_adaptive_fusion_reads_the_query_language_of_a_mixed_corpus():
    from hybrid_retriever.fusion.adaptive import branch_signals
    from hybrid_retriever.types import BranchResult, ScoredId, SparseVector

    def results(language):
        return {
            "bm25": BranchResult("bm25", [ScoredId("a", 2.0, 1)], query_vector=SparseVector([1], [1.0], language=language)),
            "dense": BranchResult("dense", [ScoredId("a", 0.5, 1)], query_vector=[0.1]),
        }

    english_model = {"bm25": None, "dense": frozenset({"english"})}
    # The corpus's majority is English, but this query is German: the English dense model is off its languages.
    assert branch_signals(results("german"), "english", english_model)["dense"].in_language is False
    assert branch_signals(results("english"), "german", english_model)["dense"].in_language is True
    assert branch_signals(results(None), "german", english_model)["dense"].in_language is False  # no per-query language: the corpus's


def test_repair_recovers_each_languages_avg_len(tmp_path):
    from hybrid_retriever.repair import repair_index
    from hybrid_retriever.stores.edge import MANIFEST_FILE

    path = tmp_path / "mix"
    with HybridRetriever(bm25_only(path)) as r:
        r.add_documents(MIXED)
        avg_lens = dict(r.branches["bm25"].avg_lens)
        before = [[h.id for h in r.search(t, k=5)] for t in ("Brücke", "熊猫吃竹子", "bridge")]
    (path / MANIFEST_FILE).unlink()
    report = repair_index(path, bm25_only(path))
    assert report.action == "rebuilt" and "avg_len per language" in report.checks["bm25"]
    with HybridRetriever.open(str(path)) as r:
        assert r.branches["bm25"].avg_lens == pytest.approx(avg_lens, rel=1e-4)
        assert [[h.id for h in r.search(t, k=5)] for t in ("Brücke", "熊猫吃竹子", "bridge")] == before


@pytest.mark.parametrize("method", ["rm3", "rocchio"])
def test_a_feedback_expanded_query_keeps_its_language(method):
    from hybrid_retriever.config import PRFConfig
    from hybrid_retriever.prf.pipeline import Feedback, _rewrite_sparse
    from hybrid_retriever.types import SparseVector

    fb = Feedback(query=SparseVector([1], [1.0], language="german"), vectors=[SparseVector([1, 2], [1.0, 2.0])],
                  weights=None, negatives=[], strength=1.0)
    new = _rewrite_sparse(fb, PRFConfig(sparse_method=method, fb_terms=2))
    assert 2 in new.indices and new.language == "german"


# ------------------------------------------------- the language is decided once there is enough text

EN_MORE = [
    "The library opens at nine and closes late on Thursdays.",
    "Children played football in the park until the sun went down.",
    "A strong wind blew the leaves across the empty car park.",
    "Fresh vegetables from local farms are sold at the Saturday market.",
    "The train to the coast leaves every hour from the central station.",
    "The old castle on the hill attracts thousands of visitors each summer.",
    "Doctors recommend drinking plenty of water during hot weather.",
    "The bridge was closed for repairs after the spring floods.",
]
DE_MORE = [
    "Die Bibliothek öffnet um neun Uhr und schließt donnerstags erst spät.",
    "Die Kinder spielten im Park Fußball, bis die Sonne unterging.",
    "Der Zug an die Küste fährt jede Stunde vom Hauptbahnhof ab.",
]
ZH_MORE = [
    "图书馆早上九点开门，星期四晚上很晚才关门。",
    "孩子们在公园里踢足球，一直玩到太阳下山。",
    "去海边的火车每个小时从中央车站出发一次。",
]
#: A small first batch per language (too little text to tell it), then the rest of the corpus.
GROWING = {
    "english": (["The cat sat on the mat.", "Dogs bark at night."], ENGLISH + EN_MORE),
    "german": (["Der Hund bellt.", "Die Katze schläft."], GERMAN + DE_MORE),
    "chinese": (["猫在睡觉。", "狗叫了。"], CHINESE + ZH_MORE),
}
QUERIES_BY_LANGUAGE = {
    "english": ["bridges", "the cat", "train station", "snow in winter"],
    "german": ["Brücke", "Hund", "Schnee im Winter", "Bibliothek"],
    "chinese": ["熊猫吃竹子", "火车", "图书馆", "猫"],
}


def _snapshot(r, queries):
    """What an index answers and stores: search results, and each document's BM25 vector and content hash."""
    from hybrid_retriever import point_id

    ids = sorted(d.id for d in r.documents())
    points = {p.payload["doc_id"]: p for p in r.store.retrieve([point_id(i) for i in ids], with_vectors=True)}
    stored = {i: (points[i].vectors["bm25"].indices, [round(v, 5) for v in points[i].vectors["bm25"].values],
                  points[i].payload["content_hash"]) for i in ids}
    results = {q: [(h.id, round(h.score, 5)) for h in r.search(q, k=5)] for q in queries}
    return r.branches["bm25"].manifest(), stored, results


def _grow(r, batches):
    """Add the batches one by one; returns how many had been added when the language was decided (None: pending)."""
    decided = None
    for n, batch in enumerate(batches, 1):
        r.add_documents([Document(text=t, id=i) for i, t in batch])
        if decided is None and not r.branches["bm25"].language_pending:
            decided = n
    return decided


def _one_go(r, batches, decided):
    """The reference: the documents the decision saw indexed in one call, then the later batches as they came."""
    r.add_documents([Document(text=t, id=i) for batch in batches[:decided] for i, t in batch])
    _grow(r, batches[decided:])


def _batches(first, rest, size=2):
    """The first batch, then the rest (twice, so the index reaches DOCUMENTS_TO_SETTLE) in batches of ``size``."""
    docs = [(f"d{n}", t) for n, t in enumerate(first + rest + rest)]
    return [docs[: len(first)]] + [docs[i : i + size] for i in range(len(first), len(docs), size)]


def test_a_small_first_batch_waits_with_a_neutral_analyzer(make_retriever):
    from hybrid_retriever.languages import neutral_analyzer

    for texts in (["The cat sat on the mat.", "Dogs bark at night."], ["foo", "bar"]):
        r = make_retriever("edge")  # BM25 + all-MiniLM-L6-v2 (an English model)
        r.add_texts(texts)
        b = r.branches["bm25"]
        assert b.language_pending and b.analyzer == neutral_analyzer() and b.content_language is None
        assert "language not decided yet" in b.describe()
        stored = r.store.read_manifest()["branches"]["bm25"]
        assert stored["language"] is None and stored["language_pending"] is True and stored["tokenizer"] == "word"
        # No language yet, so the English dense model is not discounted as out of language.
        hits = r.search(texts[0], k=2)
        assert hits and all(h.provenance["dense"].flags == [] for h in hits)
        assert all(h.provenance["dense"].weight == pytest.approx(0.5) for h in hits)


@pytest.mark.parametrize("language", ["english", "german", "chinese"])
def test_a_growing_index_decides_its_language_and_equals_one_built_in_one_go(tmp_path, language):
    first, rest = GROWING[language]
    batches = _batches(first, rest)
    with HybridRetriever(bm25_only(tmp_path / "grown")) as r:
        _grow(r, batches[:1])
        assert r.branches["bm25"].language_pending
    # Pending survives a reopen; the next batches decide.
    with HybridRetriever.open(str(tmp_path / "grown")) as r:
        assert r.branches["bm25"].language_pending
        _grow(r, batches[1:2])
        b = r.branches["bm25"]
        if b.detection is not None:  # a language found in few documents: used, but decided again at the next ingest
            assert b.language_pending and b.analyzer == analyzer_for(language)
        decided = 2 + _grow(r, batches[2:])
        assert r.count() >= DOCUMENTS_TO_SETTLE
        assert not b.language_pending and b.analyzer == analyzer_for(language) and not b.per_language
        assert b.content_language == language
        grown = _snapshot(r, QUERIES_BY_LANGUAGE[language])
    stored = json.loads((tmp_path / "grown" / "manifest.json").read_text(encoding="utf-8"))["branches"]["bm25"]
    assert stored["language"] == language and "language_pending" not in stored
    with HybridRetriever(bm25_only(tmp_path / "one-go")) as r:
        _one_go(r, batches, decided)
        assert _snapshot(r, QUERIES_BY_LANGUAGE[language]) == grown


def test_a_mixed_pair_grows_into_per_document_analysis_equal_to_one_go(tmp_path):
    first = ["The cat sat on the mat.", "Der Hund bellt in der Nacht."]
    rest = [t for pair in zip(EN_MORE, GERMAN + DE_MORE) for t in pair]  # one English, one German, ...
    batches = _batches(first, rest)
    queries = ["bridges", "Brücke", "train station", "Schnee im Winter"]
    with HybridRetriever(bm25_only(tmp_path / "grown")) as r:
        _grow(r, batches[:1])
        assert r.branches["bm25"].language_pending
        decided = 1 + _grow(r, batches[1:])
        b = r.branches["bm25"]
        assert not b.language_pending and set(b.languages) == {"english", "german"} and b.detection.mixed
        assert [v.language for v in b.encode_queries(["Brücke über den Fluss", "bridges over the river"])] == ["german", "english"]
        grown = _snapshot(r, queries)
    with HybridRetriever(bm25_only(tmp_path / "one-go")) as r:
        _one_go(r, batches, decided)
        assert _snapshot(r, queries) == grown


def test_the_decision_reencodes_bm25_only_and_then_discounts_an_english_model_on_german(make_retriever):
    from hybrid_retriever import point_id

    first, rest = GROWING["german"]
    batches = _batches(first, rest, size=3)
    grown, one_go = make_retriever("edge"), make_retriever("edge")  # BM25 + all-MiniLM-L6-v2
    _grow(grown, batches[:1])
    assert all(h.provenance["dense"].flags == [] for h in grown.search("Hund", k=2))  # pending: no language yet
    decided = 1 + _grow(grown, batches[1:])
    _one_go(one_go, batches, decided)
    assert grown.branches["bm25"].analyzer == analyzer_for("german")
    hits = grown.search("Brücke", k=3)
    assert hits[0].id == one_go.search("Brücke", k=1)[0].id
    assert all(h.provenance["dense"].flags == ["out_of_language"] for h in hits)  # decided German, English model
    ids = [point_id(i) for batch in batches for i, _ in batch]
    a = {p.point_id: p for p in grown.store.retrieve(ids, with_vectors=True)}
    c = {p.point_id: p for p in one_go.store.retrieve(ids, with_vectors=True)}
    for pid in ids:  # the dense vectors written before the decision were kept, the BM25 ones re-encoded
        assert a[pid].vectors["dense"] == pytest.approx(c[pid].vectors["dense"], abs=1e-6)
        assert a[pid].vectors["bm25"].indices == c[pid].vectors["bm25"].indices
        assert a[pid].payload == c[pid].payload  # content hash included: skip_unchanged recognises them
    report_docs = [Document(text=t, id=i) for batch in batches for i, t in batch]
    from hybrid_retriever.ingest import IngestReport

    report = IngestReport()
    grown.add_documents(report_docs, skip_unchanged=True, report=report)
    assert report.skipped == len(report_docs) and report.written == 0


def test_repair_understands_a_pending_index(tmp_path):
    from hybrid_retriever.repair import repair_index

    path = tmp_path / "pending"
    with HybridRetriever(bm25_only(path)) as r:
        r.add_texts(["The cat sat on the mat.", "Dogs bark at night."], ids=["c", "d"])
        manifest = r.store.read_manifest()["branches"]["bm25"]
    (path / "manifest.json").unlink()
    report = repair_index(path, bm25_only(path))
    assert report.action == "rebuilt" and "language not decided yet" in report.checks["bm25"]
    with HybridRetriever.open(str(path)) as r:
        rebuilt = r.store.read_manifest()["branches"]["bm25"]
        assert rebuilt == {**manifest, "avg_len": pytest.approx(manifest["avg_len"], rel=1e-5)}
        r.add_texts(ENGLISH + EN_MORE)  # and it decides as it would have
        assert r.branches["bm25"].analyzer == analyzer_for("english")


def test_a_full_sample_without_words_decides_on_no_language(tmp_path):
    from hybrid_retriever.languages import SAMPLE_DOCS, decide_language, neutral_analyzer

    codes = [f"{n:05d}-{n * 7 % 1000:03d}" for n in range(SAMPLE_DOCS)]
    assert decide_language(codes[:-1]) is None  # still waiting: no words yet, the sample is not full
    with HybridRetriever(bm25_only(tmp_path / "codes")) as r:
        r.add_texts(codes[:-1])
        assert r.branches["bm25"].language_pending
        r.add_texts(codes[-1:])
        b = r.branches["bm25"]
        assert not b.language_pending and b.analyzer == neutral_analyzer() and b.detection.language is None
        assert "no language recognised" in b.describe()
        assert r.search(codes[3], k=1)[0].text == codes[3]
    with HybridRetriever.open(str(tmp_path / "codes")) as r:  # the decision survives a reopen
        assert not r.branches["bm25"].language_pending and r.branches["bm25"].analyzer == neutral_analyzer()
