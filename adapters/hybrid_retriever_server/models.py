"""Request and response bodies of the HTTP API (pydantic; they make the OpenAPI schema).

Length limits that depend on :class:`~hybrid_retriever_server.settings.ServerSettings`
(batch size, query length, k) are checked in the endpoints, so they follow the settings.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from hybrid_retriever.config import CompletedNormalization, FusionMethod, MissingPolicy, Normalization
from hybrid_retriever.types import BranchScore, Document, Hit


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
    k: Optional[int] = Field(default=None, gt=0, description="Results per query; default: the server's runtime.k.")
    filter: Optional[dict[str, Any]] = Field(default=None, description='Metadata filter, e.g. {"year": {"gte": 2000}}.')
    fusion: Optional[FusionOverride] = None
    weights: Optional[dict[str, float]] = Field(
        default=None, description="Branch weights for this request (>= 0, not all 0); a weight of 0 turns a branch's vote off."
    )
    rerank: Optional[bool] = Field(
        default=None,
        description="Re-rank the fused list with the cross-encoder stage where the server has one; "
        "None = the server's default. True on a server without a rerank stage is an error (400).",
    )


class SearchBody(SearchOptions):
    query: str = Field(min_length=1)


class SearchBatchBody(SearchOptions):
    queries: list[str] = Field(min_length=1)


class BranchScoreOut(BaseModel):
    raw: Optional[float]
    normalized: Optional[float]
    rank: Optional[int]
    completed: bool = False

    @classmethod
    def of(cls, s: BranchScore) -> "BranchScoreOut":
        return cls(raw=s.raw, normalized=s.normalized, rank=s.rank, completed=s.completed)


class HitOut(BaseModel):
    id: str
    text: str
    metadata: dict[str, Any]
    score: float
    rank: int
    provenance: dict[str, BranchScoreOut] = Field(description="Each branch's raw and normalised score and own rank.")

    @classmethod
    def of(cls, h: Hit) -> "HitOut":
        return cls(
            id=h.id, text=h.text, metadata=h.metadata, score=h.score, rank=h.rank,
            provenance={n: BranchScoreOut.of(s) for n, s in h.provenance.items()},
        )


class SearchInfo(BaseModel):
    branches: list[str]
    weights: dict[str, float] = Field(description="Normalised branch weights used.")
    fusion: dict[str, Any] = Field(description="Fusion settings used.")
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
