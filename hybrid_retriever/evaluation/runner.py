"""Evaluate a retriever on judged queries: every branch and the fusion, in one pass.

:func:`evaluate` searches each judged query once (every branch, with score
completion when the fusion needs it), then scores from those runs:

- each branch's own ranking and the fused ranking on every metric;
- **candidate recall**: Recall@depth of each branch and of the union of all
  branches' candidates — the ceiling that fusion (and any reranker) can reach;
- latency: per-branch query encoding, and end-to-end search + fusion, mean and p95;
- paired significance of the fused ranking against each branch (and against any
  other configuration given to compare, fused from the same runs);
- Recall@k and nDCG@k over k for the "metric vs depth" plot.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from hybrid_retriever.config import RetrieverConfig
from hybrid_retriever.evaluation.cache import RunCache, collect_runs
from hybrid_retriever.evaluation.datasets import JudgedQueries
from hybrid_retriever.evaluation.grid import fuse_reference
from hybrid_retriever.evaluation.metrics import (
    DEFAULT_METRICS,
    Metric,
    QrelsStats,
    gains_matrix,
    metric_from_arrays,
    parse_metrics,
)
from hybrid_retriever.evaluation.significance import compare
from hybrid_retriever.ids import point_id

log = logging.getLogger(__name__)

#: Cutoffs of the metric-vs-depth curves.
CURVE_KS = (1, 2, 3, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000)
#: Below this judged@k share the report warns that scores are not to be trusted.
JUDGED_WARN = 0.5


@dataclass
class SystemResult:
    """Scores of one ranking (a branch or a fused configuration) over the judged queries."""

    name: str
    kind: str  # "branch" or "fused"
    per_query: dict[str, np.ndarray]
    depth: int | None = None
    candidate_recall: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    curves: dict[str, dict[int, float]] = field(default_factory=dict)

    @property
    def mean(self) -> dict[str, float]:
        return {m: float(np.mean(v)) if len(v) else 0.0 for m, v in self.per_query.items()}

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "depth": self.depth,
            "metrics": self.mean,
            "candidate_recall": self.candidate_recall,
            "latency_ms": self.latency_ms,
            "curves": {m: {str(k): v for k, v in c.items()} for m, c in self.curves.items()},
        }


@dataclass
class EvalResult:
    """Everything :func:`evaluate` measured; ``as_dict`` is the stable JSON schema."""

    data: dict[str, Any]
    config: dict[str, Any]
    metrics: list[str]
    qids: list[str]
    systems: dict[str, SystemResult]
    union_recall: dict[str, Any]
    significance: list[dict[str, Any]]
    warnings: list[str]
    seconds: float = 0.0
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def main_metric(self) -> str:
        return self.metrics[0]

    @property
    def best_branch(self) -> str:
        branches = [s for s in self.systems.values() if s.kind == "branch"]
        return max(branches, key=lambda s: s.mean[self.main_metric]).name

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": "hybrid-retriever/eval/1",
            "data": self.data,
            "config": self.config,
            "metrics": self.metrics,
            "n_queries": len(self.qids),
            "systems": {n: s.as_dict() for n, s in self.systems.items()},
            "union_candidate_recall": self.union_recall,
            "significance": self.significance,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
            "cache": self.cache,
            "per_query": {
                "qids": self.qids,
                **{n: {m: [round(float(x), 6) for x in v] for m, v in s.per_query.items()} for n, s in self.systems.items()},
            },
        }


def to_sources(ids: Sequence[str], id_map: Mapping[str, str]) -> list[str]:
    """``ids`` mapped through ``id_map`` (ids not in it stay), each result kept at its first (best) place."""
    out: list[str] = []
    seen: set[str] = set()
    for i in ids:
        m = id_map.get(i, i)
        if m not in seen:
            seen.add(m)
            out.append(m)
    return out


def source_judgements(retriever: Any, judged: JudgedQueries) -> tuple[dict[str, str] | None, list[str]]:
    """How the judged ids meet the index: an id map when judgements name sources (files) whose chunks are
    stored, and the judged ids that match nothing stored (neither an entry's id nor its source).

    The map (point id of an entry -> point id of its source) covers every stored chunk whose own id
    is not judged, so every source (judged or not) takes one place in a list; it is None when no
    judgement names a source.
    """
    from hybrid_retriever.chunking import parent_id

    judged_ids = sorted({d for rel in judged.qrels.values() for d in rel})
    stored: set[str] = set()
    for s in range(0, len(judged_ids), 1000):
        stored.update(str(d.id) for d in retriever.get(judged_ids[s : s + 1000]))
    rest = [d for d in judged_ids if d not in stored]
    if not rest:
        return None, []
    id_map: dict[str, str] = {}
    for d in retriever.documents():
        p = parent_id(d)
        if p is not None and p != d.id and d.id not in stored:  # a chunk, not itself judged
            id_map[point_id(str(d.id))] = point_id(p)
    sources = set(id_map.values())
    by_source = [d for d in rest if point_id(d) in sources]
    unmatched = [d for d in rest if point_id(d) not in sources]
    return (id_map if by_source else None), unmatched


def unmatched_warning(unmatched: Sequence[str], where: str) -> str:
    """The warning for judged ids that match nothing stored."""
    shown = ", ".join(repr(u) for u in unmatched[:5]) + (", ..." if len(unmatched) > 5 else "")
    return (
        f"{len(unmatched)} judged document id(s) match nothing in {where} (neither a stored id nor the source of stored "
        f"chunks): {shown}. They count as relevant documents never retrieved, so every score is a lower bound (0 when "
        "no judged id matches). Judged ids must be the index's ids (see `query --json`) or its files' paths as stored "
        "in metadata 'source' (e.g. 'guides/setup.md')"
    )


def _score_lists(lists: Sequence[Sequence[str]], rel_rows: Sequence[Mapping[str, int]], metrics: Sequence[Metric],
                 stats: QrelsStats, k_max: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    gains, judged = gains_matrix(lists, rel_rows, k_max)
    return {str(m): metric_from_arrays(m, gains, judged, stats) for m in metrics}, gains, judged


def _curves(gains: np.ndarray, stats: QrelsStats, max_len: int) -> dict[str, dict[int, float]]:
    ks = [k for k in CURVE_KS if k <= max(1, max_len)]
    out: dict[str, dict[int, float]] = {"recall": {}, "ndcg": {}}
    for k in ks:
        out["recall"][k] = float(metric_from_arrays(Metric("recall", k), gains, None, stats).mean())
        out["ndcg"][k] = float(metric_from_arrays(Metric("ndcg", k), gains, None, stats).mean())
    return out


def _latency(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {}
    return {"mean": float(a.mean()), "p95": float(np.percentile(a, 95))}


def judgement_warnings(judged: JudgedQueries, fused: SystemResult, metrics: Sequence[Metric]) -> list[str]:
    """Warnings about the judgements: too few judged documents in ``fused``'s top k, queries without a relevant one."""
    out = []
    for m in metrics:
        if m.name == "judged":
            share = fused.mean[str(m)]
            if share < JUDGED_WARN:
                out.append(
                    f"only {share:.0%} of the fused top {m.k} carry a judgement ({m}): unjudged documents count as "
                    "not relevant, so the scores are lower bounds and differences between systems are not to be trusted"
                )
    if judged.no_relevant:
        out.append(f"{len(judged.no_relevant)} judged queries have no relevant document; they score 0 on every metric")
    return out


def reranked_lists(retriever: Any, queries: Mapping[str, str], cached: Sequence[Any], config: RetrieverConfig, *,
                   cache_dir: str | Path | None = None, progress: bool = True) -> tuple[list[list[str]], list[float]]:
    """Each query's fused list with its top ``rerank.depth`` (adaptive: :func:`~hybrid_retriever.rerank.depth.rerank_depth`)
    reordered by the reranker; the scoring ms per query."""
    from hybrid_retriever.evaluation.rerank import collect_rerank_scores, reranked_ids
    from hybrid_retriever.rerank.depth import rerank_depth

    rc = config.rerank
    fused = {qr.qid: fuse_reference(qr, config) for qr in cached}
    depth = {q: rerank_depth(rc, items[0].signals if items else None) for q, items in fused.items()}
    candidates = {q: [it.id for it in items[: depth[q]]] for q, items in fused.items()}
    scores = collect_rerank_scores(retriever, queries, candidates, cache_dir=cache_dir, progress=progress)
    lists = [reranked_ids([it.id for it in fused[qr.qid]], [it.score for it in fused[qr.qid]], scores.scores.get(qr.qid, {}),
                          depth[qr.qid], rc.order, rc.weight) for qr in cached]
    return lists, [scores.ms.get(qr.qid, 0.0) for qr in cached]


def evaluate(
    retriever: Any,
    judged: JudgedQueries,
    metrics: Sequence[str | Metric] | str = DEFAULT_METRICS,
    *,
    compare_configs: Mapping[str, RetrieverConfig] | None = None,
    batch_size: int = 1,
    cache_dir: str | Path | None = None,
    cache: RunCache | None = None,
    progress: bool = True,
    test: str = "randomization",
    filter: Any = None,
    id_map: Mapping[str, str] | None = None,
) -> EvalResult:
    """Evaluate ``retriever`` (its branches and its fusion) on ``judged``.

    ``compare_configs`` are other configurations of the same branches (name -> config)
    fused from the same runs and tested against the retriever's own fusion.
    ``batch_size=1`` searches query by query so latencies are per query. ``id_map``
    (point id -> point id, see :func:`source_judgements`) scores ranked entries as the
    documents they were cut from: every list is mapped and keeps each source's first
    (best) entry, as grouping does, so a judgement naming a file counts its best chunk.
    """
    t0 = time.perf_counter()
    ms = parse_metrics(metrics)
    config: RetrieverConfig = retriever.config
    others = dict(compare_configs or {})
    names = list(retriever.branches)
    for n, c in others.items():
        if c.branch_names != names:
            raise ValueError(f"configuration {n!r} has branches {c.branch_names}; the index has {names}")
    all_cfgs = [config, *others.values()]
    depth = {b: max(c.branch(b).depth for c in all_cfgs) for b in names}
    complete = any(c.fusion.completes_scores for c in all_cfgs)
    runs = collect_runs(
        retriever, judged.queries, depth=depth, complete=complete, batch_size=batch_size,
        cache_dir=cache_dir, progress=progress, filter=filter, cache=cache,
    )
    short = [b for b in names if runs.depth.get(b, 0) < depth[b]]
    if short:
        raise ValueError(f"the given cache holds branch(es) {short} shallower than the configured depths {depth}")
    qids = list(judged.queries)
    rows_doc = [judged.qrels[q] for q in qids]
    rel_rows = [{point_id(d): g for d, g in r.items()} for r in rows_doc]
    cached = [runs[q] for q in qids]
    by_source = (lambda ids: to_sources(ids, id_map)) if id_map else (lambda ids: ids)
    own_depth = {b: config.branch(b).depth for b in names}
    k_max = max(max(m.k for m in ms), max(depth.values()), max(k for k in CURVE_KS if k <= max(depth.values())))
    stats = QrelsStats.build(rows_doc, k_max)
    systems: dict[str, SystemResult] = {}
    union_lists: list[set[str]] = [set() for _ in qids]
    for b in names:
        lists = []
        for i, qr in enumerate(cached):
            br = qr.branches[b]
            ids = by_source(br.ids[: own_depth[b]]) if br.error is None else []
            lists.append(ids)
            union_lists[i].update(ids)
        per_query, gains, _ = _score_lists(lists, rel_rows, ms, stats, k_max)
        cr = metric_from_arrays(Metric("recall", own_depth[b]), gains, None, stats)
        systems[b] = SystemResult(
            name=b, kind="branch", per_query=per_query, depth=own_depth[b], candidate_recall=float(cr.mean()),
            latency_ms={**{f"encode_{k}": v for k, v in _latency([qr.branches[b].encode_ms for qr in cached]).items()},
                        **{f"search_{k}": v for k, v in _latency([qr.branches[b].search_ms for qr in cached]).items()}},
            curves=_curves(gains, stats, own_depth[b]),
        )
    hits = np.array([sum(1 for d in u if rel.get(d, 0) >= 1) for u, rel in zip(union_lists, rel_rows)], dtype=np.float64)
    union = np.where(stats.n_rel > 0, hits / np.maximum(stats.n_rel, 1), 0.0)
    union_recall = {"depths": own_depth, "value": float(union.mean()),
                    "per_branch": {b: systems[b].candidate_recall for b in names}}

    def fused_system(name: str, cfg: RetrieverConfig) -> SystemResult:
        lists, times = [], []
        for qr in cached:
            t = time.perf_counter()
            items = fuse_reference(qr, cfg)
            times.append(qr.wall_ms + (time.perf_counter() - t) * 1000)
            lists.append(by_source([it.id for it in items]))
        per_query, gains, _ = _score_lists(lists, rel_rows, ms, stats, k_max)
        return SystemResult(name=name, kind="fused", per_query=per_query, latency_ms=_latency(times),
                            curves=_curves(gains, stats, max(len(x) for x in lists) if lists else 1))

    systems["fused"] = fused_system("fused", config)
    for n, c in others.items():
        systems[f"fused:{n}"] = fused_system(f"fused:{n}", c)
    if getattr(retriever, "reranker", None) is not None:
        # The rerank stage on the fused lists: reranker scores cached beside the runs.
        lists, times = reranked_lists(retriever, judged.queries, cached, config, cache_dir=cache_dir, progress=progress)
        lists = [by_source(ids) for ids in lists]
        per_query, gains, _ = _score_lists(lists, rel_rows, ms, stats, k_max)
        fused_ms = systems["fused"].latency_ms
        lat = _latency([qr.wall_ms + t for qr, t in zip(cached, times)])
        lat["added_mean"] = float(np.mean(times)) if times else 0.0
        lat["added_p95"] = float(np.percentile(times, 95)) if times else 0.0
        if fused_ms.get("mean"):
            lat["ratio_mean"] = lat["mean"] / fused_ms["mean"]
        systems["reranked"] = SystemResult(name="reranked", kind="reranked", per_query=per_query, depth=config.rerank.depth,
                                           latency_ms=lat, curves=_curves(gains, stats, max(map(len, lists), default=1)))
    main = str(ms[0])
    sig = []
    for n, s in systems.items():
        if n == "fused":
            continue
        t = compare(s.per_query[main], systems["fused"].per_query[main], test).as_dict()
        sig.append({"a": n, "b": "fused", "metric": main, **t})
    warnings = list(judged.warnings)
    with_prf = [n for n, c in [("the configuration", config), *others.items()] if c.prf.enabled]
    if with_prf:
        # The scores come from fusing cached first-stage runs; PRF's second stage is not run here.
        warnings.append(
            f"PRF is enabled in {', '.join(with_prf)}, but eval scores the fusion without PRF; "
            "`hybrid-retriever tune --prf` reports PRF's held-out score against no PRF"
        )
    warnings += judgement_warnings(judged, systems["fused"], ms)
    return EvalResult(
        data=judged.describe(),
        config=config.model_dump(mode="json"),
        metrics=[str(m) for m in ms],
        qids=qids,
        systems=systems,
        union_recall=union_recall,
        significance=sig,
        warnings=warnings,
        seconds=time.perf_counter() - t0,
        cache={"path": str(runs.path) if runs.path else None, "resumed": runs.resumed, "searched": runs.searched,
               "depth": runs.depth, "complete": runs.complete, "batch_size": batch_size},
    )
