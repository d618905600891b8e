"""Request and response bodies of the HTTP API (pydantic; they make the OpenAPI schema).

Length limits that depend on :class:`~hybrid_retriever_server.settings.ServerSettings`
(batch size, query length, k) are checked in the endpoints, so they follow the settings.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from hybrid_retriever.config import CompletedNormalization, FusionMethod, MissingPolicy, Normalization
from hybrid_retriever.types import BranchScore, Document, Hit, RerankScore


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored


class DocumentIn(_Body):
    id: str = Field(min_length=1, max_length=512, description="Your id; posting it again replaces the document.")
    text: str = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)


class DocumentOut(BaseModel):
    id: str
    text: str
    metadata: dict[str, Any]

    @classmethod
    def of(cls, d: Document) -> "DocumentOut":
        return cls(id=d.id or "", text=d.text, metadata=d.metadata)


class AddDocuments(_Body):
    documents: list[DocumentIn] = Field(min_length=1)


class AddedDocuments(BaseModel):
    ids: list[str]
    count: int = Field(description="Documents in the index after the add.")


class DeleteDocuments(_Body):
    ids: list[str] = Field(min_length=1)


class DeletedDocuments(BaseModel):
    deleted: int = Field(description="Ids asked for that were stored (and are now gone).")
    count: int = Field(description="Documents in the index after the delete.")


class FusionOverride(_Body):
    """Per-request fusion; fields left out keep the server's configuration."""

    method: Optional[FusionMethod] = None
    normalization: Optional[Normalization] = None
    rrf_k: Optional[float] = Field(default=None, gt=0, le=10_000)
    missing: Optional[MissingPolicy] = None
    completed: Optional[CompletedNormalization] = None


class SearchOptions(_Body):
    k: Optional[int] = Field(default=None, gt=0, description="Results per query; default: the server's runtime.k.", examples=[5])
    filter: Optional[dict[str, Any]] = Field(
        default=None, description='Metadata filter, e.g. {"year": {"gte": 2000}}.', examples=[{"year": {"gte": 2000}}]
    )
    fusion: Optional[FusionOverride] = Field(default=None, examples=[{"method": "rrf"}, {"method": "interpolation", "normalization": "dbsf"}])
    weights: Optional[dict[str, float]] = Field(
        default=None,
        description="Branch weights by branch name (see GET /config) for this request (>= 0, not all 0); a weight of 0 "
        "turns a branch's vote off.",
        examples=[{"bm25": 0.3, "dense": 0.7}],
    )
    rerank: Optional[bool] = Field(
        default=None,
        description="Re-rank the fused list with the server's cross-encoder stage. None = the server's default "
        "(rerank when its configuration has a rerank stage); false = the fused order; true on a server "
        "without a rerank stage is an error (400).",
    )
    group_by: Optional[str] = Field(
        default=None, min_length=1, max_length=256,
        description="One hit per value of this metadata field (e.g. 'source': one per file), its best chunk first, with "
        "how many of the group's chunks matched and their ranks in 'group'.",
    )


#: The request bodies /docs ("Try it out") starts from: valid on any server (no branch names, no
#: metadata fields), so the first click answers; the fields' own examples show weights, filters and fusion.
SEARCH_EXAMPLE: dict[str, Any] = {"query": "which amphibian can regenerate a missing leg", "k": 5}
SEARCH_BATCH_EXAMPLE: dict[str, Any] = {"queries": ["who was Peruggia", "first powered flight"], "k": 3}


class SearchBody(SearchOptions):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [SEARCH_EXAMPLE]})

    query: str = Field(min_length=1, examples=[SEARCH_EXAMPLE["query"]])


class SearchBatchBody(SearchOptions):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [SEARCH_BATCH_EXAMPLE]})

    queries: list[str] = Field(min_length=1, examples=[SEARCH_BATCH_EXAMPLE["queries"]])


class BranchScoreOut(BaseModel):
    raw: Optional[float]
    normalized: Optional[float]
    rank: Optional[int]
    completed: bool = False
    weight: Optional[float] = Field(default=None, description="The weight fusion gave this branch for this query (adaptive fusion).")
    flags: list[str] = Field(default_factory=list, description="What fusion noticed, e.g. no_query_tokens, out_of_language.")
    signals: dict[str, float] = Field(default_factory=dict, description="Per-query signals adaptive fusion measured on this branch's list.")
    error: Optional[str] = Field(default=None, description="Why the branch was left out of this call (failed or timed out).")

    @classmethod
    def of(cls, s: BranchScore) -> "BranchScoreOut":
        return cls(raw=s.raw, normalized=s.normalized, rank=s.rank, completed=s.completed, weight=s.weight,
                   flags=list(s.flags), signals=dict(s.signals), error=s.error)


class RerankScoreOut(BaseModel):
    """The rerank stage's view of a hit; ``raw`` is None below the rerank depth or when the reranker failed."""

    raw: Optional[float] = Field(description="The reranker's own score (a cross-encoder logit).")
    normalized: Optional[float] = Field(description="That score min-max normalised over the query's reranked candidates.")
    rank: Optional[int] = Field(description="1-based rank by the reranker alone.")
    fused_score: float = Field(description="The hit's fused score before reranking.")
    fused_rank: int = Field(description="The hit's fused rank before reranking.")
    model: Optional[str] = None
    error: Optional[str] = Field(default=None, description="Why the hit kept its fused place (reranker failed or timed out).")

    @classmethod
    def of(cls, s: RerankScore) -> "RerankScoreOut":
        return cls(raw=s.raw, normalized=s.normalized, rank=s.rank, fused_score=s.fused_score, fused_rank=s.fused_rank,
                   model=s.model, error=s.error)


class GroupOut(BaseModel):
    """A grouped hit's group: it is the group's best chunk."""

    field: str
    key: str = Field(description="The group's value of the field, e.g. the file.")
    matched: int = Field(description="How many of the group's entries were among the fused hits searched (depth).")
    ranks: list[int] = Field(description="Their ranks in the ungrouped fused list, best first.")
    ids: list[str]
    depth: int = Field(description="How many fused hits were grouped.")


class HitOut(BaseModel):
    id: str
    text: str
    metadata: dict[str, Any]
    score: float = Field(description="The final score: fused, or after the rerank stage the reranker's (see rerank.order).")
    rank: int
    provenance: dict[str, BranchScoreOut] = Field(description="Each branch's raw and normalised score and own rank.")
    rerank: Optional[RerankScoreOut] = Field(default=None, description="The rerank stage's score and rank; None when not reranked.")
    group: Optional[GroupOut] = Field(default=None, description="With group_by: the group this hit stands for.")

    @classmethod
    def of(cls, h: Hit) -> "HitOut":
        return cls(
            id=h.id, text=h.text, metadata=h.metadata, score=h.score, rank=h.rank,
            provenance={n: BranchScoreOut.of(s) for n, s in h.provenance.items()},
            rerank=RerankScoreOut.of(h.rerank) if h.rerank is not None else None,
            group=GroupOut(**h.group.as_dict()) if h.group is not None else None,
        )


class SearchInfo(BaseModel):
    branches: list[str]
    weights: dict[str, float] = Field(description="Normalised branch weights used.")
    fusion: dict[str, Any] = Field(description="Fusion settings used.")
    reranked: bool = Field(default=False, description="Whether the rerank stage reordered the fused hits.")
    took_ms: float


class SearchResult(SearchInfo):
    hits: list[HitOut]


class SearchBatchResult(SearchInfo):
    results: list[list[HitOut]]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    ready: bool
    documents: Optional[int] = None
    store: str = Field(description="The kind of store: edge or qdrant.")
    branches: list[str]
    detail: Optional[str] = None


class ErrorBody(BaseModel):
    error: str = Field(description="A short code: invalid_input, unauthorized, not_found, too_large, ...")
    detail: Any = Field(description="What is wrong and how to fix it.")
