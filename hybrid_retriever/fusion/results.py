"""One query's branch results fused as the configuration says: the dispatch over fusion methods.

Used by :meth:`HybridRetriever.fuse <hybrid_retriever.retriever.HybridRetriever.fuse>` and by
benchmarks that fuse cached branch results offline.
"""

from __future__ import annotations

from typing import Any, Mapping

from hybrid_retriever.config import FusionConfig
from hybrid_retriever.fusion.adaptive import BranchSignals, adaptive
from hybrid_retriever.fusion.interpolate import interpolate
from hybrid_retriever.fusion.rrf import weighted_rrf
from hybrid_retriever.fusion.types import BranchList, FusedItem
from hybrid_retriever.types import BranchResult


#: The fusion settings adaptive fusion reads besides normalisation and completion (FusionConfig field names,
#: also :func:`adaptive_weights`'s keywords): evaluation's grid passes the same ones.
ADAPTIVE_OPTIONS = ("foreign_weight", "clarity_weight", "sparse_clarity_offset", "support_weight", "fragmentation_weight")


def adaptive_options(fusion: Any) -> dict[str, float]:
    """Adaptive fusion's settings (:data:`ADAPTIVE_OPTIONS`) read from ``fusion`` (a FusionConfig or alike)."""
    return {k: float(getattr(fusion, k)) for k in ADAPTIVE_OPTIONS}


def served_weights(weights: Mapping[str, float], per_branch: Mapping[str, BranchResult] | Mapping[str, Any]) -> dict[str, float]:
    """The weights a search fuses with: a branch left out of the call (failed) drops out, the rest renormalised.

    ``per_branch``: each branch's result (or anything with its ``error``, None = it answered)."""
    failed = {n for n, r in per_branch.items() if r.error is not None}
    if not failed:
        return dict(weights)
    total = sum(w for n, w in weights.items() if n not in failed)
    return {n: w / total for n, w in weights.items() if n not in failed} if total > 0 else dict(weights)


def fuse_results(
    per_branch: Mapping[str, BranchResult],
    fusion: FusionConfig,
    weights: Mapping[str, float],
    signals: Mapping[str, BranchSignals] | None = None,
    limit: int | None = None,
) -> list[FusedItem]:
    """Fuse one query's branch results as ``fusion`` says (best first); failed branches are left out.

    ``signals`` feed adaptive fusion (:func:`branch_signals`); the other methods ignore them.
    ``limit`` keeps the best ``limit`` items only (a search builds items just for its hits).
    """
    lists = {
        n: BranchList([h.point_id for h in r.hits], [h.score for h in r.hits], extra=r.completed if fusion.missing == "exact" else {})
        for n, r in per_branch.items()
        if r.error is None
    }
    return fuse_lists(lists, fusion, weights, signals, limit)


def fuse_lists(
    lists: Mapping[str, BranchList],
    fusion: FusionConfig,
    weights: Mapping[str, float],
    signals: Mapping[str, BranchSignals] | None = None,
    limit: int | None = None,
) -> list[FusedItem]:
    """:func:`fuse_results` on the answering branches' lists (``extra``: completed scores, when ``fusion.missing`` is exact)."""
    if fusion.method == "rrf":
        return weighted_rrf(lists, weights, k=fusion.rrf_k)[:limit]
    floor = fusion.floor_value if fusion.missing == "floor" else None
    if fusion.method == "adaptive":
        fused, aw = adaptive(
            lists, weights, signals or {}, normalization=fusion.normalization, completed=fusion.completed,
            floor_value=floor, limit=limit, **adaptive_options(fusion),
        )
        for it in fused:
            it.weights, it.flags, it.signals = aw.weights, aw.flags, aw.signals
        return fused
    return interpolate(
        lists, weights, normalization=fusion.normalization, floor_value=floor, completed=fusion.completed, limit=limit
    )
