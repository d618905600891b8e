"""The ``prf`` section: pseudo-relevance feedback (:mod:`hybrid_retriever.prf`)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from hybrid_retriever.config.base import _Strict


PRFPlacement = Literal["none", "before", "after", "both"]


class PRFGuardConfig(_Strict):
    """Drift guard: skip or damp feedback where it is likely to hurt.

    ``agreement`` is the overlap of the branches' first-stage top ``agreement_k``
    (mean over branch pairs, 0..1). At or above ``max_agreement`` the first stage is
    settled (the branches already agree) and feedback is skipped: measured on dev data
    it then mostly drifts (see docs/prf.md). Below ``min_agreement`` (unreliable first
    stage) feedback is skipped; from there up to ``full_agreement`` it is damped
    linearly. With ``consensus_depth``, a feedback document is used only if every
    other branch also ranks it within that depth (confirmed feedback); fewer than
    ``min_feedback`` usable documents skips feedback. The agreement rules need two or
    more branches; with one branch only ``consensus_depth``/``min_feedback`` apply.
    """

    enabled: bool = True
    agreement_k: int = Field(default=10, gt=0)
    max_agreement: Optional[float] = Field(
        default=0.5, ge=0, le=1, description="Skip feedback when branch agreement is at or above this (None = never)."
    )
    min_agreement: float = Field(default=0.0, ge=0, le=1)
    full_agreement: float = Field(default=0.0, ge=0, le=1)
    consensus_depth: Optional[int] = Field(default=None, gt=0)
    min_feedback: int = Field(default=1, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> "PRFGuardConfig":
        if self.full_agreement and self.full_agreement < self.min_agreement:
            raise ValueError("guard full_agreement must be >= min_agreement (or 0 for a hard cut at min_agreement)")
        if self.max_agreement is not None and self.max_agreement <= self.min_agreement:
            raise ValueError("guard max_agreement must be > min_agreement, or None")
        return self


class PRFConfig(_Strict):
    """Pseudo-relevance feedback: rewrite each query from its top documents and search again.

    ``interpolate`` places fusion around PRF (Li et al., "To Interpolate or not to
    Interpolate: PRF, Dense and Sparse Retrievers", SIGIR 2022): ``none`` — each PRF
    branch takes feedback from its own list and its second-stage list is the result;
    ``before`` — feedback from the fused first-stage list, the PRF branches'
    second-stage lists are the result; ``after`` — feedback from each branch's own
    list, then every branch is fused again (second stage for PRF branches, first stage
    for the others); ``both`` — feedback from the fused list and fused again.
    ``branches`` names the branches that get PRF (None = every dense branch). Dense
    branches use ``dense_method`` (Rocchio ``alpha``·q + ``beta``·mean(feedback) −
    ``gamma``·mean(negatives), Average, or ``qdrant_feedback``: Qdrant's own
    relevance-feedback query scores the second stage from the top ``fb_docs`` (plus
    ``fb_negatives``) documents and their first-stage scores, with weights
    ``feedback_a``/``feedback_b``/``feedback_c``); sparse branches use ``sparse_method``
    (RM3 with ``rm3_lambda`` the original query's weight, or Rocchio with alpha/beta),
    keeping ``fb_terms`` expansion terms.
    """

    enabled: bool = False
    interpolate: PRFPlacement = "both"
    branches: Optional[list[str]] = Field(default=None, description="Branches that get PRF; None = every dense branch.")
    fb_docs: int = Field(default=3, gt=0, description="Feedback documents (top of the feedback list).")
    depth: Optional[int] = Field(default=None, gt=0, description="Second-stage depth per branch; None = the branch's depth.")
    dense_method: Literal["rocchio", "average", "qdrant_feedback"] = Field(
        default="rocchio",
        description="Dense branches: rewrite the query by `rocchio` or `average`, or let Qdrant's relevance-feedback "
        "query score the second stage (`qdrant_feedback`).",
    )
    alpha: float = Field(default=1.0, ge=0, le=1, description="Rocchio weight of the original query.")
    beta: float = Field(default=0.5, ge=0, le=1, description="Rocchio weight of the feedback centroid.")
    gamma: float = Field(default=0.0, ge=0, le=1, description="Rocchio weight of the negative centroid.")
    fb_negatives: int = Field(
        default=0, ge=0, description="Negative documents (Rocchio gamma, qdrant_feedback), taken after rank negative_from."
    )
    negative_from: int = Field(default=50, ge=0)
    sparse_method: Literal["rm3", "rocchio"] = "rm3"
    rm3_lambda: float = Field(default=0.7, ge=0, le=1, description="RM3: weight of the original query (λ).")
    fb_terms: int = Field(default=30, gt=0, description="Expansion terms kept (sparse branches).")
    idf_terms: bool = Field(default=False, description="Choose expansion terms by P(w|R)·IDF (IDF read from Qdrant).")
    doc_weighting: Literal["score", "uniform"] = Field(
        default="score", description="Feedback documents weighted by first-stage score, or equally (RM3, sparse Rocchio)."
    )
    # Qdrant's naive strategy: a·sim(q, x) + Σ_pairs (s_pos − s_neg)^b · c · (sim(pos, x) − sim(neg, x)).
    # Defaults chosen on dev data (benchmarks/results/prf_feedback_tuning.md; best there with fb_docs 5, fb_negatives 1).
    feedback_a: float = Field(
        default=1.0, ge=0, allow_inf_nan=False, description="qdrant_feedback: weight a of the similarity to the query."
    )
    feedback_b: float = Field(
        default=1.0, ge=0, allow_inf_nan=False,
        description="qdrant_feedback: exponent b on a feedback pair's first-stage score gap (0 = every pair weighs c).",
    )
    feedback_c: float = Field(
        default=0.1, ge=0, allow_inf_nan=False,
        description="qdrant_feedback: weight c of each feedback pair's similarity difference.",
    )
    guard: PRFGuardConfig = Field(default_factory=PRFGuardConfig)

    @model_validator(mode="after")
    def _usable(self) -> "PRFConfig":
        if self.alpha + self.beta <= 0:
            raise ValueError("PRF alpha and beta are both 0: give the query or the feedback some weight")
        if self.gamma > 0 and self.fb_negatives == 0:
            raise ValueError("PRF gamma > 0 needs fb_negatives > 0 (the negative documents to subtract)")
        if self.dense_method == "qdrant_feedback":
            if self.fb_docs + self.fb_negatives < 2:
                raise ValueError(
                    "PRF dense_method qdrant_feedback pairs higher- with lower-scored feedback documents and needs "
                    "at least 2: set fb_docs >= 2 (or fb_negatives >= 1)"
                )
            if self.feedback_a + self.feedback_c <= 0:
                raise ValueError("PRF feedback_a and feedback_c are both 0: every score would be 0; give one of them weight")
        return self
