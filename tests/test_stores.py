"""The two Qdrant back-ends: Edge (embedded) and qdrant-client (``:memory:``).

Same corpus and queries must give the same rankings and scores on both, for every
fusion method; filters must mean the same on both and reach every branch and score
completion; server-side fusion must agree with the client-side implementation.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import qdrant_edge as qe
from qdrant_client import models as m

from conftest import load_beir_slice
from hybrid_retriever import ConfigError, Document, FilterError, HybridRetriever, RetrieverConfig
from hybrid_retriever.branches import VectorSpec, build_branch
from hybrid_retriever.config import QdrantStoreConfig
from hybrid_retriever.fusion import BranchList, interpolate, weighted_rrf
from hybrid_retriever.retriever import point_id
from hybrid_retriever.stores import EdgeStore, QdrantStore, SearchRequest, StoredPoint

STORES = ["edge", "memory"]

#: Every client-side fusion set-up the parity tests run.
FUSIONS: list[dict[str, Any]] = [
    {"method": "interpolation", "normalization": "minmax", "missing": "exact"},
    {"method": "interpolation", "normalization": "zscore", "missing": "exact"},
    {"method": "interpolation", "normalization": "dbsf", "missing": "exact"},
    {"method": "interpolation", "normalization": "rank", "missing": "exact"},
    {"method": "interpolation", "normalization": "minmax", "missing": "floor"},
    {"method": "interpolation", "normalization": "zscore", "missing": "floor", "floor_value": -3.0},
    {"method": "rrf", "rrf_k": 60},
    {"method": "rrf", "rrf_k": 3},
]


def fusion_id(f: dict[str, Any]) -> str:
    return "-".join(str(v) for v in f.values())


@contextlib.contextmanager
def fusion(retriever: HybridRetriever, **settings: Any) -> Iterator[HybridRetriever]:
    """Search ``retriever`` with other fusion settings (everything else unchanged)."""
    old = retriever.config
    data = old.model_dump()
    data["fusion"] = settings
    retriever.config = RetrieverConfig.validate_data(data)
    try:
        yield retriever
    finally:
        retriever.config = old


def assert_same_ranking(a: list, b: list, tol: float = 1e-5) -> None:
    """Same documents in the same order up to near-equal fused scores, with near-equal scores."""
    assert len(a) == len(b)
    assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=tol, rel=tol)
    score_b = {h.id: h.score for h in b}
    for pos, h in enumerate(a):
        near = [o.score for o in a if o is not h and abs(o.score - h.score) <= 2 * tol * max(1.0, abs(h.score))]
        if not near:
            assert b[pos].id == h.id, (pos, [x.id for x in a], [x.id for x in b])
        if h.id in score_b:
            assert score_b[h.id] == pytest.approx(h.score, abs=tol, rel=tol)


def assert_same_provenance(a: list, b: list, tol: float = 1e-5) -> None:
    by_id = {h.id: h for h in b}
    for h in a:
        if h.id not in by_id:
            continue
        for name, p in h.provenance.items():
            q = by_id[h.id].provenance[name]
            # Ranks may differ only within a run of equal raw scores (checked just below).
            assert (p.rank is None, p.completed) == (q.rank is None, q.completed), (h.id, name)
            for x, y in ((p.raw, q.raw), (p.normalized, q.normalized)):
                assert (x is None) == (y is None)
                if x is not None:
                    assert x == pytest.approx(y, abs=tol, rel=tol), (h.id, name)


# ----------------------------------------------------------------- small corpus parity

SMALL_QUERIES = ["vector database", "ranking documents with term statistics", "sleepy pets", "tower in Paris", "fusion of ranked lists"]


def build_pair(tmp_path_factory, dense_branch, docs: list[Document], depth: int, vectors: Any = None) -> dict[str, HybridRetriever]:
    """The same bm25 + MiniLM retriever on Edge and on qdrant-client ``:memory:``, holding ``docs``."""
    pair = {}
    for store in STORES:
        store_cfg = (
            {"kind": "edge", "path": str(tmp_path_factory.mktemp("edge") / "index")}
            if store == "edge"
            else {"kind": "qdrant", "location": ":memory:", "collection": "parity"}
        )
        cfg = RetrieverConfig.validate_data(
            {
                "store": store_cfg,
                "branches": [{"kind": "bm25", "depth": depth}, {"kind": "dense", "depth": depth}],
                "runtime": {"show_progress": False, "ingest_batch_size": 64},
            }
        )
        r = HybridRetriever(cfg, branches=[build_branch(cfg.branches[0]), dense_branch])
        given = {"dense": list(vectors)} if vectors is not None else None
        r.add_documents([Document(d.text, dict(d.metadata), d.id) for d in docs], vectors=given)
        pair[store] = r
    return pair


@pytest.fixture(scope="module")
def small_pair(tmp_path_factory, dense_branch):
    from conftest import SMALL_CORPUS

    docs = [Document(text=t, metadata=dict(md), id=i) for i, t, md in SMALL_CORPUS]
    pair = build_pair(tmp_path_factory, dense_branch, docs, depth=100)
    yield pair
    for r in pair.values():
        r.close()


@pytest.mark.parametrize("settings", FUSIONS, ids=fusion_id)
def test_small_corpus_same_results_on_both_stores(small_pair, settings):
    for store in STORES:
        assert small_pair[store].count() == 8
    results = {}
    for store, r in small_pair.items():
        with fusion(r, **settings):
            results[store] = r.search_batch(SMALL_QUERIES, k=5)
    for hits_e, hits_m in zip(results["edge"], results["memory"]):
        assert hits_e, "every query finds something"
        assert_same_ranking(hits_e, hits_m)
        assert_same_provenance(hits_e, hits_m)


# --------------------------------------------------------------- scifact slice parity

def synthetic_metadata(i: int) -> dict[str, Any]:
    return {
        "year": 2000 + i % 20,
        "source": ["pubmed", "arxiv", "journal"][i % 3],
        "open": i % 4 == 0,
        "info": {"lang": "en" if i % 2 else "de", "pages": i % 13},
    }


@pytest.fixture(scope="module")
def scifact_slice(dense_branch):
    docs, queries, _ = load_beir_slice("scifact", 200)
    # Title and opening of each abstract: keeps MiniLM's CPU time small.
    docs = [Document(text=d.text[:300], id=d.id, metadata=synthetic_metadata(i)) for i, d in enumerate(docs)]
    vectors = dense_branch.encode_documents([d.text for d in docs])
    qs = list(queries.values())[:8] + ["heart disease risk factors", "gene expression in tumour cells"]
    return docs, qs, np.stack(vectors)


@pytest.fixture(scope="module")
def scifact_pair(tmp_path_factory, dense_branch, scifact_slice):
    docs, _, vectors = scifact_slice
    pair = build_pair(tmp_path_factory, dense_branch, docs, depth=40, vectors=vectors)
    yield pair
    for r in pair.values():
        r.close()


@pytest.mark.parametrize("settings", FUSIONS, ids=fusion_id)
def test_scifact_same_results_on_both_stores(scifact_pair, scifact_slice, settings):
    _, queries, _ = scifact_slice
    results = {}
    for store, r in scifact_pair.items():
        with fusion(r, **settings):
            results[store] = r.search_batch(queries, k=10)
    for hits_e, hits_m in zip(results["edge"], results["memory"]):
        assert len(hits_e) == 10
        assert_same_ranking(hits_e, hits_m)
        assert_same_provenance(hits_e, hits_m)


def test_branch_lists_identical_on_both_stores(scifact_pair, scifact_slice):
    _, queries, _ = scifact_slice
    e, mem = (scifact_pair[s].search_branches(queries) for s in STORES)
    for qe_, qm in zip(e, mem):
        for name in ("bm25", "dense"):
            a, b = qe_[name], qm[name]
            assert [h.score for h in a.hits] == pytest.approx([h.score for h in b.hits], rel=1e-5, abs=1e-6)
            assert set(a.completed) == set(b.completed)
            for pid, s in a.completed.items():
                assert b.completed[pid] == pytest.approx(s, rel=1e-5, abs=1e-6)


# ---------------------------------------------------------------------------- filters

FILTER_CASES: list[tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    ({"source": "arxiv"}, lambda md: md["source"] == "arxiv"),
    ({"source": {"eq": "arxiv"}}, lambda md: md["source"] == "arxiv"),
    ({"source": {"ne": "arxiv"}}, lambda md: md["source"] != "arxiv"),
    ({"source": {"in": ["arxiv", "journal"]}}, lambda md: md["source"] in ("arxiv", "journal")),
    ({"source": ["arxiv", "journal"]}, lambda md: md["source"] in ("arxiv", "journal")),
    ({"source": {"nin": ["arxiv", "journal"]}}, lambda md: md["source"] not in ("arxiv", "journal")),
    ({"year": 2007}, lambda md: md["year"] == 2007),
    ({"year": {"gt": 2014}}, lambda md: md["year"] > 2014),
    ({"year": {"gte": 2014}}, lambda md: md["year"] >= 2014),
    ({"year": {"lt": 2003}}, lambda md: md["year"] < 2003),
    ({"year": {"lte": 2003}}, lambda md: md["year"] <= 2003),
    ({"year": {"gte": 2005, "lt": 2010}, "source": {"ne": "pubmed"}}, lambda md: 2005 <= md["year"] < 2010 and md["source"] != "pubmed"),
    ({"open": True}, lambda md: md["open"] is True),
    ({"open": {"ne": True}, "source": "journal"}, lambda md: md["open"] is not True and md["source"] == "journal"),
    ({"info.lang": "de"}, lambda md: md["info"]["lang"] == "de"),
    ({"info.pages": {"gte": 10}, "info.lang": "en"}, lambda md: md["info"]["pages"] >= 10 and md["info"]["lang"] == "en"),
]


def native_cases() -> list[tuple[str, Any, Callable[[dict[str, Any]], bool]]]:
    client_filter = m.Filter(
        must=[m.FieldCondition(key="metadata.source", match=m.MatchAny(any=["arxiv", "pubmed"]))],
        must_not=[m.FieldCondition(key="metadata.info.lang", match=m.MatchValue(value="de"))],
    )
    client_range = m.Filter(
        must=[m.FieldCondition(key="metadata.year", range=m.Range(gte=2010, lt=2015))],
        must_not=[m.FieldCondition(key="metadata.open", match=m.MatchValue(value=False))],
    )
    edge_filter = qe.Filter(
        must=[qe.FieldCondition(key="metadata.source", match=qe.MatchAny(["arxiv", "pubmed"]))],
        must_not=[qe.FieldCondition(key="metadata.info.lang", match=qe.MatchValue("de"))],
    )
    both = lambda md: md["source"] in ("arxiv", "pubmed") and md["info"]["lang"] != "de"  # noqa: E731
    return [
        ("client", client_filter, both),
        ("client-range", client_range, lambda md: 2010 <= md["year"] < 2015 and md["open"] is not False),
        ("edge", edge_filter, both),
    ]


def check_filter(r: HybridRetriever, docs: list[Document], vectors: np.ndarray, queries: list[str], flt: Any, pred) -> None:
    matching = {d.id for d in docs if pred(d.metadata)}
    assert 0 < len(matching) < len(docs)
    by_point = {point_id(d.id): d for d in docs}
    assert r.count(flt) == len(matching)
    # Every branch's list and every completed score is restricted to matching documents.
    for per_branch in r.search_branches(queries, filter=flt):
        for name, res in per_branch.items():
            ids = {by_point[h.point_id].id for h in res.hits} | {by_point[p].id for p in res.completed}
            assert ids <= matching, name
        # The dense branch returns the top of the *matching* documents (filtering inside the
        # search, not after it): compare with cosine over the matching documents in numpy.
    qv = np.stack(r.branches["dense"].encode_queries(queries))
    sims = vectors @ qv.T
    for qi, per_branch in enumerate(r.search_branches(queries, filter=flt)):
        dense = per_branch["dense"]
        order = [docs[i].id for i in np.argsort(-sims[:, qi]) if docs[i].id in matching]
        want = order[: len(dense.hits)]
        assert len(dense.hits) == min(40, len(matching))
        got = [by_point[h.point_id].id for h in dense.hits]
        got_sims = [float(sims[[d.id for d in docs].index(i), qi]) for i in got]
        want_sims = [float(sims[[d.id for d in docs].index(i), qi]) for i in want]
        assert got_sims == pytest.approx(want_sims, abs=1e-5)
    # The fused hits match, on both stores alike; with k = corpus size every matching document comes back.
    for hits in r.search_batch(queries, k=len(docs), filter=flt):
        assert {h.id for h in hits} <= matching
        assert all(pred(h.metadata) for h in hits)


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("case", range(len(FILTER_CASES)), ids=[str(c[0]) for c in FILTER_CASES])
def test_dict_filters(scifact_pair, scifact_slice, store, case):
    docs, queries, vectors = scifact_slice
    flt, pred = FILTER_CASES[case]
    check_filter(scifact_pair[store], docs, vectors, queries[:3], flt, pred)


@pytest.mark.parametrize("store", STORES)
def test_native_filters(scifact_pair, scifact_slice, store):
    docs, queries, vectors = scifact_slice
    r = scifact_pair[store]
    for kind, flt, pred in native_cases():
        if kind == "edge" and store == "memory":
            with pytest.raises(FilterError, match="only works with the Edge store"):
                r.search(queries[0], filter=flt)
            continue
        check_filter(r, docs, vectors, queries[:2], flt, pred)


def test_filtered_results_identical_on_both_stores(scifact_pair, scifact_slice):
    _, queries, _ = scifact_slice
    for flt, _ in FILTER_CASES[::3]:
        e = scifact_pair["edge"].search_batch(queries[:3], k=10, filter=flt)
        mem = scifact_pair["memory"].search_batch(queries[:3], k=10, filter=flt)
        for a, b in zip(e, mem):
            assert_same_ranking(a, b)


@pytest.mark.parametrize("store", STORES)
def test_unknown_filter_field_lists_known_fields(scifact_pair, store):
    r = scifact_pair[store]
    flts: list[Any] = [{"colour": "red"}, {"colour.shade": "dark"}, m.Filter(must=[m.FieldCondition(key="metadata.colour", match=m.MatchValue(value="x"))])]
    if store == "edge":
        flts.append(qe.Filter(must_not=[qe.FieldCondition(key="metadata.colour", match=qe.MatchValue("x"))]))
    for flt in flts:
        with pytest.raises(FilterError) as info:
            r.search("heart disease", filter=flt)
        msg = str(info.value)
        assert "colour" in msg and all(f in msg for f in ("info", "open", "source", "year"))
        with pytest.raises(FilterError):
            r.count(flt)


@pytest.mark.parametrize(
    "flt, fragment",
    [
        ({"year": {"between": [1, 2]}}, "unknown filter operator"),
        ({"year": {}}, "no operator"),
        ({"year": {"gte": "2010"}}, "needs a number"),
        ({"source": {"in": []}}, "non-empty list"),
        ({"source": 1.5}, "must be a string"),
        ({"": "x"}, "non-empty metadata field"),
        ("source = arxiv", "unsupported filter type"),
    ],
)
def test_malformed_filters(scifact_pair, flt, fragment):
    with pytest.raises(FilterError, match=fragment):
        scifact_pair["edge"].search("heart disease", filter=flt)


# ------------------------------------------------------------ Qdrant's own fusion, probed


def probe_store(kind: str, tmp_path) -> Any:
    specs = [VectorSpec("a", "dense", size=1, distance="Dot"), VectorSpec("b", "dense", size=1, distance="Dot")]
    store = EdgeStore(tmp_path / "probe") if kind == "edge" else QdrantStore(QdrantStoreConfig(location=":memory:"))
    store.create(specs, {})
    return store


# Scores of the "a" and "b" vectors (query [1.0] with Dot: the score is the value); points
# absent from a list get a value far below, so a list's limit leaves them out.
PROBE_A = {"p1": 5.0, "p2": 3.0, "p3": 2.0, "p4": 1.0, "p5": 0.5}
PROBE_B = {"p5": 10.0, "p6": 4.0, "p7": 1.0, "p2": 0.25}
OUTLIERS = {f"o{i}": (1.0 if i == 0 else 0.0) for i in range(20)}  # one value above mean + 3σ


@pytest.mark.parametrize("store_kind", STORES)
@pytest.mark.parametrize("a_scores", [PROBE_A, {"p1": 5.0}, {"p1": 2.0, "p2": 2.0, "p3": 2.0}, OUTLIERS], ids=["plain", "single", "equal", "outlier"])
def test_client_side_dbsf_and_rrf_equal_qdrant_fusion(tmp_path, store_kind, a_scores):
    """Qdrant's DBSF: sample std, no clamping, 0.5 for one or equal scores; its RRF k is ours + 1."""
    store = probe_store(store_kind, tmp_path)
    names = sorted(set(a_scores) | set(PROBE_B))
    points = []
    for j, n in enumerate(names):
        a = a_scores.get(n, -100.0 - j)
        b = PROBE_B.get(n, -100.0 - j)
        points.append(StoredPoint(point_id(n), {"a": np.array([a], dtype=np.float32), "b": np.array([b], dtype=np.float32)}))
    store.upsert(points)
    back = {point_id(n): n for n in names}
    reqs = [SearchRequest("a", np.array([1.0]), limit=len(a_scores)), SearchRequest("b", np.array([1.0]), limit=len(PROBE_B))]
    lists = {
        "a": BranchList(list(a_scores), list(a_scores.values())),
        "b": BranchList(list(PROBE_B), list(PROBE_B.values())),
    }
    lists = {k: BranchList([i for _, i in sorted(zip(v.scores, v.ids), key=lambda t: -t[0])], sorted(v.scores, reverse=True)) for k, v in lists.items()}
    # DBSF: Qdrant sums normalised scores; a list without the point adds nothing (floor 0).
    server = {back[p]: s for p, s in store.fused_search(reqs, "dbsf", limit=100)}
    client = {f.id: f.score for f in interpolate(lists, {"a": 1.0, "b": 1.0}, "dbsf", floor_value=0.0)}
    assert set(server) == set(client)
    for n, s in client.items():
        assert server[n] == pytest.approx(s, abs=2e-6), n
    # RRF: Qdrant's k + 1 is our k (1-based ranks), for equal weights. Within a run of
    # equal scores the two may number the ranks differently, so only untied points are
    # compared one by one.
    tied = {i for bl in lists.values() for i, s in zip(bl.ids, bl.scores) if bl.scores.count(s) > 1}
    for k in (1, 5, 60):
        server = {back[p]: s for p, s in store.fused_search(reqs, "rrf", limit=100, rrf_k=k + 1)}
        client = {f.id: f.score for f in weighted_rrf(lists, {"a": 1.0, "b": 1.0}, k=k)}
        assert set(server) == set(client)
        if not tied:
            assert sorted(server.values()) == pytest.approx(sorted(client.values()), rel=1e-6)
        for n, s in client.items():
            if n not in tied:
                assert server[n] == pytest.approx(s, rel=1e-6), (k, n)
    store.close()


# --------------------------------------------------------------- server-side vs client


def assert_rrf_of_branch_lists(r: HybridRetriever, queries: list[str], fused: list[list], weights: dict[str, float], k: float, scale: float = 1.0, filter: Any = None) -> None:
    """``fused`` (scores times ``scale``) is weighted RRF with 1-based ranks over the branch lists.

    Qdrant orders equal scores its own way, so a document tied with others in a branch
    may hold any rank of its run of ties: its fused score must lie between the scores
    its last and its first possible rank give, and every document whose lowest possible
    score beats the k-th fused score must be among the hits.
    """
    tol = 1e-6
    for per_branch, hits in zip(r.search_branches(queries, filter=filter, complete=False), fused):
        lo: dict[str, float] = {}
        hi: dict[str, float] = {}
        for name, res in per_branch.items():
            scores = [h.score for h in res.hits]
            for h in res.hits:
                first, last = scores.index(h.score) + 1, len(scores) - scores[::-1].index(h.score)
                lo[h.point_id] = lo.get(h.point_id, 0.0) + weights[name] / (k + last)
                hi[h.point_id] = hi.get(h.point_id, 0.0) + weights[name] / (k + first)
        got = {point_id(h.id): h.score * scale for h in hits}
        assert got
        for pid, score in got.items():
            assert lo[pid] - tol <= score <= hi[pid] + tol, (pid, lo[pid], score, hi[pid])
        last_score = min(got.values())
        assert not [pid for pid in lo if pid not in got and lo[pid] > last_score + tol]
        # Documents with no tie in any branch get exactly their RRF score.
        exact = [pid for pid in got if hi[pid] - lo[pid] < 1e-12]
        assert len(exact) >= len(got) // 2


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("rrf_k", [60, 2])
def test_server_side_rrf_agrees_with_client_side(scifact_pair, scifact_slice, store, rrf_k):
    _, queries, _ = scifact_slice
    r = scifact_pair[store]
    with fusion(r, method="rrf", rrf_k=rrf_k):
        local = r.search_batch(queries, k=10)
        local_filtered = r.search_batch(queries[:3], k=10, filter={"source": "arxiv"})
    with fusion(r, method="rrf", rrf_k=rrf_k, server_side=True):
        remote = r.search_batch(queries, k=10)
        remote_filtered = r.search_batch(queries[:3], k=10, filter={"source": "arxiv"})
    # Client weights are normalised (0.5 each); Qdrant gets them scaled to a largest of 1.
    ones = {"bm25": 1.0, "dense": 1.0}
    assert_rrf_of_branch_lists(r, queries, remote, ones, rrf_k)
    assert_rrf_of_branch_lists(r, queries, local, ones, rrf_k, scale=2.0)
    assert_rrf_of_branch_lists(r, queries[:3], remote_filtered, ones, rrf_k, filter={"source": "arxiv"})
    assert_rrf_of_branch_lists(r, queries[:3], local_filtered, ones, rrf_k, scale=2.0, filter={"source": "arxiv"})
    for a, b in zip(local + local_filtered, remote + remote_filtered):
        assert len(a) == len(b) == 10
        # Same top documents, ties aside.
        assert len({h.id for h in a} & {h.id for h in b}) >= 8
        # Server-side fusion reports no per-branch scores.
        assert all(p.raw is None and p.rank is None for h in b for p in h.provenance.values())


@pytest.mark.parametrize("store", STORES)
def test_server_side_dbsf_agrees_with_client_side(scifact_pair, scifact_slice, store):
    _, queries, _ = scifact_slice
    r = scifact_pair[store]
    # Qdrant's DBSF adds nothing for a list that misses a point: the client's floor 0.
    with fusion(r, method="interpolation", normalization="dbsf", missing="floor", floor_value=0.0):
        local = r.search_batch(queries, k=10) + r.search_batch(queries[:3], k=10, filter={"source": "arxiv"})
    with fusion(r, method="interpolation", normalization="dbsf", server_side=True):
        remote = r.search_batch(queries, k=10) + r.search_batch(queries[:3], k=10, filter={"source": "arxiv"})
    for a, b in zip(local, remote):
        assert len(a) == len(b) == 10
        # Client weights are normalised (0.5 each): the client's fused score is half Qdrant's.
        doubled = [type(h)(h.id, h.text, h.metadata, h.score * 2.0, h.rank, h.provenance) for h in a]
        assert_same_ranking(b, doubled, tol=1e-5)
        assert all(p.raw is None and p.rank is None for h in b for p in h.provenance.values())


@pytest.mark.parametrize("store", STORES)
def test_server_side_rrf_with_a_zero_weight_branch(scifact_pair, scifact_slice, store):
    # Weights (1, 0): only BM25 counts, on both sides; dense-only documents score 0.
    _, queries, _ = scifact_slice
    r = scifact_pair[store]
    old = r.config
    data = old.model_dump()
    data["branches"] = [dict(b, weight=w) for b, w in zip(data["branches"], (1.0, 0.0))]
    try:
        r.config = RetrieverConfig.validate_data({**data, "fusion": {"method": "rrf", "rrf_k": 10}})
        local = r.search_batch(queries[:4], k=10)
        r.config = RetrieverConfig.validate_data({**data, "fusion": {"method": "rrf", "rrf_k": 10, "server_side": True}})
        remote = r.search_batch(queries[:4], k=10)
    finally:
        r.config = old
    weights = {"bm25": 1.0, "dense": 0.0}
    for hits in (local, remote):
        nonzero = [[h for h in q if h.score > 0] for q in hits]
        assert_rrf_of_branch_lists(r, queries[:4], nonzero, weights, 10)


def test_server_side_dbsf_warns_that_weights_are_ignored(scifact_pair, caplog):
    r = scifact_pair["edge"]
    old = r.config
    data = old.model_dump()
    data["branches"] = [dict(b, weight=w) for b, w in zip(data["branches"], (0.8, 0.2))]
    r.config = RetrieverConfig.validate_data({**data, "fusion": {"method": "interpolation", "normalization": "dbsf", "server_side": True}})
    try:
        with caplog.at_level("WARNING", logger="hybrid_retriever.retriever"):
            assert len(r.search("heart disease", k=3)) == 3
    finally:
        r.config = old
    assert "weights" in caplog.text and "ignored" in caplog.text


def test_server_side_rrf_needs_integer_k(scifact_pair):
    r = scifact_pair["edge"]
    with fusion(r, method="rrf", rrf_k=2.5, server_side=True):
        with pytest.raises(ConfigError, match="integer rrf_k"):
            r.search("heart disease")


@pytest.mark.parametrize("store", STORES)
def test_documents_tied_at_the_cut_are_kept_by_point_id_on_every_store(tmp_path, store):
    """Six identical documents tie in BM25; at depth 5 every store keeps the five smallest point ids."""
    store_cfg = {"kind": "edge", "path": str(tmp_path / "index")} if store == "edge" else {
        "kind": "qdrant", "location": ":memory:", "collection": "ties"}
    cfg = RetrieverConfig.validate_data({
        "store": store_cfg, "branches": [{"kind": "bm25", "language": "english", "depth": 5}], "runtime": {"show_progress": False}})
    ids = [f"twin-{i}" for i in range(6)]
    with HybridRetriever(cfg) as r:
        r.add_documents([Document("the lighthouse keeper", id=i) for i in ids] + [Document("an unrelated note", id="other")])
        [per] = r.search_branches(["lighthouse"])
    hits = per["bm25"].hits
    assert len({h.score for h in hits}) == 1
    assert [h.point_id for h in hits] == sorted(point_id(i) for i in ids)[:5]
