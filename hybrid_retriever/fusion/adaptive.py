"""Adaptive fusion: per-query branch weights that drop a branch blind to this query.

The configured weights are the starting point. For each query, each branch's weight
is multiplied by a reliability factor read from signals that cost nothing extra to
compute (they come with the branch lists), then the weights are renormalised and the
lists fused by normalised interpolation (:func:`~hybrid_retriever.fusion.interpolate`):

- ``no_query_tokens``: a sparse branch whose query vector is empty (every word a
  stopword, or a script its analyzer does not tokenise) cannot rank anything: factor 0.
- ``out_of_language``: the corpus language is not among the languages the branch's
  model was trained on (an English-only dense model on Chinese text): factor
  ``foreign_weight``.

The factors and the weights actually used are returned per branch (and end up in each
hit's provenance), so a caller sees why a branch counted less for a query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from hybrid_retriever.fusion.interpolate import interpolate
from hybrid_retriever.fusion.types import BranchList, FusedItem
from hybrid_retriever.types import BranchResult, SparseVector

#: Multiplier of a branch whose model does not cover the corpus language (chosen in
#: benchmarks/multilingual.py without test data of the language it is applied to).
DEFAULT_FOREIGN_WEIGHT = 0.3


@dataclass
class BranchSignals:
    """What is known about one branch for one query, before fusion."""

    no_query_tokens: bool = False
    #: False when the content language is outside the branch model's languages; None when unknown.
    in_language: bool | None = None

    def flags(self) -> list[str]:
        out = []
        if self.no_query_tokens:
            out.append("no_query_tokens")
        if self.in_language is False:
            out.append("out_of_language")
        return out


@dataclass
class AdaptiveWeights:
    """Per-query weights (sum 1 over branches with a positive weight) and why they moved."""

    weights: dict[str, float]
    factors: dict[str, float]
    flags: dict[str, list[str]] = field(default_factory=dict)


def adaptive_weights(
    weights: Mapping[str, float],
    signals: Mapping[str, BranchSignals],
    foreign_weight: float = DEFAULT_FOREIGN_WEIGHT,
) -> AdaptiveWeights:
    """The configured ``weights`` scaled by each branch's reliability factor, renormalised.

    If every branch is discounted to zero the configured weights are kept (nothing
    better is known).

    >>> aw = adaptive_weights({"bm25": 0.5, "dense": 0.5}, {"dense": BranchSignals(in_language=False)}, 0.5)
    >>> {k: round(v, 3) for k, v in aw.weights.items()}
    {'bm25': 0.667, 'dense': 0.333}
    """
    if not 0.0 <= foreign_weight <= 1.0:
        raise ValueError(f"foreign_weight must be in [0, 1], got {foreign_weight}")
    factors: dict[str, float] = {}
    flags: dict[str, list[str]] = {}
    for name in weights:
        s = signals.get(name, BranchSignals())
        f = 1.0
        if s.no_query_tokens:
            f = 0.0
        elif s.in_language is False:
            f = foreign_weight
        factors[name] = f
        flags[name] = s.flags()
    scaled = {n: w * factors[n] for n, w in weights.items()}
    total = sum(scaled.values())
    if total <= 0.0:
        scaled, total = dict(weights), sum(weights.values())
    return AdaptiveWeights(
        weights={n: (w / total if total > 0 else 0.0) for n, w in scaled.items()}, factors=factors, flags=flags
    )


def adaptive(
    lists: Mapping[str, BranchList],
    weights: Mapping[str, float],
    signals: Mapping[str, BranchSignals],
    normalization: str = "dbsf",
    completed: str = "union",
    foreign_weight: float = DEFAULT_FOREIGN_WEIGHT,
    floor_value: float | None = None,
) -> tuple[list[FusedItem], AdaptiveWeights]:
    """Fuse one query with per-query weights (:func:`adaptive_weights`); returns the ranking and the weights."""
    aw = adaptive_weights({n: weights.get(n, 0.0) for n in lists}, signals, foreign_weight)
    fused = interpolate(lists, aw.weights, normalization=normalization, floor_value=floor_value, completed=completed)
    return fused, aw


def no_query_tokens(query_vector: Any) -> bool:
    """A sparse query vector without tokens: its branch cannot rank anything for this query."""
    return isinstance(query_vector, SparseVector) and not query_vector.indices


def branch_signals(
    per_branch: Mapping[str, BranchResult],
    content_language: str | None,
    languages: Mapping[str, frozenset[str] | None],
) -> dict[str, BranchSignals]:
    """Each branch's signals for one query: empty sparse query vector, model languages vs the corpus language."""
    out = {}
    for n, r in per_branch.items():
        langs = languages.get(n)
        out[n] = BranchSignals(
            no_query_tokens=no_query_tokens(r.query_vector),
            in_language=None if content_language is None or langs is None else content_language in langs,
        )
    return out

