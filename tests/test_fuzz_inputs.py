"""Property tests: any input ends in a result or one of the library's own errors, and a refused call changes nothing.

Hypothesis throws arbitrary texts, ids, metadata, filters, ``k`` values and
configuration files at a real Qdrant Edge index (BM25 branch, so no model is loaded).
After every refused call the index's count and a reference search must be exactly
what they were before.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hybrid_retriever import HybridRetriever, RetrieverConfig
from hybrid_retriever.errors import HybridRetrieverError

BASE = [
    ("base-0", "Qdrant stores dense and sparse vectors for search.", {"topic": "db", "year": 2021}),
    ("base-1", "BM25 ranks documents by term frequency and document length.", {"topic": "ir", "year": 1994}),
    ("base-2", "Cats are small mammals that like to sleep in the sun.", {"topic": "animals", "year": 2000}),
    ("base-3", "The Eiffel Tower is a lattice tower in Paris.", {"topic": "travel", "year": 1889, "when": dt.date(1889, 3, 31)}),
]
REFERENCE_QUERY = "vectors search documents"

SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

# Text with everything Python strings may hold, lone surrogates included.
texts = st.text(alphabet=st.characters(codec=None), max_size=40)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
    st.dates(),
    st.datetimes(),
    st.binary(max_size=4),
    st.just(object()),
    st.frozensets(st.integers(), max_size=3),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(texts, st.integers()), inner, max_size=3),
    ),
    max_leaves=8,
)
metadata = st.one_of(st.dictionaries(texts, values, max_size=4), values)
ids = st.one_of(st.none(), texts.filter(lambda s: not s.startswith("base-")), st.integers(), st.just(["x"]))
ops = st.sampled_from(["eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "like", ""])
filters = st.one_of(
    st.none(),
    values,
    st.dictionaries(
        st.one_of(st.sampled_from(["topic", "year", "when", "missing", "a.b", ".x"]), texts, st.integers()),
        st.one_of(values, st.dictionaries(ops, values, max_size=2)),
        max_size=3,
    ),
)
ks = st.one_of(st.none(), st.integers(min_value=-5, max_value=10**12), st.booleans(), st.floats(), texts)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> HybridRetriever:
    path = tmp_path_factory.mktemp("fuzz") / "index"
    cfg = RetrieverConfig.model_validate(
        {"store": {"kind": "edge", "path": str(path)}, "branches": [{"kind": "bm25"}], "runtime": {"show_progress": False}}
    )
    r = HybridRetriever(cfg)
    r.add_texts([t for _, t, _ in BASE], metadatas=[m for _, _, m in BASE], ids=[i for i, _, _ in BASE])
    yield r
    r.close()


def snapshot(r: HybridRetriever) -> tuple[int, list[tuple[str, float]], list[str]]:
    hits = r.search(REFERENCE_QUERY, k=4)
    return r.count(), [(h.id, round(h.score, 9)) for h in hits], r.metadata_fields


def refused_or_done(r: HybridRetriever, call: Any) -> Any:
    """Run ``call``; a library error must leave the index exactly as it was. Returns the result or None."""
    before = snapshot(r)
    try:
        return call()
    except HybridRetrieverError:
        assert snapshot(r) == before
        return None


@SETTINGS
@given(texts=st.one_of(texts, st.lists(st.one_of(texts, st.integers(), st.none()), max_size=3)), meta=st.lists(metadata, max_size=3), id_list=st.lists(ids, max_size=3))
def test_add_texts_any_input(index: HybridRetriever, texts: Any, meta: list[Any], id_list: list[Any]) -> None:
    n = len(texts) if isinstance(texts, list) else 1
    added = refused_or_done(index, lambda: index.add_texts(texts, metadatas=meta[:n] or None, ids=id_list[:n] or None))
    if added:
        for doc in index.get(added):  # what was stored reads back as plain JSON values
            json.dumps(doc.metadata, allow_nan=False)
        index.delete(added)
    assert index.count() == len(BASE)


@SETTINGS
@given(query=st.one_of(texts, st.integers(), st.none(), st.lists(texts, max_size=2)), k=ks, flt=filters)
def test_search_any_input(index: HybridRetriever, query: Any, k: Any, flt: Any) -> None:
    hits = refused_or_done(index, lambda: index.search(query, k=k, filter=flt))
    if hits is not None:
        assert all(h.id.startswith("base-") for h in hits)


@SETTINGS
@given(flt=filters)
def test_count_and_documents_any_filter(index: HybridRetriever, flt: Any) -> None:
    n = refused_or_done(index, lambda: index.count(flt))
    if n is not None:
        assert 0 <= n <= len(BASE)
        assert n == len(list(index.documents(filter=flt)))


@SETTINGS
@given(ids=st.one_of(st.none(), st.integers(), texts, st.lists(st.one_of(texts, st.integers(), st.none()), max_size=3)))
def test_get_and_delete_any_ids(index: HybridRetriever, ids: Any) -> None:
    got = refused_or_done(index, lambda: index.get(ids))
    if got is not None:
        assert all(d.id.startswith("base-") for d in got)
    # Deleting ids that are not stored changes nothing; bad ids are refused.
    assume(not (isinstance(ids, list) and any(isinstance(i, str) and i.startswith("base-") for i in ids)))
    refused_or_done(index, lambda: index.delete(ids))
    assert index.count() == len(BASE)


def _config_values() -> st.SearchStrategy[Any]:
    keys = st.sampled_from(
        ["store", "branches", "fusion", "runtime", "prf", "kind", "path", "weight", "depth", "method", "normalization",
         "k", "model", "trust_remote_code", "url", "api_key", "rrf_k", "missing", "enabled", "language", "typo"]
    )
    leaf = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(), st.text(max_size=8),
                     st.sampled_from(["bm25", "dense", "edge", "qdrant", "rrf", "minmax", "exact", ":memory:"]))
    return st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=4)), max_leaves=12)


@SETTINGS
@given(data=_config_values(), as_json=st.booleans())
def test_config_files_any_content(tmp_path_factory: pytest.TempPathFactory, data: Any, as_json: bool) -> None:
    folder = tmp_path_factory.mktemp("cfg")
    f = folder / ("c.json" if as_json else "c.yaml")
    try:
        text = json.dumps(data) if as_json else yaml.safe_dump(data)
    except ValueError:  # NaN in strict JSON
        text = json.dumps(data, allow_nan=True)
    f.write_text(text, encoding="utf-8")
    try:
        cfg = RetrieverConfig.from_file(f)
    except HybridRetrieverError:
        return
    again = RetrieverConfig.from_yaml(cfg.to_yaml())  # what loads, round-trips
    assert again == cfg


@SETTINGS
@given(raw=st.binary(max_size=200))
def test_config_files_any_bytes(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    f = tmp_path_factory.mktemp("cfgb") / "c.yaml"
    f.write_bytes(raw)
    try:
        RetrieverConfig.from_file(f)
    except HybridRetrieverError:
        pass


def test_dates_are_stored_as_iso_strings_and_filter_by_range(index: HybridRetriever) -> None:
    [doc] = index.get(["base-3"])
    assert doc.metadata["when"] == "1889-03-31"
    assert index.count({"when": {"gte": dt.date(1889, 1, 1), "lt": dt.datetime(1890, 1, 1)}}) == 1
    assert index.count({"when": {"gte": "1900-01-01T00:00:00Z"}}) == 0
    assert not math.isnan(index.search("Paris tower", k=1, filter={"when": {"lte": "1889-12-31"}})[0].score)


def test_refused_field_is_not_recorded(index: HybridRetriever) -> None:
    with pytest.raises(HybridRetrieverError):
        index.add_texts(["text"], metadatas=[{"fresh_field": float("nan")}], ids=["x"])
    assert "fresh_field" not in index.metadata_fields
    with pytest.raises(HybridRetrieverError, match="fresh_field"):
        index.count({"fresh_field": 1})
