"""The ``runtime`` section: threads, batches, k, time limits and what a failing branch does."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from hybrid_retriever.config.base import _Strict


class RuntimeConfig(_Strict):
    """Execution settings that do not change results."""

    k: int = Field(default=10, gt=0, description="Results returned per query.")
    max_workers: int = Field(default=4, gt=0, description="Threads encoding branches concurrently.")
    ingest_batch_size: int = Field(default=256, gt=0, description="Documents encoded and upserted per batch.")
    show_progress: bool = True
    # Resilience (hybrid_retriever/resilience.py): a failing or slow branch is left out of one call.
    branch_timeout_s: Optional[float] = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Seconds a branch may take to encode and search a call's queries; a slower branch is left out of "
        "that call. None = no limit (the fastest path: one batched Qdrant request).",
    )
    deadline_s: Optional[float] = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Seconds one search call may take: branches not done by then are left out, and score completion "
        "is skipped. None = no limit.",
    )
    on_branch_error: Literal["degrade", "raise"] = Field(
        default="degrade",
        description="A branch that fails or times out: `degrade` leaves it out of that call (weights renormalised, "
        "provenance and a warning say why); `raise` fails the call. Every branch failing always raises.",
    )
    threads: Optional[int] = Field(
        default=1,
        gt=0,
        description="Intra-op threads per encoder call (torch and ONNX Runtime, process-wide); 1 keeps query latency "
        "flat on busy cores (benchmarks/results/encoders.md); None = the libraries' own default (one per core).",
    )
