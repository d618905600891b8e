"""The ``fusion`` section: how branch lists become one ranking."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from hybrid_retriever.config.base import _Strict


FusionMethod = Literal["interpolation", "rrf", "adaptive"]
Normalization = Literal["minmax", "zscore", "dbsf", "rank"]
MissingPolicy = Literal["exact", "floor"]
CompletedNormalization = Literal["clamp", "union", "raw"]


class FusionConfig(_Strict):
    """How branch lists become one ranking.

    ``interpolation`` sums ``weight_b * norm_b(score)``; ``rrf`` sums
    ``weight_b / (rrf_k + rank_b)`` with 1-based ranks (the paper's k is 60; Qdrant's
    server-side default is 2 with 0-based ranks). ``missing`` decides what a candidate
    gets in a branch that did not return it: its ``exact`` score fetched from Qdrant, or
    a ``floor`` (``floor_value``, or the branch's lowest normalised score when None).
    ``adaptive`` (the default) is interpolation with per-query weights: a branch that is
    blind for the query (BM25 with no query tokens: weight 0; a model whose languages
    exclude the corpus language: weight × ``foreign_weight`` × exp(−``fragmentation_weight`` ×
    the query's fragmentation under that model's tokenizer)) counts less, and the weights
    used are in each hit's provenance (docs/languages.md). Two query-performance signals are
    measured and reported too, each branch's support by the other branch and its query
    clarity; ``support_weight`` and ``clarity_weight`` let them move the weights (0 by
    default: chosen on dev data they did not carry over to test data).
    """

    method: FusionMethod = "adaptive"
    normalization: Normalization = "dbsf"
    rrf_k: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    missing: MissingPolicy = "exact"
    completed: CompletedNormalization = Field(
        default="union",
        description="missing exact: how a completed score is normalised — 'union' (normaliser fitted on returned and "
        "completed scores), 'clamp' (the branch's normaliser, never below its lowest returned score) or 'raw' "
        "(unbounded below; lets a blind branch bury the other's finds). See docs/languages.md.",
    )
    floor_value: Optional[float] = Field(default=None, allow_inf_nan=False)
    foreign_weight: float = Field(
        default=0.7,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="adaptive: weight multiplier of a branch whose model's languages exclude the content language "
        "(the corpus language, or in a mixed-language corpus the query's own).",
    )
    clarity_weight: float = Field(
        default=0.0,
        ge=0,
        le=50,
        allow_inf_nan=False,
        description="adaptive: how strongly a branch's query clarity (NQC of its top 10 scores, in [0, 1]) moves its "
        "weight: factor exp(clarity_weight * (clarity - offset)); 0 (the default) turns the signal off.",
    )
    sparse_clarity_offset: float = Field(
        default=0.0,
        ge=-1,
        le=1,
        allow_inf_nan=False,
        description="adaptive: clarity subtracted from a sparse (BM25) branch's before weighting (BM25 lists are more "
        "spread than cosine lists).",
    )
    support_weight: float = Field(
        default=0.0,
        ge=0,
        le=50,
        allow_inf_nan=False,
        description="adaptive: how strongly a branch's support (the share of its top 10 that another branch also "
        "returned, in [0, 1]) moves its weight: factor exp(support_weight * support); 0 (the default) turns the signal off.",
    )
    fragmentation_weight: float = Field(
        default=3.0,
        ge=0,
        le=50,
        allow_inf_nan=False,
        description="adaptive: how strongly a query's fragmentation under an out-of-language branch's tokenizer (the share of "
        "word pieces that continue a word or are unknown, in [0, 1]) lowers that branch's weight further: factor "
        "foreign_weight * exp(-fragmentation_weight * fragmentation); 0 turns the signal off (then foreign_weight alone "
        "applies, 0.3 being the setting before fragmentation was measured).",
    )
    server_side: bool = Field(
        default=False,
        description="Fuse inside Qdrant in one request (rrf, or dbsf interpolation); no per-branch provenance scores.",
    )

    @property
    def completes_scores(self) -> bool:
        """Whether fusion uses exact scores of candidates a branch did not return (score completion)."""
        return self.method != "rrf" and self.missing == "exact"

    @model_validator(mode="after")
    def _server_side_supported(self) -> "FusionConfig":
        if self.server_side and not (
            self.method == "rrf" or (self.method == "interpolation" and self.normalization == "dbsf")
        ):
            raise ValueError(
                "server_side fusion supports method 'rrf' or method 'interpolation' with normalization 'dbsf'"
            )
        return self
