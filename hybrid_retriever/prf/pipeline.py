"""The PRF pipeline: feedback lists, guard, query rewriting, second-stage search, fusion.

Given one batch's first-stage branch results and fused lists, :meth:`PRFPipeline.run`

1. takes each query's feedback documents from the fused list (``before``/``both``) or
   from each PRF branch's own list (``none``/``after``) — first-stage lists obey the
   search filter, so feedback documents do too;
2. asks the drift guard how far to trust them (skip, damp or apply);
3. reads the feedback documents' stored vectors back from Qdrant in one call and
   rewrites each PRF branch's query (dense: Rocchio/Average; sparse: RM3/Rocchio), or,
   with ``dense_method: qdrant_feedback``, sends the vectors and their first-stage
   scores as Qdrant's relevance-feedback query, which Qdrant scores itself;
4. runs every second-stage search of the batch in one ``Store.search_batch`` call
   (skipped queries and non-PRF branches reuse their first-stage lists);
5. completes missing scores (reusing first-stage completions) and fuses again: every
   branch for ``after``/``both``, only the PRF branches for ``none``/``before``.

A query whose feedback is skipped keeps its first-stage fused ranking.

A new kind of branch plugs in with :func:`register_rewriter` (e.g. ColBERT-PRF for
multi-vector branches: cluster the feedback documents' token vectors and append the
most discriminative centroids to the query matrix).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from hybrid_retriever.config import PRFConfig, RetrieverConfig
from hybrid_retriever.errors import ConfigError
from hybrid_retriever.fusion import FusedItem
from hybrid_retriever.ids import point_id
import hybrid_retriever.prf.dense as dense
import hybrid_retriever.prf.guard as guard
import hybrid_retriever.prf.sparse as sparse
from hybrid_retriever.prf.stats import IdfCache
from hybrid_retriever.stores.base import PAYLOAD_ID, RelevanceFeedback, SearchRequest, Store
from hybrid_retriever.stores.filters import FilterSpec
from hybrid_retriever.types import BranchResult, BranchScore, Hit, ScoredId, SparseVector, Vector



class FeedbackSource(Protocol):
    """What PRF reads from a retriever (a :class:`~hybrid_retriever.retriever.HybridRetriever`):
    its configuration, branches and store."""

    config: RetrieverConfig
    branches: Mapping[str, Any]
    store: Store

log = logging.getLogger(__name__)


@dataclass
class Feedback:
    """What a rewriter gets for one query and branch."""

    query: Vector
    vectors: list[Vector]
    weights: list[float] | None
    negatives: list[Vector]
    strength: float
    idf: Mapping[int, float] | None = None


#: A rewriter turns a query vector plus feedback into the second-stage query vector.
Rewriter = Callable[[Feedback, PRFConfig], Vector]


def _rewrite_dense(fb: Feedback, cfg: PRFConfig) -> Vector:
    q = np.asarray(fb.query, dtype=np.float32)
    if cfg.dense_method == "average":
        new = dense.average(q, fb.vectors)
    else:
        new = dense.rocchio(q, fb.vectors, fb.negatives, cfg.alpha, cfg.beta, cfg.gamma, weights=None)
    return dense.damp(q, new, fb.strength)


def _rewrite_sparse(fb: Feedback, cfg: PRFConfig) -> Vector:
    q = fb.query
    assert isinstance(q, SparseVector)
    docs = [v for v in fb.vectors if isinstance(v, SparseVector)]
    if cfg.sparse_method == "rocchio":
        new = sparse.rocchio(q, docs, cfg.alpha, cfg.beta, cfg.fb_terms, fb.weights, fb.idf)
    else:
        new = sparse.rm3(q, docs, fb.weights, cfg.rm3_lambda, cfg.fb_terms, fb.idf)
    # The expanded query stays in the language the query was analysed in (per-document-language BM25).
    return replace(sparse.damp(q, new, fb.strength), language=q.language)


def qdrant_feedback(
    ids: Sequence[str], scores: Mapping[str, float], vectors: Mapping[str, Vector], strength: float, cfg: PRFConfig
) -> RelevanceFeedback:
    """Qdrant's relevance-feedback query from feedback documents (``ids``, best first) and their first-stage scores.

    The guard's ``strength`` scales ``c``: damped feedback moves towards the plain
    search (``c = 0`` ranks exactly as the original query).
    """
    return RelevanceFeedback(
        vectors=[vectors[i] for i in ids],
        scores=[float(scores[i]) for i in ids],
        a=cfg.feedback_a,
        b=cfg.feedback_b,
        c=cfg.feedback_c * strength,
    )


#: Rewriters by vector kind (``VectorSpec.kind``).
REWRITERS: dict[str, Rewriter] = {"dense": _rewrite_dense, "sparse": _rewrite_sparse}


def register_rewriter(kind: str, rewriter: Rewriter) -> None:
    """Add PRF for another vector kind (e.g. ``"multi"``): ``rewriter(feedback, config) -> vector``."""
    REWRITERS[kind] = rewriter


@dataclass
class PRFInfo:
    """What PRF did for one query (``Hit.prf``): per PRF branch, strength, feedback documents and why."""

    placement: str
    strength: dict[str, float] = field(default_factory=dict)
    feedback: dict[str, list[str]] = field(default_factory=dict)
    reason: dict[str, str] = field(default_factory=dict)
    signals: dict[str, float] = field(default_factory=dict)
    ms: float = 0.0

    @property
    def applied(self) -> bool:
        """Whether any branch searched again with a rewritten query."""
        return any(s > 0 for s in self.strength.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "placement": self.placement,
            "applied": self.applied,
            "strength": dict(self.strength),
            "feedback": {b: list(v) for b, v in self.feedback.items()},
            "reason": dict(self.reason),
            "signals": dict(self.signals),
            "ms": self.ms,
        }


@dataclass
class PRFOutput:
    """Second-stage fused lists and branch results (one per query) and what PRF did."""

    fused: list[list[FusedItem]]
    results: list[dict[str, BranchResult]]
    info: list[PRFInfo]


class PRFPipeline:
    """Pseudo-relevance feedback over a :class:`~hybrid_retriever.retriever.HybridRetriever`'s branches."""

    def __init__(self, retriever: FeedbackSource, config: PRFConfig | None = None) -> None:
        self.retriever = retriever
        self.config = config if config is not None else retriever.config.prf
        names = self.config.branches
        if names is None:
            names = [n for n, b in retriever.branches.items() if b.vector_spec.kind == "dense"]
            if not names:
                raise ConfigError(
                    f"PRF has no branch to work on: no dense branch among {sorted(retriever.branches)}; "
                    "name the branches in prf.branches (e.g. ['bm25'] for RM3)"
                )
        for n in names:
            if n not in retriever.branches:
                raise ConfigError(f"prf.branches names unknown branch {n!r}; branches: {sorted(retriever.branches)}")
            kind = retriever.branches[n].vector_spec.kind
            if getattr(retriever.branches[n], "rescores_others", False):
                raise ConfigError(
                    f"branch {n!r} re-scores the other branches' candidates; PRF needs a branch that searches "
                    "on its own: remove it from prf.branches"
                )
            if kind not in REWRITERS:
                raise ConfigError(
                    f"PRF is not available for branch {n!r} ({kind} vectors) yet; "
                    f"remove it from prf.branches (PRF works on {sorted(REWRITERS)} branches)"
                )
        self.branches: list[str] = list(names)
        self.idf = IdfCache(retriever.store)

    # ------------------------------------------------------------------ feedback

    def _plan(
        self, results: dict[str, BranchResult], fused: list[FusedItem]
    ) -> tuple[dict[str, tuple[guard.GuardDecision, list[tuple[str, float]]]], dict[str, float]]:
        """Per PRF branch: the guard's decision and the list the feedback came from."""
        cfg = self.config
        plan: dict[str, tuple[guard.GuardDecision, list[tuple[str, float]]]] = {}
        signals: dict[str, float] = {}
        if cfg.interpolate in ("before", "both"):
            source = [(it.id, it.score) for it in fused]
            decision = guard.assess([i for i, _ in source[: cfg.fb_docs]], results, cfg.guard)
            signals.update(decision.signals)
            for b in self.branches:
                if results[b].error is None and results[b].query_vector is not None:
                    plan[b] = (decision, source)
        else:
            for b in self.branches:
                r = results[b]
                if r.error is not None or r.query_vector is None:
                    continue
                source = [(h.point_id, h.score) for h in r.hits]
                decision = guard.assess([i for i, _ in source[: cfg.fb_docs]], results, cfg.guard, own=b)
                signals.update(decision.signals)
                plan[b] = (decision, source)
        return plan, signals

    def run(
        self,
        results: Sequence[dict[str, BranchResult]],
        fused: Sequence[list[FusedItem]],
        spec: FilterSpec | None = None,
    ) -> PRFOutput:
        """Apply PRF to a batch's first stage (``results[i]``, ``fused[i]`` for query i)."""
        t0 = time.perf_counter()
        cfg = self.config
        r = self.retriever
        store = r.store
        plans = []
        infos = []
        for per, fl in zip(results, fused):
            plan, signals = self._plan(per, fl)
            plans.append(plan)
            infos.append(
                PRFInfo(
                    placement=cfg.interpolate,
                    strength={b: d.strength for b, (d, _) in plan.items()},
                    reason={b: d.reason for b, (d, _) in plan.items()},
                    signals=signals,
                )
            )

        # One read of every feedback (and negative) document's stored vectors.
        wanted: dict[str, set[str]] = {}
        negatives: list[dict[str, list[str]]] = []
        for plan in plans:
            negs: dict[str, list[str]] = {}
            for b, (d, source) in plan.items():
                if d.strength <= 0:
                    continue
                wanted.setdefault(b, set()).update(d.feedback)
                uses_negatives = cfg.gamma > 0 or cfg.dense_method == "qdrant_feedback"
                if uses_negatives and cfg.fb_negatives and r.branches[b].vector_spec.kind == "dense":
                    negs[b] = [i for i, _ in source[cfg.negative_from : cfg.negative_from + cfg.fb_negatives]]
                    wanted[b].update(negs[b])
            negatives.append(negs)
        ids = sorted(set().union(*wanted.values())) if wanted else []
        points = {p.point_id: p for p in store.retrieve(ids, with_vectors=sorted(wanted))} if ids else {}

        idf: dict[str, dict[int, float]] = {}
        if cfg.idf_terms:
            sparse_names = [b for b in wanted if r.branches[b].vector_spec.kind == "sparse"]
            if sparse_names:
                self.idf.refresh()
            for b in sparse_names:
                probes: dict[int, tuple[str, float]] = {}
                for pid in sorted(wanted[b]):
                    v = points[pid].vectors.get(b) if pid in points else None
                    if isinstance(v, SparseVector):
                        for t, w in zip(v.indices, v.values):
                            if w > 0 and (t not in probes or w > probes[t][1]):
                                probes[int(t)] = (pid, float(w))
                idf[b] = self.idf.lookup(b, probes)

        # Rewrite the queries; every second-stage search goes to Qdrant in one batch.
        requests: list[SearchRequest] = []
        keys: list[tuple[int, str]] = []
        vectors: dict[tuple[int, str], Vector] = {}
        server_fb: dict[tuple[int, str], RelevanceFeedback] = {}
        for qi, plan in enumerate(plans):
            for b, (d, source) in plan.items():
                fb_ids = [i for i in d.feedback if i in points and b in points[i].vectors]
                infos[qi].feedback[b] = [points[i].payload.get(PAYLOAD_ID, i) for i in fb_ids]
                if d.strength <= 0 or not fb_ids:
                    if d.strength > 0:
                        infos[qi].reason[b] = "skipped: the feedback documents are no longer stored"
                    infos[qi].strength[b] = 0.0
                    continue
                scores = dict(source)
                branch = r.branches[b]
                if branch.vector_spec.kind == "dense" and cfg.dense_method == "qdrant_feedback":
                    # Qdrant scores the second stage itself; the query vector stays the original.
                    negs = [i for i in negatives[qi].get(b, []) if i in points and b in points[i].vectors]
                    items = list(dict.fromkeys(fb_ids + negs))
                    if len(items) < 2:
                        infos[qi].strength[b] = 0.0
                        infos[qi].reason[b] = (
                            f"skipped: Qdrant's feedback query needs 2 or more feedback documents, got {len(items)}"
                        )
                        continue
                    fbq = qdrant_feedback(items, scores, {i: points[i].vectors[b] for i in items}, d.strength, cfg)
                    vectors[(qi, b)] = results[qi][b].query_vector
                    server_fb[(qi, b)] = fbq
                    requests.append(self._request(b, results[qi][b].query_vector, spec, fbq))
                    keys.append((qi, b))
                    continue
                weights = None
                if cfg.doc_weighting == "score":
                    weights = [max(float(scores.get(i, 0.0)), 0.0) for i in fb_ids]
                feedback = Feedback(
                    query=results[qi][b].query_vector,
                    vectors=[points[i].vectors[b] for i in fb_ids],
                    weights=weights,
                    negatives=[points[i].vectors[b] for i in negatives[qi].get(b, []) if i in points and b in points[i].vectors],
                    strength=d.strength,
                    idf=idf.get(b),
                )
                vec = REWRITERS[branch.vector_spec.kind](feedback, cfg)
                vectors[(qi, b)] = vec
                requests.append(self._request(b, vec, spec))
                keys.append((qi, b))
        t_search = time.perf_counter()
        answers = store.search_batch(requests) if requests else []
        search_ms = (time.perf_counter() - t_search) * 1000 / max(len(results), 1)

        second: list[dict[str, BranchResult]] = [dict(per) for per in results]
        for (qi, b), answer in zip(keys, answers):
            first = results[qi][b]
            second[qi][b] = BranchResult(
                branch=b,
                # Equal scores in point-id order, as in the first stage (ranks feed RRF and rank normalisation).
                hits=[ScoredId(pid, s, rank) for rank, (pid, s) in enumerate(sorted(answer, key=lambda t: (-t[1], t[0])), start=1)],
                encode_ms=first.encode_ms,
                search_ms=search_ms,
                query_vector=vectors[(qi, b)],
                signals=first.signals,  # measured on the user's query, which the expansion does not change
            )
        changed = [{b for (q, b) in keys if q == qi} for qi in range(len(results))]

        # Which lists are fused in the end, and score completion for them.
        final: list[list[str]] = []
        for qi, per in enumerate(second):
            if not changed[qi]:
                final.append([])
                continue
            if cfg.interpolate in ("after", "both"):
                names = [b for b in per if per[b].error is None]
            else:
                names = [b for b in self.branches if per[b].error is None]
            for b in names:
                if b not in changed[qi]:
                    # Copy, so completing the second stage never alters the first stage's record.
                    old = per[b]
                    per[b] = BranchResult(
                        branch=b, hits=old.hits, completed=dict(old.completed), encode_ms=old.encode_ms,
                        search_ms=old.search_ms, error=old.error, query_vector=old.query_vector, signals=old.signals,
                    )
            final.append(names)
        fusion = r.config.fusion
        if fusion.completes_scores:
            self._complete(second, final, spec, server_fb)

        out_fused: list[list[FusedItem]] = []
        out_results: list[dict[str, BranchResult]] = []
        for qi in range(len(results)):
            if not final[qi]:
                out_fused.append(list(fused[qi]))
                out_results.append(results[qi])
                continue
            out_fused.append(r.fuse({b: second[qi][b] for b in final[qi]}))
            out_results.append(second[qi])
        ms = (time.perf_counter() - t0) * 1000 / max(len(results), 1)
        for info in infos:
            info.ms = ms
        return PRFOutput(out_fused, out_results, infos)

    def _request(
        self, name: str, vector: Vector, spec: FilterSpec | None, feedback: RelevanceFeedback | None = None
    ) -> SearchRequest:
        """Branch ``name``'s second-stage search, built like its first stage (own options, own first-stage prefetch)."""
        branch = self.retriever.branches[name]
        depth = self.config.depth or self.retriever.config.branch(name).depth
        stage = branch.first_stage(vector) if hasattr(branch, "first_stage") else None
        prefetch = (
            [SearchRequest(vector_name=stage.vector_name, vector=stage.vector, limit=stage.limit, filter=spec)]
            if stage is not None
            else None
        )
        options = branch.search_options() if hasattr(branch, "search_options") else {}
        return SearchRequest(
            vector_name=name, vector=vector, limit=depth, filter=spec, prefetch=prefetch, feedback=feedback, **options
        )

    def _complete(
        self,
        second: list[dict[str, BranchResult]],
        final: list[list[str]],
        spec: FilterSpec | None,
        server_fb: Mapping[tuple[int, str], RelevanceFeedback],
    ) -> None:
        """Exact scores for candidates a final list lacks (first-stage completions are reused).

        A branch searched with Qdrant's feedback query is completed with the same query,
        so every score in its list comes from one formula.
        """
        requests: list[SearchRequest] = []
        targets: list[tuple[int, str, list[str]]] = []
        for qi, names in enumerate(final):
            if len(names) < 2:
                continue
            per = second[qi]
            union = {h.point_id for b in names for h in per[b].hits}
            for b in names:
                res = per[b]
                missing = sorted(union - {h.point_id for h in res.hits} - set(res.completed))
                if missing and res.query_vector is not None:
                    requests.append(
                        SearchRequest(
                            vector_name=b, vector=res.query_vector, limit=len(missing), filter=spec, point_ids=missing,
                            exact=True, feedback=server_fb.get((qi, b)),
                        )
                    )
                    targets.append((qi, b, missing))
        if not requests:
            return
        for (qi, b, asked), answer in zip(targets, self.retriever.store.search_batch(requests)):
            scores = dict(answer)
            if self.retriever.branches[b].vector_spec.kind == "sparse":
                # A document sharing no term with the query is not returned: its exact score is 0.
                scores.update({pid: 0.0 for pid in asked if pid not in scores})
            second[qi][b].completed.update(scores)

    # ---------------------------------------------------------------- provenance

    def annotate(
        self,
        hits: list[list[Hit]],
        first_results: Sequence[dict[str, BranchResult]],
        first_fused: Sequence[list[FusedItem]],
        info: Sequence[PRFInfo],
    ) -> list[list[Hit]]:
        """Add each branch's first-stage view (``BranchScore.first_stage``) and ``Hit.prf`` to final hits."""

        for q_hits, per, fl, inf in zip(hits, first_results, first_fused, info):
            items = {it.id: it for it in fl}
            ranked = {b: {h.point_id: h for h in res.hits} for b, res in per.items()}
            for hit in q_hits:
                pid = point_id(hit.id)
                item = items.get(pid)
                for b, res in per.items():
                    own = ranked[b].get(pid)
                    raw = own.score if own else res.completed.get(pid)
                    first = BranchScore(
                        raw=raw,
                        normalized=item.normalized.get(b) if item is not None else None,
                        rank=own.rank if own else None,
                        completed=own is None and pid in res.completed,
                    )
                    if b in hit.provenance:
                        hit.provenance[b].first_stage = first
                    else:
                        hit.provenance[b] = BranchScore(raw=None, normalized=None, rank=None, first_stage=first)
                hit.prf = inf
        return hits
