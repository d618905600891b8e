"""Adaptive fusion: per-query branch weights from what each branch's own list says about this query.

The configured weights are the starting point. For each query, each branch's weight
is multiplied by a reliability factor read from signals that cost nothing extra to
compute (they come with the branch lists), then the weights are renormalised and the
lists fused by normalised interpolation (:func:`~hybrid_retriever.fusion.interpolate`):

- ``no_query_tokens``: a sparse branch whose query vector is empty (every word a
  stopword, or a script its analyzer does not tokenise) cannot rank anything: factor 0.
- ``out_of_language``: the corpus language is not among the languages the branch's
  model was trained on (an English-only dense model on Chinese text): factor
  ``foreign_weight``.
- ``clarity``: a query-performance predictor read from the branch's returned scores,
  normalised query clarity (NQC: the standard deviation of the top
  :data:`CLARITY_DEPTH` scores over their mean, capped at 1). A list whose top stands
  out from the rest (high NQC) predicts a branch that found something; a flat one, a
  branch that did not. Factor ``exp(clarity_weight · (clarity − offset))``, where
  ``offset`` is ``sparse_clarity_offset`` for a sparse (BM25) branch and 0 otherwise:
  BM25 lists are by nature more spread than cosine lists, and the offset puts the two on
  one footing.
- ``fragmentation``: how badly the branch's model reads this query, measured with the
  model's own tokenizer (the share of word pieces that continue a word or are unknown,
  :mod:`hybrid_retriever.models.fragmentation`). It refines ``out_of_language``: a branch
  outside its languages gets ``foreign_weight · exp(−fragmentation_weight · fragmentation)``,
  so a model that barely reads a script (most pieces unknown or shredded) loses nearly all
  its vote while one that reads a neighbouring language keeps most of ``foreign_weight``.
- ``support``: an agreement signal, the share of the branch's top :data:`SUPPORT_DEPTH`
  that another branch also returned. A branch whose best documents the other branch
  finds too is likely right for this query; one whose top nobody else finds, likely
  blind. Factor ``exp(support_weight · support)``.

Both signals are measured and reported in provenance, but their weights default to 0 (off):
chosen on the dev splits (support 3.0, clarity 0.5) they did not carry over to the test
splits, where they lost 1.1 points nDCG@10 on scifact against fixed weights
(benchmarks/results/multilingual.md), so the issue's rule for a default keeps them off.

The factors, the weights actually used and the signals are returned per branch (and
end up in each hit's provenance), so a caller sees why a branch counted less for a query.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Collection, Mapping, Sequence

from hybrid_retriever.fusion.interpolate import interpolate
from hybrid_retriever.fusion.types import BranchList, FusedItem
from hybrid_retriever.types import BranchResult, SparseVector

#: Multiplier of a branch whose model does not cover the content language, before its query's
#: fragmentation lowers it further (chosen with DEFAULT_FRAGMENTATION_WEIGHT on the dev halves of
#: xquad-r/de and zh, `python -m benchmarks multilingual --fragmentation`).
DEFAULT_FOREIGN_WEIGHT = 0.7
#: How strongly a branch's clarity moves its weight: factor exp(weight · clarity) (0 = off, the default).
DEFAULT_CLARITY_WEIGHT = 0.0
#: How strongly a branch's support by the other branches moves its weight: factor exp(weight · support) (0 = off, the default).
DEFAULT_SUPPORT_WEIGHT = 0.0
#: How strongly an out-of-language branch's query fragmentation lowers its weight further (chosen on a dev split,
#: `python -m benchmarks multilingual --fragmentation`): factor foreign_weight · exp(−weight · fragmentation).
DEFAULT_FRAGMENTATION_WEIGHT = 3.0
#: Top of a branch's list whose support is measured.
SUPPORT_DEPTH = 10
#: Clarity subtracted from a sparse branch's before weighting (BM25 lists are more spread than cosine lists).
DEFAULT_SPARSE_CLARITY_OFFSET = 0.0
#: Returned scores (the top of a branch's list) that clarity is measured on.
CLARITY_DEPTH = 10
#: Clarity is capped here, so one flat-but-tiny list (mean near 0) cannot take all the weight.
CLARITY_CAP = 1.0


def clarity(scores: Sequence[float], depth: int = CLARITY_DEPTH) -> float | None:
    """Normalised query clarity of one branch's list: ``std / mean`` of its top ``depth`` scores, in [0, 1].

    NaN scores are dropped; the population standard deviation is used. ``None`` when
    fewer than two scores remain (nothing to measure); 0.0 when their mean is not
    positive (the branch's best scores are no better than unrelated ones).

    >>> round(clarity([3.0, 2.0, 1.0]), 4)  # std 0.8165 / mean 2
    0.4082
    >>> clarity([0.5, 0.5]), clarity([1.0]), clarity([-0.1, -0.2])
    (0.0, None, 0.0)
    """
    top = list(islice((float(s) for s in scores if not math.isnan(s)), depth))
    if len(top) < 2:
        return None
    mean = sum(top) / len(top)
    if not mean > 0.0:
        return 0.0
    std = math.sqrt(sum((s - mean) ** 2 for s in top) / len(top))
    return min(std / mean, CLARITY_CAP)


def support(ids: Sequence[str], others: Collection[str], depth: int = SUPPORT_DEPTH) -> float | None:
    """Share of the branch's top ``depth`` ids that another branch also returned (``others``: their ids), in [0, 1].

    ``None`` when the branch returned nothing or no other branch returned anything (nothing to agree with).

    >>> support(["a", "b", "c", "d"], {"b", "d", "x"})
    0.5
    >>> support([], {"a"}), support(["a"], set())
    (None, None)
    """
    top = list(ids[:depth])
    if not top or not others:
        return None
    return sum(1 for i in top if i in others) / len(top)


@dataclass
class BranchSignals:
    """What is known about one branch for one query, before fusion."""

    no_query_tokens: bool = False
    #: False when the content language is outside the branch model's languages; None when unknown.
    in_language: bool | None = None
    #: The branch's normalised query clarity (:func:`clarity`); None when not measured.
    clarity: float | None = None
    #: A sparse (lexical) branch: its clarity is compared after ``sparse_clarity_offset``.
    sparse: bool = False
    #: Share of the branch's top 10 that another branch also returned (:func:`support`); None when not measured.
    support: float | None = None
    #: Share of the query's word pieces its model's tokenizer continued or did not know, in [0, 1]; None = not measured.
    fragmentation: float | None = None

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
    #: Each branch's measured signals (``clarity``, ``support``), for provenance.
    signals: dict[str, dict[str, float]] = field(default_factory=dict)


def adaptive_weights(
    weights: Mapping[str, float],
    signals: Mapping[str, BranchSignals],
    foreign_weight: float = DEFAULT_FOREIGN_WEIGHT,
    clarity_weight: float = DEFAULT_CLARITY_WEIGHT,
    sparse_clarity_offset: float = DEFAULT_SPARSE_CLARITY_OFFSET,
    support_weight: float = DEFAULT_SUPPORT_WEIGHT,
    fragmentation_weight: float = DEFAULT_FRAGMENTATION_WEIGHT,
) -> AdaptiveWeights:
    """The configured ``weights`` scaled by each branch's reliability factor, renormalised.

    A branch's factor is 0 without query tokens, else ``foreign_weight`` (outside its
    model's languages; times ``exp(−fragmentation_weight · fragmentation)`` when the
    query's fragmentation under its model's tokenizer is known) or 1, times ``exp(clarity_weight · (clarity − offset))`` when its
    clarity is known (``offset`` = ``sparse_clarity_offset`` for a sparse branch, else 0)
    and ``exp(support_weight · support)`` when its support is known.
    If every branch is discounted to zero the configured weights are kept (nothing
    better is known).

    >>> aw = adaptive_weights({"bm25": 0.5, "dense": 0.5}, {"dense": BranchSignals(in_language=False)}, 0.5)
    >>> {k: round(v, 3) for k, v in aw.weights.items()}
    {'bm25': 0.667, 'dense': 0.333}
    """
    if not 0.0 <= foreign_weight <= 1.0:
        raise ValueError(f"foreign_weight must be in [0, 1], got {foreign_weight}")
    if not (math.isfinite(clarity_weight) and clarity_weight >= 0.0):
        raise ValueError(f"clarity_weight must be a finite number >= 0, got {clarity_weight}")
    if not math.isfinite(sparse_clarity_offset):
        raise ValueError(f"sparse_clarity_offset must be a finite number, got {sparse_clarity_offset}")
    if not (math.isfinite(support_weight) and support_weight >= 0.0):
        raise ValueError(f"support_weight must be a finite number >= 0, got {support_weight}")
    if not (math.isfinite(fragmentation_weight) and fragmentation_weight >= 0.0):
        raise ValueError(f"fragmentation_weight must be a finite number >= 0, got {fragmentation_weight}")
    factors: dict[str, float] = {}
    flags: dict[str, list[str]] = {}
    measured: dict[str, dict[str, float]] = {}
    for name in weights:
        s = signals.get(name, BranchSignals())
        f = 1.0
        if s.no_query_tokens:
            f = 0.0
        elif s.in_language is False:
            f = foreign_weight
            if s.fragmentation is not None and not math.isnan(s.fragmentation):
                measured.setdefault(name, {})["fragmentation"] = s.fragmentation
                f *= math.exp(-fragmentation_weight * s.fragmentation)
        exponent = 0.0
        if s.clarity is not None and not math.isnan(s.clarity):
            measured.setdefault(name, {})["clarity"] = s.clarity
            exponent += clarity_weight * (s.clarity - (sparse_clarity_offset if s.sparse else 0.0))
        if s.support is not None and not math.isnan(s.support):
            measured.setdefault(name, {})["support"] = s.support
            exponent += support_weight * s.support
        if exponent:
            # Both signals are in [0, 1]; the bound only keeps extreme weights from overflowing.
            f *= math.exp(max(-700.0, min(700.0, exponent)))
        factors[name] = f
        flags[name] = s.flags()
    scaled = {n: w * factors[n] for n, w in weights.items()}
    total = sum(scaled.values())
    if not total > 0.0:
        # Products that underflowed (a tiny weight times a small factor): the branches not discounted
        # to 0 share the weight as configured; if every branch is, the configured weights stand.
        alive = {n: (w if factors[n] > 0.0 else 0.0) for n, w in weights.items()}
        scaled = alive if sum(alive.values()) > 0.0 else dict(weights)
        total = sum(scaled.values())
    return AdaptiveWeights(
        weights={n: (w / total if total > 0 else 0.0) for n, w in scaled.items()},
        factors=factors,
        flags=flags,
        signals=measured,
    )


def adaptive(
    lists: Mapping[str, BranchList],
    weights: Mapping[str, float],
    signals: Mapping[str, BranchSignals],
    normalization: str = "dbsf",
    completed: str = "union",
    foreign_weight: float = DEFAULT_FOREIGN_WEIGHT,
    floor_value: float | None = None,
    clarity_weight: float = DEFAULT_CLARITY_WEIGHT,
    sparse_clarity_offset: float = DEFAULT_SPARSE_CLARITY_OFFSET,
    support_weight: float = DEFAULT_SUPPORT_WEIGHT,
    fragmentation_weight: float = DEFAULT_FRAGMENTATION_WEIGHT,
    limit: int | None = None,
) -> tuple[list[FusedItem], AdaptiveWeights]:
    """Fuse one query with per-query weights (:func:`adaptive_weights`); returns the ranking and the weights.

    A branch whose ``signals`` carry no clarity or support gets them measured here from
    the lists (:func:`clarity` of its scores, :func:`support` against the other lists).
    ``limit`` keeps the best ``limit`` items only (see :func:`interpolate`).
    """
    returned: dict[str, list[Any]] | None = None  # measured only when a branch's support is not given
    full: dict[str, BranchSignals] = {}
    for n, bl in lists.items():
        s = signals.get(n, BranchSignals())
        c = s.clarity if s.clarity is not None else clarity(bl.scores)
        sup = s.support
        if sup is None:
            if returned is None:
                returned = {m: [i for i, _ in other.ranked()] for m, other in lists.items()}
            sup = support(returned[n], {i for m, ids in returned.items() if m != n for i in ids})
        full[n] = BranchSignals(s.no_query_tokens, s.in_language, c, s.sparse, sup, s.fragmentation)
    aw = adaptive_weights(
        {n: weights.get(n, 0.0) for n in lists}, full, foreign_weight, clarity_weight, sparse_clarity_offset,
        support_weight, fragmentation_weight,
    )
    fused = interpolate(lists, aw.weights, normalization=normalization, floor_value=floor_value, completed=completed,
                        limit=limit)
    return fused, aw


def no_query_tokens(query_vector: Any) -> bool:
    """A sparse query vector without tokens: its branch cannot rank anything for this query."""
    return isinstance(query_vector, SparseVector) and not query_vector.indices


def query_facts(result: BranchResult) -> dict[str, Any]:
    """What one branch's search says about the query itself, for adaptive fusion (JSON-ready).

    ``sparse`` (a sparse query vector), ``no_query_tokens`` (an empty one), ``language`` (the
    language a per-document-language BM25 analysed the query in) and the query-side measures
    the branch took (``fragmentation``). Evaluation caches keep exactly this per branch and
    query, so fusing cached runs reads the same facts as fusing a live search.
    """
    return vector_facts(result.query_vector, result.signals)


def vector_facts(query_vector: Any, measured: Mapping[str, float]) -> dict[str, Any]:
    """:func:`query_facts` from a branch's query vector and the query-side measures it took."""
    qv = query_vector
    return {
        "sparse": isinstance(qv, SparseVector),
        "no_query_tokens": no_query_tokens(qv),
        "language": qv.language if isinstance(qv, SparseVector) else None,
        **{k: float(v) for k, v in measured.items()},
    }


def branch_signals(
    per_branch: Mapping[str, BranchResult],
    content_language: str | None,
    languages: Mapping[str, frozenset[str] | None],
    facts: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, BranchSignals]:
    """Each branch's signals for one query: empty sparse query vector, model languages vs the content
    language, whether the branch is sparse, the clarity of its returned scores and its support by the
    other branches' lists (a failed branch returned nothing, so it supports nothing).

    The content language is the query's own when a per-document-language BM25 branch analysed the
    query in it (a German query in a mixed corpus looks for German documents), else the corpus's.
    ``facts`` are each branch's :func:`query_facts` (default: read from ``per_branch``; evaluation
    passes the cached ones).
    """
    if facts is None:
        facts = {n: query_facts(r) for n, r in per_branch.items()}
    ids = {n: [h.point_id for h in r.hits] if r.error is None else [] for n, r in per_branch.items()}
    scores = {n: [h.score for h in r.hits] for n, r in per_branch.items()}
    return list_signals(ids, scores, facts, content_language, languages)


def list_signals(
    ids: Mapping[str, Sequence[Any]],
    scores: Mapping[str, Sequence[float]],
    facts: Mapping[str, Mapping[str, Any]],
    content_language: str | None,
    languages: Mapping[str, frozenset[str] | None],
) -> dict[str, BranchSignals]:
    """:func:`branch_signals` from each branch's returned ids (empty for a failed branch) and scores, best first."""
    query_language = next((f["language"] for f in facts.values() if f.get("language")), None)
    content_language = query_language or content_language
    out = {}
    for n in ids:
        langs = languages.get(n)
        f = facts.get(n, {})
        out[n] = BranchSignals(
            no_query_tokens=bool(f.get("no_query_tokens", False)),
            in_language=None if content_language is None or langs is None else content_language in langs,
            clarity=clarity(scores[n]),
            sparse=bool(f.get("sparse", False)),
            support=support(ids[n], {i for m, other in ids.items() if m != n for i in other}),
            fragmentation=f.get("fragmentation"),
        )
    return out
