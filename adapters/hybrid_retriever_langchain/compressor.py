"""``HybridRerankCompressor``: the core rerank stage as a LangChain document compressor.

Install ``pip install "hybrid-retriever[langchain,rerank]"``. It composes with any retriever
through ``ContextualCompressionRetriever``, which is in the separate ``langchain-classic``
package (``pip install langchain-classic``; no extra of this project installs it), or is
called directly: ``compressor.compress_documents(docs, query)``::

    from langchain_classic.retrievers import ContextualCompressionRetriever
    from hybrid_retriever_langchain import HybridRerankCompressor

    compressor = HybridRerankCompressor.from_model("cross-encoder/ms-marco-MiniLM-L-6-v2", top_n=4)
    retriever = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=any_retriever)
    retriever.invoke("vector database")[0].metadata["hybrid"]["rerank"]["raw"]

Unlike LangChain's ``CrossEncoderReranker`` the scores are kept: each returned document
gets ``metadata[provenance_key]["rerank"]`` (raw and normalised reranker score, reranker
rank, and the fused score/rank it came in with), and ``score``/``rank`` become the final
ones. Documents from a ``HybridSearchRetriever`` bring their fused score; for others the
input position stands in (score ``(n − i) / n`` for the i-th of n, 0-based).
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional, Sequence

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field

from hybrid_retriever.config import RerankConfig
from hybrid_retriever.rerank import Reranker
from hybrid_retriever.types import Hit
from hybrid_retriever_langchain.documents import DEFAULT_PROVENANCE_KEY


class HybridRerankCompressor(BaseDocumentCompressor):
    """Reranks any retriever's documents with a cross-encoder (or any ``rerankers`` ranker), keeping the scores.

    ``reranker`` is the core :class:`~hybrid_retriever.rerank.Reranker` (its model loads
    once, lazily, and is shared by concurrent calls); build one with :meth:`from_model`,
    from a ``RerankConfig``, or around a ready ``rerankers`` ranker object. ``top_n``
    documents are returned. The async path runs the model in a worker thread.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    reranker: Reranker
    top_n: int = Field(default=3, gt=0)
    provenance_key: str = DEFAULT_PROVENANCE_KEY

    @classmethod
    def from_model(cls, model: Optional[str] = None, *, ranker: Any = None, top_n: int = 3, **settings: Any) -> "HybridRerankCompressor":
        """A compressor for a cross-encoder (Hugging Face id or folder) or a ready ``rerankers`` ranker object.

        ``settings`` are :class:`~hybrid_retriever.config.RerankConfig` fields (batch_size,
        max_length, device, dtype, timeout, ...); ``depth`` defaults to every document given.
        """
        if model is None and ranker is None:
            from hybrid_retriever.errors import InvalidInputError

            raise InvalidInputError("give a cross-encoder (model=Hugging Face id or folder) or a rerankers ranker object (ranker=...)")
        config = RerankConfig(enabled=model is not None, model=model, **{"depth": 10_000, **settings})
        return cls(reranker=Reranker(config, ranker), top_n=top_n)

    def _hits(self, documents: Sequence[Document]) -> list[Hit]:
        n = len(documents)
        hits = []
        for i, d in enumerate(documents):
            prov = d.metadata.get(self.provenance_key)
            fused = prov.get("score") if isinstance(prov, dict) else None
            score = float(fused) if isinstance(fused, (int, float)) else (n - i) / n
            hits.append(Hit(id=str(i), text=d.page_content, metadata={}, score=score, rank=i + 1, provenance={}))
        return hits

    def _documents(self, documents: Sequence[Document], hits: list[Hit]) -> list[Document]:
        out = []
        for h in hits:
            src = documents[int(h.id)]
            meta = dict(src.metadata)
            prov = dict(meta.get(self.provenance_key) or {}) if isinstance(meta.get(self.provenance_key), dict) else {}
            prov.update({"score": h.score, "rank": h.rank, "rerank": h.rerank.as_dict() if h.rerank else None})
            meta[self.provenance_key] = prov
            out.append(Document(page_content=src.page_content, metadata=meta, id=src.id))
        return out

    def compress_documents(self, documents: Sequence[Document], query: str, callbacks: Callbacks = None) -> Sequence[Document]:
        """The ``top_n`` documents by the reranker (or the input order, flagged, if it fails)."""
        if not documents:
            return []
        hits = self._hits(documents)
        return self._documents(documents, self.reranker.rerank([query], [hits], self.top_n)[0])

    async def acompress_documents(self, documents: Sequence[Document], query: str,
                                  callbacks: Callbacks = None) -> Sequence[Document]:
        """:meth:`compress_documents` in a worker thread, so the event loop is never blocked."""
        return await asyncio.to_thread(self.compress_documents, documents, query, callbacks)
