"""Weighted reciprocal rank fusion.

``score(d) = Σ_b w_b / (k + rank_b(d))`` with 1-based ranks, as in Cormack et al.
(2009), whose constant is k = 60. Qdrant's server-side RRF scores ``1 / (k + position)``
with 0-based positions and a default k of 2, so Qdrant with ``k + 1`` equals this
function with ``k`` (checked in ``tests/test_stores.py``). Qdrant's *weighted* RRF is
``1 / (rank / w + k - 1)``, not ``w / (k + rank)``: the two agree only for equal weights.
A branch that did not return a document contributes nothing.
"""

from __future__ import annotations

from typing import Mapping

from hybrid_retriever.fusion.types import BranchList, FusedItem, check_weights, sort_fused


def weighted_rrf(lists: Mapping[str, BranchList], weights: Mapping[str, float], k: float = 60.0) -> list[FusedItem]:
    """Fuse ranked lists by weighted RRF; the result is sorted best first.

    >>> from hybrid_retriever.fusion import BranchList, weighted_rrf
    >>> fused = weighted_rrf({"a": BranchList(["x", "y"], [2.0, 1.0]),
    ...                       "b": BranchList(["y"], [0.9])}, {"a": 1.0, "b": 1.0}, k=60)
    >>> [f.id for f in fused]
    ['y', 'x']
    """
    if k <= 0:
        raise ValueError(f"RRF constant k must be positive, got {k}")
    check_weights(weights)
    ranks = {name: bl.ranks() for name, bl in lists.items()}
    ids = {i for r in ranks.values() for i in r}
    items = []
    for doc in ids:
        contrib: dict[str, float | None] = {}
        total = 0.0
        for name, r in ranks.items():
            if doc in r:
                c = 1.0 / (k + r[doc])
                contrib[name] = c
                total += weights.get(name, 0.0) * c
            else:
                contrib[name] = None
        items.append(FusedItem(id=doc, score=total, normalized=contrib, floored={n: False for n in ranks}))
    return sort_fused(items, ranks)
