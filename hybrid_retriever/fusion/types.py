"""Inputs and outputs of fusion: ranked lists of (id, score) per branch, one fused list."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np


@dataclass
class BranchList:
    """One branch's ranked candidates for one query.

    ``ids``/``scores`` are the branch's own results, best first (rank = position + 1).
    ``extra`` holds exact scores of other candidates that the branch did not return
    (score completion); they have no rank. NaN scores count as missing.
    """

    ids: list[str]
    scores: list[float]
    extra: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.scores):
            raise ValueError(f"ids ({len(self.ids)}) and scores ({len(self.scores)}) differ in length")

    def ranked(self) -> list[tuple[str, float]]:
        """(id, score) pairs with NaN scores dropped, in the branch's order."""
        return [(i, float(s)) for i, s in zip(self.ids, self.scores) if not math.isnan(s)]

    def ranks(self) -> dict[str, int]:
        """1-based rank of each returned id (NaN-scored ids excluded, ranks stay contiguous)."""
        return {i: r for r, (i, _) in enumerate(self.ranked(), start=1)}


@dataclass
class FusedItem:
    """One fused candidate: its fused score and each branch's normalised contribution.

    ``normalized[b]`` is ``None`` when branch ``b`` had no score for it (neither
    returned nor completed) and ``floored[b]`` tells whether a floor stood in.
    """

    id: str
    score: float
    normalized: dict[str, float | None]
    floored: dict[str, bool]
    #: Adaptive fusion: this query's weights and each branch's signals (shared by the query's items).
    weights: dict[str, float] | None = None
    flags: dict[str, list[str]] | None = None
    #: Adaptive fusion: each branch's measured query-performance signals (``clarity``).
    signals: dict[str, dict[str, float]] | None = None


def sort_fused(items: list[FusedItem], ranks: dict[str, dict[str, int]]) -> list[FusedItem]:
    """Best first; ties broken by the best rank in any branch, then by id, so output is deterministic."""

    none = 1 << 30
    best: dict[str, int] = {}
    for r in ranks.values():  # each id's best rank, computed once (not once per sort key)
        for item_id, rank in r.items():
            if rank < best.get(item_id, none):
                best[item_id] = rank
    return sorted(items, key=lambda it: (-it.score, best.get(it.id, none), it.id))


def check_weights(weights: Mapping[str, float]) -> None:
    """Refuse a branch weight that is negative, NaN or infinite, or weights whose sum overflows
    (``1e308 + 1e308`` is infinity, and every score would come out 0)."""
    for name, w in weights.items():
        if not (w >= 0 and math.isfinite(w)):
            raise ValueError(f"weight of branch {name!r} must be a finite, non-negative number, got {w}")
    if not math.isfinite(sum(weights.values())):
        raise ValueError("the branch weights sum to more than the largest float; scale them down (only their ratios matter)")


def top_order(ids: Sequence[str], scores: np.ndarray, best: np.ndarray, limit: int | None = None) -> np.ndarray:
    """Positions of the best ``limit`` (all when None) candidates in :func:`sort_fused`'s order.

    ``scores`` are the fused scores and ``best`` each candidate's best rank in any branch;
    the last tie-break is the id, compared as Python compares strings.
    """
    order = np.lexsort((best, -scores))
    s, b = scores[order], best[order]
    if bool(((s[1:] == s[:-1]) & (b[1:] == b[:-1])).any()):  # rare: equal score and best rank, the id decides
        by_id = np.array(sorted(range(len(ids)), key=ids.__getitem__), dtype=np.int64)
        order = by_id[np.lexsort((best[by_id], -scores[by_id]))]  # stable: equal keys stay in id order
    return order if limit is None else order[:limit]
