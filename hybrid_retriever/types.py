"""Plain data classes that flow through the library: documents in, hits out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np


@dataclass(frozen=True)
class SparseVector:
    """A sparse vector as Qdrant stores it: parallel token ids and weights."""

    indices: list[int]
    values: list[float]
    #: The language a BM25 query was analysed in, when a per-document-language index chose it
    #: for this query (``bm25.language_per_document``); not part of the vector, not stored.
    language: str | None = field(default=None, compare=False, repr=False)


#: What a branch produces for one text: a dense vector, a sparse vector or a
#: matrix of token vectors (multi-vector, one row per token).
Vector = Union[np.ndarray, SparseVector]


@dataclass
class Document:
    """A document to index or a stored document read back.

    ``id`` is the caller's own identifier (any string). The Qdrant point id is
    derived from it (uuid5), so re-adding a document with the same id replaces it.
    """

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass
class ScoredId:
    """One search result of one branch: Qdrant point id, raw score, 1-based rank."""

    point_id: str
    score: float
    rank: int


@dataclass
class BranchResult:
    """What one branch returned for one query, before fusion.

    ``hits`` is the branch's own ranked list (best first, up to its depth);
    ``completed`` holds exact scores fetched afterwards for candidates that other
    branches found and this one did not return (point id -> raw score).
    """

    branch: str
    hits: list[ScoredId]
    completed: dict[str, float] = field(default_factory=dict)
    encode_ms: float = 0.0
    search_ms: float = 0.0
    error: str | None = None
    #: The query vector this branch searched with (kept so later stages, e.g. PRF, reuse it).
    query_vector: Any = None
    #: Query-side measures the branch took while encoding (``fragmentation`` under a dense model's tokenizer).
    signals: dict[str, float] = field(default_factory=dict)


@dataclass
class BranchScore:
    """Provenance of one hit in one branch.

    ``raw`` is the branch's own similarity (BM25 score, cosine, MaxSim), ``normalized``
    the value fusion used, ``rank`` the 1-based rank in the branch's list (``None``
    when the branch did not return the document) and ``completed`` whether ``raw``
    was fetched by score completion rather than returned by the branch's search.
    """

    raw: float | None
    normalized: float | None
    rank: int | None
    completed: bool = False
    #: With pseudo-relevance feedback: this branch's view of the hit in the first stage
    #: (the fields above then describe the final, second stage). ``None`` without PRF.
    first_stage: "BranchScore | None" = None
    #: Why this branch was left out of the call (failed or timed out; see runtime.on_branch_error); None = it answered.
    error: str | None = None
    #: The weight fusion gave this branch for this query (adaptive fusion; None = the configured weight).
    weight: float | None = None
    #: What fusion noticed about this branch for this query: ``no_query_tokens`` (BM25 produced no
    #: tokens, so it could not rank), ``out_of_language`` (the model does not cover the corpus language).
    flags: list[str] = field(default_factory=list)
    #: Query-performance signals adaptive fusion measured on this branch's list for this query
    #: (``clarity``: normalised query clarity of its top scores; see hybrid_retriever.fusion.adaptive).
    signals: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "raw": self.raw,
            "normalized": self.normalized,
            "rank": self.rank,
            "completed": self.completed,
        }
        if self.error is not None:
            out["error"] = self.error
        if self.weight is not None:
            out["weight"] = self.weight
        if self.flags:
            out["flags"] = list(self.flags)
        if self.signals:
            out["signals"] = dict(self.signals)
        if self.first_stage is not None:
            out["first_stage"] = self.first_stage.as_dict()
        return out


@dataclass
class RerankScore:
    """Provenance of one hit in the rerank stage (see :mod:`hybrid_retriever.rerank`).

    ``raw`` is the reranker's own score (a cross-encoder logit), ``normalized`` that
    score normalised over the query's reranked candidates, ``rank`` the 1-based rank by
    the reranker alone; ``fused_score``/``fused_rank`` are the hit's place before
    reranking. ``raw`` is ``None`` for a hit below the rerank depth (not rescored) and
    when the reranker failed or timed out; ``error`` then says why, and the hits keep
    the fused order.
    """

    raw: float | None
    normalized: float | None
    rank: int | None
    fused_score: float
    fused_rank: int
    model: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "raw": self.raw,
            "normalized": self.normalized,
            "rank": self.rank,
            "fused_score": self.fused_score,
            "fused_rank": self.fused_rank,
            "model": self.model,
        }
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass
class HitGroup:
    """A grouped hit's group (see :mod:`hybrid_retriever.grouping`): the hit is the group's best chunk.

    ``key``: the group's value of ``field`` (e.g. the source file); ``matched``: how many of
    its entries were among the ``depth`` fused hits searched; ``ranks`` and ``ids``: theirs,
    best first (ranks in the ungrouped list).
    """

    field: str
    key: str
    matched: int
    ranks: list[int]
    ids: list[str]
    depth: int

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "key": self.key, "matched": self.matched, "ranks": list(self.ranks),
                "ids": list(self.ids), "depth": self.depth}


@dataclass
class Hit:
    """One fused result: the stored document, its fused score and every branch's view of it."""

    id: str
    text: str
    metadata: dict[str, Any]
    score: float
    rank: int
    provenance: dict[str, BranchScore]
    #: Pseudo-relevance feedback applied to this query (see ``hybrid_retriever.prf``); ``None`` without PRF.
    prf: Any = None
    #: The rerank stage's view of this hit (``score``/``rank`` are then the final ones); ``None`` without reranking.
    rerank: RerankScore | None = None
    #: With grouping (``search(..., group_by=...)``): the group this hit represents; ``None`` otherwise.
    group: HitGroup | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "text": self.text,
            "metadata": self.metadata,
            "score": self.score,
            "rank": self.rank,
            "provenance": {name: s.as_dict() for name, s in self.provenance.items()},
        }
        if self.prf is not None:
            out["prf"] = self.prf.as_dict()
        if self.rerank is not None:
            out["rerank"] = self.rerank.as_dict()
        if self.group is not None:
            out["group"] = self.group.as_dict()
        return out
