"""The rerank stage in evaluation and tuning: reranker scores computed once and cached.

A reranker scores a (query, document) pair the same whatever the depth, order or
weight, so :func:`collect_rerank_scores` scores each query's fused candidates once (to
the deepest depth needed), appends them to a JSONL cache (resumable, keyed by the
index, the model and its max length) and records the time it took per query. Any
depth, order and interpolation weight is then a re-sort of cached numbers
(:func:`reranked_ids`), which is how ``eval`` reports reranked metrics beside the fused
ones and how ``tune`` picks the interpolation weight.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from hybrid_retriever.evaluation.cache import append_cache_rows, read_cache_rows
from hybrid_retriever.ids import point_id
from hybrid_retriever.rerank.depth import rerank_depth
from hybrid_retriever.rerank.order import rerank_order
from hybrid_retriever.stores.base import PAYLOAD_TEXT

log = logging.getLogger(__name__)

CACHE_VERSION = 1


@dataclass
class RerankScores:
    """Reranker scores per query (point id -> score) and the milliseconds each query's scoring took."""

    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    ms: dict[str, float] = field(default_factory=dict)
    path: Path | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)
    resumed: int = 0
    scored: int = 0

    def _load(self) -> None:
        for row in read_cache_rows(self.path, CACHE_VERSION):
            self.scores.setdefault(row["qid"], {}).update({k: float(v) for k, v in row["scores"].items()})
            self.ms[row["qid"]] = self.ms.get(row["qid"], 0.0) + float(row.get("ms", 0.0))

    def _write(self, rows: Sequence[dict[str, Any]]) -> None:
        append_cache_rows(self.path, CACHE_VERSION, self.fingerprint, rows)


def rerank_fingerprint(retriever: Any) -> dict[str, Any]:
    """What cached reranker scores depend on: the index (its documents' texts) and the model's settings."""
    rc = retriever.reranker.config if retriever.reranker is not None else retriever.config.rerank
    return {"location": str(retriever.store.location), "count": retriever.count(), "model": retriever.reranker.name,
            "model_type": rc.model_type, "max_length": rc.max_length}


def collect_rerank_scores(
    retriever: Any,
    queries: Mapping[str, str],
    candidates: Mapping[str, Sequence[str]],
    *,
    cache_dir: str | Path | None = None,
    batch_queries: int = 1,
    progress: bool = True,
) -> RerankScores:
    """Reranker scores of each query's ``candidates`` (point ids), scoring only pairs not cached yet.

    ``batch_queries`` queries are scored per call (1 = per-query timings). With
    ``cache_dir`` the scores are appended after each call, so a rerun resumes.
    """
    if retriever.reranker is None:
        raise ValueError("the retriever has no rerank stage; set rerank.enabled and rerank.model")
    fp = rerank_fingerprint(retriever)
    path = None
    if cache_dir is not None:
        key = hashlib.sha1(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]
        path = Path(cache_dir) / f"rerank-{key}.jsonl"
    out = RerankScores(path=path, fingerprint=fp)
    out._load()
    todo = []
    for q, pids in candidates.items():
        have = out.scores.get(q, {})
        missing = [p for p in pids if p not in have]
        if missing:
            todo.append((q, missing))
    out.resumed = len(candidates) - len(todo)
    bar = tqdm(total=len(todo), desc="reranking", unit="query", disable=not progress or not todo)
    try:
        for start in range(0, len(todo), batch_queries):
            batch = todo[start : start + batch_queries]
            texts = _texts(retriever, sorted({p for _, ps in batch for p in ps}))
            t0 = time.perf_counter()
            scores = retriever.reranker.score([queries[q] for q, _ in batch], [[texts[p] for p in ps] for _, ps in batch])
            ms = (time.perf_counter() - t0) * 1000 / len(batch)
            rows = []
            for (q, ps), ss in zip(batch, scores):
                out.scores.setdefault(q, {}).update(zip(ps, map(float, ss)))
                out.ms[q] = out.ms.get(q, 0.0) + ms
                rows.append({"qid": q, "scores": dict(zip(ps, map(float, ss))), "ms": ms})
            out._write(rows)
            out.scored += len(batch)
            bar.update(len(batch))
    finally:
        bar.close()
    return out


def _texts(retriever: Any, pids: Sequence[str]) -> dict[str, str]:
    return {p.point_id: p.payload.get(PAYLOAD_TEXT, "") for s in range(0, len(pids), 1000)
            for p in retriever.store.retrieve(list(pids[s : s + 1000]))}


def reranked_ids(ids: Sequence[str], fused: Sequence[float], scores: Mapping[str, float], depth: int,
                 order: str = "reranker", weight: float = 1.0) -> list[str]:
    """A fused list (ids and scores, best first) with its top ``depth`` reordered by the cached reranker scores."""
    top = list(ids[:depth])
    o = rerank_order(list(fused[: len(top)]), [scores[i] for i in top], order, weight)
    return [top[i] for i in o.order] + list(ids[depth:])


def latency_summary(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "p95": float(np.percentile(a, 95))} if a.size else {}


# --------------------------------------------------------------------------- tuning


@dataclass
class RerankTuningResult:
    """The interpolation weight of reranker and fused scores chosen on tuning queries, judged held out."""

    metric: str
    depth: int
    weights: list[float]
    best_weight: float
    default_weight: float
    validation: str
    train_score: float
    heldout_score: float
    default_heldout_score: float
    significance: dict[str, Any]
    per_weight: list[dict[str, float]]
    n_queries: int

    def apply(self, config: Any) -> Any:
        """``config`` with the chosen weight (order ``interpolation``; weight 1 is the reranker alone)."""
        data = config.model_dump()
        data["rerank"].update({"order": "interpolation", "weight": self.best_weight})
        return type(config).validate_data(data)

    def header(self) -> str:
        return (f"rerank: order interpolation, weight {self.best_weight:g} of the reranker score (depth {self.depth}); "
                f"{self.metric} held out ({self.validation}) {self.heldout_score:.4f} vs {self.default_heldout_score:.4f} "
                f"with weight {self.default_weight:g}, p={self.significance.get('p_value', float('nan')):.3g}")

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def tune_rerank_weight(
    retriever: Any,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    runs: Any,
    config: Any,
    *,
    weights: Sequence[float] = tuple(round(0.1 * i, 1) for i in range(11)),
    metric: str = "ndcg@10",
    folds: int = 5,
    seed: int = 0,
    train_qids: Sequence[str] | None = None,
    dev_qids: Sequence[str] | None = None,
    test: str = "randomization",
    selection: str = "one-se",
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> RerankTuningResult:
    """Choose ``rerank.weight`` (order ``interpolation``) from cached branch runs and cached reranker scores.

    The fused lists come from ``config``'s fusion applied to ``runs`` (a
    :class:`~.cache.RunCache`); the fused top ``rerank.depth`` of every query is scored
    once and every weight is a re-sort. Validation as for fusion tuning: cross-validation
    over queries, or chosen on ``train_qids`` and reported on ``dev_qids``.
    """
    from hybrid_retriever.evaluation.grid import fuse_reference
    from hybrid_retriever.evaluation.metrics import QrelsStats, gains_matrix, metric_from_arrays, parse_metric
    from hybrid_retriever.evaluation.validation import split_indices, validate

    m = parse_metric(metric)
    rc = config.rerank
    ws = sorted({float(w) for w in weights} | {rc.weight if rc.order == "interpolation" else 1.0}, reverse=True)
    if any(not 0.0 <= w <= 1.0 for w in ws):
        raise ValueError(f"rerank weights must lie in [0, 1], got {ws}")
    default = rc.weight if rc.order == "interpolation" else 1.0
    qids = [q for q in queries if q in runs]
    fused = {q: fuse_reference(runs[q], config) for q in qids}
    depth = {q: rerank_depth(rc, fused[q][0].signals if fused[q] else None) for q in qids}  # adaptive depth, as search
    scores = collect_rerank_scores(retriever, queries, {q: [it.id for it in fused[q][: depth[q]]] for q in qids},
                                   cache_dir=cache_dir, progress=progress)
    rows = [{point_id(d): g for d, g in qrels.get(q, {}).items()} for q in qids]
    stats = QrelsStats.build([qrels.get(q, {}) for q in qids], m.k)
    matrix = np.zeros((len(ws), len(qids)))
    for wi, w in enumerate(ws):
        lists = [reranked_ids([it.id for it in fused[q]], [it.score for it in fused[q]], scores.scores.get(q, {}),
                              depth[q], "interpolation", w) for q in qids]
        gains, judged = gains_matrix(lists, rows, m.k)
        matrix[wi] = metric_from_arrays(m, gains, judged, stats)
    train_idx, dev_idx = split_indices(qids, train_qids, dev_qids)
    v = validate(matrix, selection, folds=folds, seed=seed, train_idx=train_idx, dev_idx=dev_idx,
                 default_index=ws.index(default))
    return RerankTuningResult(
        metric=str(m), depth=rc.depth, weights=ws, best_weight=ws[v.best], default_weight=default, validation=v.kind,
        train_score=float(matrix[v.best, v.tune_idx].mean()), heldout_score=float(v.heldout.mean()),
        default_heldout_score=float(v.default_heldout.mean()), significance=v.significance(test),
        per_weight=[{"weight": w, "score": float(matrix[i].mean())} for i, w in enumerate(ws)], n_queries=len(qids),
    )
