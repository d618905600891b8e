"""Qdrant's relevance-feedback query as the dense PRF method (``dense_method: qdrant_feedback``).

References are recomputed here with numpy: Qdrant's naive feedback formula over unit
vectors (cosine), applied to the documents' stored vectors and the first-stage scores,
and min-max interpolation for the fused ranking.
"""

from __future__ import annotations

from itertools import permutations
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

from hybrid_retriever import HybridRetriever, RetrieverConfig
from hybrid_retriever.branches import VectorSpec
from hybrid_retriever.config import QdrantStoreConfig
from hybrid_retriever.errors import ConfigError
from hybrid_retriever.retriever import point_id
from hybrid_retriever.stores.base import RelevanceFeedback, SearchRequest, StoredPoint
from hybrid_retriever.stores.edge import EdgeStore
from hybrid_retriever.stores.filters import parse_filter
from hybrid_retriever.stores.qdrant import QdrantStore

STORES = ["edge", "memory"]
QUERY = "vector database for sentence embeddings"


def unit(v: Any) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def feedback_ref(
    target: Any, items: Sequence[tuple[Any, float]], docs: np.ndarray, a: float, b: float, c: float, pairing: str = "all"
) -> np.ndarray:
    """Qdrant's naive feedback score of each row of ``docs`` (cosine: every vector taken at unit length).

    ``a·sim(target, x) + Σ_pairs (s_pos − s_neg)^b · c · (sim(pos, x) − sim(neg, x))``.
    Pairs: ``all`` = every ordered pair with ``s_pos > s_neg`` (what Qdrant Edge 0.9 and
    qdrant-client's local mode compute); ``ends`` = the Qdrant server source's rule (sorted
    by score, best with worst, second with second-worst, at most 3 pairs).
    """
    x = np.array([unit(d) for d in docs])
    score = a * (x @ unit(target))
    if pairing == "all":
        pairs = [(p, n) for p, n in permutations(items, 2) if p[1] > n[1]]
    else:
        ranked = sorted(items, key=lambda t: -t[1])
        pairs = [(ranked[i], ranked[-1 - i]) for i in range(min(3, len(ranked) // 2))]
    for (pv, ps), (nv, ns) in pairs:
        score = score + (ps - ns) ** b * c * (x @ unit(pv) - x @ unit(nv))
    return score


# ------------------------------------------------------------------- the store query


def tiny_store(kind: str, tmp_path: Path, vectors: np.ndarray) -> EdgeStore | QdrantStore:
    """A hand-made collection: one cosine vector ``v`` per point, payload metadata ``g`` = i % 2."""
    store = EdgeStore(tmp_path / "tiny") if kind == "edge" else QdrantStore(QdrantStoreConfig(location=":memory:"))
    store.create([VectorSpec(name="v", kind="dense", size=vectors.shape[1])], {"test": True})
    store.upsert(
        [
            StoredPoint(point_id(f"d{i}"), {"v": vec}, {"doc_id": f"d{i}", "metadata": {"g": i % 2}})
            for i, vec in enumerate(vectors)
        ]
    )
    return store


@pytest.mark.parametrize("store_kind", STORES)
def test_feedback_query_scores_equal_formula(store_kind: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    docs = rng.normal(size=(16, 6)).astype(np.float32)
    target = rng.normal(size=6).astype(np.float32)
    # Feedback: 3 stored documents and 2 outside vectors, deliberately unsorted, one score tie.
    items = [(docs[2], 0.9), (rng.normal(size=6).astype(np.float32), 0.35), (docs[7], 0.6), (docs[11], 0.35), (rng.normal(size=6).astype(np.float32), -0.2)]
    a, b, c = 0.7, 1.5, 2.0
    fb = RelevanceFeedback(vectors=[v for v, _ in items], scores=[s for _, s in items], a=a, b=b, c=c)
    ids = [point_id(f"d{i}") for i in range(len(docs))]
    store = tiny_store(store_kind, tmp_path, docs)
    expected = feedback_ref(target, items, docs, a, b, c)

    got = dict(store.search_batch([SearchRequest("v", target, limit=len(docs), feedback=fb)])[0])
    assert set(got) == set(ids)
    for i, pid in enumerate(ids):
        assert got[pid] == pytest.approx(expected[i], abs=2e-5)
    # The server source's pairing (best with worst) is not what this engine computes for 5 items.
    assert not np.allclose(expected, feedback_ref(target, items, docs, a, b, c, pairing="ends"), atol=1e-3)

    # A filter still applies; score completion (exact, restricted to ids) uses the same formula.
    even = store.search_batch([SearchRequest("v", target, limit=len(docs), filter=parse_filter({"g": 0}), feedback=fb)])[0]
    assert {p for p, _ in even} == {ids[i] for i in range(0, len(docs), 2)}
    some = [ids[1], ids[4], ids[9]]
    exact = store.search_batch([SearchRequest("v", target, limit=3, point_ids=some, exact=True, feedback=fb)])[0]
    assert dict(exact) == pytest.approx({p: expected[ids.index(p)] for p in some}, abs=2e-5)
    store.close()


@pytest.mark.parametrize("store_kind", STORES)
def test_two_feedback_items_agree_with_every_pairing_rule(store_kind: str, tmp_path: Path) -> None:
    """With 2 feedback documents there is one pair under either rule, so any Qdrant scores alike."""
    rng = np.random.default_rng(3)
    docs = rng.normal(size=(10, 5)).astype(np.float32)
    target = rng.normal(size=5).astype(np.float32)
    items = [(docs[4], 0.2), (docs[1], 0.8)]
    fb = RelevanceFeedback(vectors=[v for v, _ in items], scores=[s for _, s in items], a=1.0, b=1.0, c=3.0)
    store = tiny_store(store_kind, tmp_path, docs)
    got = dict(store.search_batch([SearchRequest("v", target, limit=len(docs), feedback=fb)])[0])
    ids = [point_id(f"d{i}") for i in range(len(docs))]
    ends = feedback_ref(target, items, docs, 1.0, 1.0, 3.0, pairing="ends")
    assert np.allclose(feedback_ref(target, items, docs, 1.0, 1.0, 3.0), ends)
    assert [got[p] for p in ids] == pytest.approx(ends.tolist(), abs=2e-5)
    store.close()


# ---------------------------------------------------------------- through the pipeline


def prf_cfg(**kw: Any) -> dict[str, Any]:
    guard = kw.pop("guard", {"enabled": False})
    return {"prf": {"enabled": True, "dense_method": "qdrant_feedback", "branches": ["dense"], **kw, "guard": guard}}


#: The references below fuse by min-max over the returned lists (completed scores unbounded).
MINMAX_RAW = {"method": "interpolation", "normalization": "minmax", "completed": "raw"}


def build(make_retriever, small_docs, store: str, **config: Any) -> HybridRetriever:
    r = make_retriever(store, **{"fusion": MINMAX_RAW, **config})
    r.add_documents(small_docs)
    return r


def stored_dense(r: HybridRetriever) -> dict[str, np.ndarray]:
    docs = [d.id for d in r.documents()]
    by_pid = {p.point_id: p for p in r.store.retrieve([point_id(d) for d in docs], with_vectors=["dense"])}
    return {d: np.asarray(by_pid[point_id(d)].vectors["dense"]) for d in docs}


def minmax(scores: dict[str, float]) -> dict[str, float]:
    lo, hi = min(scores.values()), max(scores.values())
    return {d: (s - lo) / (hi - lo) for d, s in scores.items()}


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize(
    "query, fb_docs, fb_negatives, dense_depth",
    [("dense vectors ranked by documents and tokens", 3, 0, 3), (QUERY, 1, 2, 100)],
)
def test_pipeline_second_stage_is_qdrant_feedback(
    make_retriever, small_docs, store: str, query: str, fb_docs: int, fb_negatives: int, dense_depth: int
) -> None:
    # dense_depth 3: BM25 matches 5 documents, so at least 2 get their dense score by completion.
    branches = {"branches": [{"kind": "bm25", "weight": 0.5}, {"kind": "dense", "weight": 0.5, "depth": dense_depth}]}
    base = build(make_retriever, small_docs, store, **branches)
    first = base.search(query, k=len(small_docs))
    a, b, c = 1.0, 1.0, 0.8
    r = build(
        make_retriever, small_docs, store, **branches,
        **prf_cfg(fb_docs=fb_docs, fb_negatives=fb_negatives, negative_from=5, feedback_a=a, feedback_b=b, feedback_c=c),
    )
    hits = r.search(query, k=len(small_docs))
    assert hits[0].prf.applied and hits[0].prf.feedback["dense"] == [h.id for h in first[:fb_docs]]

    # Reference: feedback = the fused first stage's top fb_docs plus the fb_negatives from rank 5,
    # scored by their fused first-stage scores; the dense list is the top dense_depth of Qdrant's
    # formula over every document, min-max interpolated (0.5/0.5) with BM25's first-stage scores;
    # a candidate outside the dense list keeps the formula's score (completion), normalised alike.
    sent = first[:fb_docs] + first[5 : 5 + fb_negatives]
    assert len(sent) == fb_docs + fb_negatives
    dense = stored_dense(r)
    q = r.branches["dense"].encode_queries([query])[0]
    names = list(dense)
    fb = feedback_ref(q, [(dense[h.id], h.score) for h in sent], np.array([dense[d] for d in names]), a, b, c)
    raw = dict(zip(names, fb.tolist()))
    dense_list = sorted(raw, key=lambda d: -raw[d])[:dense_depth]
    d_lo, d_hi = min(raw[d] for d in dense_list), max(raw[d] for d in dense_list)
    bm25_list = {h.id: h.provenance["bm25"].raw for h in first if h.provenance["bm25"].rank is not None}
    b_lo, b_hi = min(bm25_list.values()), max(bm25_list.values())
    expected = {
        d: 0.5 * (raw[d] - d_lo) / (d_hi - d_lo) + 0.5 * (bm25_list.get(d, 0.0) - b_lo) / (b_hi - b_lo)
        for d in set(dense_list) | set(bm25_list)
    }
    assert [h.id for h in hits] == sorted(expected, key=lambda d: -expected[d])
    assert any(h.provenance["dense"].completed for h in hits) == (dense_depth < len(small_docs))
    for h in hits:
        assert h.provenance["dense"].raw == pytest.approx(raw[h.id], abs=1e-4)
        assert h.score == pytest.approx(expected[h.id], abs=1e-4)
        # the first stage stays plain cosine
        fs = next(x for x in first if x.id == h.id)
        assert h.provenance["dense"].first_stage.raw == pytest.approx(fs.provenance["dense"].raw, abs=1e-5)


@pytest.mark.parametrize("store", STORES)
def test_filter_applies_and_one_feedback_document_is_plain_search(make_retriever, small_docs, store: str) -> None:
    r = build(make_retriever, small_docs, store, **prf_cfg(fb_docs=5))
    ir = {d.id for d in small_docs if d.metadata["topic"] == "ir"}
    hits = r.search(QUERY, k=8, filter={"topic": "ir"})
    assert hits and {h.id for h in hits} <= ir and hits[0].prf.applied
    assert set(hits[0].prf.feedback["dense"]) == ir  # 3 matching documents, all used
    # Only one document passes the filter: no pair to form, so the second stage is skipped.
    base = build(make_retriever, small_docs, store)
    only = r.search(QUERY, k=3, filter={"topic": "db"})
    assert [h.id for h in only] == ["qdrant"] and not only[0].prf.applied
    assert "needs 2 or more" in only[0].prf.reason["dense"]
    assert only[0].score == pytest.approx(base.search(QUERY, k=3, filter={"topic": "db"})[0].score)


def test_guard_skips_to_plain_search_and_damps_c(make_retriever, small_docs) -> None:
    base = build(make_retriever, small_docs, "edge")
    first = base.search(QUERY, k=len(small_docs))
    skip = build(make_retriever, small_docs, "edge", **prf_cfg(guard={"min_agreement": 1.0, "max_agreement": None}))
    hits = skip.search(QUERY, k=len(small_docs))
    assert not hits[0].prf.applied
    assert [(h.id, h.score) for h in hits] == [(h.id, pytest.approx(h.score)) for h in first]

    # Damped: the guard's strength scales c (strength 0 would be the plain query).
    guard = {"agreement_k": 4, "min_agreement": 0.0, "full_agreement": 1.0, "max_agreement": None}
    c = 1.5
    r = build(make_retriever, small_docs, "edge", **prf_cfg(fb_docs=3, feedback_c=c, guard=guard))
    hits = r.search(QUERY, k=len(small_docs))
    strength = hits[0].prf.strength["dense"]
    assert 0.0 < strength < 1.0
    dense = stored_dense(r)
    names = list(dense)
    q = r.branches["dense"].encode_queries([QUERY])[0]
    items = [(dense[h.id], h.score) for h in first[:3]]
    raw = feedback_ref(q, items, np.array([dense[d] for d in names]), 1.0, 1.0, c * strength)
    for h in hits:
        assert h.provenance["dense"].raw == pytest.approx(raw[names.index(h.id)], abs=1e-4)


# ---------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "prf, match",
    [
        ({"dense_method": "qdrant_feedback", "fb_docs": 1}, "at least 2"),
        ({"dense_method": "qdrant_feedback", "feedback_a": 0.0, "feedback_c": 0.0}, "feedback_a and feedback_c"),
        ({"dense_method": "qdrant_feedback", "feedback_b": -1.0}, "prf.feedback_b"),
        ({"dense_method": "qdrant_feedback", "feedback_c": -0.5}, "prf.feedback_c"),
        ({"dense_method": "qdrant_feedback", "feedback_c": float("inf")}, "prf.feedback_c"),
        ({"dense_method": "qdrant_feedback", "feedback_a": float("nan")}, "prf.feedback_a"),
        ({"dense_method": "qdrant"}, "prf.dense_method"),
    ],
)
def test_bad_qdrant_feedback_config(prf: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RetrieverConfig.validate_data({"prf": prf})


def test_qdrant_feedback_config_accepts_one_document_with_negatives_and_round_trips() -> None:
    cfg = RetrieverConfig.validate_data(
        {"prf": {"enabled": True, "dense_method": "qdrant_feedback", "fb_docs": 1, "fb_negatives": 1, "feedback_c": 0.3}}
    )
    assert cfg.prf.feedback_c == 0.3
    assert RetrieverConfig.from_yaml(cfg.to_yaml()) == cfg
