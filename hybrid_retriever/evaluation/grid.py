"""Fusion of cached branch runs, vectorised over many configurations at once.

:class:`FusionGrid` turns cached runs (:mod:`.cache`) into padded arrays — one row
per query, one column per candidate, one slice per branch — and scores a fusion
configuration (:class:`FusionParams`: method, normalisation, weights, per-branch
depth, missing-score policy) for every query with numpy, many weight vectors in
one pass. It reproduces :meth:`HybridRetriever.search` exactly: the same
normalisers (fitted with the public :func:`hybrid_retriever.fusion.fit_normalizer`),
the same float operations in the same order, the same tie-break (best branch rank,
then point id), so a configuration scored here ranks as the retriever would.

:func:`fuse_reference` is the slow, obviously-correct path: it cuts the cached
lists to a configuration's depths and calls the public fusion functions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np

from hybrid_retriever.config import RetrieverConfig
from hybrid_retriever.errors import ConfigError, InvalidInputError
from hybrid_retriever.evaluation.cache import QueryRuns
from hybrid_retriever.evaluation.metrics import Metric, QrelsStats, metric_from_arrays, parse_metric
from hybrid_retriever.fusion import (
    ADAPTIVE_OPTIONS,
    DEFAULT_CLARITY_WEIGHT,
    DEFAULT_FOREIGN_WEIGHT,
    DEFAULT_FRAGMENTATION_WEIGHT,
    DEFAULT_SPARSE_CLARITY_OFFSET,
    DEFAULT_SUPPORT_WEIGHT,
    BranchSignals,
    FusedItem,
    adaptive_weights,
    branch_signals,
    fit_normalizer,
    fuse_results,
    served_weights,
)
from hybrid_retriever.ids import point_id
from hybrid_retriever.types import BranchResult

_BIG = np.int64(1 << 30)
#: Upper bound on elements of one (weights x queries x candidates) block.
_BLOCK_ELEMENTS = 8_000_000


@dataclass(frozen=True)
class FusionParams:
    """One point of the fusion space; weights and depths follow the branch order."""

    method: str
    weights: tuple[float, ...]
    depths: tuple[int, ...]
    normalization: str = "minmax"
    missing: str = "exact"
    rrf_k: float = 60.0
    floor_value: float | None = None
    #: How completed scores are normalised (``fusion.completed``: union, clamp or raw).
    completed: str = "union"
    #: Adaptive fusion's query-clarity weighting (``fusion.clarity_weight``, ``fusion.sparse_clarity_offset``).
    clarity_weight: float = DEFAULT_CLARITY_WEIGHT
    sparse_clarity_offset: float = DEFAULT_SPARSE_CLARITY_OFFSET
    #: Adaptive fusion's agreement weighting (``fusion.support_weight``).
    support_weight: float = DEFAULT_SUPPORT_WEIGHT
    #: Adaptive: which branches are sparse (BM25), in branch order; None = none. Only for runs that predate
    #: recorded query facts (cache version 1): the runs' own facts say it otherwise.
    sparse: tuple[bool, ...] | None = None
    #: Adaptive fusion's out-of-language multiplier and fragmentation weighting (``fusion.foreign_weight``,
    #: ``fusion.fragmentation_weight``).
    foreign_weight: float = DEFAULT_FOREIGN_WEIGHT
    fragmentation_weight: float = DEFAULT_FRAGMENTATION_WEIGHT

    def __post_init__(self) -> None:
        # Adaptive fusion is scored with every signal search uses: the runs keep each query's facts (empty BM25
        # query, the language it was analysed in, the dense model's fragmentation) and the index's context
        # (content language, model languages), and the grid calls the retriever's own branch_signals.
        if self.method not in ("interpolation", "rrf", "adaptive"):
            raise ConfigError(f"unknown fusion method {self.method!r}")
        if len(self.weights) != len(self.depths):
            raise ConfigError("weights and depths need one entry per branch")
        if sum(self.weights) <= 0 or any(w < 0 for w in self.weights):
            raise ConfigError(f"weights must be non-negative with a positive sum, got {self.weights}")

    @property
    def family(self) -> str:
        """Method and its setting without weights and depths, e.g. ``interpolation/minmax/exact`` or ``rrf/k=60``."""
        if self.method == "rrf":
            return f"rrf/k={_num(self.rrf_k)}"
        fam = f"{self.method}/{self.normalization}/{self.missing}"
        if self.missing == "exact" and self.completed != "union":
            fam += f"/{self.completed}"
        if self.method == "adaptive" and (self.clarity_weight, self.sparse_clarity_offset, self.support_weight) != (
            DEFAULT_CLARITY_WEIGHT, DEFAULT_SPARSE_CLARITY_OFFSET, DEFAULT_SUPPORT_WEIGHT
        ):
            fam += f"/clarity={_num(self.clarity_weight)},{_num(self.sparse_clarity_offset)}/support={_num(self.support_weight)}"
        if self.method == "adaptive" and (self.foreign_weight, self.fragmentation_weight) != (
            DEFAULT_FOREIGN_WEIGHT, DEFAULT_FRAGMENTATION_WEIGHT
        ):
            fam += f"/foreign={_num(self.foreign_weight)},fragmentation={_num(self.fragmentation_weight)}"
        return fam + (f"/floor={_num(self.floor_value)}" if self.missing == "floor" and self.floor_value is not None else "")

    def normalized_weights(self) -> tuple[float, ...]:
        """Weights divided by their sum, computed as :meth:`RetrieverConfig.weights` does."""
        total = sum(self.weights)
        return tuple(w / total for w in self.weights)

    def label(self, branches: Sequence[str]) -> str:
        w = ",".join(f"{b}={_num(x)}" for b, x in zip(branches, self.weights))
        d = ",".join(f"{b}={x}" for b, x in zip(branches, self.depths))
        return f"{self.family} w[{w}] depth[{d}]"

    def as_dict(self, branches: Sequence[str]) -> dict[str, Any]:
        d = asdict(self)
        d["weights"] = dict(zip(branches, self.weights))
        d["depths"] = dict(zip(branches, self.depths))
        d["label"] = self.label(branches)
        return d

    @classmethod
    def from_config(cls, config: RetrieverConfig) -> "FusionParams":
        """The fusion a configuration applies (server-side fusion is read as its client-side twin)."""
        f = config.fusion
        return cls(
            method=f.method,
            weights=tuple(float(b.weight) for b in config.branches),
            depths=tuple(int(b.depth) for b in config.branches),
            normalization=f.normalization,
            missing=f.missing,
            rrf_k=float(f.rrf_k),
            floor_value=f.floor_value,
            completed=f.completed,
            clarity_weight=f.clarity_weight,
            sparse_clarity_offset=f.sparse_clarity_offset,
            support_weight=f.support_weight,
            sparse=tuple(b.kind == "bm25" for b in config.branches) if f.method == "adaptive" else None,
            foreign_weight=f.foreign_weight,
            fragmentation_weight=f.fragmentation_weight,
        )

    def adaptive_options(self) -> dict[str, float]:
        """Adaptive fusion's settings as :func:`~hybrid_retriever.fusion.adaptive_weights` takes them (as search passes them)."""
        return {k: float(getattr(self, k)) for k in ADAPTIVE_OPTIONS}

    def apply(self, base: RetrieverConfig) -> RetrieverConfig:
        """``base`` with this fusion, weights and depths (store, models and runtime unchanged)."""
        data = base.model_dump()
        if len(data["branches"]) != len(self.weights):
            raise ConfigError(f"configuration has {len(data['branches'])} branches, these parameters {len(self.weights)}")
        for b, w, d in zip(data["branches"], self.weights, self.depths):
            b["weight"] = float(w)
            b["depth"] = int(d)
        fusion = data["fusion"]
        fusion["method"] = self.method
        fusion["server_side"] = False
        if self.method != "rrf":
            fusion["normalization"] = self.normalization
            fusion["missing"] = self.missing
            fusion["floor_value"] = self.floor_value
            fusion["completed"] = self.completed
        if self.method == "adaptive":
            fusion.update(self.adaptive_options())
        else:
            fusion["rrf_k"] = float(self.rrf_k)
        return RetrieverConfig.validate_data(data)


def _num(x: float | None) -> str:
    if x is None:
        return "None"
    return f"{x:g}"


# --------------------------------------------------------------------- reference path


def served_inputs(
    runs: QueryRuns, depth: Mapping[str, int], weights: Mapping[str, float], sparse: Mapping[str, bool] | None = None,
) -> tuple[dict[str, BranchResult], dict[str, float], dict[str, BranchSignals]]:
    """One query's cached runs as search would fuse them at ``depth``: the branch results, the weights after
    dropping failed branches and adaptive fusion's signals, each computed by the retriever's own functions
    (:func:`served_weights`, :func:`branch_signals` with the recorded query facts and index context).

    ``sparse`` (branch -> is BM25) stands in for runs recorded without query facts.
    """
    results = runs.to_branch_results(depth)
    facts = {n: r.query for n, r in runs.branches.items()}
    for n, f in facts.items():
        if not f and sparse is not None:
            facts[n] = {"sparse": bool(sparse.get(n))}
    content, languages = runs.adaptive_context()
    return results, served_weights(weights, results), branch_signals(results, content, languages, facts)


def fuse_reference(runs: QueryRuns, config: RetrieverConfig) -> list[FusedItem]:
    """Fuse one query's cached runs with ``config`` using the public fusion functions.

    Each branch list is cut to the branch's configured depth; candidates a branch did
    not return keep their exact score as a completed score, as a search at that depth
    with score completion would give.
    """
    depth = {b.branch_name: b.depth for b in config.branches}
    sparse = {b.branch_name: b.kind == "bm25" for b in config.branches}
    results, weights, signals = served_inputs(runs, depth, config.weights(), sparse)
    return fuse_results(results, config.fusion, weights, signals)


# ------------------------------------------------------------------------ the grid


@dataclass
class _DepthView:
    ret: np.ndarray      # (Q, C, B) bool: returned within the branch depth
    raw: np.ndarray      # (Q, C, B) float64, NaN = no score
    rank: np.ndarray     # (Q, C, B) int64
    cand: np.ndarray     # (Q, C) bool
    n_ret: np.ndarray    # (Q, B) list length at this depth
    gains: np.ndarray    # (Q, C) graded relevance (0 for non-candidates)
    judged: np.ndarray   # (Q, C) bool
    pids: np.ndarray     # (Q, C) candidate column -> index into the query's pid list (-1 = none)


class FusionGrid:
    """Cached runs of judged queries as arrays, ready to score fusion configurations.

    ``qrels`` maps query id -> document id -> grade (document ids as the user gave
    them; they are turned into point ids here). ``max_k`` is the deepest metric cutoff
    that will be asked for.
    """

    def __init__(self, runs: Sequence[QueryRuns], branches: Sequence[str], qrels: Mapping[str, Mapping[str, int]],
                 max_k: int = 100, cached_depths: Mapping[str, int] | None = None) -> None:
        if not runs:
            raise InvalidInputError("no cached runs to fuse")
        self.branches = list(branches)
        self.qids = [r.qid for r in runs]
        self.runs = list(runs)
        self.max_k = max_k
        B = len(self.branches)
        rel_rows = [{point_id(d): g for d, g in qrels.get(q, {}).items()} for q in self.qids]
        self.qrels_rows = rel_rows
        cand_lists: list[list[str]] = []
        for r in runs:
            u = set()
            for n in self.branches:
                br = r.branches.get(n)
                if br is not None and br.error is None:
                    u.update(br.ids)
            cand_lists.append(sorted(u))
        self.pid_lists = cand_lists
        Q = len(runs)
        C = max(1, max(len(c) for c in cand_lists))
        self.raw = np.full((Q, C, B), np.nan)
        self.rank = np.full((Q, C, B), _BIG, dtype=np.int64)
        self.valid = np.zeros((Q, C), dtype=bool)
        self.gains_all = np.zeros((Q, C))
        self.judged_all = np.zeros((Q, C), dtype=bool)
        self.error = np.zeros((Q, B), dtype=bool)
        self.max_depth = np.zeros(B, dtype=np.int64)
        for qi, (r, cands) in enumerate(zip(runs, cand_lists)):
            col = {p: j for j, p in enumerate(cands)}
            self.valid[qi, : len(cands)] = True
            rel = rel_rows[qi]
            for j, p in enumerate(cands):
                g = rel.get(p)
                if g is not None:
                    self.judged_all[qi, j] = True
                    self.gains_all[qi, j] = max(float(g), 0.0)
            for bi, n in enumerate(self.branches):
                br = r.branches.get(n)
                if br is None or br.error is not None:
                    self.error[qi, bi] = True
                    continue
                for pid, s in br.completed.items():
                    j = col.get(pid)
                    if j is not None and not math.isnan(s):
                        self.raw[qi, j, bi] = s
                ranked = [(p, s) for p, s in zip(br.ids, br.scores) if not math.isnan(s)]
                for rk, (pid, s) in enumerate(ranked, start=1):
                    j = col[pid]
                    self.raw[qi, j, bi] = s
                    self.rank[qi, j, bi] = rk
                self.max_depth[bi] = max(self.max_depth[bi], len(ranked))
        self._lists = [
            [[s for s in r.branches[n].scores if not math.isnan(s)] if n in r.branches and r.branches[n].error is None else []
             for n in self.branches]
            for r in runs
        ]
        self.cached_depths = [
            int(cached_depths[n]) if cached_depths and n in cached_depths else int(self.max_depth[bi])
            for bi, n in enumerate(self.branches)
        ]
        self._views: dict[tuple[int, ...], _DepthView] = {}
        self._norms: dict[tuple[str, int, int], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        #: Which branches failed, per query, as search's fusion sees it (for :func:`served_weights`).
        self._outcomes = [{n: BranchResult(branch=n, hits=[], error="failed" if self.error[qi, bi] else None)
                           for bi, n in enumerate(self.branches)} for qi in range(Q)]
        #: Adaptive fusion's per-query signals, by (signal, depths).
        self._signals: dict[tuple[Any, ...], list[Any]] = {}
        self.stats = QrelsStats.build([qrels.get(q, {}) for q in self.qids], max_k)

    @classmethod
    def from_cache(cls, cache: Any, qrels: Mapping[str, Mapping[str, int]], qids: Sequence[str] | None = None,
                   max_k: int = 100) -> "FusionGrid":
        """A grid over ``cache`` (a :class:`~.cache.RunCache`) for ``qids`` (default: every judged query in it)."""
        qids = [q for q in (qids if qids is not None else list(cache)) if q in qrels]
        missing = [q for q in qids if q not in cache]
        if missing:
            raise InvalidInputError(f"{len(missing)} queries are not in the cache (e.g. {missing[:3]}); collect their runs first")
        return cls(cache.subset(qids), cache.branches, qrels, max_k=max_k, cached_depths=cache.depth)

    @property
    def n_queries(self) -> int:
        return len(self.qids)

    # -- per depth vector ----------------------------------------------------------

    def _view(self, depths: tuple[int, ...]) -> _DepthView:
        v = self._views.get(depths)
        if v is not None:
            return v
        d = np.asarray(depths, dtype=np.int64)
        ret = self.rank <= d[None, None, :]
        cand = ret.any(-1) & self.valid
        best = np.where(ret, self.rank, _BIG).min(-1)
        best = np.where(cand, best, _BIG)
        cols = np.broadcast_to(np.arange(best.shape[1]), best.shape)
        perm = np.lexsort((cols, best), axis=-1)
        width = max(1, int(cand.sum(-1).max()))
        perm = perm[:, :width]
        take2 = lambda a: np.take_along_axis(a, perm, axis=1)  # noqa: E731
        take3 = lambda a: np.take_along_axis(a, perm[:, :, None], axis=1)  # noqa: E731
        c = take2(cand)
        v = _DepthView(
            ret=take3(ret), raw=take3(self.raw), rank=take3(self.rank), cand=c,
            n_ret=ret.sum(1), gains=np.where(c, take2(self.gains_all), 0.0), judged=c & take2(self.judged_all),
            pids=np.where(c, perm, -1),
        )
        if len(self._views) > 64:
            self._views.clear()
        self._views[depths] = v
        return v

    def _normalizer(self, norm: str, bi: int, depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-query (shift, scale, degenerate value, defined) of branch ``bi`` cut to ``depth``."""
        key = (norm, bi, depth)
        got = self._norms.get(key)
        if got is not None:
            return got
        Q = self.n_queries
        shift, scale, deg = np.zeros(Q), np.ones(Q), np.zeros(Q)
        has = np.zeros(Q, dtype=bool)
        for qi in range(Q):
            nz = fit_normalizer(norm, self._lists[qi][bi][:depth])
            if nz is not None:
                shift[qi], scale[qi], deg[qi], has[qi] = nz.shift, nz.scale, nz.degenerate_value, True
        got = (shift, scale, deg, has)
        self._norms[key] = got
        return got

    def _union_normalizer(self, norm: str, bi: int, view: _DepthView) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Like :meth:`_normalizer`, fitted on the returned and completed scores of the candidates (``completed: union``).

        The scores are sorted best first, as fusion sorts them, so the fit is the same float for float.
        """
        Q = self.n_queries
        shift, scale, deg = np.zeros(Q), np.ones(Q), np.zeros(Q)
        has = np.zeros(Q, dtype=bool)
        for qi in range(Q):
            ret = view.ret[qi, :, bi]
            raw = view.raw[qi, :, bi]
            if not ret.any():
                continue
            extra = view.cand[qi] & ~ret & ~np.isnan(raw)
            nz = fit_normalizer(norm, sorted([float(x) for x in raw[ret]] + [float(x) for x in raw[extra]], reverse=True))
            if nz is not None:
                shift[qi], scale[qi], deg[qi], has[qi] = nz.shift, nz.scale, nz.degenerate_value, True
        return shift, scale, deg, has

    def branch_values(self, p: FusionParams) -> tuple[np.ndarray, _DepthView]:
        """Per-branch values that get weighted and summed: ``(B, Q, C)``, 0 = no contribution."""
        view = self._view(tuple(int(x) for x in p.depths))
        B = len(self.branches)
        Q, C = view.cand.shape
        out = np.zeros((B, Q, C))
        for bi in range(B):
            ret = view.ret[:, :, bi]
            raw = view.raw[:, :, bi]
            ok = ~self.error[:, bi][:, None]
            if p.method == "rrf":
                with np.errstate(divide="ignore", invalid="ignore"):
                    v = 1.0 / (p.rrf_k + view.rank[:, :, bi].astype(np.float64))
                out[bi] = np.where(ret & ok, v, 0.0)
                continue
            exact = p.missing == "exact"
            has_raw = ~np.isnan(raw)
            if p.normalization == "rank":
                n = view.n_ret[:, bi].astype(np.float64)[:, None]
                with np.errstate(divide="ignore", invalid="ignore"):
                    v = (n - view.rank[:, :, bi].astype(np.float64) + 1.0) / n
                v = np.where(ret, v, 0.0)
                defined = ret | (has_raw & exact)
            else:
                if exact and p.completed == "union":
                    shift, scale, deg, has = self._union_normalizer(p.normalization, bi, view)
                else:
                    shift, scale, deg, has = self._normalizer(p.normalization, bi, int(p.depths[bi]))
                sh, sc, dg = shift[:, None], scale[:, None], deg[:, None]
                with np.errstate(divide="ignore", invalid="ignore"):
                    lin = (raw - sh) / sc
                v = np.where(sc == 0.0, np.where(raw >= sh, dg, dg - 1.0), lin)
                if exact and p.completed == "clamp":
                    # Completed scores never below the lowest returned one (degenerate lists excepted).
                    low = np.where(ret, v, np.inf).min(axis=1)[:, None]
                    v = np.where(ret | (sc == 0.0) | ~np.isfinite(low), v, np.maximum(v, low))
                defined = (ret | (has_raw & exact)) & has[:, None]
            # floor: the given value (floor policy), else the lowest normalised score the branch returned
            masked = np.where(ret, v, np.inf)
            lowest = masked.min(axis=1)
            any_ret = np.isfinite(lowest)
            if p.missing == "floor" and p.floor_value is not None:
                floor = np.full(Q, float(p.floor_value))
                has_floor = np.ones(Q, dtype=bool)
            else:
                floor = np.where(any_ret, lowest, 0.0)
                has_floor = any_ret
            val = np.where(defined, v, np.where(has_floor[:, None], floor[:, None], 0.0))
            out[bi] = np.where(view.cand & ok, val, 0.0)
        return out, view

    @staticmethod
    def _combine(values: np.ndarray, weights: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """Fused scores ``(W, Q, C)``: sum of weight x value in branch order (as the library adds them).

        ``weights`` is ``(W, B)``, or ``(W, Q, B)`` with per-query weights (adaptive fusion).
        """
        w = weights[:, None, :] if weights.ndim == 2 else weights
        F = w[:, :, 0, None] * values[0][None]
        for bi in range(1, values.shape[0]):
            F = F + w[:, :, bi, None] * values[bi][None]
        return np.where(cand[None], F, -np.inf)

    def _served_signals(self, depths: tuple[int, ...], sparse: tuple[bool, ...] | None) -> list[dict[str, BranchSignals]]:
        """Each query's adaptive-fusion signals at ``depths``, computed as search computes them (:func:`served_inputs`)."""
        key = ("signals", sparse) + depths
        got = self._signals.get(key)
        if got is None:
            depth = dict(zip(self.branches, depths))
            flags = dict(zip(self.branches, sparse)) if sparse else None
            got = [served_inputs(r, depth, {n: 1.0 for n in self.branches}, flags)[2] for r in self.runs]
            self._signals[key] = got
        return got

    def _weights_array(self, params: Sequence[FusionParams]) -> np.ndarray:
        """``(W, B)`` weights, or ``(W, Q, B)`` per query when a configuration is adaptive.

        Per-query weights are computed by :func:`~hybrid_retriever.fusion.adaptive_weights` itself, after
        leaving out a failed branch and renormalising as the retriever does, so they are the same floats.
        """
        if not any(p.method == "adaptive" for p in params):
            return np.array([p.normalized_weights() for p in params], dtype=np.float64)
        Q, B = self.n_queries, len(self.branches)
        out = np.zeros((len(params), Q, B))
        for pi, p in enumerate(params):
            base = dict(zip(self.branches, p.normalized_weights()))
            if p.method != "adaptive":
                out[pi] = np.array(list(base.values()))[None, :]
                continue
            signals = self._served_signals(tuple(int(d) for d in p.depths), p.sparse)
            options = p.adaptive_options()
            for qi in range(Q):
                ok = [n for bi, n in enumerate(self.branches) if not self.error[qi, bi]]
                w = served_weights(base, self._outcomes[qi]) if len(ok) < B else base
                aw = adaptive_weights({n: w.get(n, 0.0) for n in ok}, signals[qi], **options)
                out[pi, qi] = [aw.weights.get(n, 0.0) for n in self.branches]
        return out

    @staticmethod
    def _top(F: np.ndarray, K: int) -> np.ndarray:
        """Indices of the K best columns per row, best first; ties go to the lower column."""
        C = F.shape[-1]
        if K >= C:
            return np.argsort(-F, axis=-1, kind="stable")
        part = np.argpartition(-F, K - 1, axis=-1)[..., :K]
        part.sort(axis=-1)
        vals = np.take_along_axis(F, part, -1)
        thr = vals.min(-1)
        n_ge = (F >= thr[..., None]).sum(-1)
        order = np.argsort(-vals, axis=-1, kind="stable")
        top = np.take_along_axis(part, order, -1)
        bad = n_ge > K  # ties straddle the cut: settle those rows with a full stable sort
        if bad.any():
            idx = np.nonzero(bad)
            top[idx] = np.argsort(-F[idx], axis=-1, kind="stable")[..., :K]
        return top

    # -- scoring -------------------------------------------------------------------

    def score(self, params: Sequence[FusionParams], metric: str | Metric) -> np.ndarray:
        """Per-query ``metric`` of every configuration: ``(len(params), Q)``.

        Configurations that differ only in weights are scored together in one block.
        """
        m = parse_metric(metric)
        if m.k > self.max_k:
            raise InvalidInputError(f"{m} is deeper than this grid's max_k={self.max_k}")
        out = np.zeros((len(params), self.n_queries))
        groups: dict[FusionParams, list[int]] = {}
        for i, p in enumerate(params):
            self._check_depths(p)
            groups.setdefault(replace(p, weights=tuple(1.0 for _ in p.weights)), []).append(i)
        for key, idx in groups.items():
            values, view = self.branch_values(key)
            Q, C = view.cand.shape
            step = max(1, _BLOCK_ELEMENTS // max(1, Q * C))
            for s in range(0, len(idx), step):
                chunk = idx[s : s + step]
                W = self._weights_array([params[i] for i in chunk])
                F = self._combine(values, W, view.cand)
                K = min(m.k, C)
                top = self._top(F, K)
                gains = np.take_along_axis(np.broadcast_to(view.gains, F.shape), top, -1)
                judged = np.take_along_axis(np.broadcast_to(view.judged, F.shape), top, -1)
                if K < m.k:
                    pad = m.k - K
                    gains = np.concatenate([gains, np.zeros(gains.shape[:-1] + (pad,))], -1)
                    judged = np.concatenate([judged, np.zeros(judged.shape[:-1] + (pad,), dtype=bool)], -1)
                out[chunk] = metric_from_arrays(m, gains, judged, self.stats)
        return out

    def metrics(self, p: FusionParams, metrics: Sequence[str | Metric]) -> dict[str, np.ndarray]:
        """Per-query values of several metrics for one configuration."""
        return {str(parse_metric(m)): self.score([p], m)[0] for m in metrics}

    def fused(self, p: FusionParams, k: int) -> list[list[tuple[str, float]]]:
        """The top ``k`` (point id, fused score) of every query, as the retriever would return them."""
        self._check_depths(p)
        values, view = self.branch_values(p)
        W = self._weights_array([p])
        F = self._combine(values, W, view.cand)[0]
        K = min(k, F.shape[-1])
        top = self._top(F, K)
        out = []
        for qi in range(self.n_queries):
            row = []
            for j in top[qi]:
                if not view.cand[qi, j]:
                    break
                row.append((self.pid_lists[qi][int(view.pids[qi, j])], float(F[qi, j])))
            out.append(row)
        return out

    def _check_depths(self, p: FusionParams) -> None:
        if len(p.depths) != len(self.branches):
            raise InvalidInputError(f"parameters have {len(p.depths)} branches, the cache {len(self.branches)}")
        for n, d, cached in zip(self.branches, p.depths, self.cached_depths):
            if d > cached:
                raise InvalidInputError(
                    f"branch {n!r} depth {d} is deeper than the cached runs ({cached}); collect the runs deeper"
                )
