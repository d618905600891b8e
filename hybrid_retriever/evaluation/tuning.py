"""Tune fusion on cached runs: search the fusion space, validate honestly, write the config.

The flow (:func:`tune`):

1. every branch is searched once per query at the deepest depth needed, with
   score completion, and the raw runs are cached (:func:`~.cache.collect_runs`);
2. every configuration of the :class:`SearchSpace` — fusion method (interpolation
   with each normalisation and missing-score policy, weighted RRF with each k),
   per-branch weights on a grid over the simplex, per-branch depth — is scored on
   the cache with numpy (:class:`~.grid.FusionGrid`), thousands in seconds;
3. the best configuration is picked on tuning queries and judged on queries it was
   not tuned on: k-fold cross-validation over queries, or a given train/dev split.
   The report puts the validation score next to the held-out score and the
   default configuration's held-out score, with a paired significance test.

Ties between configurations go to the one listed first: the default configuration
comes first, then deeper lists before shallower ones, so a tie never makes the
tuned configuration cut candidates or move away from the default for nothing.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from hybrid_retriever.config import RetrieverConfig
from hybrid_retriever.errors import InvalidInputError
from hybrid_retriever.evaluation.grid import FusionGrid, FusionParams
from hybrid_retriever.evaluation.metrics import parse_metric

from hybrid_retriever.evaluation.validation import split_indices, validate


class ConfigChange(Protocol):
    """A tuning result that writes its choice into a configuration (PRF, rerank weight)."""

    def apply(self, config: RetrieverConfig) -> RetrieverConfig: ...

    def header(self) -> str: ...

log = logging.getLogger(__name__)

NORMALIZATIONS = ("minmax", "zscore", "dbsf", "rank")


def weight_grid(n_branches: int, step: float = 0.05) -> list[tuple[float, ...]]:
    """Weight vectors on the simplex in steps of ``step`` (each sums to 1), first branch descending.

    Two branches with step 0.1: (1.0, 0.0), (0.9, 0.1), ... (0.0, 1.0).
    """
    if n_branches < 1:
        raise InvalidInputError("at least one branch")
    n = round(1.0 / step)
    if n < 1 or abs(n * step - 1.0) > 1e-9:
        raise InvalidInputError(f"weight step {step} must divide 1 (e.g. 0.05, 0.1, 0.25)")
    if n_branches == 1:
        return [(1.0,)]
    out = []
    for combo in itertools.product(range(n, -1, -1), repeat=n_branches - 1):
        rest = n - sum(combo)
        if rest < 0:
            continue
        out.append(tuple(round(c / n, 10) for c in combo) + (round(rest / n, 10),))
    return out


@dataclass
class SearchSpace:
    """The fusion configurations the tuner tries.

    ``weights`` overrides the simplex grid of ``weight_step`` with explicit vectors.
    ``depths`` (e.g. ``(10, 20, 50, 100)``) turns on the depth search: with
    ``per_branch_depth`` every combination across branches (None: only for two
    branches or fewer, else the same depth for all). Off by default (None: each
    branch keeps the default configuration's depth): a shallower list can lift
    nDCG@10 a little while it cuts the candidates a reranker or Recall@100 sees —
    ``benchmarks/results/tuning.md`` shows both.
    """

    methods: tuple[str, ...] = ("interpolation", "rrf")
    normalizations: tuple[str, ...] = NORMALIZATIONS
    missing: tuple[str, ...] = ("exact", "floor")
    rrf_ks: tuple[float, ...] = (1, 5, 10, 20, 40, 60, 100)
    weight_step: float = 0.05
    weights: tuple[tuple[float, ...], ...] | None = None
    depths: tuple[int, ...] | None = None
    per_branch_depth: bool | None = None

    def families(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if "interpolation" in self.methods:
            for norm in self.normalizations:
                for miss in self.missing:
                    out.append({"method": "interpolation", "normalization": norm, "missing": miss})
        if "rrf" in self.methods:
            for k in self.rrf_ks:
                out.append({"method": "rrf", "rrf_k": float(k)})
        unknown = set(self.methods) - {"interpolation", "rrf"}
        if unknown:
            raise InvalidInputError(f"unknown fusion method(s) {sorted(unknown)}; use interpolation and/or rrf")
        bad = set(self.normalizations) - set(NORMALIZATIONS)
        if bad:
            raise InvalidInputError(f"unknown normalisation(s) {sorted(bad)}; choose from {list(NORMALIZATIONS)}")
        if not out:
            raise InvalidInputError("the search space is empty")
        return out

    def depth_vectors(self, n_branches: int, cached: Sequence[int], base: Sequence[int] | None = None) -> list[tuple[int, ...]]:
        if self.depths is None:
            if base is None:
                raise InvalidInputError("no depths to try: give SearchSpace(depths=...) or a default configuration")
            return [tuple(int(d) for d in base)]
        values = sorted({int(d) for d in self.depths}, reverse=True)
        per_branch = self.per_branch_depth if self.per_branch_depth is not None else n_branches <= 2
        if per_branch:
            vecs = list(itertools.product(values, repeat=n_branches))
        else:
            vecs = [tuple([d] * n_branches) for d in values]
        vecs = [v for v in vecs if all(d <= c for d, c in zip(v, cached))]
        if not vecs:
            raise InvalidInputError(f"no depth in {list(self.depths or [])} fits the cached runs (depths {list(cached)})")
        return vecs

    def enumerate(self, n_branches: int, cached: Sequence[int], default: FusionParams | None = None) -> list[FusionParams]:
        """Every configuration, the default first, then deeper depth vectors first."""
        weights = list(self.weights) if self.weights is not None else weight_grid(n_branches, self.weight_step)
        for w in weights:
            if len(w) != n_branches:
                raise InvalidInputError(f"weight vector {w} has {len(w)} entries for {n_branches} branches")
        out: list[FusionParams] = [default] if default is not None else []
        seen = set(out)
        for depths in self.depth_vectors(n_branches, cached, default.depths if default is not None else None):
            for fam in self.families():
                for w in weights:
                    if sum(w) <= 0:
                        continue
                    p = FusionParams(weights=tuple(float(x) for x in w), depths=depths, **fam)
                    if p not in seen:
                        seen.add(p)
                        out.append(p)
        return out


@dataclass
class TuningResult:
    """What :func:`tune` found, with its honest validation."""

    metric: str
    branches: list[str]
    n_queries: int
    n_configs: int
    seconds: float
    validation: str                    # "cv" or "split"
    selection: str                     # the rule that picked: "one-se" or "best"
    best: FusionParams
    best_score: float                  # on the tuning queries (optimistic)
    default: FusionParams
    default_score: float               # on the tuning queries
    heldout_score: float               # tuned config(s) on queries not tuned on
    default_heldout_score: float       # default config on the same queries
    significance: dict[str, Any]
    folds: list[dict[str, Any]]
    top: list[dict[str, Any]]
    landscape: dict[str, Any]
    params: list[FusionParams] = field(repr=False, default_factory=list)
    scores: np.ndarray | None = field(repr=False, default=None)
    heldout_per_query: np.ndarray | None = field(repr=False, default=None)
    default_per_query: np.ndarray | None = field(repr=False, default=None)
    qids: list[str] = field(repr=False, default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    fold_of: np.ndarray | None = field(repr=False, default=None)      # grid query -> held-out fold (-1: tuning only)
    fold_params: list[FusionParams] = field(repr=False, default_factory=list)  # configuration picked for each fold

    def heldout_scores(self, grid: FusionGrid, metric: str) -> np.ndarray:
        """Per-query ``metric`` on the held-out queries, each scored by the configuration its fold picked."""
        assert self.fold_of is not None
        out = np.zeros(int((self.fold_of >= 0).sum()))
        held = np.nonzero(self.fold_of >= 0)[0]
        pos = {q: i for i, q in enumerate(held)}
        for f, p in enumerate(self.fold_params):
            idx = np.nonzero(self.fold_of == f)[0]
            vals = grid.score([p], metric)[0][idx]
            out[[pos[i] for i in idx]] = vals
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, stable keys (schema ``hybrid-retriever/tuning/1``)."""
        return {
            "schema": "hybrid-retriever/tuning/1",
            "data": self.data,
            "metric": self.metric,
            "branches": self.branches,
            "n_queries": self.n_queries,
            "n_configs": self.n_configs,
            "seconds": round(self.seconds, 3),
            "validation": self.validation,
            "selection": self.selection,
            "best": self.best.as_dict(self.branches),
            "best_score": self.best_score,
            "default": self.default.as_dict(self.branches),
            "default_score": self.default_score,
            "heldout_score": self.heldout_score,
            "default_heldout_score": self.default_heldout_score,
            "significance": self.significance,
            "folds": self.folds,
            "top": self.top,
            "landscape": self.landscape,
        }

    def header(self, description: str = "") -> str:
        """The comment block written above a tuned configuration."""
        held = "cross-validated over queries" if self.validation == "cv" else "on the dev split"
        lines = [
            "Tuned by `hybrid-retriever tune`" + (f" on {description}" if description else ""),
            f"date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
            f"metric: {self.metric}; {self.n_queries} tuning queries; {self.n_configs} configurations tried",
            f"chosen: {self.best.label(self.branches)}"
            + (" (the default, kept: no configuration beat it by more than one standard error)"
               if self.best == self.default and self.selection == "one-se" else ""),
            f"{self.metric} of the chosen config on the tuning queries: {self.best_score:.4f}",
            f"{self.metric} held out ({held}): tuned {self.heldout_score:.4f} vs default {self.default_heldout_score:.4f}"
            f" (paired {self.significance.get('test')} p={self.significance.get('p_value', float('nan')):.3g})",
            f"default was: {self.default.label(self.branches)}",
        ]
        return "\n".join(lines)


def tune(
    grid: FusionGrid,
    base_config: RetrieverConfig,
    *,
    metric: str = "ndcg@10",
    space: SearchSpace | None = None,
    folds: int = 5,
    seed: int = 0,
    train_qids: Sequence[str] | None = None,
    dev_qids: Sequence[str] | None = None,
    test: str = "randomization",
    top_n: int = 20,
    selection: str = "one-se",
) -> TuningResult:
    """Search the fusion space on ``grid`` and validate the choice.

    With ``dev_qids`` (queries in the grid), the tuner picks on the other queries (or
    ``train_qids``) and reports on ``dev_qids``; otherwise ``folds``-fold
    cross-validation over the grid's queries: each fold's score comes from a
    configuration picked on the other folds. The returned ``best`` is picked on all
    tuning queries — the configuration to deploy. ``selection`` is the rule that picks
    (see :func:`select`): ``one-se`` keeps the default unless clearly beaten.
    """
    t0 = time.perf_counter()
    m = parse_metric(metric)
    space = space or SearchSpace()
    default = FusionParams.from_config(base_config)
    if list(base_config.branch_names) != grid.branches:
        raise InvalidInputError(f"configuration branches {base_config.branch_names} differ from the cached runs' {grid.branches}")
    deep = {b: d for b, d, c in zip(grid.branches, default.depths, grid.cached_depths) if d > c}
    if deep:
        raise InvalidInputError(
            f"the configuration's depths {deep} exceed the cached runs' {dict(zip(grid.branches, grid.cached_depths))}; "
            "collect the runs at least as deep as the configuration searches"
        )
    params = space.enumerate(len(grid.branches), grid.cached_depths, default)
    log.info("scoring %d configurations on %d queries", len(params), grid.n_queries)
    S = grid.score(params, m)
    train_idx, dev_idx = split_indices(grid.qids, train_qids, dev_qids)
    v = validate(S, selection, folds=folds, seed=seed, train_idx=train_idx, dev_idx=dev_idx)
    best_i, tune_idx, dev = v.best, v.tune_idx, v.heldout_idx
    heldout, default_heldout, validation = v.heldout, v.default_heldout, v.kind
    fold_of = v.fold_of
    fold_params = [params[i] for i in v.fold_choice]
    fold_rows = [{**row, "chosen": params[row["chosen"]].label(grid.branches)} for row in v.fold_rows]
    tune_means = S[:, tune_idx].mean(1)
    sig = v.significance(test)
    top = [
        {"rank": r + 1, "label": params[i].label(grid.branches), "score": float(tune_means[i]), **params[i].as_dict(grid.branches)}
        for r, i in enumerate(np.argsort(-tune_means, kind="stable")[:top_n])
    ]
    result = TuningResult(
        metric=str(m),
        branches=list(grid.branches),
        n_queries=int(len(tune_idx)),
        n_configs=len(params),
        seconds=time.perf_counter() - t0,
        validation=validation,
        selection=selection,
        best=params[best_i],
        best_score=float(tune_means[best_i]),
        default=default,
        default_score=float(tune_means[0]),
        heldout_score=float(np.mean(heldout)),
        default_heldout_score=float(np.mean(default_heldout)),
        significance=sig,
        folds=fold_rows,
        top=top,
        landscape=landscape(params, tune_means, grid.branches),
        params=params,
        scores=S,
        heldout_per_query=np.asarray(heldout),
        default_per_query=np.asarray(default_heldout),
        qids=[grid.qids[i] for i in dev],
        fold_of=fold_of,
        fold_params=fold_params,
    )
    log.info("tuned in %.1f s: %s", result.seconds, result.best.label(grid.branches))
    return result


def landscape(params: Sequence[FusionParams], means: np.ndarray, branches: Sequence[str]) -> dict[str, Any]:
    """Metric over the weights for each fusion family, at that family's best depth vector (for plots)."""
    fam_best: dict[str, tuple[float, tuple[int, ...]]] = {}
    for p, s in zip(params, means):
        cur = fam_best.get(p.family)
        if cur is None or s > cur[0] + 1e-12:
            fam_best[p.family] = (float(s), p.depths)
    out: dict[str, Any] = {}
    for fam, (_, depths) in fam_best.items():
        pts = sorted(
            ((p.normalized_weights(), float(s)) for p, s in zip(params, means) if p.family == fam and p.depths == depths),
            key=lambda x: x[0],
        )
        dedup: dict[tuple[float, ...], float] = {}
        for w, s in pts:
            dedup[tuple(round(x, 6) for x in w)] = s
        out[fam] = {
            "depths": dict(zip(branches, depths)),
            "weights": [list(w) for w in dedup],
            "scores": list(dedup.values()),
        }
    return out


def write_config(
    result: TuningResult | None,
    base_config: RetrieverConfig,
    path: str | Path,
    description: str = "",
    prf: ConfigChange | None = None,
    rerank: ConfigChange | None = None,
) -> RetrieverConfig:
    """Write the tuned configuration (YAML with a comment header, or JSON) and return it.

    ``result`` supplies fusion, weights and depths (None: ``base_config``'s are kept);
    ``prf`` (from :func:`~.prf_tuning.tune_prf`) the ``prf`` section, enabled only when
    a PRF setting was chosen; ``rerank`` (from :func:`~.rerank.tune_rerank_weight`) the
    rerank order and weight.

    >>> write_config(result, r.config, "tuned.yaml", "my-data train", prf=prf_result)  # doctest: +SKIP
    """
    if result is None and prf is None and rerank is None:
        raise InvalidInputError("nothing to write: give a fusion tuning result, a PRF tuning result or both")
    cfg = result.best.apply(base_config) if result is not None else base_config
    headers = [result.header(description)] if result is not None else [
        "Tuned by `hybrid-retriever tune`" + (f" on {description}" if description else ""),
        f"date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        "fusion: kept from the given configuration (not tuned)",
    ]
    if prf is not None:
        cfg = prf.apply(cfg)
        headers.append(prf.header())
    if rerank is not None:
        cfg = rerank.apply(cfg)
        headers.append(rerank.header())
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    cfg.save(p, header="\n".join(headers))
    return cfg
