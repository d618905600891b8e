"""Normalised score interpolation: ``Σ_b w_b · norm_b(score_b(d))``.

Each branch's scores are normalised with statistics of the list it returned. A
candidate that a branch did not return is scored with its exact score when score
completion supplied one (``BranchList.extra``), else with a floor: ``floor_value``
when given, or the lowest normalised score that branch returned.

How a completed score is normalised (``completed``):

- ``union`` (default): the normaliser is fitted on the returned and completed scores
  together, so every candidate lands on one bounded scale and keeps its exact order.
- ``clamp``: with the returned list's normaliser, but never below the lowest normalised
  score the branch returned (a completed score is at most the list's minimum, else
  the branch would have returned it, so it lands on the floor).
- ``raw``: with the returned list's normaliser, unbounded below. A completed cosine far
  under a narrow list's minimum normalises to e.g. -2, so a branch that is blind for a
  query (an English model on Chinese text, a code the model cannot read) buries the
  other branch's finds; kept for comparison (benchmarks/results/multilingual.md).
"""

from __future__ import annotations

import math
from typing import Mapping

from hybrid_retriever.fusion.normalize import fit_normalizer, rank_score
from hybrid_retriever.fusion.types import BranchList, FusedItem, check_weights, sort_fused

#: How completed scores are normalised (see the module docstring).
COMPLETED = ("clamp", "union", "raw")


def interpolate(
    lists: Mapping[str, BranchList],
    weights: Mapping[str, float],
    normalization: str = "minmax",
    floor_value: float | None = None,
    completed: str = "union",
) -> list[FusedItem]:
    """Fuse by weighted sum of normalised scores; the result is sorted best first.

    >>> from hybrid_retriever.fusion import BranchList, interpolate
    >>> fused = interpolate({"a": BranchList(["x", "y"], [2.0, 1.0]),
    ...                      "b": BranchList(["y", "x"], [0.9, 0.1])}, {"a": 0.5, "b": 0.5})
    >>> [(f.id, f.score) for f in fused]
    [('x', 0.5), ('y', 0.5)]
    """
    check_weights(weights)
    if completed not in COMPLETED:
        raise ValueError(f"unknown completed-score normalisation {completed!r}; choose one of {list(COMPLETED)}")
    ranks = {name: bl.ranks() for name, bl in lists.items()}
    per_branch: dict[str, dict[str, float]] = {}
    floors: dict[str, float | None] = {}
    for name, bl in lists.items():
        ranked = bl.ranked()
        if normalization == "rank":
            n = len(ranked)
            normed = {i: rank_score(r, n) for i, r in ranks[name].items()}
            # Completed scores have no rank: place them just below the list's last.
            normed.update({i: 0.0 for i, s in bl.extra.items() if i not in normed and not math.isnan(s)})
        else:
            extra = {i: s for i, s in bl.extra.items() if i not in ranks[name] and not math.isnan(s)}
            fitted_on = [s for _, s in ranked]
            if completed == "union" and ranked:
                # Sorted, so the fit does not depend on the order completion returned scores in.
                fitted_on = sorted(fitted_on + list(extra.values()), reverse=True)
            norm = fit_normalizer(normalization, fitted_on)
            normed = {}
            if norm is not None:
                normed = {i: norm(s) for i, s in ranked}
                # A degenerate list (one score, or equal scores) already maps lower scores one unit
                # down, a bounded value; clamping there would lift them to the list's own value.
                lowest = min(normed.values()) if completed == "clamp" and norm.scale != 0.0 else -math.inf
                for i, s in extra.items():
                    normed[i] = max(norm(s), lowest)
        per_branch[name] = normed
        returned = [normed[i] for i in ranks[name]]
        floors[name] = floor_value if floor_value is not None else (min(returned) if returned else None)

    ids = {i for normed in per_branch.values() for i in normed}
    items = []
    for doc in ids:
        total = 0.0
        contrib: dict[str, float | None] = {}
        floored: dict[str, bool] = {}
        for name, normed in per_branch.items():
            value = normed.get(doc)
            floored[name] = value is None and floors[name] is not None
            if value is None:
                value = floors[name]
            contrib[name] = value
            if value is not None:
                total += weights.get(name, 0.0) * value
        items.append(FusedItem(id=doc, score=total, normalized=contrib, floored=floored))
    return sort_fused(items, ranks)
