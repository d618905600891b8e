"""Adaptive rerank depth: how many fused candidates of one query the reranker rescores.

Adaptive fusion already measures, per query and branch, ``support``: the share of the
branch's top 10 that another branch also returned (:func:`hybrid_retriever.fusion.adaptive.support`).
When the branches agree (a high mean support), the fused top is clear and reranking it
rarely changes the answer, so such a query is reranked only to ``adaptive_depth`` (0 =
its fused order as it is); any other query to ``depth``. Search reads the signals from
the hits' provenance, evaluation from the fused items; both call :func:`rerank_depth`.

>>> agreement({"bm25": {"support": 0.9}, "dense": {"support": 0.7}})
0.8
>>> agreement({"bm25": {"clarity": 0.3}}) is None
True
"""

from __future__ import annotations

from typing import Any, Mapping

from hybrid_retriever.config import RerankConfig


def agreement(signals: Mapping[str, Mapping[str, float]] | None) -> float | None:
    """Mean ``support`` over the branches that measured it; None when none did (one branch, or fusion without signals)."""
    values = [float(s["support"]) for s in (signals or {}).values() if s and s.get("support") is not None]
    return sum(values) / len(values) if values else None


def rerank_depth(config: RerankConfig, signals: Mapping[str, Mapping[str, float]] | None) -> int:
    """``config.adaptive_depth`` when adaptive depth is on and the branches agree at least
    ``config.adaptive_agreement``, else ``config.depth``."""
    if config.adaptive_agreement is None:
        return config.depth
    a = agreement(signals)
    return config.adaptive_depth if a is not None and a >= config.adaptive_agreement else config.depth


def hit_signals(hit: Any) -> dict[str, dict[str, float]]:
    """The per-branch signals fusion recorded in a hit's provenance (the same for every hit of a query)."""
    return {name: dict(s.signals) for name, s in (getattr(hit, "provenance", None) or {}).items() if s.signals}
