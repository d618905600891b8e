"""The final order of reranked candidates: a pure function, shared by search and tuning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from hybrid_retriever.fusion import fit_normalizer


@dataclass
class RerankedOrder:
    """One query's candidates after reranking, as positions into the fused list.

    ``order`` lists candidate positions best first; ``final`` is the score each
    candidate is sorted by, ``normalized`` its min-max normalised reranker score and
    ``rank`` its 1-based rank by the reranker score alone (all indexed by position).
    """

    order: list[int]
    final: list[float]
    normalized: list[float]
    rank: list[int]


def _minmax(values: Sequence[float]) -> list[float]:
    norm = fit_normalizer("minmax", list(values))
    return [norm(v) for v in values] if norm is not None else []


def rerank_order(fused: Sequence[float], scores: Sequence[float], order: str = "reranker", weight: float = 1.0) -> RerankedOrder:
    """Order candidates (given best-first by fused score) by reranker score or an interpolation.

    ``order="reranker"``: sort by the raw reranker score. ``order="interpolation"``:
    sort by ``weight · minmax(scores) + (1 − weight) · minmax(fused)``, both over these
    candidates. Equal final scores keep the fused order.
    """
    if len(fused) != len(scores):
        raise ValueError(f"{len(fused)} fused scores but {len(scores)} reranker scores")
    norm = _minmax(scores)
    if order == "reranker":
        final = [float(s) for s in scores]
    elif order == "interpolation":
        fnorm = _minmax(fused)
        final = [weight * r + (1.0 - weight) * f for r, f in zip(norm, fnorm)]
    else:
        raise ValueError(f"unknown rerank order {order!r}; use 'reranker' or 'interpolation'")
    by_reranker = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    rank = [0] * len(scores)
    for r, i in enumerate(by_reranker, start=1):
        rank[i] = r
    positions = sorted(range(len(final)), key=lambda i: (-final[i], i))
    return RerankedOrder(order=positions, final=final, normalized=norm, rank=rank)
