"""The ``rerank`` section: the cross-encoder stage (:mod:`hybrid_retriever.rerank`)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from hybrid_retriever.config.base import GRANTS_CODE, LOADS_MODEL, LOADS_NOTHING, _Strict


RerankOrder = Literal["reranker", "interpolation"]


class RerankConfig(_Strict):
    """Rescore the fused top ``depth`` with a cross-encoder (through the ``rerankers`` library).

    ``model`` is a Hugging Face id or a local folder (e.g. one written by
    ``hybrid-retriever train-reranker``); ``model_type`` None loads it as a cross-encoder
    (a sequence-classification model scoring query-document pairs), any other value
    (``flashrank``, ``t5``, ``colbert``, ...) goes to ``rerankers.Reranker``. A ready
    ``rerankers`` ranker object can be passed to ``HybridRetriever(reranker=...)`` instead.
    ``order``: ``reranker`` sorts by the reranker's score; ``interpolation`` by
    ``weight · norm(reranker) + (1 − weight) · norm(fused)``, both min-max normalised over
    the query's reranked candidates. If the reranker fails or runs past ``timeout`` the
    hits keep the fused order and their provenance says why (``on_error: raise`` raises instead).
    ``backend`` runs a cross-encoder on torch or on ONNX Runtime (exported once and cached,
    as the dense branch's). With ``adaptive_agreement`` a query whose branches agree (the
    mean share of each branch's top 10 another branch returned) is reranked only to
    ``adaptive_depth``: its fused top is already clear.
    """

    enabled: bool = False
    model: Optional[str] = Field(default=None, description="Cross-encoder: Hugging Face id or local folder.", json_schema_extra=LOADS_MODEL)
    model_type: Optional[str] = Field(
        default=None,
        description="None = cross-encoder; else a rerankers model type (flashrank, t5, colbert, ...).",
        json_schema_extra=LOADS_NOTHING,  # a backend's name; the model it loads is `model`
    )
    depth: int = Field(default=50, gt=0, description="Fused candidates rescored per query (separate from k).")
    batch_size: int = Field(default=32, gt=0, description="Query-document pairs per forward pass.")
    max_length: int = Field(default=512, gt=8, description="Tokens per query-document pair (longer pairs are truncated).")
    device: str = Field(default="auto", description="auto = CUDA when present, else CPU; or cpu, cuda, cuda:1, mps.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        default="auto", description="auto = bfloat16 (or float16) on CUDA, float32 on CPU."
    )
    order: RerankOrder = Field(
        default="reranker", description="Final order: the reranker score, or its interpolation with the fused score."
    )
    weight: float = Field(
        default=1.0, ge=0, le=1, allow_inf_nan=False,
        description="order interpolation: weight of the normalised reranker score (1 = reranker only).",
    )
    timeout: Optional[float] = Field(default=None, gt=0, description="Seconds the reranker may take per call; None = no limit.")
    on_error: Literal["fused", "raise"] = Field(default="fused", description="Reranker failure: keep the fused order, or raise.")
    trust_remote_code: bool = Field(
        default=False, description="Let the model run its own Python code (only the caller can grant it).", json_schema_extra=GRANTS_CODE
    )
    backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        default="torch", description="Cross-encoder runtime: torch, or ONNX Runtime on CPU: onnx (torch's scores), onnx-int8 (int8 weights: faster, scores move)."
    )
    adaptive_agreement: Optional[float] = Field(
        default=None, ge=0, le=1, allow_inf_nan=False,
        description="Queries whose branches agree at least this much are reranked only to adaptive_depth; None = always depth.",
    )
    adaptive_depth: int = Field(default=0, ge=0, description="Candidates reranked for a query adaptive_agreement finds clear (0 = fused order).")

    @model_validator(mode="after")
    def _model_given(self) -> "RerankConfig":
        if self.enabled and not self.model:
            raise ValueError("rerank.enabled needs rerank.model (a cross-encoder's Hugging Face id or folder)")
        if self.adaptive_depth > self.depth:
            raise ValueError(f"rerank.adaptive_depth ({self.adaptive_depth}) is deeper than rerank.depth ({self.depth}); "
                             "it is the smaller depth for clear queries")
        return self
