"""Paired significance tests between two systems scored on the same queries.

Both take per-query scores of systems A and B (same queries, same order) and
return a :class:`PairedTest` with the mean difference and a two-sided p-value.

- :func:`randomization_test`: Fisher's paired randomisation (sign-flip) test; exact
  enumeration of all 2^n sign patterns for small n, else Monte Carlo with a seed.
- :func:`paired_t_test`: Student's paired t-test (needs scipy for the t distribution).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from hybrid_retriever.errors import InvalidInputError

#: Exact enumeration is used up to this many queries (2**16 sign patterns).
EXACT_MAX_N = 16


@dataclass
class PairedTest:
    """Result of a paired test: B - A mean difference and two-sided p-value."""

    test: str
    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    p_value: float
    statistic: float | None = None
    permutations: int | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _pair(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise InvalidInputError(f"paired tests need two equal-length score lists, got {x.shape} and {y.shape}")
    if x.size == 0:
        raise InvalidInputError("paired tests need at least one query")
    return x, y


def randomization_test(
    a: Sequence[float], b: Sequence[float], n_permutations: int = 10_000, seed: int = 0
) -> PairedTest:
    """Two-sided paired randomisation test of mean(b - a) = 0.

    Under the null hypothesis each query's difference is equally likely to have
    either sign. The p-value is the share of sign patterns whose |mean| is at least
    the observed one; exact for n <= 16, else estimated from ``n_permutations``
    random patterns (counting the observed one, so p >= 1 / (n_permutations + 1)).
    """
    x, y = _pair(a, b)
    d = y - x
    n = d.size
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, observed)
    if n <= EXACT_MAX_N:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        means = np.abs(signs @ d) / n
        p = float(np.mean(means >= observed - tol))
        perms = len(signs)
    else:
        rng = np.random.default_rng(seed)
        count = 0
        done = 0
        while done < n_permutations:
            m = min(2000, n_permutations - done)
            signs = rng.choice((-1.0, 1.0), size=(m, n))
            count += int(np.sum(np.abs(signs @ d) / n >= observed - tol))
            done += m
        p = (count + 1) / (n_permutations + 1)
        perms = n_permutations
    return PairedTest("randomization", n, float(x.mean()), float(y.mean()), float(d.mean()), p, permutations=perms)


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> PairedTest:
    """Two-sided paired t-test of mean(b - a) = 0 (p = 1 when every difference is equal to zero)."""
    x, y = _pair(a, b)
    d = y - x
    n = d.size
    if n < 2:
        raise InvalidInputError("a paired t-test needs at least two queries")
    sd = float(d.std(ddof=1))
    mean = float(d.mean())
    if sd == 0.0:
        t = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
        p = 1.0 if mean == 0.0 else 0.0
    else:
        try:
            from scipy import stats
        except ImportError:  # pragma: no cover - scipy is in the eval extra
            raise InvalidInputError("the t-test needs scipy: pip install 'hybrid-retriever[eval]'") from None
        t = mean / (sd / math.sqrt(n))
        p = float(2.0 * stats.t.sf(abs(t), df=n - 1))
    return PairedTest("t-test", n, float(x.mean()), float(y.mean()), mean, min(p, 1.0), statistic=t)


def compare(a: Sequence[float], b: Sequence[float], test: str = "randomization", **kwargs: object) -> PairedTest:
    """Run the named paired test (``randomization`` or ``t-test``)."""
    if test in ("randomization", "permutation", "fisher"):
        return randomization_test(a, b, **kwargs)  # type: ignore[arg-type]
    if test in ("t-test", "ttest", "t"):
        return paired_t_test(a, b)
    raise InvalidInputError(f"unknown test {test!r}; use randomization or t-test")
