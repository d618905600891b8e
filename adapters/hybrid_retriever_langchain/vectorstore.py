"""``HybridVectorStore``: a LangChain ``VectorStore`` over a hybrid-retriever index.

It works with LangChain's indexing API (``langchain_core.indexing.index``): documents
are upserted by id and deleted by id, so a record manager keeps the index in sync.

Example::

    from langchain_core.documents import Document
    from hybrid_retriever_langchain import HybridVectorStore

    store = HybridVectorStore.from_documents([Document("Qdrant stores vectors.", id="q")], path="./idx")
    store.similarity_search_with_score("vector database", k=1)
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterable, Sequence

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from hybrid_retriever.config import RetrieverConfig
from hybrid_retriever.errors import ConfigError, InvalidInputError
from hybrid_retriever.retriever import HybridRetriever, point_id
from hybrid_retriever.types import Hit
from hybrid_retriever_langchain._core import make_core
from hybrid_retriever_langchain.documents import (
    DEFAULT_PROVENANCE_KEY,
    from_langchain,
    hit_to_document,
    stored_to_document,
)
from hybrid_retriever_langchain.embeddings import DenseBranchEmbeddings
from hybrid_retriever_langchain.retriever import HybridSearchRetriever

log = logging.getLogger(__name__)

_ADD_KWARGS = ("batch_size", "show_progress")
_DELETE_PAGE = 1000


class HybridVectorStore(VectorStore):
    """A hybrid (BM25 + dense, fused) index as a LangChain vector store.

    Documents are encoded by the index's own branches (set in its
    :class:`RetrieverConfig`), not by a LangChain ``Embeddings``. Search results are
    the stored documents (``id``, text, stored metadata), as LangChain's vector-store
    contract asks; ``provenance_key="hybrid"`` adds the per-branch provenance under that
    metadata key, as :class:`HybridSearchRetriever` (and :meth:`as_retriever`) do by
    default. Re-adding an id replaces that document.

    Scores: ``similarity_search_with_score`` returns the fused score (higher is better).
    ``similarity_search_with_relevance_scores`` maps it to [0, 1]; note that with
    min-max (or rank) interpolation it is relative to the query's candidates, so the
    best hit of any query scores near 1 (see :meth:`_relevance`).
    """

    def __init__(self, retriever: HybridRetriever, *, provenance_key: str | None = None) -> None:
        self.retriever = retriever
        #: Metadata key of the provenance in search results; None (the default) leaves it out.
        self.provenance_key = provenance_key

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_config(cls, config: RetrieverConfig | dict[str, Any], **kwargs: Any) -> "HybridVectorStore":
        """A store over the index a configuration describes (created on first add when new)."""
        return cls(make_core(config=config), **kwargs)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, overrides: dict[str, Any] | None = None, **kwargs: Any) -> "HybridVectorStore":
        """A store over the existing Edge index at ``path``, with the settings it was built with."""
        return cls(HybridRetriever.open(os.fspath(path), **(overrides or {})), **kwargs)

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        retriever: HybridRetriever | None = None,
        config: RetrieverConfig | dict[str, Any] | None = None,
        path: str | os.PathLike[str] | None = None,
        provenance_key: str | None = None,
        **kwargs: Any,
    ) -> "HybridVectorStore":
        """Index ``texts`` and return the store.

        The index is one of: ``retriever`` (an open :class:`HybridRetriever`), ``config``
        (a :class:`RetrieverConfig` or dict), or ``path`` (an Edge index folder, reopened
        when it holds an index, else created with the default configuration); with none,
        the default configuration (``./hybrid-index``). ``provenance_key``: see the class.
        ``embedding`` must be ``None``:
        the dense model is set in the configuration's branches. Other keyword arguments
        (``batch_size``, ``show_progress``) go to :meth:`add_texts`.
        """
        if embedding is not None:
            raise InvalidInputError(
                "HybridVectorStore encodes with the branches of its RetrieverConfig, not a LangChain Embeddings; "
                "pass embedding=None and set the dense model in the config, e.g. "
                "{'branches': [{'kind': 'bm25'}, {'kind': 'dense', 'model': 'sentence-transformers/all-MiniLM-L6-v2'}]}"
            )
        store = cls(make_core(retriever=retriever, config=config, path=path), provenance_key=provenance_key)
        try:
            store.add_texts(texts, metadatas, ids=ids, **kwargs)
        except BaseException:
            if retriever is None:  # built here: release the index rather than leave it locked
                store.close()
            raise
        return store

    @classmethod
    def from_documents(
        cls, documents: list[Document], embedding: Embeddings | None = None, **kwargs: Any
    ) -> "HybridVectorStore":
        """Index LangChain documents (their ids kept) and return the store; see :meth:`from_texts`."""
        return super().from_documents(documents, embedding, **kwargs)  # type: ignore[arg-type]

    @classmethod
    async def afrom_documents(
        cls, documents: list[Document], embedding: Embeddings | None = None, **kwargs: Any
    ) -> "HybridVectorStore":
        """:meth:`from_documents` in a worker thread."""
        return await super().afrom_documents(documents, embedding, **kwargs)  # type: ignore[arg-type]

    @classmethod
    async def afrom_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> "HybridVectorStore":
        """:meth:`from_texts` in a worker thread."""
        return await super().afrom_texts(texts, embedding, metadatas, ids=ids, **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        """Close the core retriever (flushes and releases the index)."""
        self.retriever.close()

    @property
    def embeddings(self) -> Embeddings | None:
        """The index's dense branch as a LangChain ``Embeddings`` (``None`` without a dense branch).

        It embeds exactly as the index does, so LangChain tools that need an embedding
        model reuse the loaded one; the store's ranking still uses every branch.
        """
        return DenseBranchEmbeddings.from_retriever(self.retriever)

    # ---------------------------------------------------------------------- writes

    @staticmethod
    def _add_options(kwargs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(kwargs) - set(_ADD_KWARGS))
        if unknown:
            raise TypeError(f"unexpected argument(s) {unknown} to add; HybridVectorStore takes {list(_ADD_KWARGS)}")
        return {k: kwargs[k] for k in _ADD_KWARGS if k in kwargs}

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Index texts (with optional metadata and ids); returns the ids. ``batch_size``/``show_progress`` optional."""
        options = self._add_options(kwargs)
        texts = list(texts)
        if not texts and not metadatas and not ids:
            return []
        return self.retriever.add_texts(texts, metadatas, ids, **options)

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Index LangChain documents; ``ids=`` (if given) take precedence over ``Document.id``.

        Documents without an id get a random one. ``batch_size``/``show_progress`` optional.
        """
        ids = kwargs.pop("ids", None)
        options = self._add_options(kwargs)
        docs = from_langchain(documents, ids)
        if not docs:
            return []
        return self.retriever.add_documents(docs, **options)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete documents by id (unknown ids are ignored); ``ids=None`` deletes every document."""
        if kwargs:
            raise TypeError(f"unexpected argument(s) {sorted(kwargs)} to delete; give ids only")
        if ids is None:
            all_ids = [d.id for d in self.retriever.documents() if d.id is not None]
            for start in range(0, len(all_ids), _DELETE_PAGE):
                self.retriever.delete(all_ids[start : start + _DELETE_PAGE])
            return True
        self.retriever.delete(list(ids))
        return True

    # ----------------------------------------------------------------------- reads

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Stored documents by id (unknown ids skipped), with ``id`` and stored metadata only."""
        return [stored_to_document(d) for d in self.retriever.get(list(ids))]

    def _search(self, query: str, k: int, filter: Any, kwargs: dict[str, Any]) -> list[Hit]:
        if kwargs:
            raise TypeError(f"unexpected search argument(s) {sorted(kwargs)}; HybridVectorStore takes k and filter")
        return self.retriever.search(query, k=k, filter=filter)

    def _document(self, hit: Hit) -> Document:
        return hit_to_document(hit, self.provenance_key, self.retriever.config.fusion.method)

    def similarity_search(self, query: str, k: int = 4, filter: Any = None, **kwargs: Any) -> list[Document]:
        """The ``k`` best documents for ``query`` by fused hybrid score (with provenance where it is on)."""
        return [self._document(h) for h in self._search(query, k, filter, kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Any = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Like :meth:`similarity_search`, with the fused score (higher is better)."""
        return [(self._document(h), h.score) for h in self._search(query, k, filter, kwargs)]

    def _relevance(self, score: float) -> float:
        """A fused score mapped to [0, 1].

        Interpolation with min-max, rank or DBSF normalisation already lies in [0, 1]
        (weights sum to one; completed scores outside the list's range are clipped).
        RRF is divided by its maximum, ``1 / (rrf_k + 1)`` (rank 1 in every branch).
        Z-score interpolation has no bounded scale and is refused.
        """
        fusion = self.retriever.config.fusion
        if fusion.method == "rrf":
            score = score * (fusion.rrf_k + 1)
        elif fusion.normalization == "zscore":
            raise ConfigError(
                "relevance scores in [0, 1] are not defined for z-score fusion; use normalization 'minmax', 'rank' "
                "or 'dbsf', method 'rrf', or similarity_search_with_score for the raw fused score"
            )
        return min(1.0, max(0.0, score))

    def _select_relevance_score_fn(self) -> Any:
        return self._relevance

    def _similarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        return [(doc, self._relevance(score)) for doc, score in self.similarity_search_with_score(query, k, **kwargs)]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Any = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Diverse results: MMR over the ``fetch_k`` best hybrid hits, using the dense branch's vectors.

        Relevance is the dense cosine of query and document (stored vectors, not re-encoded)
        and diversity the cosine between documents; needs a dense branch.
        """
        emb = DenseBranchEmbeddings.from_retriever(self.retriever)
        if emb is None:
            raise ConfigError("max_marginal_relevance_search needs a dense branch; this index has none")
        hits = self._search(query, max(fetch_k, k), filter, kwargs)
        if not hits:
            return []
        name = emb.branch.name
        stored = {p.point_id: p for p in self.retriever.store.retrieve([point_id(h.id) for h in hits], with_vectors=[name])}
        kept = [h for h in hits if point_id(h.id) in stored]
        vectors = [np.asarray(stored[point_id(h.id)].vectors[name], dtype=np.float32).tolist() for h in kept]
        order = maximal_marginal_relevance(np.asarray(emb.embed_query(query)), vectors, lambda_mult=lambda_mult, k=k)
        return [self._document(kept[i]) for i in order]

    # ------------------------------------------------------------------- retriever

    def as_retriever(self, **kwargs: Any) -> BaseRetriever:  # type: ignore[override]
        """A retriever over this store.

        ``search_type="similarity"`` (the default) gives a :class:`HybridSearchRetriever`
        (batched searches, ``k``/``filter`` per call) with ``search_kwargs={"k": 4,
        "filter": ...}``; its documents carry the provenance under the store's
        ``provenance_key``, or ``"hybrid"`` when the store leaves it out
        (``provenance_key=None`` here turns it off). ``"mmr"`` and
        ``"similarity_score_threshold"`` give LangChain's ``VectorStoreRetriever``, whose
        documents come from the store's own searches.
        """
        if kwargs.get("search_type", "similarity") != "similarity":
            return super().as_retriever(**kwargs)
        kwargs.pop("search_type", None)
        search_kwargs = dict(kwargs.pop("search_kwargs", None) or {})
        k = search_kwargs.pop("k", 4)
        filter = search_kwargs.pop("filter", None)
        if search_kwargs:
            raise TypeError(f"unexpected search_kwargs {sorted(search_kwargs)}; similarity search takes k and filter")
        tags = kwargs.pop("tags", None) or self._get_retriever_tags()
        kwargs.setdefault("provenance_key", self.provenance_key or DEFAULT_PROVENANCE_KEY)
        return HybridSearchRetriever(retriever=self.retriever, k=k, filter=filter, tags=tags, **kwargs)
