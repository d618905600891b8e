"""Vectorised interpolation fusion against the plain per-candidate loop it replaced, on random lists.

``reference_interpolate`` is the loop (one dict per branch, one sum per candidate) that fused
every query before the numpy version; the two must agree to the bit: same order, same scores,
same normalised contributions and floor flags, for every normalisation, completed-score mode and
floor, with NaN scores, degenerate lists, empty branches and ties. ``limit`` must give the prefix.
"""

from __future__ import annotations

import math
import random
from typing import Mapping

import pytest

from hybrid_retriever.fusion import BranchList, FusedItem, fit_normalizer, interpolate
from hybrid_retriever.fusion.normalize import rank_score
from hybrid_retriever.fusion.types import sort_fused


def reference_interpolate(
    lists: Mapping[str, BranchList], weights: Mapping[str, float], normalization: str = "minmax",
    floor_value: float | None = None, completed: str = "union",
) -> list[FusedItem]:
    ranks = {name: bl.ranks() for name, bl in lists.items()}
    per_branch: dict[str, dict[str, float]] = {}
    floors: dict[str, float | None] = {}
    for name, bl in lists.items():
        ranked = bl.ranked()
        if normalization == "rank":
            n = len(ranked)
            normed = {i: rank_score(r, n) for i, r in ranks[name].items()}
            normed.update({i: 0.0 for i, s in bl.extra.items() if i not in normed and not math.isnan(s)})
        else:
            extra = {i: s for i, s in bl.extra.items() if i not in ranks[name] and not math.isnan(s)}
            fitted_on = [s for _, s in ranked]
            if completed == "union" and ranked:
                fitted_on = sorted(fitted_on + list(extra.values()), reverse=True)
            norm = fit_normalizer(normalization, fitted_on)
            normed = {}
            if norm is not None:
                normed = {i: norm(s) for i, s in ranked}
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


def random_case(rng: random.Random) -> tuple[dict[str, BranchList], dict[str, float]]:
    pool = [f"d{i:03d}" for i in range(rng.choice([3, 30, 200]))]
    lists = {}
    for name in rng.sample(["bm25", "dense", "mv"], rng.randint(1, 3)):
        n = rng.choice([0, 1, 2, 5, 50, 100])
        ids = rng.sample(pool, min(n, len(pool)))
        kind = rng.random()
        if kind < 0.15:
            scores = [0.5] * len(ids)  # degenerate: equal scores
        elif kind < 0.3:
            scores = [round(rng.uniform(0, 3), 1) for _ in ids]  # ties
        else:
            scores = sorted((rng.uniform(-1, 20) for _ in ids), reverse=True)
        if ids and rng.random() < 0.2:
            scores[rng.randrange(len(scores))] = math.nan
        rest = [i for i in pool if i not in ids]
        extra = {i: (math.nan if rng.random() < 0.05 else rng.uniform(-2, min(scores, default=1.0)))
                 for i in rng.sample(rest, min(len(rest), rng.randint(0, 60)))}
        lists[name] = BranchList(ids, scores, extra=extra)
    weights = {n: rng.choice([0.0, 0.25, 0.5, 1.0, rng.random()]) for n in lists}
    return lists, weights


def same(a: list[FusedItem], b: list[FusedItem]) -> None:
    assert [x.id for x in a] == [x.id for x in b]
    for x, y in zip(a, b):
        assert x.score == y.score or (math.isnan(x.score) and math.isnan(y.score)), (x.id, x.score, y.score)
        assert x.floored == y.floored
        assert list(x.normalized) == list(y.normalized)
        for k in x.normalized:
            u, v = x.normalized[k], y.normalized[k]
            assert u == v or (u is not None and v is not None and math.isnan(u) and math.isnan(v)), (x.id, k, u, v)
            assert type(u) is type(v) or {type(u), type(v)} <= {float, int}


@pytest.mark.parametrize("normalization", ["minmax", "zscore", "dbsf", "rank"])
@pytest.mark.parametrize("completed", ["union", "clamp", "raw"])
def test_vectorised_interpolation_equals_the_loop(normalization: str, completed: str) -> None:
    rng = random.Random(f"{normalization}-{completed}")
    for _ in range(150):
        lists, weights = random_case(rng)
        floor = rng.choice([None, None, 0.0, -0.5])
        ref = reference_interpolate(lists, weights, normalization, floor, completed)
        got = interpolate(lists, weights, normalization, floor, completed)
        same(got, ref)
        k = rng.choice([1, 3, 10, 1000])
        same(interpolate(lists, weights, normalization, floor, completed, limit=k), ref[:k])


def test_mean_std_are_numpys_to_the_bit() -> None:
    import numpy as np

    from hybrid_retriever.fusion.normalize import _mean_std

    rng = np.random.default_rng(21)
    for _ in range(3000):
        a = rng.normal(size=int(rng.integers(2, 300))) * rng.uniform(0.01, 30) + rng.uniform(-5, 5)
        for ddof in (0, 1):
            assert _mean_std(a, ddof) == (float(a.mean()), float(a.std(ddof=ddof)))
