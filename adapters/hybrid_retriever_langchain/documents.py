"""Conversions between hybrid-retriever's data classes and LangChain ``Document`` objects.

A search hit becomes a LangChain ``Document`` whose ``id`` is the stored document id
and whose ``metadata`` is the stored metadata, plus, where provenance is on, one
provenance entry under its key (``"hybrid"`` by default)::

    {
        "score": 0.83,                 # fused score
        "rank": 1,                     # 1-based rank in the fused list
        "fusion": "interpolation",     # or "rrf"
        "branches": {"bm25": {"raw": 7.1, "normalized": 1.0, "rank": 1, "completed": False},
                     "dense": {"raw": 0.62, "normalized": 0.66, "rank": 2, "completed": False}},
        "rerank": {"raw": 4.2, "normalized": 1.0, "rank": 1,   # with a rerank stage only
                   "fused_score": 0.83, "fused_rank": 2, "model": "..."},
    }

With a rerank stage, ``score``/``rank`` are the final (reranked) ones.

Where it is on: LangChain treats a document's metadata as the user's, and its vector-store
contract is that a search returns what was stored. So :class:`HybridVectorStore` leaves
provenance out of its search results unless asked (``provenance_key="hybrid"``), while
:class:`HybridSearchRetriever` (a retriever enriches what it returns, as rerankers and
score-reporting retrievers do) and ``store.as_retriever()`` put it in unless told not to
(``provenance_key=None``).
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

from langchain_core.documents import Document as LCDocument

from hybrid_retriever.errors import InvalidInputError
from hybrid_retriever.types import Document as CoreDocument
from hybrid_retriever.types import Hit

log = logging.getLogger(__name__)

#: Metadata key under which search results carry their provenance (where it is on).
DEFAULT_PROVENANCE_KEY = "hybrid"


def provenance(hit: Hit, fusion: str | None = None) -> dict[str, Any]:
    """The provenance entry of one hit: fused score and rank, and every branch's view of it."""
    out: dict[str, Any] = {"score": hit.score, "rank": hit.rank}
    if fusion is not None:
        out["fusion"] = fusion
    out["branches"] = {name: s.as_dict() for name, s in hit.provenance.items()}
    prf = getattr(hit, "prf", None)  # pseudo-relevance feedback, when the index uses it
    if prf is not None:
        out["prf"] = prf.as_dict() if hasattr(prf, "as_dict") else prf
    rerank = getattr(hit, "rerank", None)  # the rerank stage, when the index reranks
    if rerank is not None:
        out["rerank"] = rerank.as_dict()
    group = getattr(hit, "group", None)  # grouping (group_by): the group this hit stands for
    if group is not None:
        out["group"] = group.as_dict()
    return out


#: Chunk metadata that describes one chunk, not a passage of several.
_CHUNK_KEYS = ("chunk", "char_start", "char_end")


def passage_to_document(passage: Any, provenance_key: str | None = DEFAULT_PROVENANCE_KEY) -> LCDocument:
    """A passage (adjacent chunks joined, ``hybrid_retriever.grouping.Passage``) as a LangChain ``Document``.

    ``id`` is the first chunk's id; metadata is the first chunk's stored metadata with the
    passage's span (``char_start``/``char_end``) and ``metadata[provenance_key]`` = the best
    hit's provenance plus ``"passage": {"ids", "ranks", "tokens"}``.
    """
    best = min(passage.hits, key=lambda h: h.rank)
    metadata = {k: v for k, v in passage.hits[0].metadata.items() if k not in _CHUNK_KEYS}
    if passage.char_start is not None:
        metadata["char_start"], metadata["char_end"] = passage.char_start, passage.char_end
    if provenance_key is None:  # the stored metadata only (see hit_to_document)
        return LCDocument(page_content=passage.text, metadata=metadata, id=passage.ids[0])
    metadata[provenance_key] = {**provenance(best), "passage": {"ids": list(passage.ids), "ranks": [h.rank for h in passage.hits],
                                                                "tokens": passage.tokens}}
    return LCDocument(page_content=passage.text, metadata=metadata, id=passage.ids[0])


def hit_to_document(hit: Hit, provenance_key: str | None = DEFAULT_PROVENANCE_KEY, fusion: str | None = None) -> LCDocument:
    """A search hit as a LangChain ``Document`` with ``id`` set and provenance in its metadata.

    ``provenance_key`` None leaves the provenance out: the document is exactly the stored
    one. Otherwise a stored metadata field named like ``provenance_key`` is shadowed by
    the provenance in the returned document (the stored document is unchanged).
    """
    metadata = dict(hit.metadata)
    if provenance_key is None:
        return LCDocument(page_content=hit.text, metadata=metadata, id=hit.id)
    if provenance_key in metadata:
        log.debug("stored metadata field %r of %r is shadowed by the search provenance", provenance_key, hit.id)
    metadata[provenance_key] = provenance(hit, fusion)
    return LCDocument(page_content=hit.text, metadata=metadata, id=hit.id)


def stored_to_document(doc: CoreDocument) -> LCDocument:
    """A stored document (as read back by ``HybridRetriever.get``) as a LangChain ``Document``."""
    return LCDocument(page_content=doc.text, metadata=dict(doc.metadata), id=doc.id)


def from_langchain(docs: Iterable[LCDocument], ids: Iterable[str | None] | None = None) -> list[CoreDocument]:
    """LangChain documents as core documents; ``ids`` (when given) take precedence over ``doc.id``."""
    docs = list(docs)
    id_list = list(ids) if ids is not None else [d.id for d in docs]
    if len(id_list) != len(docs):
        raise InvalidInputError(f"got {len(id_list)} ids for {len(docs)} documents; give one id per document")
    return [
        CoreDocument(text=d.page_content, metadata=dict(d.metadata or {}), id=i)
        for d, i in zip(docs, id_list)
    ]
