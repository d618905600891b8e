"""Evaluate an index through a running service (``hybrid-retriever eval --server URL``).

An Edge index is held by the process serving it, so ``eval`` cannot open the folder while
``serve`` runs; instead it asks the service for each judged query's ranking and scores it
with the same metric code as a local evaluation (:mod:`hybrid_retriever.evaluation.runner`).
The core knows only the :class:`ServedIndex` protocol; the HTTP client that implements it
comes from the server package (the ``hybrid_retriever.remote`` entry point ``connect``).

A service answers fused (and, with a rerank stage, reranked) lists of at most its ``max_k``
hits, not each branch's own run: the report has the ``fused`` system (and ``reranked``),
without per-branch rows, candidate recall or the union's recall (``eval --index`` has them).
"""

from __future__ import annotations

import time
from typing import Any, Protocol, Sequence

import numpy as np

from hybrid_retriever.errors import InvalidInputError
from hybrid_retriever.evaluation.datasets import JudgedQueries
from hybrid_retriever.evaluation.metrics import DEFAULT_METRICS, Metric, QrelsStats, parse_metrics
from hybrid_retriever.evaluation.runner import (
    EvalResult,
    SystemResult,
    _curves,
    _latency,
    _score_lists,
    judgement_warnings,
    to_sources,
    unmatched_warning,
)
from hybrid_retriever.chunking import chunk_id, parent_id
from hybrid_retriever.grouping import group_depth
from hybrid_retriever.evaluation.significance import compare
from hybrid_retriever.types import Hit


class ServedIndex(Protocol):
    """A running service over one index, as ``eval --server`` needs it."""

    url: str

    def describe(self) -> dict[str, Any]:
        """``{"config": <the served RetrieverConfig as JSON>, "rerank_available": bool, "max_k": int, "max_queries": int}``."""
        ...

    def search_batch(self, queries: Sequence[str], k: int, *, rerank: bool) -> list[list[Hit]]:
        """Each query's ``k`` best hits (reranked when ``rerank``), in one request."""
        ...

    def stored(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` the served index holds (optional: without it judged ids are taken as they are)."""
        ...


def served_judgements(service: ServedIndex, judged: JudgedQueries) -> tuple[bool, list[str]]:
    """Whether judgements name sources (files) whose chunks the service holds (``<id>#0`` is stored), and the
    judged ids that match nothing stored there (see :func:`hybrid_retriever.evaluation.runner.source_judgements`)."""
    if not callable(getattr(service, "stored", None)):  # an older ServedIndex: ids are taken as they are
        return False, []
    judged_ids = sorted({d for rel in judged.qrels.values() for d in rel})
    stored = service.stored(judged_ids)
    rest = [d for d in judged_ids if d not in stored]
    if not rest:
        return False, []
    first_chunks = service.stored([chunk_id(d, 0) for d in rest])
    sources = [d for d in rest if chunk_id(d, 0) in first_chunks]
    return bool(sources), [d for d in rest if chunk_id(d, 0) not in first_chunks]


def evaluate_served(
    service: ServedIndex,
    judged: JudgedQueries,
    metrics: Sequence[str | Metric] | str = DEFAULT_METRICS,
    *,
    batch_size: int = 1,
    progress: bool = True,
    test: str = "randomization",
) -> EvalResult:
    """Score the served ranking of every judged query: ``fused`` (rerank off) and, when the
    service has a rerank stage, ``reranked``; significance of reranked against fused.

    Each list is the service's top ``k`` for the deepest metric cutoff ``k`` (which must be at
    most the service's ``max_k``); latency is the request's wall time per query, HTTP included.
    """
    t0 = time.perf_counter()
    ms = parse_metrics(metrics)
    info = service.describe()
    k = max(m.k for m in ms)
    if k > info["max_k"]:
        raise InvalidInputError(
            f"the metrics need the top {k} of each query but the service at {service.url} answers at most "
            f"{info['max_k']} (HYBRID_RETRIEVER_MAX_K there); use cutoffs up to {info['max_k']} in --metrics"
        )
    per_request = max(1, min(batch_size, int(info["max_queries"])))
    by_source, unmatched = served_judgements(service, judged)
    judged_ids = {d for rel in judged.qrels.values() for d in rel} if by_source else None
    qids = list(judged.queries)
    rows = [judged.qrels[q] for q in qids]
    stats = QrelsStats.build(rows, k)
    modes = [("fused", False)] + ([("reranked", True)] if info.get("rerank_available") else [])
    systems: dict[str, SystemResult] = {}
    times: dict[str, list[float]] = {}
    for name, rerank in modes:
        # By source, a list of k sources needs a deeper list of chunks (as grouping searches deeper), up to max_k.
        deep = min(int(info["max_k"]), group_depth(k)) if by_source else k
        lists, times[name] = _served_lists(service, [judged.queries[q] for q in qids], deep, rerank, per_request,
                                           progress=progress, what=name, judged_ids=judged_ids)
        lists = [ids[:k] for ids in lists]
        per_query, gains, _ = _score_lists(lists, rows, ms, stats, k)
        systems[name] = SystemResult(name=name, kind=name, per_query=per_query, latency_ms=_latency(times[name]),
                                     curves=_curves(gains, stats, k))
    config = info.get("config") or {}
    if "reranked" in systems:
        rr = systems["reranked"]
        rr.depth = (config.get("rerank") or {}).get("depth")
        added = np.asarray(times["reranked"]) - np.asarray(times["fused"])
        rr.latency_ms.update(added_mean=float(added.mean()) if added.size else 0.0,
                             added_p95=float(np.percentile(added, 95)) if added.size else 0.0)
        if systems["fused"].latency_ms.get("mean"):
            rr.latency_ms["ratio_mean"] = rr.latency_ms["mean"] / systems["fused"].latency_ms["mean"]
    main = str(ms[0])
    sig = [{"a": n, "b": "fused", "metric": main, **compare(s.per_query[main], systems["fused"].per_query[main], test).as_dict()}
           for n, s in systems.items() if n != "fused"]
    warnings = list(judged.warnings)
    if by_source:
        warnings.append("judgements name sources (files) of a chunked index: each ranked list is scored by source, a "
                        "source counting at the rank of its best chunk (as `query --group-by source` shows it)")
    if unmatched:
        judged.unknown_docs += len(unmatched)
        warnings.append(unmatched_warning(unmatched, f"the index served at {service.url}"))
    warnings.append(
        f"evaluated through the service at {service.url}: its fused"
        + (" and reranked" if "reranked" in systems else "")
        + f" top {k} per query (latency includes HTTP); per-branch scores, candidate recall and the union's recall "
        "need a local `eval --index`"
    )
    warnings += judgement_warnings(judged, systems["fused"], ms)
    return EvalResult(
        data={**judged.describe(), "server": service.url, "unknown_docs": judged.unknown_docs},
        config=config,
        metrics=[str(m) for m in ms],
        qids=qids,
        systems=systems,
        union_recall={"depths": {}, "value": None, "per_branch": {}},
        significance=sig,
        warnings=warnings,
        seconds=time.perf_counter() - t0,
        cache={"path": None, "server": service.url, "k": k, "batch_size": per_request},
    )


def _served_lists(service: ServedIndex, texts: list[str], k: int, rerank: bool, per_request: int, *, progress: bool,
                  what: str, judged_ids: set[str] | None = None) -> tuple[list[list[str]], list[float]]:
    """Each query's ranked document ids from the service, and each query's share of its request's wall time (ms).

    With ``judged_ids`` (judgements name sources), each chunk not itself judged stands for its source,
    kept at its first (best) place.
    """
    from tqdm.auto import tqdm

    lists: list[list[str]] = []
    times: list[float] = []
    with tqdm(total=len(texts), desc=f"searching ({what}) through the service", unit="q", disable=not progress) as bar:
        for s in range(0, len(texts), per_request):
            chunk = texts[s : s + per_request]
            t = time.perf_counter()
            answers = service.search_batch(chunk, k, rerank=rerank)
            ms = (time.perf_counter() - t) * 1000 / len(chunk)
            if len(answers) != len(chunk):
                raise InvalidInputError(f"the service at {service.url} answered {len(answers)} lists for {len(chunk)} queries")
            if judged_ids is None:
                lists += [[h.id for h in hits] for hits in answers]
            else:
                lists += [to_sources([h.id if h.id in judged_ids else str(parent_id(h)) for h in hits], {}) for hits in answers]
            times += [ms] * len(chunk)
            bar.update(len(chunk))
    return lists, times
