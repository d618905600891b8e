"""HybridRerankCompressor: the rerank stage as a LangChain document compressor, composed with any retriever."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.vectorstores import InMemoryVectorStore

from hybrid_retriever_langchain import DenseBranchEmbeddings, HybridRerankCompressor, HybridSearchRetriever
from rerank_fixtures import TINY_MAX_LENGTH, build_tiny_cross_encoder, direct_logits

QUERY = "vector database for embeddings"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce-lc") / "model")


def expected_order(model: Path, texts: list[str]) -> list[int]:
    logits = direct_logits(model, QUERY, texts)
    return sorted(range(len(texts)), key=lambda i: -logits[i])


def test_over_the_hybrid_retriever_scores_are_kept(make_retriever, small_docs, tiny_model: Path) -> None:
    core = make_retriever()
    core.add_documents(small_docs)
    base = HybridSearchRetriever(retriever=core, k=6)
    fused = base.invoke(QUERY)
    compressor = HybridRerankCompressor.from_model(str(tiny_model), top_n=3, max_length=TINY_MAX_LENGTH)
    docs = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=base).invoke(QUERY)
    texts = [d.page_content for d in fused]
    logits = direct_logits(tiny_model, QUERY, texts)
    order = expected_order(tiny_model, texts)[:3]
    assert [d.id for d in docs] == [fused[i].id for i in order]
    for rank, (d, i) in enumerate(zip(docs, order), start=1):
        prov = d.metadata["hybrid"]
        assert prov["rank"] == rank and prov["rerank"]["rank"] == rank
        assert prov["rerank"]["raw"] == pytest.approx(logits[i], abs=1e-4) == pytest.approx(prov["score"], abs=1e-4)
        assert prov["rerank"]["fused_rank"] == i + 1
        assert prov["rerank"]["fused_score"] == pytest.approx(fused[i].metadata["hybrid"]["score"])
        assert prov["branches"] == fused[i].metadata["hybrid"]["branches"]  # branch provenance kept
        assert d.metadata["topic"] == fused[i].metadata["topic"]  # stored metadata kept


async def test_over_any_retriever_and_async(dense_branch, small_docs, tiny_model: Path) -> None:
    store = InMemoryVectorStore(DenseBranchEmbeddings(dense_branch))
    store.add_texts([d.text for d in small_docs], ids=[d.id for d in small_docs])
    base = store.as_retriever(search_kwargs={"k": 5})
    first = base.invoke(QUERY)
    compressor = HybridRerankCompressor.from_model(str(tiny_model), top_n=4, max_length=TINY_MAX_LENGTH)
    retriever = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=base)
    docs = retriever.invoke(QUERY)
    order = expected_order(tiny_model, [d.page_content for d in first])[:4]
    assert [d.id for d in docs] == [first[i].id for i in order]
    # No fused score came in: the input position stands in ((n - i) / n).
    assert [d.metadata["hybrid"]["rerank"]["fused_score"] for d in docs] == pytest.approx([(5 - i) / 5 for i in order])
    adocs = await retriever.ainvoke(QUERY)
    assert [d.id for d in adocs] == [d.id for d in docs]


def test_a_failing_reranker_keeps_the_input_order_flagged(small_docs, tmp_path: Path) -> None:
    from langchain_core.documents import Document

    compressor = HybridRerankCompressor.from_model(str(tmp_path / "no-such-model"), top_n=2)
    docs = [Document(page_content=d.text, id=d.id) for d in small_docs[:4]]
    out = compressor.compress_documents(docs, QUERY)
    assert [d.id for d in out] == [d.id for d in docs[:2]]
    assert all(d.metadata["hybrid"]["rerank"]["error"] for d in out)
