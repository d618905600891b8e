"""Ranking metrics with numpy: nDCG@k, Recall@k, MRR@k, MAP@k, Precision@k, judged@k.

Conventions (those of ``trec_eval`` and ``ranx``):

- nDCG uses linear gain (``grade / log2(rank + 1)``, Järvelin & Kekäläinen, as
  ``trec_eval``'s ``ndcg_cut`` and BEIR); the ideal ranking sorts all judged grades.
- A document is relevant when its grade is >= ``rel_level`` (1). Recall and MAP
  divide by the number of relevant documents; Precision@k and judged@k by k.
- A judged query without any relevant document scores 0 on every metric.
- judged@k is the share of the top k that carries any judgement (grade 0 included);
  a low value means many retrieved documents were never assessed, so the other
  scores are lower bounds and not to be trusted.
- Metrics are computed on ranked lists. Turning scores into a ranking needs a tie
  rule: :func:`rank_run` with ``ties="trec_eval"`` sorts by score, then document id
  descending, as ``trec_eval`` does; ``ranx`` sorts with an unstable quicksort, so
  tied documents may come in any order there.

The array kernels (``*_from_gains``) take gains of shape ``(..., Q, K)`` so the tuner
can score thousands of fused rankings at once.

    >>> run = {"q1": ["d1", "d2", "d3"]}
    >>> qrels = {"q1": {"d2": 1, "d3": 2}}
    >>> round(evaluate_ranked(run, qrels, ["ndcg@3"])["ndcg@3"]["q1"], 4)
    0.6199
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from hybrid_retriever.errors import InvalidInputError

METRIC_NAMES = ("ndcg", "recall", "mrr", "map", "precision", "judged")
_ALIASES = {"p": "precision", "r": "recall", "rr": "mrr", "ap": "map", "ndcg_cut": "ndcg"}
DEFAULT_METRICS = ("ndcg@10", "recall@100", "mrr@10", "map@100", "precision@10", "judged@10")


@dataclass(frozen=True)
class Metric:
    """A metric name and its cutoff, written ``name@k`` (e.g. ``ndcg@10``)."""

    name: str
    k: int

    def __str__(self) -> str:
        return f"{self.name}@{self.k}"


def parse_metric(text: str | Metric) -> Metric:
    """``"ndcg@10"`` -> ``Metric("ndcg", 10)``; also accepts ``P@5``, ``MRR@10``, ``judged@10``."""
    if isinstance(text, Metric):
        return text
    m = re.fullmatch(r"\s*([A-Za-z_]+)\s*@\s*(\d+)\s*", str(text))
    if not m:
        raise InvalidInputError(f"metric {text!r} is not of the form name@k, e.g. ndcg@10; names: {list(METRIC_NAMES)}")
    name = m.group(1).lower()
    name = _ALIASES.get(name, name)
    if name not in METRIC_NAMES:
        raise InvalidInputError(f"unknown metric {m.group(1)!r}; choose one of {list(METRIC_NAMES)} (as name@k)")
    k = int(m.group(2))
    if k <= 0:
        raise InvalidInputError(f"metric cutoff must be positive, got {text!r}")
    return Metric(name, k)


def parse_metrics(texts: Sequence[str | Metric] | str) -> list[Metric]:
    """Parse a list (or comma-separated string) of metrics, keeping order, dropping repeats."""
    items = texts.split(",") if isinstance(texts, str) else list(texts)
    out: list[Metric] = []
    for t in items:
        if isinstance(t, str) and not t.strip():
            continue
        m = parse_metric(t)
        if m not in out:
            out.append(m)
    if not out:
        raise InvalidInputError("no metric given")
    return out


# ------------------------------------------------------------------- per-query stats


@dataclass
class QrelsStats:
    """What every metric needs from the judgements, one row per query.

    ``ideal`` holds each query's judged grades sorted best first, padded with zeros
    to ``k_max`` (for the ideal DCG); ``n_rel`` counts documents with grade >= rel_level.
    """

    n_rel: np.ndarray
    ideal: np.ndarray

    @classmethod
    def build(cls, rows: Sequence[Mapping[str, int]], k_max: int, rel_level: int = 1) -> "QrelsStats":
        n = len(rows)
        ideal = np.zeros((n, k_max), dtype=np.float64)
        n_rel = np.zeros(n, dtype=np.float64)
        for i, r in enumerate(rows):
            grades = sorted((max(float(g), 0.0) for g in r.values() if g >= rel_level), reverse=True)
            n_rel[i] = len(grades)
            top = grades[:k_max]
            ideal[i, : len(top)] = top
        return cls(n_rel=n_rel, ideal=ideal)


def _discounts(k: int) -> np.ndarray:
    return np.log2(np.arange(1, k + 1, dtype=np.float64) + 1)


def ndcg_from_gains(gains: np.ndarray, stats: QrelsStats, k: int) -> np.ndarray:
    """nDCG@k from graded gains (``(..., Q, K>=k)``, grade of the document at each rank)."""
    g = gains[..., :k]
    disc = _discounts(g.shape[-1])
    dcg = np.sum(g / disc, axis=-1)
    ideal = stats.ideal[:, :k]
    idcg = np.sum(ideal / _discounts(ideal.shape[-1]), axis=-1)
    idcg = np.where(idcg == 0.0, 1.0, idcg)
    return dcg / idcg


def _hits(gains: np.ndarray, k: int, rel_level: int) -> np.ndarray:
    return gains[..., :k] >= rel_level


def recall_from_gains(gains: np.ndarray, stats: QrelsStats, k: int, rel_level: int = 1) -> np.ndarray:
    hits = _hits(gains, k, rel_level).sum(axis=-1)
    return np.where(stats.n_rel > 0, hits / np.maximum(stats.n_rel, 1.0), 0.0)


def precision_from_gains(gains: np.ndarray, stats: QrelsStats, k: int, rel_level: int = 1) -> np.ndarray:
    hits = _hits(gains, k, rel_level).sum(axis=-1)
    return np.where(stats.n_rel > 0, hits / k, 0.0)


def mrr_from_gains(gains: np.ndarray, stats: QrelsStats, k: int, rel_level: int = 1) -> np.ndarray:
    hits = _hits(gains, k, rel_level)
    first = np.argmax(hits, axis=-1)
    any_hit = hits.any(axis=-1)
    return np.where(any_hit & (stats.n_rel > 0), 1.0 / (first + 1.0), 0.0)


def map_from_gains(gains: np.ndarray, stats: QrelsStats, k: int, rel_level: int = 1) -> np.ndarray:
    hits = _hits(gains, k, rel_level).astype(np.float64)
    ranks = np.arange(1, hits.shape[-1] + 1, dtype=np.float64)
    prec = np.cumsum(hits, axis=-1) / ranks
    ap = np.sum(prec * hits, axis=-1)
    return np.where(stats.n_rel > 0, ap / np.maximum(stats.n_rel, 1.0), 0.0)


def judged_from_mask(judged: np.ndarray, k: int) -> np.ndarray:
    """judged@k from a boolean mask (``(..., Q, K)``: is the document at each rank judged?)."""
    return judged[..., :k].sum(axis=-1) / k


def metric_from_arrays(metric: Metric, gains: np.ndarray, judged: np.ndarray | None, stats: QrelsStats) -> np.ndarray:
    """Per-query values of ``metric`` from rank-aligned gains (and the judged mask)."""
    k = metric.k
    if metric.name == "ndcg":
        return ndcg_from_gains(gains, stats, k)
    if metric.name == "recall":
        return recall_from_gains(gains, stats, k)
    if metric.name == "precision":
        return precision_from_gains(gains, stats, k)
    if metric.name == "mrr":
        return mrr_from_gains(gains, stats, k)
    if metric.name == "map":
        return map_from_gains(gains, stats, k)
    if metric.name == "judged":
        if judged is None:
            raise InvalidInputError("judged@k needs the judged mask")
        return judged_from_mask(judged, k)
    raise InvalidInputError(f"unknown metric {metric}")


# ------------------------------------------------------------------ ranked lists


def gains_matrix(
    ranked: Sequence[Sequence[str]], qrels_rows: Sequence[Mapping[str, int]], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rank-aligned grades and judged flags (``(Q, k)``) of ranked id lists; zero-padded."""
    gains = np.zeros((len(ranked), k), dtype=np.float64)
    judged = np.zeros((len(ranked), k), dtype=bool)
    for i, (ids, rel) in enumerate(zip(ranked, qrels_rows)):
        for j, d in enumerate(ids[:k]):
            g = rel.get(d)
            if g is not None:
                judged[i, j] = True
                gains[i, j] = max(float(g), 0.0)
    return gains, judged


def evaluate_ranked(
    run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    metrics: Sequence[str | Metric] | str = DEFAULT_METRICS,
) -> dict[str, dict[str, float]]:
    """Per-query metric values of ranked lists (query id -> doc ids best first).

    Only queries in ``qrels`` are scored; a judged query missing from ``run`` scores 0.
    Returns ``{metric: {query id: value}}``.
    """
    ms = parse_metrics(metrics)
    qids = list(qrels)
    rows = [qrels[q] for q in qids]
    k_max = max(m.k for m in ms)
    stats = QrelsStats.build(rows, k_max)
    gains, judged = gains_matrix([list(run.get(q, [])) for q in qids], rows, k_max)
    return {str(m): dict(zip(qids, metric_from_arrays(m, gains, judged, stats).tolist())) for m in ms}


def mean_scores(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean over queries of each metric of :func:`evaluate_ranked`'s output."""
    return {m: float(np.mean(list(v.values()))) if v else 0.0 for m, v in per_query.items()}


def rank_run(run: Mapping[str, Mapping[str, float]], ties: str = "trec_eval") -> dict[str, list[str]]:
    """Turn scored runs into ranked lists.

    ``ties="trec_eval"``: score descending, then document id descending (trec_eval's
    order); ``"id"``: then id ascending; ``"given"``: keep insertion order among ties.
    """
    out: dict[str, list[str]] = {}
    for q, docs in run.items():
        items = list(docs.items())
        if ties == "trec_eval":
            items.sort(key=lambda x: x[0], reverse=True)
            items.sort(key=lambda x: -x[1])
        elif ties == "id":
            items.sort(key=lambda x: (-x[1], x[0]))
        elif ties == "given":
            items.sort(key=lambda x: -x[1])
        else:
            raise InvalidInputError(f"unknown tie rule {ties!r}; use trec_eval, id or given")
        out[q] = [d for d, _ in items]
    return out
