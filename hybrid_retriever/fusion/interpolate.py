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

from itertools import chain, count
from typing import Any, Mapping

import numpy as np

from hybrid_retriever.fusion.normalize import NORMALIZERS, fit_normalizer
from hybrid_retriever.fusion.types import BranchList, FusedItem, check_weights, top_order

#: How completed scores are normalised (see the module docstring).
COMPLETED = ("clamp", "union", "raw")


def interpolate(
    lists: Mapping[str, BranchList],
    weights: Mapping[str, float],
    normalization: str = "minmax",
    floor_value: float | None = None,
    completed: str = "union",
    limit: int | None = None,
) -> list[FusedItem]:
    """Fuse by weighted sum of normalised scores; the result is sorted best first.

    ``limit`` keeps only the best ``limit`` items (the order is total, so they are the
    first ``limit`` of the full list): a search builds items only for the hits it returns.
    Scores are computed with numpy, element by element in the same float operations and
    branch order as a plain loop, so they are the same to the bit.

    >>> from hybrid_retriever.fusion import BranchList, interpolate
    >>> fused = interpolate({"a": BranchList(["x", "y"], [2.0, 1.0]),
    ...                      "b": BranchList(["y", "x"], [0.9, 0.1])}, {"a": 0.5, "b": 0.5})
    >>> [(f.id, f.score) for f in fused]
    [('x', 0.5), ('y', 0.5)]
    """
    check_weights(weights)
    if completed not in COMPLETED:
        raise ValueError(f"unknown completed-score normalisation {completed!r}; choose one of {list(COMPLETED)}")
    prepared = []
    for bl in lists.values():
        ids, scores = _returned(bl)
        xids, xscores = _completed(bl, ids)
        normed, xnormed = _normalised(normalization, completed, scores, xscores)
        if normed is None:
            xids = []  # completed scores count only where the branch has a scale for them
        prepared.append((ids, normed, xids, xnormed))
    # One column per candidate, in order of first appearance branch by branch (returned, then completed).
    index = dict(zip(dict.fromkeys(chain.from_iterable(x for ids, _, xids, _ in prepared for x in (ids, xids))), count()))
    at = index.__getitem__
    columns = [
        (np.fromiter(map(at, ids), dtype=np.int64, count=len(ids)), normed,
         np.fromiter(map(at, xids), dtype=np.int64, count=len(xids)), xnormed)
        for ids, normed, xids, xnormed in prepared
    ]
    n = len(index)
    total = np.zeros(n, dtype=np.float64)
    values = np.full((len(lists), n), np.nan)
    has = np.zeros((len(lists), n), dtype=bool)
    best = np.full(n, 1 << 30, dtype=np.int64)  # each candidate's best rank in any branch
    floors: list[float | None] = []
    for b, (name, (pos, normed, xpos, xnormed)) in enumerate(zip(lists, columns)):
        m = len(pos)
        if normed is not None:
            values[b, pos] = normed
            has[b, pos] = True
            if xnormed is not None and len(xpos):
                values[b, xpos] = xnormed
                has[b, xpos] = True
        if m:
            best[pos] = np.minimum(best[pos], np.arange(1, m + 1))
        floor = floor_value if floor_value is not None else (float(np.minimum.reduce(normed)) if normed is not None and m else None)
        floors.append(floor)
        filled = np.where(has[b], values[b], floor if floor is not None else 0.0)
        if floor is not None or has[b].any():
            # total += w * value in branch order, skipping candidates with no value (as a loop would).
            w = weights.get(name, 0.0)
            contrib = w * filled
            total = np.where(has[b] | (floor is not None), total + contrib, total)
    ids = list(index)
    order = top_order(ids, total, best, limit)
    names = list(lists)
    out = []
    vals, have = values[:, order].T.tolist(), has[:, order].T.tolist()
    for col, row_vals, row_has in zip(order.tolist(), vals, have):
        normalized: dict[str, float | None] = {}
        floored: dict[str, bool] = {}
        for name, v, h, floor in zip(names, row_vals, row_has, floors):
            floored[name] = not h and floor is not None
            normalized[name] = v if h else floor
        out.append(FusedItem(id=ids[col], score=float(total[col]), normalized=normalized, floored=floored))
    return out


def _returned(bl: BranchList) -> tuple[list[Any], np.ndarray]:
    """The branch's returned ids and scores, NaN scores dropped (:meth:`BranchList.ranked`)."""
    scores = np.asarray(bl.scores, dtype=np.float64).reshape(-1)
    nan = np.isnan(scores)
    if not nan.any():
        return list(bl.ids), scores
    return [i for i, missing in zip(bl.ids, nan.tolist()) if not missing], scores[~nan]


def _completed(bl: BranchList, returned: list[Any]) -> tuple[list[Any], np.ndarray]:
    """The branch's completed ids and scores (``extra``), NaN scores and returned ids dropped."""
    if not bl.extra:
        return [], np.zeros(0, dtype=np.float64)
    xids = list(bl.extra)
    xscores = np.fromiter(bl.extra.values(), dtype=np.float64, count=len(xids))
    seen = set(returned)
    nan = np.isnan(xscores)
    if not nan.any() and seen.isdisjoint(xids):  # what completion gives: only ids the branch did not return
        return xids, xscores
    keep = [not missing and i not in seen for i, missing in zip(xids, nan.tolist())]
    return [i for i, k in zip(xids, keep) if k], xscores[np.asarray(keep, dtype=bool)]


def _normalised(
    normalization: str, completed: str, scores: np.ndarray, xscores: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A branch's returned and completed scores normalised (None: the branch has no scale for them)."""
    if normalization == "rank":
        m = len(scores)
        # Rank r of m -> (m - r + 1) / m; completed scores have no rank: just below the list's last.
        return (m - np.arange(1, m + 1) + 1) / m if m else np.zeros(0), np.zeros(len(xscores))
    fitted_on = scores
    if completed == "union" and len(scores):
        # Sorted (descending), so the fit does not depend on the order completion returned scores in.
        fitted_on = np.sort(np.concatenate((scores, xscores)))[::-1]
    if not len(fitted_on):
        return None, None
    try:
        norm = NORMALIZERS[normalization](np.ascontiguousarray(fitted_on))  # NaN-free already
    except KeyError:
        norm = fit_normalizer(normalization, fitted_on.tolist())  # the library's error for an unknown name
    if norm is None:
        return None, None
    if norm.scale == 0.0:
        normed = np.where(scores >= norm.shift, norm.degenerate_value, norm.degenerate_value - 1.0)
        xnormed = np.where(xscores >= norm.shift, norm.degenerate_value, norm.degenerate_value - 1.0)
        return normed, xnormed
    normed = (scores - norm.shift) / norm.scale
    xnormed = (xscores - norm.shift) / norm.scale
    if completed == "clamp" and len(normed):
        # A degenerate list (handled above) already maps lower scores one unit down, a bounded value.
        xnormed = np.maximum(xnormed, normed.min())
    return normed, xnormed
