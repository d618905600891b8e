"""``HybridSearchRetriever``: a LangChain retriever over a hybrid-retriever index.

Example::

    from hybrid_retriever import HybridRetriever, RetrieverConfig
    from hybrid_retriever_langchain import HybridSearchRetriever

    retriever = HybridSearchRetriever(retriever=HybridRetriever(RetrieverConfig()), k=4)
    docs = retriever.invoke("vector database", k=3, filter={"topic": "db"})
    docs[0].metadata["hybrid"]["branches"]["bm25"]["rank"]
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForRetrieverRun,
    CallbackManager,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever, LangSmithRetrieverParams
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import get_config_list
from pydantic import Field

from hybrid_retriever.config import RetrieverConfig
from hybrid_retriever.grouping import group_depth, group_hits, merge_passages, word_count
from hybrid_retriever.retriever import HybridRetriever
from hybrid_retriever_langchain._core import dense_model, make_core
from hybrid_retriever_langchain.documents import DEFAULT_PROVENANCE_KEY, hit_to_document, passage_to_document

#: Keyword arguments a call (``invoke``, ``batch``, ...) may pass through to the search.
SEARCH_KWARGS = ("k", "filter")
#: Keyword arguments LangChain itself may pass along with them; ignored here.
_LANGCHAIN_KWARGS = ("verbose", "run_id")

Outcome = list[Document] | Exception


class HybridSearchRetriever(BaseRetriever):
    """Hybrid (BM25 + dense, fused) search as a LangChain retriever, with per-branch provenance.

    Every returned ``Document`` has ``id`` set to the stored document id and carries the
    stored metadata plus ``metadata[provenance_key]`` = ``{"score", "rank", "fusion",
    "branches": {name: {"raw", "normalized", "rank", "completed"}}}``; with
    ``provenance_key=None`` the stored metadata only.

    Per-call options go as keyword arguments of ``invoke``/``ainvoke``/``batch``/``abatch``:
    ``k`` (results) and ``filter`` (the core's dict filter or a native Qdrant filter). A
    per-call ``filter`` *replaces* the retriever's default ``filter`` (``filter=None``
    removes it for that call). ``batch``/``abatch`` send all queries as one
    ``search_batch`` call and still report one retriever run per query to callbacks.
    ``ainvoke``/``abatch`` run the blocking search in a worker thread, so the event loop
    stays free.
    """

    retriever: HybridRetriever
    """The core retriever searched."""
    k: int | None = Field(default=None, gt=0)
    """Default number of results; ``None`` = the core configuration's ``runtime.k``."""
    filter: Any = None
    """Default metadata filter, e.g. ``{"source": "wiki", "year": {"gte": 2020}}``."""
    provenance_key: str | None = DEFAULT_PROVENANCE_KEY
    """Metadata key of the provenance in returned documents; ``None`` leaves it out (stored metadata only)."""
    group_by: str | None = None
    """One document per value of this metadata field (e.g. ``"source"``: one per file), its best chunk, with
    ``metadata[provenance_key]["group"]`` = how many of its chunks matched and their ranks."""
    passage_budget: int | None = Field(default=None, gt=0)
    """Return passages instead of chunks: the best hits within this many tokens (the dense model's), adjacent
    chunks of a file joined in reading order (``hybrid_retriever.grouping.merge_passages``)."""

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_config(cls, config: RetrieverConfig | dict[str, Any], **kwargs: Any) -> "HybridSearchRetriever":
        """A retriever over the index a configuration describes (created on first add when new)."""
        return cls(retriever=make_core(config=config), **kwargs)

    @classmethod
    def from_path(
        cls, path: str | os.PathLike[str], *, overrides: dict[str, Any] | None = None, **kwargs: Any
    ) -> "HybridSearchRetriever":
        """A retriever over the existing Edge index at ``path``, with the settings it was built with.

        ``overrides`` replaces top-level sections of the stored configuration (e.g.
        ``{"fusion": {"method": "rrf"}}``), as in :meth:`HybridRetriever.open`.
        """
        return cls(retriever=HybridRetriever.open(os.fspath(path), **(overrides or {})), **kwargs)

    def close(self) -> None:
        """Close the core retriever (flushes and releases the index)."""
        self.retriever.close()

    # ---------------------------------------------------------------------- tracing

    def _get_ls_params(self, **kwargs: Any) -> LangSmithRetrieverParams:
        params = super()._get_ls_params(**kwargs)
        params["ls_vector_store_provider"] = "qdrant-edge" if self.retriever.config.store.kind == "edge" else "qdrant"
        model = dense_model(self.retriever)
        if model is not None:
            params["ls_embedding_provider"] = "sentence-transformers"
            params["ls_embedding_model"] = model
        return params

    # ----------------------------------------------------------------------- search

    def _search_args(self, kwargs: dict[str, Any]) -> tuple[int | None, Any]:
        unknown = sorted(set(kwargs) - set(SEARCH_KWARGS) - set(_LANGCHAIN_KWARGS))
        if unknown:
            raise TypeError(f"unexpected search argument(s) {unknown}; {type(self).__name__} takes {list(SEARCH_KWARGS)}")
        k = kwargs.get("k")
        return (self.k if k is None else k), (kwargs["filter"] if "filter" in kwargs else self.filter)

    def _to_documents(self, hits: list[Any]) -> list[Document]:
        method = self.retriever.config.fusion.method
        return [hit_to_document(h, self.provenance_key, method) for h in hits]

    def _run(self, queries: list[str], k: int | None, filter: Any) -> list[list[Document]]:
        """One ``search_batch`` call, then grouping or passages when the retriever is set up for them."""
        if self.group_by is None:
            results = self.retriever.search_batch(queries, k=k, filter=filter)
        else:
            wanted = k or self.retriever.config.runtime.k
            deep = self.retriever.search_batch(queries, k=group_depth(wanted), filter=filter)
            results = [group_hits(hits, wanted, self.group_by) for hits in deep]
        if self.passage_budget is None:
            return [self._to_documents(hits) for hits in results]
        count = self.retriever.token_counter() or word_count
        return [[passage_to_document(p, self.provenance_key) for p in merge_passages(hits, self.passage_budget, count)]
                for hits in results]

    def _search_many(self, queries: list[str], k: int | None, filter: Any) -> list[Outcome]:
        """One ``search_batch`` call; if it fails, each query alone, so each error lands on its own query."""
        try:
            return list(self._run(queries, k, filter))
        except Exception as exc:
            if len(queries) == 1:
                return [exc]
        out: list[Outcome] = []
        for q in queries:
            try:
                out.append(self._run([q], k, filter)[0])
            except Exception as exc:
                out.append(exc)
        return out

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        k, filter = self._search_args(kwargs)
        return self._run([query], k, filter)[0]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        k, filter = self._search_args(kwargs)
        return (await asyncio.to_thread(self._run, [query], k, filter))[0]

    # ----------------------------------------------------------------------- batches

    def _callback_args(self, cfg: RunnableConfig, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {
            "inheritable_callbacks": cfg.get("callbacks"),
            "local_callbacks": None,
            "verbose": bool(kwargs.get("verbose", False)),
            "inheritable_tags": cfg.get("tags"),
            "local_tags": self.tags,
            "inheritable_metadata": {**(cfg.get("metadata") or {}), **self._get_ls_params(**kwargs)},
            "local_metadata": self.metadata,
        }

    @staticmethod
    def _finish(outcomes: list[Outcome], return_exceptions: bool) -> list[Any]:
        if not return_exceptions:
            for o in outcomes:
                if isinstance(o, Exception):
                    raise o
        return outcomes

    def batch(
        self,
        inputs: list[str],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """Search many queries with one ``search_batch`` call; one traced retriever run per query."""
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        k, filter = self._search_args(kwargs)
        runs = []
        for query, cfg in zip(inputs, configs):
            manager = CallbackManager.configure(**self._callback_args(cfg, kwargs))
            runs.append(
                manager.on_retriever_start(None, query, name=cfg.get("run_name") or self.get_name(), run_id=cfg.get("run_id"))
            )
        outcomes = self._search_many(list(inputs), k, filter)
        for run, outcome in zip(runs, outcomes):
            if isinstance(outcome, Exception):
                run.on_retriever_error(outcome)
            else:
                run.on_retriever_end(outcome)
        return self._finish(outcomes, return_exceptions)

    async def abatch(
        self,
        inputs: list[str],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """:meth:`batch` without blocking the event loop (the search runs in a worker thread)."""
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        k, filter = self._search_args(kwargs)
        runs = []
        for query, cfg in zip(inputs, configs):
            manager = AsyncCallbackManager.configure(**self._callback_args(cfg, kwargs))
            runs.append(
                await manager.on_retriever_start(
                    None, query, name=cfg.get("run_name") or self.get_name(), run_id=cfg.get("run_id")
                )
            )
        outcomes = await asyncio.to_thread(self._search_many, list(inputs), k, filter)
        for run, outcome in zip(runs, outcomes):
            if isinstance(outcome, Exception):
                await run.on_retriever_error(outcome)
            else:
                await run.on_retriever_end(outcome)
        return self._finish(outcomes, return_exceptions)
