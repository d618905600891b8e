"""HybridVectorStore: LangChain VectorStore over a real Edge index, including LangChain's indexing API."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SMALL_CORPUS
from langchain_core.documents import Document as LCDocument
from langchain_core.embeddings import Embeddings
from langchain_core.indexing import InMemoryRecordManager, aindex, index
from langchain_core.vectorstores import VectorStoreRetriever

from hybrid_retriever import ConfigError, InvalidInputError, point_id
from hybrid_retriever_langchain import DenseBranchEmbeddings, HybridSearchRetriever, HybridVectorStore

STORED = {i: (t, m) for i, t, m in SMALL_CORPUS}


def lc_docs() -> list[LCDocument]:
    return [LCDocument(page_content=t, metadata=dict(m), id=i) for i, t, m in SMALL_CORPUS]


@pytest.fixture
def store(make_retriever) -> HybridVectorStore:
    s = HybridVectorStore(make_retriever("edge"))
    s.add_documents(lc_docs())
    return s


def all_stored(store: HybridVectorStore) -> dict[str, tuple[str, dict]]:
    """Everything in the index, read back independently of the adapter."""
    return {d.id: (d.text, d.metadata) for d in store.retriever.documents()}


# ------------------------------------------------------------------------ writes


def test_add_documents_and_get_by_ids(make_retriever):
    store = HybridVectorStore(make_retriever("edge"))
    assert store.add_documents(lc_docs()) == [i for i, _, _ in SMALL_CORPUS]
    got = store.get_by_ids(["cats", "not-there", "qdrant"])
    assert [d.id for d in got] == ["cats", "qdrant"]
    for d in got:
        assert (d.page_content, d.metadata) == STORED[d.id]  # stored metadata only, no provenance

    # ids= takes precedence over Document.id; a document without any id gets one.
    assert store.add_documents([LCDocument("Ducks quack.", id="ignored")], ids=["duck"]) == ["duck"]
    assert store.get_by_ids(["ignored"]) == []
    [new_id] = store.add_documents([LCDocument("Geese honk loudly.", metadata={"topic": "animals"})])
    assert store.get_by_ids([new_id])[0].page_content == "Geese honk loudly."
    assert store.retriever.count() == len(SMALL_CORPUS) + 2
    assert store.add_documents([]) == []


def test_add_texts_replaces_by_id_and_validates(store):
    assert store.add_texts(["Cats are mammals that purr."], [{"topic": "animals", "year": 2024}], ids=["cats"]) == ["cats"]
    assert store.retriever.count() == len(SMALL_CORPUS)
    assert all_stored(store)["cats"] == ("Cats are mammals that purr.", {"topic": "animals", "year": 2024})
    assert store.similarity_search("purr", k=1)[0].id == "cats"

    with pytest.raises(InvalidInputError, match="same length"):
        store.add_texts(["a", "b"], ids=["only-one"])
    with pytest.raises(TypeError, match="metadata"):
        store.add_texts(["a"], metadata=[{}])
    assert store.add_texts([]) == []


def test_delete_by_ids_and_all(store):
    assert store.delete(["cats", "paris", "never-added"]) is True
    assert set(all_stored(store)) == set(STORED) - {"cats", "paris"}
    assert "cats" not in [d.id for d in store.similarity_search("cats sleeping", k=10)]
    assert store.delete() is True
    assert store.retriever.count() == 0
    assert store.similarity_search("cats", k=3) == []


# ------------------------------------------------------------------------ search


def test_similarity_search_matches_the_core(store):
    query = "dense embeddings for semantic search"
    hits = store.retriever.search(query, k=4)
    docs = store.similarity_search(query)  # LangChain's default k = 4
    assert [d.id for d in docs] == [h.id for h in hits]
    assert docs[0].id == "sbert"
    assert docs[0].metadata == STORED["sbert"][1]  # the stored metadata, nothing added (LangChain's contract)
    scored = store.similarity_search_with_score(query, k=4)
    assert [s for _, s in scored] == pytest.approx([h.score for h in hits], abs=1e-5)
    assert [s for _, s in scored] == sorted((s for _, s in scored), reverse=True)

    ir = store.similarity_search(query, k=10, filter={"topic": "ir"})
    assert sorted(d.id for d in ir) == ["bm25", "colbert", "rrf"]
    with pytest.raises(TypeError, match="fetch_k"):
        store.similarity_search(query, fetch_k=10)


def test_relevance_scores_interpolation(store):
    pairs = store.similarity_search_with_relevance_scores("rank fusion of ranked lists", k=8)
    raw = dict((d.id, s) for d, s in store.similarity_search_with_score("rank fusion of ranked lists", k=8))
    assert len(pairs) == 8
    for doc, rel in pairs:
        assert 0.0 <= rel <= 1.0
        assert rel == pytest.approx(min(1.0, max(0.0, raw[doc.id])), abs=1e-6)
    kept = store.similarity_search_with_relevance_scores("rank fusion of ranked lists", k=8, score_threshold=0.5)
    assert kept and [d.id for d, _ in kept] == [d.id for d, r in pairs if r >= 0.5]
    assert kept[0][0].id == "rrf"


def test_relevance_scores_rrf_and_zscore(make_retriever):
    rrf = HybridVectorStore(make_retriever("edge", fusion={"method": "rrf"}), provenance_key="hybrid")
    rrf.add_documents(lc_docs())
    pairs = rrf.similarity_search_with_relevance_scores("vector database written in Rust", k=5)
    top, rel = pairs[0]
    branches = top.metadata["hybrid"]["branches"]
    assert top.id == "qdrant" and branches["bm25"]["rank"] == branches["dense"]["rank"] == 1
    assert rel == pytest.approx(1.0)  # rank 1 in every branch is the maximum
    for doc, r in pairs:
        assert r == pytest.approx(doc.metadata["hybrid"]["score"] * 61, rel=1e-6)

    z = HybridVectorStore(make_retriever("edge", fusion={"normalization": "zscore"}))
    z.add_documents(lc_docs())
    with pytest.raises(ConfigError, match="z-score"):
        z.similarity_search_with_relevance_scores("cats")


def test_mmr_diversifies_with_the_dense_vectors(store, dense_branch):
    store.add_documents([LCDocument(STORED["qdrant"][0] + " It is open source.", id="qdrant-copy", metadata={"topic": "db"})])
    query = "vector database written in Rust"
    relevant = store.max_marginal_relevance_search(query, k=2, fetch_k=8, lambda_mult=1.0)
    diverse = store.max_marginal_relevance_search(query, k=2, fetch_k=8, lambda_mult=0.0)
    assert {d.id for d in relevant} == {"qdrant", "qdrant-copy"}
    assert diverse[0].id == relevant[0].id and diverse[1].id not in {"qdrant", "qdrant-copy"}

    # lambda_mult=1 is pure query relevance: the order of dense cosine, computed independently.
    q = dense_branch.encode_queries([query])[0]
    candidates = store.similarity_search(query, k=8)
    cos = {d.id: float(np.dot(q, dense_branch.encode_documents([d.page_content])[0])) for d in candidates}
    by_cos = sorted(cos, key=cos.get, reverse=True)
    assert [d.id for d in store.max_marginal_relevance_search(query, k=4, fetch_k=8, lambda_mult=1.0)] == by_cos[:4]


def test_embeddings_is_the_dense_branch(store, dense_branch, make_retriever):
    emb = store.embeddings
    assert isinstance(emb, Embeddings) and isinstance(emb, DenseBranchEmbeddings)
    assert np.allclose(emb.embed_query("cats"), dense_branch.encode_queries(["cats"])[0], atol=1e-6)
    stored = store.retriever.store.retrieve([point_id("cats")], with_vectors=["dense"])
    assert np.allclose(emb.embed_documents([STORED["cats"][0]])[0], stored[0].vectors["dense"], atol=1e-5)
    assert HybridVectorStore(make_retriever("edge", branches=[{"kind": "bm25"}])).embeddings is None


# ------------------------------------------------------------------ construction


def test_from_texts_and_from_documents(make_retriever):
    texts = [t for _, t, _ in SMALL_CORPUS]
    metas = [m for _, _, m in SMALL_CORPUS]
    ids = [i for i, _, _ in SMALL_CORPUS]
    s1 = HybridVectorStore.from_texts(texts, metadatas=metas, ids=ids, retriever=make_retriever("edge"))
    assert all_stored(s1) == STORED
    s2 = HybridVectorStore.from_documents(lc_docs(), retriever=make_retriever("edge"))
    assert all_stored(s2) == STORED
    assert [d.id for d in s1.similarity_search("Paris tower", k=2)] == [d.id for d in s2.similarity_search("Paris tower", k=2)]
    with pytest.raises(InvalidInputError, match="embedding=None"):
        HybridVectorStore.from_texts(texts, s1.embeddings, retriever=make_retriever("edge"))


async def test_afrom_documents(make_retriever):
    store = await HybridVectorStore.afrom_documents(lc_docs(), retriever=make_retriever("edge", branches=[{"kind": "bm25"}]))
    assert all_stored(store) == STORED


def test_from_texts_with_a_path_creates_then_reopens(tmp_path):
    path = tmp_path / "lc-index"
    cfg = {"store": {"kind": "edge", "path": str(path)}, "branches": [{"kind": "bm25"}], "runtime": {"show_progress": False}}
    store = HybridVectorStore.from_texts(["alpha beta", "gamma delta"], config=cfg, ids=["a", "g"])
    store.close()
    again = HybridVectorStore.from_texts(["epsilon gamma"], path=path, ids=["e"])  # reopens with bm25 only
    try:
        assert again.retriever.config.branch_names == ["bm25"]
        assert sorted(d.id for d in again.similarity_search("gamma", k=5)) == ["e", "g"]
    finally:
        again.close()
    reopened = HybridVectorStore.open(path)
    assert reopened.retriever.count() == 3
    reopened.close()


def test_as_retriever(store):
    r = store.as_retriever(search_kwargs={"k": 2, "filter": {"topic": "ir"}})
    assert isinstance(r, HybridSearchRetriever)
    assert "HybridVectorStore" in r.tags
    docs = r.invoke("ranking")
    assert len(docs) == 2 and all(d.metadata["topic"] == "ir" for d in docs)
    assert len(store.as_retriever().invoke("ranking")) == 4

    mmr = store.as_retriever(search_type="mmr", search_kwargs={"k": 3, "fetch_k": 8})
    assert isinstance(mmr, VectorStoreRetriever)
    assert len(mmr.invoke("vector database")) == 3
    thr = store.as_retriever(search_type="similarity_score_threshold", search_kwargs={"score_threshold": 0.9, "k": 8})
    got = thr.invoke("Eiffel Tower in Paris")
    assert [d.id for d in got][:1] == ["paris"]
    assert all(d.metadata == STORED[d.id][1] for d in got)  # the store's own searches: stored metadata only
    with pytest.raises(TypeError, match="fetch_k"):
        store.as_retriever(search_kwargs={"fetch_k": 3})


def test_provenance_is_off_in_the_store_on_in_its_retriever_and_can_be_switched(store, make_retriever):
    query = "dense embeddings for semantic search"
    plain = store.similarity_search(query, k=3)
    assert all(d.metadata == STORED[d.id][1] for d in plain)

    # The store's retriever carries it by default (a retriever enriches what it returns) ...
    docs = store.as_retriever(search_kwargs={"k": 3}).invoke(query)
    assert [d.id for d in docs] == [d.id for d in plain]
    assert [d.metadata["hybrid"]["rank"] for d in docs] == [1, 2, 3]
    assert {k: v for k, v in docs[0].metadata.items() if k != "hybrid"} == STORED[docs[0].id][1]
    # ... and leaves it out when asked.
    assert all(d.metadata == STORED[d.id][1] for d in store.as_retriever(provenance_key=None).invoke(query))

    # A store built with a key carries it in every search, and its retriever uses the same key.
    on = HybridVectorStore(store.retriever, provenance_key="scores")
    top, score = on.similarity_search_with_score(query, k=1)[0]
    assert top.metadata["scores"]["score"] == pytest.approx(score)
    assert set(top.metadata["scores"]["branches"]) == {"bm25", "dense"}
    assert "scores" in on.as_retriever().invoke(query)[0].metadata
    assert "scores" in on.max_marginal_relevance_search(query, k=2, fetch_k=4)[0].metadata

    # from_texts takes the option too.
    built = HybridVectorStore.from_texts(["Owls hunt at night."], ids=["owl"], retriever=make_retriever("edge"),
                                         provenance_key="hybrid")
    assert built.similarity_search("owls", k=1)[0].metadata["hybrid"]["rank"] == 1


async def test_async_store_methods(store):
    docs = await store.asimilarity_search("cats", k=1)
    assert docs[0].id == "cats"
    assert [d.id for d in await store.aget_by_ids(["paris"])] == ["paris"]
    await store.aadd_documents([LCDocument("Owls hunt at night.", id="owl")])
    await store.adelete(["cats"])
    assert set(all_stored(store)) == (set(STORED) - {"cats"}) | {"owl"}


# -------------------------------------------------------------- LangChain indexing


def test_indexing_api_keeps_the_store_in_sync(make_retriever):
    store = HybridVectorStore(make_retriever("edge"))
    rm = InMemoryRecordManager(namespace="hybrid/test")
    rm.create_schema()

    def corpus(texts: dict[str, list[str]]) -> list[LCDocument]:
        return [LCDocument(t, metadata={"source": src, "part": n}) for src, parts in texts.items() for n, t in enumerate(parts)]

    def contents() -> list[tuple[str, str]]:
        return sorted((m["source"], t) for t, m in all_stored(store).values())

    v1 = {
        "a.md": ["Qdrant stores dense and sparse vectors.", "It is written in Rust."],
        "b.md": ["BM25 is a lexical ranking function."],
        "c.md": ["Cats sleep for most of the day."],
    }
    first = index(corpus(v1), rm, store, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    assert first == {"num_added": 4, "num_updated": 0, "num_skipped": 0, "num_deleted": 0}
    assert contents() == sorted((s, t) for s, ts in v1.items() for t in ts)
    assert sorted(all_stored(store)) == sorted(rm.list_keys())  # the store's ids are the record manager's keys

    again = index(corpus(v1), rm, store, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    assert again == {"num_added": 0, "num_updated": 0, "num_skipped": 4, "num_deleted": 0}
    assert store.retriever.count() == 4

    v2 = dict(v1, **{"a.md": ["Qdrant stores dense and sparse vectors.", "It is written in Rust and runs embedded."]})
    changed = index(corpus(v2), rm, store, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    assert changed == {"num_added": 1, "num_updated": 0, "num_skipped": 3, "num_deleted": 1}
    assert contents() == sorted((s, t) for s, ts in v2.items() for t in ts)
    assert store.similarity_search("runs embedded", k=1)[0].page_content.endswith("runs embedded.")

    v3 = {k: v for k, v in v2.items() if k != "c.md"}
    full = index(corpus(v3), rm, store, cleanup="full", source_id_key="source", key_encoder="sha256")
    assert full == {"num_added": 0, "num_updated": 0, "num_skipped": 3, "num_deleted": 1}
    assert contents() == sorted((s, t) for s, ts in v3.items() for t in ts)
    assert all(d.metadata["source"] != "c.md" for d in store.similarity_search("cats sleeping", k=10))
    assert sorted(all_stored(store)) == sorted(rm.list_keys())


async def test_async_indexing_api(make_retriever):
    store = HybridVectorStore(make_retriever("edge", branches=[{"kind": "bm25"}]))
    rm = InMemoryRecordManager(namespace="hybrid/async")
    await rm.acreate_schema()
    docs = [LCDocument("alpha beta", metadata={"source": "x"}), LCDocument("gamma delta", metadata={"source": "y"})]
    assert (await aindex(docs, rm, store, cleanup="full", source_id_key="source", key_encoder="sha256"))["num_added"] == 2
    result = await aindex(docs[:1], rm, store, cleanup="full", source_id_key="source", key_encoder="sha256")
    assert result == {"num_added": 0, "num_updated": 0, "num_skipped": 1, "num_deleted": 1}
    assert [t for t, _ in all_stored(store).values()] == ["alpha beta"]
