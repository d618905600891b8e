"""PRF through HybridRetriever on Qdrant Edge and qdrant-client :memory:, against independent references.

References are recomputed here with numpy from the stored vectors: the first stage
without PRF, the Rocchio vector, brute-force cosine over every document, Qdrant's IDF
formula and min-max interpolation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from hybrid_retriever import HybridRetriever
from hybrid_retriever.errors import ConfigError
from hybrid_retriever.retriever import point_id

STORES = ["edge", "memory"]
QUERY = "vector database for sentence embeddings"


def prf_cfg(**kw: Any) -> dict[str, Any]:
    guard = kw.pop("guard", {"enabled": False})
    return {"prf": {"enabled": True, **kw, "guard": guard}}


#: The references below fuse by min-max over the returned lists (completed scores unbounded).
MINMAX_RAW = {"method": "interpolation", "normalization": "minmax", "completed": "raw"}


def build(make_retriever, small_docs, store: str, **config: Any) -> HybridRetriever:
    r = make_retriever(store, **{"fusion": MINMAX_RAW, **config})
    r.add_documents(small_docs)
    return r


def stored(r: HybridRetriever, name: str) -> dict[str, Any]:
    """Every document's stored vector of branch ``name``, by user id."""
    docs = [d.id for d in r.documents()]
    points = r.store.retrieve([point_id(d) for d in docs], with_vectors=[name])
    by_pid = {p.point_id: p for p in points}
    return {d: by_pid[point_id(d)].vectors[name] for d in docs}


def minmax(scores: dict[str, float]) -> dict[str, float]:
    lo, hi = min(scores.values()), max(scores.values())
    return {d: (s - lo) / (hi - lo) if hi > lo else 1.0 for d, s in scores.items()}


def rocchio_ref(q: np.ndarray, fb: list[np.ndarray], alpha: float, beta: float) -> np.ndarray:
    v = alpha * q.astype(np.float64) + beta * np.mean(np.asarray(fb, dtype=np.float64), axis=0)
    return v / np.linalg.norm(v)


def first_stage(make_retriever, small_docs, store: str) -> tuple[HybridRetriever, list]:
    """A retriever without PRF on the same documents, and its full hybrid ranking."""
    base = build(make_retriever, small_docs, store)
    return base, base.search(QUERY, k=len(small_docs))


@pytest.mark.parametrize("store", STORES)
def test_both_feedback_from_fused_list_then_fused_again(make_retriever, small_docs, store: str) -> None:
    base, first = first_stage(make_retriever, small_docs, store)
    r = build(make_retriever, small_docs, store, **prf_cfg(interpolate="both", branches=["dense"], fb_docs=2, alpha=1.0, beta=1.0))
    hits = r.search(QUERY, k=len(small_docs))
    fb = [h.id for h in first[:2]]
    assert hits[0].prf.feedback["dense"] == fb
    assert hits[0].prf.applied and hits[0].prf.placement == "both"

    # Reference: Rocchio from the fused first stage's top 2, cosine over every document,
    # min-max interpolated (0.5/0.5) with BM25's first-stage scores (0 where no term matches).
    dense = stored(r, "dense")
    q = np.asarray(r.branches["dense"].encode_queries([QUERY])[0])
    q2 = rocchio_ref(q, [dense[d] for d in fb], 1.0, 1.0)
    cos = {d: float(np.dot(q2, v)) for d, v in dense.items()}
    bm25 = {h.id: h.provenance["bm25"].raw or 0.0 for h in first}
    bm25_ranked = {h.id: h.provenance["bm25"].raw for h in first if h.provenance["bm25"].rank is not None}
    lo, hi = min(bm25_ranked.values()), max(bm25_ranked.values())
    nd, nb = minmax(cos), {d: (s - lo) / (hi - lo) for d, s in bm25.items()}
    expected = {d: 0.5 * nd[d] + 0.5 * nb[d] for d in dense}
    assert [h.id for h in hits] == sorted(expected, key=lambda d: -expected[d])
    for h in hits:
        assert h.score == pytest.approx(expected[h.id], abs=1e-4)
        assert h.provenance["dense"].raw == pytest.approx(cos[h.id], abs=1e-4)
        # first stage in provenance equals the search without PRF
        fs = next(x for x in first if x.id == h.id)
        assert h.provenance["dense"].first_stage.raw == pytest.approx(fs.provenance["dense"].raw, abs=1e-5)
        assert h.provenance["bm25"].first_stage.rank == fs.provenance["bm25"].rank
        # BM25 got no PRF: final stage = first stage
        assert h.provenance["bm25"].raw == pytest.approx(fs.provenance["bm25"].raw or 0.0, abs=1e-5)
    base.close()


@pytest.mark.parametrize("store", STORES)
def test_before_returns_prf_branch_alone(make_retriever, small_docs, store: str) -> None:
    base, first = first_stage(make_retriever, small_docs, store)
    r = build(make_retriever, small_docs, store, **prf_cfg(interpolate="before", branches=["dense"], fb_docs=3, beta=0.5))
    hits = r.search(QUERY, k=5)
    fb = [h.id for h in first[:3]]
    assert hits[0].prf.feedback["dense"] == fb
    dense = stored(r, "dense")
    q = np.asarray(r.branches["dense"].encode_queries([QUERY])[0])
    q2 = rocchio_ref(q, [dense[d] for d in fb], 1.0, 0.5)
    cos = {d: float(np.dot(q2, v)) for d, v in dense.items()}
    assert [h.id for h in hits] == sorted(cos, key=lambda d: -cos[d])[:5]
    assert all(h.provenance["dense"].rank == i for i, h in enumerate(hits, start=1))


@pytest.mark.parametrize("store", STORES)
def test_after_feedback_from_each_branch_own_list(make_retriever, small_docs, store: str) -> None:
    base = build(make_retriever, small_docs, store)
    own = base.search_branches([QUERY], complete=False)[0]
    pid_to_id = {point_id(d.id): d.id for d in small_docs}
    own_top = {b: [pid_to_id[h.point_id] for h in res.hits[:2]] for b, res in own.items()}
    r = build(make_retriever, small_docs, store, **prf_cfg(interpolate="after", branches=["dense", "bm25"], fb_docs=2))
    hits = r.search(QUERY, k=4)
    assert hits[0].prf.feedback == own_top
    # BM25 got RM3: its final raw scores come from a different (expanded) query than the first stage
    changed = [h for h in hits if h.provenance["bm25"].first_stage.raw != h.provenance["bm25"].raw]
    assert changed
    # after/both fuse every branch: each hit has a normalised score from both
    assert all(h.provenance[b].normalized is not None for h in hits for b in ("dense", "bm25"))
    base.close()


@pytest.mark.parametrize("store", STORES)
def test_rm3_query_scored_by_qdrant_with_idf(make_retriever, small_docs, store: str) -> None:
    """BM25-only retriever with RM3 (none): Qdrant's score = Σ_t w_q(t)·idf(t)·w_d(t)."""
    cfg = {"branches": [{"kind": "bm25"}], **prf_cfg(interpolate="none", branches=["bm25"], fb_docs=2, fb_terms=5, rm3_lambda=0.5)}
    r = build(make_retriever, small_docs, store, **cfg)
    query = "term frequency and length"
    first = r.search_branches([query], complete=False)[0]["bm25"]
    hits = r.search(query, k=8)
    vecs = stored(r, "bm25")
    n = len(vecs)
    df: dict[int, int] = {}
    for v in vecs.values():
        for t in v.indices:
            df[t] = df.get(t, 0) + 1
    idf = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}
    # the expanded query, rebuilt by hand: RM3 with P(d) ∝ first-stage BM25 score
    pid_to_id = {point_id(d.id): d.id for d in small_docs}
    fb = [pid_to_id[h.point_id] for h in first.hits[:2]]
    w = [h.score for h in first.hits[:2]]
    rel: dict[int, float] = {}
    for d, wd in zip(fb, w):
        v = vecs[d]
        tot = sum(v.values)
        for t, x in zip(v.indices, v.values):
            rel[t] = rel.get(t, 0.0) + wd / sum(w) * x / tot
    top = dict(sorted(rel.items(), key=lambda kv: (-kv[1], kv[0]))[:5])
    q = dict(zip(first.query_vector.indices, first.query_vector.values))
    mass = sum(q.values())
    expanded = {t: 0.5 * x for t, x in q.items()}
    for t, x in top.items():
        expanded[t] = expanded.get(t, 0.0) + 0.5 * mass * x / sum(top.values())
    assert hits[0].prf.feedback["bm25"] == fb
    for h in hits:
        v = dict(zip(vecs[h.id].indices, vecs[h.id].values))
        ref = sum(expanded[t] * idf[t] * v[t] for t in expanded if t in v)
        assert h.provenance["bm25"].raw == pytest.approx(ref, rel=1e-3)
    assert len(hits) > len(first.hits)  # expansion terms reach documents the original query missed


@pytest.mark.parametrize("store", STORES)
def test_idf_read_from_qdrant_matches_formula(make_retriever, small_docs, store: str) -> None:
    from hybrid_retriever.prf.stats import IdfCache

    r = build(make_retriever, small_docs, store, branches=[{"kind": "bm25"}])
    vecs = stored(r, "bm25")
    df: dict[int, int] = {}
    holder: dict[int, tuple[str, float]] = {}
    for d, v in vecs.items():
        for t, x in zip(v.indices, v.values):
            df[t] = df.get(t, 0) + 1
            holder[t] = (point_id(d), x)
    cache = IdfCache(r.store)
    cache.refresh()
    got = cache.lookup("bm25", holder)
    n = len(vecs)
    for t, c in df.items():
        assert got[t] == pytest.approx(math.log(1 + (n - c + 0.5) / (c + 0.5)), rel=1e-4)
    probes = cache.probes
    cache.lookup("bm25", holder)
    assert cache.probes == probes  # cached


@pytest.mark.parametrize("store", STORES)
def test_feedback_obeys_filter_and_short_lists(make_retriever, small_docs, store: str) -> None:
    r = build(make_retriever, small_docs, store, **prf_cfg(interpolate="both", branches=["dense", "bm25"], fb_docs=5))
    flt = {"topic": "ir"}
    hits = r.search(QUERY, k=8, filter=flt)
    ir = {d.id for d in small_docs if d.metadata["topic"] == "ir"}
    assert hits and {h.id for h in hits} <= ir
    for b in ("dense", "bm25"):
        assert set(hits[0].prf.feedback[b]) <= ir
    # fewer matching documents (3) than fb_docs (5): all of them are used
    assert len(hits[0].prf.feedback["dense"]) == len(ir)
    # empty first stage: no feedback, no results, no error
    assert r.search(QUERY, k=5, filter={"year": {"gt": 3000}}) == []


@pytest.mark.parametrize("store", STORES)
def test_guard_skip_keeps_first_stage(make_retriever, small_docs, store: str) -> None:
    base, first = first_stage(make_retriever, small_docs, store)
    r = build(make_retriever, small_docs, store, **prf_cfg(branches=["dense", "bm25"], guard={"min_agreement": 1.0, "max_agreement": None}))
    hits = r.search(QUERY, k=len(small_docs))
    assert not hits[0].prf.applied
    assert all(reason.startswith("skipped") for reason in hits[0].prf.reason.values())
    assert [h.id for h in hits] == [h.id for h in first]
    assert [h.score for h in hits] == pytest.approx([h.score for h in first])
    base.close()


def test_guard_damps_between_thresholds(make_retriever, small_docs) -> None:
    r = build(
        make_retriever, small_docs, "edge",
        **prf_cfg(branches=["dense"], guard={"agreement_k": 4, "min_agreement": 0.0, "full_agreement": 1.0, "max_agreement": None}),
    )
    res = r.search_branches([QUERY])[0]
    from hybrid_retriever.prf.guard import agreement

    agree = agreement(res, 4)
    assert 0.0 < agree < 1.0
    hit = r.search(QUERY, k=1)[0]
    assert hit.prf.strength["dense"] == pytest.approx(agree)
    assert hit.prf.signals["agreement"] == pytest.approx(agree)


def test_batch_equals_single_and_disabled_has_no_prf(make_retriever, small_docs) -> None:
    r = build(make_retriever, small_docs, "edge", **prf_cfg(branches=["dense", "bm25"], idf_terms=True))
    queries = [QUERY, "cats sleeping", "tower in Paris"]
    batch = r.search_batch(queries, k=4)
    for q, hits in zip(queries, batch):
        single = r.search(q, k=4)
        assert [h.id for h in hits] == [h.id for h in single]
        assert [h.score for h in hits] == pytest.approx([h.score for h in single], abs=1e-6)
    plain = build(make_retriever, small_docs, "edge")
    h = plain.search(QUERY, k=1)[0]
    assert h.prf is None and h.provenance["dense"].first_stage is None and "prf" not in h.as_dict()
    d = r.search(QUERY, k=1)[0].as_dict()
    assert d["prf"]["feedback"] and "first_stage" in d["provenance"]["dense"]


def test_unsupported_branch_kind_is_a_clear_error(make_retriever, small_docs) -> None:
    from hybrid_retriever.prf import pipeline

    r = build(make_retriever, small_docs, "edge")
    kinds = dict(pipeline.REWRITERS)
    try:
        pipeline.REWRITERS.pop("sparse")
        with pytest.raises(ConfigError, match="not available for branch 'bm25'"):
            pipeline.PRFPipeline(r, r.config.prf.model_copy(update={"enabled": True, "branches": ["bm25"]}))
    finally:
        pipeline.REWRITERS.clear()
        pipeline.REWRITERS.update(kinds)
    cfg = {"branches": [{"kind": "bm25"}], "prf": {"enabled": True}}
    with pytest.raises(ConfigError, match="no dense branch"):
        make_retriever("edge", **cfg)


@pytest.mark.parametrize("store", STORES)
def test_default_guard_skips_when_branches_agree(make_retriever, small_docs, store: str) -> None:
    """The default PRF configuration: feedback only where BM25 and dense disagree (top-k overlap < 0.5)."""
    from hybrid_retriever.prf.guard import agreement

    r = build(make_retriever, small_docs, store, prf={"enabled": True, "guard": {"agreement_k": 3}})
    base = build(make_retriever, small_docs, store)
    queries = ["Eiffel Tower in Paris", QUERY, "tower of documents", "sleepy cats"]
    seen = set()
    for q in queries:
        agree = agreement(base.search_branches([q])[0], 3)
        hit = r.search(q, k=3)[0]
        assert hit.prf.signals["agreement"] == pytest.approx(agree)
        assert hit.prf.applied == (agree < 0.5), (q, agree, hit.prf.reason)
        seen.add(hit.prf.applied)
        if not hit.prf.applied:
            assert [h.id for h in r.search(q, k=5)] == [h.id for h in base.search(q, k=5)]
    assert seen == {True, False}  # the queries exercise both sides of the rule


def test_prf_with_rrf_fusion(make_retriever, small_docs) -> None:
    """With RRF fusion the feedback documents are the top of the RRF list; the second stage is fused by RRF again."""
    base = build(make_retriever, small_docs, "edge", fusion={"method": "rrf"})
    first = base.search(QUERY, k=8)
    r = build(make_retriever, small_docs, "edge", fusion={"method": "rrf"}, **prf_cfg(branches=["dense"], fb_docs=2))
    hits = r.search(QUERY, k=8)
    assert hits[0].prf.feedback["dense"] == [h.id for h in first[:2]]
    # RRF score = Σ_b w_b / (60 + rank_b), ranks from the final lists (weights 0.5 each)
    for h in hits:
        expected = sum(0.5 / (60 + p.rank) for p in h.provenance.values() if p.rank is not None)
        assert h.score == pytest.approx(expected, abs=1e-9)
