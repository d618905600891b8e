"""Score normalisations that put each branch on a comparable scale.

Each normaliser is fitted on the scores a branch returned for one query and then
applied to any score of that branch (returned or completed), so a completed score
lands on the same scale. Degenerate lists (one score, or all equal) map that score
to 1.0 for min-max, 0.5 for DBSF and 0.0 for z-score; a completed score below it
gets one unit less (0.0 for min-max, -0.5 for DBSF, -1.0 for z-score).

DBSF follows Qdrant's own ``Fusion.DBSF`` exactly (checked against Qdrant Edge and
qdrant-client in ``tests/test_stores.py``), so client-side and server-side DBSF
agree: the range mean ± 3σ maps to [0, 1] with the *sample* standard deviation
(divisor n - 1), scores outside that range are not clamped (they fall below 0 or
above 1), and a list of one score or of equal scores maps to 0.5. Z-score uses the
population standard deviation (divisor n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Normalizer:
    """``(score - shift) / scale``, or a rank map for rank-based normalisation."""

    shift: float
    scale: float
    degenerate_value: float

    def __call__(self, score: float) -> float:
        if self.scale == 0.0:
            return self.degenerate_value if score >= self.shift else self.degenerate_value - 1.0
        return (score - self.shift) / self.scale


def _minmax(scores: np.ndarray) -> Normalizer:
    lo, hi = float(np.minimum.reduce(scores)), float(np.maximum.reduce(scores))  # ndarray.min/max, without their wrappers
    return Normalizer(shift=lo, scale=hi - lo, degenerate_value=1.0)


def _mean_std(scores: np.ndarray, ddof: int) -> tuple[float, float]:
    # Equal scores are degenerate exactly: numpy's mean of equal floats can be off by
    # an ulp, which would give a std of ~1e-17 and blow completed scores up to ~1e16.
    if scores.size <= ddof or np.minimum.reduce(scores) == np.maximum.reduce(scores):
        return float(scores[0]), 0.0
    # numpy's own mean and std, step for step (same pairwise sums, so the same bits) without the
    # ~50 µs of argument handling per call that ``ndarray.mean``/``std`` spend on a 100-score list.
    n = scores.size
    mean = np.add.reduce(scores) / n
    centred = scores - mean
    return float(mean), math.sqrt(np.add.reduce(centred * centred) / (n - ddof))


def _zscore(scores: np.ndarray) -> Normalizer:
    mean, std = _mean_std(scores, ddof=0)
    return Normalizer(shift=mean, scale=std, degenerate_value=0.0)


def _dbsf(scores: np.ndarray) -> Normalizer:
    # Distribution-based score fusion as Qdrant computes it: the range mean ± 3σ maps
    # to [0, 1], σ the sample standard deviation, no clamping; one score (or equal
    # scores) -> 0.5.
    mean, std = _mean_std(scores, ddof=1)
    return Normalizer(shift=mean - 3 * std, scale=6 * std, degenerate_value=0.5)


NORMALIZERS: dict[str, Callable[[np.ndarray], Normalizer]] = {
    "minmax": _minmax,
    "zscore": _zscore,
    "dbsf": _dbsf,
}


def fit_normalizer(method: str, scores: list[float]) -> Normalizer | None:
    """Fit ``method`` on a branch's returned scores; ``None`` when there are none.

    ``rank`` normalisation is handled by :func:`rank_score`, not here.
    """
    clean = np.array([s for s in scores if not math.isnan(s)], dtype=np.float64)
    if clean.size == 0:
        return None
    try:
        return NORMALIZERS[method](clean)
    except KeyError:
        raise ValueError(f"unknown normalization {method!r}; choose one of {sorted(NORMALIZERS) + ['rank']}") from None


def rank_score(rank: int, n: int) -> float:
    """Rank-based normalisation: the top of a list of ``n`` gets 1.0, the last 1/n."""
    return (n - rank + 1) / n
