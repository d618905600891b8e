"""Indexes written by earlier versions reopen: keys added since are judged by the values those versions used."""

from __future__ import annotations

from hybrid_retriever.stores.manifest import SCHEMA_VERSION, mismatches

OLD_BM25 = {"kind": "bm25", "k1": 1.2, "b": 0.75, "avg_len": 30.0, "language": "english", "stemmer": True}
OLD_DENSE = {"kind": "dense", "model": "sentence-transformers/all-MiniLM-L6-v2", "dimension": 384}


def stored(**branches: dict) -> dict:
    return {"schema_version": SCHEMA_VERSION, "branches": branches}


def test_keys_added_since_match_their_old_defaults() -> None:
    old = stored(bm25=OLD_BM25, dense=OLD_DENSE)
    current = {"bm25": {**OLD_BM25, "tokenizer": "word"}, "dense": {**OLD_DENSE, "weights_sha256": "ab" * 32}}
    assert mismatches(old, current) == []


def test_a_new_key_with_another_value_is_a_mismatch() -> None:
    old = stored(bm25=OLD_BM25)
    problems = mismatches(old, {"bm25": {**OLD_BM25, "tokenizer": "multilingual"}})
    assert problems == ["branch 'bm25': tokenizer is None in the index, 'multilingual' in the configuration"]


def test_recorded_model_hashes_must_match() -> None:
    old = stored(dense={**OLD_DENSE, "weights_sha256": "aa"})
    [problem] = mismatches(old, {"dense": {**OLD_DENSE, "weights_sha256": "bb"}})
    assert "weights_sha256" in problem
    # The same files under another name or path are the same model.
    assert mismatches(old, {"dense": {**OLD_DENSE, "model": "/models/minilm", "weights_sha256": "aa"}}) == []
