"""HybridSearchRetriever: LangChain retriever over a real Edge index with the real MiniLM branch."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Iterator
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document as LCDocument
from langchain_core.runnables import RunnableLambda

from hybrid_retriever import Document, FilterError, HybridRetriever, InvalidInputError, RetrieverConfig
from hybrid_retriever.branches import build_branch
from hybrid_retriever_langchain import HybridSearchRetriever
from conftest import SMALL_CORPUS

STORED = {i: (t, m) for i, t, m in SMALL_CORPUS}
QUERIES = ["vector database written in Rust", "ranking documents by term frequency", "sleepy pets"]


class Recorder(BaseCallbackHandler):
    """Records the retriever events a tracer would see."""

    def __init__(self) -> None:
        self.starts: list[dict[str, Any]] = []
        self.ends: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []

    def on_retriever_start(self, serialized: Any, query: str, *, run_id: UUID, tags: Any = None, metadata: Any = None, **kw: Any) -> None:
        self.starts.append({"query": query, "run_id": run_id, "tags": tags or [], "metadata": metadata or {}, "name": kw.get("name")})

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kw: Any) -> None:
        self.ends.append({"documents": documents, "run_id": run_id})

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kw: Any) -> None:
        self.errors.append({"error": error, "run_id": run_id})


@pytest.fixture(scope="module")
def core(tmp_path_factory, dense_branch) -> Iterator[HybridRetriever]:
    """One index for the module: these tests only read it (wrappers set by monkeypatch are undone per test)."""
    cfg = RetrieverConfig.model_validate(
        {"store": {"kind": "edge", "path": str(tmp_path_factory.mktemp("lc") / "index")}, "runtime": {"show_progress": False}}
    )
    r = HybridRetriever(cfg, branches=[build_branch(cfg.branches[0]), dense_branch])
    r.add_documents([Document(text=t, metadata=dict(m), id=i) for i, t, m in SMALL_CORPUS])
    yield r
    r.close()


def ids(docs: list[LCDocument]) -> list[str | None]:
    return [d.id for d in docs]


def count_search_batch(core: HybridRetriever, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record every search_batch call on the real core (which still does the work)."""
    calls: list[list[str]] = []
    real = core.search_batch

    def counted(queries: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(list(queries))
        return real(queries, *args, **kwargs)

    monkeypatch.setattr(core, "search_batch", counted)
    return calls


# ------------------------------------------------------------------------ invoke


def test_invoke_returns_documents_with_id_metadata_and_provenance(core):
    retriever = HybridSearchRetriever(retriever=core, k=3)
    docs = retriever.invoke(QUERIES[0])
    hits = core.search(QUERIES[0], k=3)

    assert ids(docs) == [h.id for h in hits]
    assert docs[0].id == "qdrant"
    for doc, hit in zip(docs, hits):
        assert isinstance(doc, LCDocument)
        text, meta = STORED[doc.id]
        assert doc.page_content == text
        assert {k: v for k, v in doc.metadata.items() if k != "hybrid"} == meta
        prov = doc.metadata["hybrid"]
        assert prov["fusion"] == "adaptive"
        assert prov["rank"] == hit.rank
        assert prov["score"] == pytest.approx(hit.score, abs=1e-5)
        assert set(prov["branches"]) == {"bm25", "dense"}
        for name, branch in prov["branches"].items():
            assert set(branch) >= {"raw", "normalized", "rank", "completed"}
            assert branch["rank"] == hit.provenance[name].rank
            assert branch["raw"] == pytest.approx(hit.provenance[name].raw, abs=1e-5)
    assert [d.metadata["hybrid"]["rank"] for d in docs] == [1, 2, 3]
    # The top document contains "vector", "database" and "Rust": BM25 ranks it first.
    assert docs[0].metadata["hybrid"]["branches"]["bm25"]["rank"] == 1


def test_rrf_provenance_adds_up_to_the_fused_score(make_retriever, small_docs):
    core = make_retriever("edge", fusion={"method": "rrf"})
    core.add_documents(small_docs)
    docs = HybridSearchRetriever(retriever=core, k=5).invoke(QUERIES[1])
    assert len(docs) == 5
    for d in docs:
        prov = d.metadata["hybrid"]
        assert prov["fusion"] == "rrf"
        expected = sum(0.5 / (60 + b["rank"]) for b in prov["branches"].values() if b["rank"] is not None)
        assert prov["score"] == pytest.approx(expected, rel=1e-6)


def test_per_call_k_and_filter(core):
    retriever = HybridSearchRetriever(retriever=core)
    assert len(retriever.invoke(QUERIES[1])) == len(SMALL_CORPUS)  # core default k=10 > corpus
    assert len(retriever.invoke(QUERIES[1], k=2)) == 2

    ir = retriever.invoke(QUERIES[1], filter={"topic": "ir"})
    assert sorted(ids(ir)) == ["bm25", "colbert", "rrf"]
    recent = retriever.invoke(QUERIES[1], k=10, filter={"year": {"gte": 2019}})
    assert sorted(ids(recent)) == sorted(i for i, _, m in SMALL_CORPUS if m["year"] >= 2019)

    scoped = HybridSearchRetriever(retriever=core, k=2, filter={"topic": "ir"})
    assert all(d.metadata["topic"] == "ir" for d in scoped.invoke(QUERIES[0]))
    assert len(scoped.invoke(QUERIES[0])) == 2
    # A per-call filter replaces the default one; filter=None removes it.
    assert ids(scoped.invoke(QUERIES[0], filter={"topic": "db"})) == ["qdrant"]
    assert ids(scoped.invoke(QUERIES[0], filter=None, k=1)) == ["qdrant"]

    with pytest.raises(TypeError, match="fetch_k"):
        retriever.invoke(QUERIES[0], fetch_k=3)
    with pytest.raises(InvalidInputError):
        retriever.invoke(QUERIES[0], k=0)


def test_empty_index_returns_nothing(make_retriever):
    assert HybridSearchRetriever(retriever=make_retriever("edge")).invoke("anything") == []


def test_callbacks_see_the_run_with_tags_and_metadata(core):
    rec = Recorder()
    retriever = HybridSearchRetriever(retriever=core, k=2, tags=["hybrid-idx"], metadata={"index": "small"})
    docs = retriever.invoke(
        QUERIES[0], config={"callbacks": [rec], "tags": ["call-tag"], "metadata": {"user": "u1"}, "run_name": "lookup"}
    )
    assert len(rec.starts) == 1 and len(rec.ends) == 1 and not rec.errors
    start = rec.starts[0]
    assert start["query"] == QUERIES[0] and start["name"] == "lookup"
    assert {"hybrid-idx", "call-tag"} <= set(start["tags"])
    meta = start["metadata"]
    assert meta["index"] == "small" and meta["user"] == "u1"
    assert meta["ls_vector_store_provider"] == "qdrant-edge"
    assert meta["ls_embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert rec.ends[0]["run_id"] == start["run_id"]
    assert ids(rec.ends[0]["documents"]) == ids(docs)


def test_errors_reach_callbacks(core):
    rec = Recorder()
    retriever = HybridSearchRetriever(retriever=core)
    with pytest.raises(FilterError, match="no_such_field"):
        retriever.invoke(QUERIES[0], filter={"no_such_field": 1}, config={"callbacks": [rec]})
    assert len(rec.errors) == 1 and isinstance(rec.errors[0]["error"], FilterError)
    assert rec.errors[0]["run_id"] == rec.starts[0]["run_id"]


# ------------------------------------------------------------------------- batch


def test_batch_is_one_search_batch_call_with_one_run_per_query(core, monkeypatch):
    expected = [ids(HybridSearchRetriever(retriever=core, k=3).invoke(q)) for q in QUERIES]
    calls = count_search_batch(core, monkeypatch)
    rec = Recorder()
    retriever = HybridSearchRetriever(retriever=core, k=3)
    out = retriever.batch(QUERIES, config={"callbacks": [rec], "tags": ["b"]})

    assert calls == [QUERIES]
    assert [ids(docs) for docs in out] == expected
    assert [s["query"] for s in rec.starts] == QUERIES
    assert len({s["run_id"] for s in rec.starts}) == 3
    ended = {e["run_id"]: ids(e["documents"]) for e in rec.ends}
    assert [ended[s["run_id"]] for s in rec.starts] == expected
    assert all("b" in s["tags"] for s in rec.starts)

    filtered = [ids(retriever.invoke(q, filter={"topic": "ir"})) for q in QUERIES]
    calls.clear()
    assert [len(d) for d in retriever.batch(QUERIES, k=1)] == [1, 1, 1]
    assert [ids(d) for d in retriever.batch(QUERIES, filter={"topic": "ir"})] == filtered
    assert retriever.batch([]) == []
    assert calls == [QUERIES, QUERIES]


def test_batch_inside_a_chain_still_batches(core, monkeypatch):
    calls = count_search_batch(core, monkeypatch)
    chain = HybridSearchRetriever(retriever=core, k=2) | RunnableLambda(lambda docs: [d.id for d in docs])
    out = chain.batch(QUERIES)
    assert len(calls) == 1
    assert out[0][0] == "qdrant" and out[2][0] == "cats"


def test_batch_errors_land_on_their_own_query(core):
    rec = Recorder()
    retriever = HybridSearchRetriever(retriever=core, k=2)
    out = retriever.batch([QUERIES[0], "   ", QUERIES[2]], config={"callbacks": [rec]}, return_exceptions=True)
    assert ids(out[0]) == ids(retriever.invoke(QUERIES[0]))
    assert isinstance(out[1], InvalidInputError)
    assert ids(out[2]) == ids(retriever.invoke(QUERIES[2]))
    assert len(rec.ends) == 2 and len(rec.errors) == 1
    failed = next(s for s in rec.starts if s["query"] == "   ")
    assert rec.errors[0]["run_id"] == failed["run_id"]
    with pytest.raises(InvalidInputError, match="empty"):
        retriever.batch([QUERIES[0], "   "])


# ------------------------------------------------------------------------- async


@pytest.mark.parametrize("call", ["ainvoke", "abatch"])
async def test_async_search_leaves_the_event_loop_free(core, monkeypatch, call):
    """The search blocks until another task on the loop opens a gate: only a non-blocking call finishes."""
    gate = threading.Event()
    seen: dict[str, Any] = {}
    real = core.search_batch

    def gated(*args: Any, **kwargs: Any) -> Any:
        seen["thread"] = threading.get_ident()
        seen["released"] = gate.wait(timeout=5)
        return real(*args, **kwargs)

    monkeypatch.setattr(core, "search_batch", gated)
    retriever = HybridSearchRetriever(retriever=core, k=2)

    async def opener() -> None:  # runs only while the loop is free
        while "thread" not in seen:
            await asyncio.sleep(0.001)
        gate.set()

    search = retriever.ainvoke(QUERIES[0]) if call == "ainvoke" else retriever.abatch(QUERIES[:2])
    result, _ = await asyncio.wait_for(asyncio.gather(search, opener()), timeout=30)
    assert seen["released"] is True, "the event loop was blocked while the search ran"
    assert seen["thread"] != threading.get_ident()
    first = result if call == "ainvoke" else result[0]
    assert ids(first) == ids(retriever.invoke(QUERIES[0]))


async def test_async_results_and_callbacks_match_sync(core, monkeypatch):
    retriever = HybridSearchRetriever(retriever=core, k=3, tags=["t"])
    sync = [ids(retriever.invoke(q, filter={"topic": {"ne": "animals"}})) for q in QUERIES]
    rec = Recorder()
    one = await retriever.ainvoke(QUERIES[0], filter={"topic": {"ne": "animals"}}, config={"callbacks": [rec]})
    assert ids(one) == sync[0]
    calls = count_search_batch(core, monkeypatch)
    many = await retriever.abatch(QUERIES, config={"callbacks": [rec]}, filter={"topic": {"ne": "animals"}})
    assert len(calls) == 1
    assert [ids(d) for d in many] == sync
    assert len(rec.starts) == 4 and len(rec.ends) == 4
    assert all("t" in s["tags"] for s in rec.starts)
    out = await retriever.abatch(["", QUERIES[0]], return_exceptions=True)
    assert isinstance(out[0], InvalidInputError) and ids(out[1]) == sync[0]


# ------------------------------------------------------------------ construction


def test_from_path_and_from_config(make_retriever, small_docs, tmp_path):
    core = make_retriever("edge", branches=[{"kind": "bm25"}])
    core.add_documents(small_docs)
    path = core.config.store.path
    expected = ids(HybridSearchRetriever(retriever=core, k=3).invoke(QUERIES[1]))
    core.close()

    reopened = HybridSearchRetriever.from_path(path, overrides={"fusion": {"method": "rrf"}}, k=3)
    try:
        docs = reopened.invoke(QUERIES[1])
        assert ids(docs) == expected  # one branch: RRF and min-max keep its order
        assert docs[0].metadata["hybrid"]["fusion"] == "rrf"
        assert set(docs[0].metadata["hybrid"]["branches"]) == {"bm25"}
    finally:
        reopened.close()

    built = HybridSearchRetriever.from_config(
        {"store": {"kind": "edge", "path": str(tmp_path / "new")}, "branches": [{"kind": "bm25"}], "runtime": {"show_progress": False}},
        k=1,
        provenance_key="scores",
    )
    try:
        built.retriever.add_texts(["alpha beta", "gamma delta"], ids=["a", "g"])
        docs = built.invoke("gamma")
        assert ids(docs) == ["g"] and "scores" in docs[0].metadata and "hybrid" not in docs[0].metadata
        plain = HybridSearchRetriever(retriever=built.retriever, k=1, provenance_key=None).invoke("gamma")
        assert ids(plain) == ["g"] and plain[0].metadata == {}  # provenance off: the stored metadata only
    finally:
        built.close()
