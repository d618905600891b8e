"""Faults injected into real components: a branch whose encoder raises, a store whose search
stalls past the branch timeout or is refused, and every branch failing.

The branches are the real Qdrant BM25 and the real MiniLM dense branch; the stores are real
Qdrant Edge shards and qdrant-client ``:memory:``. The faults are subclasses that raise or
block on a poison query or on one branch's vector. Fused results of a degraded call are
compared with a reference computed by hand from the healthy branch's own scores.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Sequence

import pytest

from hybrid_retriever import HybridRetriever, RetrieverConfig
from hybrid_retriever.branches import BM25Branch, DenseBranch
from hybrid_retriever.config import BM25BranchConfig
from hybrid_retriever.errors import BranchFailureError, StoreUnavailableError
from hybrid_retriever.stores import EdgeStore, QdrantStore, SearchRequest, Store
from hybrid_retriever.stores.base import Ranked

POISON = "POISON"
QUERY = "vector database for dense embeddings"


class PoisonDense(DenseBranch):
    """The real MiniLM dense branch, except that a query containing POISON makes its encoder raise."""

    def __init__(self, shared: DenseBranch) -> None:
        super().__init__(shared.config)
        self._model = shared.model

    def encode_queries(self, texts: Sequence[str]) -> list[Any]:
        if any(POISON in t for t in texts):
            raise RuntimeError("poisoned query")
        return super().encode_queries(texts)


class PoisonBM25(BM25Branch):
    """Qdrant's BM25 branch, except that a query containing POISON makes its encoder raise."""

    def encode_queries(self, texts: Sequence[str]) -> list[Any]:
        if any(POISON in t for t in texts):
            raise ValueError("poisoned query (bm25)")
        return super().encode_queries(texts)


class Faulty:
    """Mixin for a real store: searches on ``vector`` block until ``release`` is set (``stall``)
    or raise (``refuse``); every other call goes to the real store unchanged."""

    vector: str | None = None
    mode: str = "stall"  # "stall" | "refuse" | "down"
    only_completion: bool = False

    def arm(self, vector: str, mode: str = "stall", only_completion: bool = False) -> None:
        self.vector, self.mode, self.only_completion = vector, mode, only_completion
        self.release = threading.Event()
        self.stalled = threading.Event()

    def search_ranked(self, requests: Sequence[SearchRequest]) -> list[Ranked]:
        """The store call every search makes (``search_batch`` answers through it on Edge)."""
        hit = self.vector is not None and any(
            r.vector_name == self.vector and (r.point_ids is not None or not self.only_completion) for r in requests
        )
        if hit and self.mode == "stall":
            self.stalled.set()
            self.release.wait(30)
        elif hit and self.mode == "down":
            raise StoreUnavailableError("Qdrant at 127.0.0.1:1 did not answer (injected)")
        elif hit:
            raise ValueError(f"the store refused the {self.vector} request")
        return super().search_ranked(requests)  # type: ignore[misc]


class FaultyEdge(Faulty, EdgeStore):
    pass


class FaultyMemory(Faulty, QdrantStore):
    pass


def build(tmp_path: Path, dense_branch: DenseBranch, small_docs, store_kind: str = "edge", poison_bm25: bool = False, **config: Any):
    from hybrid_retriever.config import QdrantStoreConfig

    store: Store = (
        FaultyEdge(tmp_path / f"idx-{store_kind}")
        if store_kind == "edge"
        else FaultyMemory(QdrantStoreConfig(location=":memory:", collection="faults"))
    )
    # Min-max interpolation unless a test asks otherwise: the references below compute it by hand.
    config.setdefault("fusion", {"method": "interpolation", "normalization": "minmax"})
    cfg = RetrieverConfig.model_validate({"runtime": {"show_progress": False, **config.pop("runtime", {})}, **config})
    bm25 = PoisonBM25(BM25BranchConfig(weight=0.5)) if poison_bm25 else BM25Branch(BM25BranchConfig(weight=0.5))
    r = HybridRetriever(cfg, store=store, branches=[bm25, PoisonDense(dense_branch)])
    r.add_documents(small_docs)
    return r, store


def minmax_reference(r: HybridRetriever, query: str, branch: str) -> list[tuple[str, float]]:
    """The fused ranking when only ``branch`` answers: its own list, min-max normalised (weight renormalised to 1)."""
    own = r.search_branches([query], complete=False)[0][branch].hits
    scores = [h.score for h in own]
    lo, hi = min(scores), max(scores)
    by_point = {p.point_id: p.payload["doc_id"] for p in r.store.retrieve([h.point_id for h in own])}
    return [(by_point[h.point_id], (h.score - lo) / (hi - lo) if hi > lo else 1.0) for h in own]


@pytest.mark.parametrize("store_kind", ["edge", "memory"])
def test_encoder_error_degrades_to_the_other_branch(tmp_path, dense_branch, small_docs, store_kind, caplog):
    r, _ = build(tmp_path, dense_branch, small_docs, store_kind)
    with r:
        healthy = r.search(QUERY, k=5)
        assert all(s.error is None for h in healthy for s in h.provenance.values())
        expected = minmax_reference(r, f"{POISON} {QUERY}", "bm25")[:5]
        with caplog.at_level(logging.WARNING):
            hits = r.search(f"{POISON} {QUERY}", k=5)
        assert [(h.id, pytest.approx(h.score)) for h in hits] == [(i, pytest.approx(s)) for i, s in expected]
        for h in hits:
            assert h.provenance["dense"].error == "encode: RuntimeError: poisoned query"
            assert h.provenance["dense"].raw is None and h.provenance["dense"].rank is None
            assert h.provenance["bm25"].error is None and h.provenance["bm25"].rank == h.rank
            assert h.as_dict()["provenance"]["dense"]["error"] == "encode: RuntimeError: poisoned query"
            assert "error" not in h.as_dict()["provenance"]["bm25"]
        assert any("'dense'" in m and "poisoned query" in m for m in caplog.messages)


def test_encoder_error_raises_when_asked(tmp_path, dense_branch, small_docs):
    r, _ = build(tmp_path, dense_branch, small_docs, runtime={"on_branch_error": "raise"})
    with r:
        assert r.search(QUERY, k=3)
        with pytest.raises(BranchFailureError, match="branch 'dense' failed.*poisoned query.*on_branch_error"):
            r.search(f"{POISON} {QUERY}")


@pytest.mark.parametrize("runtime", [{}, {"branch_timeout_s": 5.0}])
def test_every_branch_failing_is_an_error_not_an_empty_result(tmp_path, dense_branch, small_docs, runtime):
    r, _ = build(tmp_path, dense_branch, small_docs, poison_bm25=True, runtime=runtime)
    with r:
        with pytest.raises(BranchFailureError, match="every branch failed.*'bm25'.*poisoned query.*'dense'.*poisoned query"):
            r.search(f"{POISON} {QUERY}")
        assert r.search(QUERY, k=3)  # the retriever stays usable


@pytest.mark.parametrize("store_kind", ["edge", "memory"])
def test_search_stalling_past_the_branch_timeout_is_left_out(tmp_path, dense_branch, small_docs, store_kind):
    r, store = build(tmp_path, dense_branch, small_docs, store_kind, runtime={"branch_timeout_s": 0.5})
    with r:
        healthy = r.search(QUERY, k=5)
        assert all(h.provenance["dense"].error is None for h in healthy)
        expected = minmax_reference(r, QUERY, "bm25")[:5]
        store.arm("dense")
        try:
            hits = r.search(QUERY, k=5)
            # The call came back while the dense search was still blocked in the store.
            assert store.stalled.is_set() and not store.release.is_set()
        finally:
            store.release.set()
        assert [(h.id, pytest.approx(h.score)) for h in hits] == [(i, pytest.approx(s)) for i, s in expected]
        for h in hits:
            assert h.provenance["dense"].error == "search: timed out after branch_timeout_s=0.5 s"


def test_deadline_leaves_out_a_stalled_branch_and_skips_late_completion(tmp_path, dense_branch, small_docs, caplog):
    r, store = build(tmp_path, dense_branch, small_docs, runtime={"deadline_s": 0.8})
    with r:
        store.arm("dense")
        try:
            hits = r.search(QUERY, k=5)
        finally:
            store.release.set()
        assert hits and all(h.provenance["dense"].error == "search: missed the call's deadline_s=0.8 s" for h in hits)
        # Now only score completion stalls: the branches answer, completion is skipped, missing scores floored.
        # (Every small document is in dense's list; BM25 misses those sharing no term, so its completion stalls.)
        store.arm("bm25", only_completion=True)
        try:
            with caplog.at_level(logging.WARNING):
                hits = r.search(QUERY, k=8)
            assert store.stalled.is_set()
        finally:
            store.release.set()
        assert any("score completion skipped" in m for m in caplog.messages)
        assert all(h.provenance[b].error is None and not h.provenance[b].completed for h in hits for b in ("bm25", "dense"))
        missed = [h for h in hits if h.provenance["bm25"].rank is None]
        assert missed and all(h.provenance["bm25"].raw is None for h in missed)


@pytest.mark.parametrize("runtime", [{}, {"branch_timeout_s": 5.0}])
def test_a_refused_branch_request_is_isolated(tmp_path, dense_branch, small_docs, runtime):
    """One branch's request refused: the batched fast path retries branch by branch to find it."""
    r, store = build(tmp_path, dense_branch, small_docs, runtime=runtime)
    with r:
        expected = minmax_reference(r, QUERY, "bm25")[:5]
        store.arm("dense", mode="refuse")
        hits = r.search(QUERY, k=5)
        assert [(h.id, pytest.approx(h.score)) for h in hits] == [(i, pytest.approx(s)) for i, s in expected]
        assert all(h.provenance["dense"].error == "search: ValueError: the store refused the dense request" for h in hits)


def test_rrf_and_server_side_fusion_degrade_too(tmp_path, dense_branch, small_docs):
    r, _ = build(tmp_path, dense_branch, small_docs, fusion={"method": "rrf"})
    with r:
        own = [h.point_id for h in r.search_branches([QUERY], complete=False)[0]["bm25"].hits]
        assert len(own) >= 2
        hits = r.search(f"{POISON} {QUERY}", k=4)
        # One branch left, weight renormalised to 1: RRF score 1 / (60 + rank).
        assert [h.score for h in hits] == [pytest.approx(1 / (60 + i)) for i in range(1, len(hits) + 1)]
        assert [r.store.retrieve([p])[0].payload["doc_id"] for p in own[:4]] == [h.id for h in hits]
        r.config.fusion.server_side = True
        hits = r.search(f"{POISON} {QUERY}", k=4)
        assert hits and all(h.provenance["dense"].error == "encode: RuntimeError: poisoned query" for h in hits)


def test_prf_keeps_working_with_a_failed_branch(tmp_path, dense_branch, small_docs):
    r, _ = build(tmp_path, dense_branch, small_docs, prf={"enabled": True, "guard": {"enabled": False}})
    with r:
        assert r.search(QUERY, k=3)
        hits = r.search(f"{POISON} {QUERY}", k=3)
        assert hits and all(h.provenance["dense"].error is not None for h in hits)


def test_a_timeout_under_raise_fails_the_call(tmp_path, dense_branch, small_docs):
    r, store = build(tmp_path, dense_branch, small_docs, runtime={"branch_timeout_s": 0.3, "on_branch_error": "raise"})
    with r:
        store.arm("dense")
        try:
            with pytest.raises(BranchFailureError, match=r"branch 'dense' failed \(search: timed out after branch_timeout_s=0.3 s\)"):
                r.search(QUERY)
        finally:
            store.release.set()


def test_one_branchs_requests_unavailable(tmp_path, dense_branch, small_docs):
    """With limits each branch has its own request, so one failing to reach the store is left out;
    without limits the one batched request fails for all, and the call raises StoreUnavailableError."""
    r, store = build(tmp_path, dense_branch, small_docs, runtime={"branch_timeout_s": 5.0})
    with r:
        store.arm("dense", mode="down")
        hits = r.search(QUERY, k=3)
        assert hits and all(h.provenance["dense"].error.startswith("search: StoreUnavailableError") for h in hits)
        r.config.runtime.branch_timeout_s = None
        with pytest.raises(StoreUnavailableError, match="did not answer"):
            r.search(QUERY)


def test_store_down_everywhere_raises_store_unavailable(tmp_path, dense_branch, small_docs):
    class Down(FaultyEdge):
        def search_ranked(self, requests):
            raise StoreUnavailableError("Qdrant at 127.0.0.1:1 did not answer (injected)")

    for runtime in ({}, {"branch_timeout_s": 5.0}):
        r, _ = build(tmp_path / str(len(runtime)), dense_branch, small_docs, runtime=runtime)
        with r:
            r.store.__class__ = Down
            with pytest.raises(StoreUnavailableError, match="did not answer"):
                r.search(QUERY)
