"""LangChain's own standard test suites (``langchain-tests``), unmodified, against the adapter.

``VectorStoreIntegrationTests`` runs on ``HybridVectorStore`` over a Qdrant Edge index and over
qdrant-client's local mode (``:memory:``); ``RetrieversIntegrationTests`` on
``HybridSearchRetriever``. Every store is the real thing: BM25 plus the session's MiniLM dense
branch, a fresh index per test. No standard test is overridden or skipped (the suites' own
``test_no_overrides_DO_NOT_OVERRIDE`` checks that).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest
from conftest import SMALL_CORPUS
from langchain_core.retrievers import BaseRetriever
from langchain_tests.integration_tests import RetrieversIntegrationTests, VectorStoreIntegrationTests

from hybrid_retriever import HybridRetriever, RetrieverConfig
from hybrid_retriever.branches import DenseBranch, build_branch
from hybrid_retriever_langchain import HybridSearchRetriever, HybridVectorStore


class TestHybridVectorStoreOnEdge(VectorStoreIntegrationTests):
    """The vector-store suite on an embedded Qdrant Edge index (the default store)."""

    store_kind = "edge"

    @pytest.fixture
    def vectorstore(self, make_retriever: Callable[..., HybridRetriever]) -> Iterator[HybridVectorStore]:  # type: ignore[override]
        """An empty store: a new index, as a new user makes one (defaults: no provenance in results)."""
        store = HybridVectorStore(make_retriever(self.store_kind))
        yield store
        store.close()


class TestHybridVectorStoreOnLocalQdrant(TestHybridVectorStoreOnEdge):
    """The same suite on qdrant-client's local mode (``location: ":memory:"``)."""

    store_kind = "memory"


class TestHybridSearchRetriever(RetrieversIntegrationTests):
    """The retriever suite on an Edge index holding the small shared corpus (provenance on, the default)."""

    core: HybridRetriever

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _index(cls, tmp_path_factory: pytest.TempPathFactory, dense_branch: DenseBranch) -> Iterator[None]:
        cfg = RetrieverConfig.model_validate(
            {"store": {"kind": "edge", "path": str(tmp_path_factory.mktemp("standard") / "index")}, "runtime": {"show_progress": False}}
        )
        branches = [dense_branch if c.kind == "dense" else build_branch(c) for c in cfg.branches]
        core = HybridRetriever(cfg, branches=branches)
        core.add_texts([t for _, t, _ in SMALL_CORPUS], [m for _, _, m in SMALL_CORPUS], [i for i, _, _ in SMALL_CORPUS])
        cls.core = core
        yield
        core.close()

    @property
    def retriever_constructor(self) -> type[BaseRetriever]:
        return HybridSearchRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"retriever": type(self).core}

    @property
    def retriever_query_example(self) -> str:
        return "which database stores vectors?"
