"""Language-aware BM25: detection, the analyzer per language, the manifest, empty queries, the CLI summary."""

from __future__ import annotations

import logging

import pytest

from hybrid_retriever import Document, HybridRetriever, RetrieverConfig
from hybrid_retriever.config import BM25BranchConfig
from hybrid_retriever.errors import ConfigError, IndexMismatchError
from hybrid_retriever.languages import Analyzer, analyzer_for, detect_language, language_name, model_languages

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


def test_a_mixed_corpus_is_warned_about(tmp_path, caplog):
    with HybridRetriever(bm25_only(tmp_path / "mix")) as r:
        with caplog.at_level(logging.WARNING, logger="hybrid_retriever.branches.bm25"):
            r.add_documents(docs_of(GERMAN[:4] + ENGLISH, "m"))
        assert any("mixed-language" in rec.getMessage() for rec in caplog.records)
        assert r.branches["bm25"].detection.mixed


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
