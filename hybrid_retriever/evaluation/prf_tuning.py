"""Tune pseudo-relevance feedback on judged queries: one first stage, one second stage per PRF setting.

The flow (:func:`tune_prf`):

1. the first stage runs **once**: every branch searches every query
   (:meth:`HybridRetriever.search_branches`, with score completion when the fusion
   uses it, exactly as :meth:`HybridRetriever.search` does) and the lists are fused
   with the fusion PRF is tuned on top of;
2. for each setting of the :class:`PRFSearchSpace` only the second stage runs,
   through the library's :class:`~hybrid_retriever.prf.PRFPipeline` on that first
   stage — feedback read-back, rewritten queries, second-stage searches and fusion,
   the same code ``search`` runs with ``prf.enabled: true``; so a setting scores here
   what the retriever returns with it (tested), and the second-stage Qdrant searches
   are the whole cost;
3. every setting is scored per query with :mod:`.metrics`, and the choice is made and
   validated as the fusion tuner does it (:func:`~.tuning.validate`: k-fold
   cross-validation, or train split -> dev split, selection ``one-se`` or ``best``).

"No PRF" (the base configuration with ``prf.enabled: false``) is always candidate 0:
the default that ``one-se`` keeps unless a PRF setting beats it by more than one
standard error of the per-query difference.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from hybrid_retriever.config import PRFConfig, RetrieverConfig
from hybrid_retriever.errors import InvalidInputError
from hybrid_retriever.evaluation.grid import FusionParams
from hybrid_retriever.evaluation.metrics import QrelsStats, gains_matrix, metric_from_arrays, parse_metric
from hybrid_retriever.evaluation.validation import SELECTIONS, split_indices, validate
from hybrid_retriever.fusion import FusedItem
from hybrid_retriever.prf import PRFPipeline
from hybrid_retriever.retriever import HybridRetriever, point_id
from hybrid_retriever.types import BranchResult

log = logging.getLogger(__name__)

PLACEMENTS = ("none", "before", "after", "both")
NO_PRF = "no PRF"
#: The CLI option (with example values) that sets each dimension of the search space, for error messages.
EXAMPLES = {
    "placements": "--prf-placements after,both",
    "branch sets": "--prf-branches dense,dense+bm25",
    "fb_docs": "--prf-fb-docs 1,3,5",
    "alpha": "--prf-alpha 1",
    "beta": "--prf-beta 0.25,0.5,1",
    "rm3_lambda": "--prf-rm3-lambda 0.5,0.7",
    "fb_terms": "--prf-fb-terms 10,30",
    "depths": "--prf-depth 100 (or leave it out)",
    "guard": "--prf-guard on,off",
}


@dataclass
class PRFSearchSpace:
    """The PRF settings :func:`tune_prf` tries: every combination of the values below.

    ``branch_sets`` lists which branches get feedback, one tuple of branch names per
    candidate set (``None``: every dense branch, the library's default). Rocchio's
    ``alphas``/``betas`` vary only for sets with a Rocchio branch, ``rm3_lambdas`` only
    for sets with an RM3 (sparse) branch, ``fb_terms`` only for sets with a sparse
    branch. ``depths`` are second-stage depths (``None``: each branch's own depth).
    ``guards`` turns the configured drift guard on (True) or off (False); ``None``
    keeps the base configuration's. Every other PRF setting (dense and sparse method,
    the guard's thresholds, IDF term choice, ...) comes from the base configuration's
    ``prf`` section.

    The default, 18 settings on dense branches, runs in a few minutes on a few hundred
    queries on two CPU cores:

    >>> space = PRFSearchSpace()
    >>> len(space.placements) * len(space.fb_docs) * len(space.betas)
    18
    >>> PRFSearchSpace(betas=(1.5,)).check()
    Traceback (most recent call last):
    ...
    hybrid_retriever.errors.InvalidInputError: PRF beta 1.5 is outside [0, 1] (Rocchio weights); give values in [0, 1], e.g. --prf-beta 0.25,0.5,1
    """

    placements: tuple[str, ...] = ("after", "both")
    branch_sets: tuple[tuple[str, ...] | None, ...] = (None,)
    fb_docs: tuple[int, ...] = (1, 3, 5)
    alphas: tuple[float, ...] = (1.0,)
    betas: tuple[float, ...] = (0.25, 0.5, 1.0)
    rm3_lambdas: tuple[float, ...] = (0.5, 0.7)
    fb_terms: tuple[int, ...] = (10, 30)
    depths: tuple[int | None, ...] = (None,)
    guards: tuple[bool, ...] | None = None

    def check(self) -> None:
        """Raise :class:`InvalidInputError` naming the first bad value and the option that fixes it."""
        dims: dict[str, Sequence[Any]] = {
            "placements": self.placements, "branch sets": self.branch_sets, "fb_docs": self.fb_docs,
            "alpha": self.alphas, "beta": self.betas, "rm3_lambda": self.rm3_lambdas, "fb_terms": self.fb_terms,
            "depths": self.depths,
        }
        if self.guards is not None:
            dims["guard"] = self.guards
        for what, values in dims.items():
            if len(values) == 0:
                raise InvalidInputError(f"the PRF search space has no {what} value: give at least one, e.g. {EXAMPLES[what]}")
        bad = [p for p in self.placements if p not in PLACEMENTS]
        if bad:
            raise InvalidInputError(f"unknown PRF placement(s) {bad}; choose from {list(PLACEMENTS)}, e.g. {EXAMPLES['placements']}")
        for s in self.branch_sets:
            if s is not None and len(s) == 0:
                raise InvalidInputError(f"an empty PRF branch set: name at least one branch per set, e.g. {EXAMPLES['branch sets']}")
        for what in ("alpha", "beta", "rm3_lambda"):
            for v in dims[what]:
                if not 0.0 <= float(v) <= 1.0:
                    kind = "RM3 weight of the original query" if what == "rm3_lambda" else "Rocchio weights"
                    raise InvalidInputError(f"PRF {what} {v:g} is outside [0, 1] ({kind}); give values in [0, 1], e.g. {EXAMPLES[what]}")
        if not any(a + b > 0 for a in self.alphas for b in self.betas):
            raise InvalidInputError(f"PRF alpha and beta are 0 in every combination: give the query or the feedback weight, e.g. {EXAMPLES['alpha']}")
        for what in ("fb_docs", "fb_terms"):
            for v in dims[what]:
                if isinstance(v, bool) or int(v) != v or v < 1:
                    raise InvalidInputError(f"PRF {what} must be positive integers, got {v!r}; e.g. {EXAMPLES[what]}")
        for d in self.depths:
            if d is not None and (isinstance(d, bool) or int(d) != d or d < 1):
                raise InvalidInputError(f"PRF second-stage depth must be a positive integer (or None: the branch's depth), got {d!r}")

    def candidates(self, base: RetrieverConfig, kinds: Mapping[str, str]) -> list[RetrieverConfig]:
        """``base`` with each PRF setting of the space enabled (``kinds``: branch name -> vector kind)."""
        self.check()
        bp = base.prf
        out: list[RetrieverConfig] = []
        for names in self.branch_sets:
            has_dense, has_sparse = _has_kinds(_resolve_branches(names, kinds), kinds)
            # Vary a parameter only where some branch of the set uses it; elsewhere it would only repeat runs.
            uses_ab = (has_dense and bp.dense_method == "rocchio") or (has_sparse and bp.sparse_method == "rocchio")
            ab = [(a, b) for a in self.alphas for b in self.betas if a + b > 0] if uses_ab else [(bp.alpha, bp.beta)]
            lams = self.rm3_lambdas if has_sparse and bp.sparse_method == "rm3" else (bp.rm3_lambda,)
            terms = self.fb_terms if has_sparse else (bp.fb_terms,)
            guards = self.guards if self.guards is not None else (bp.guard.enabled,)
            for place, fb, (a, b), lam, t, depth, g in itertools.product(
                self.placements, self.fb_docs, ab, lams, terms, self.depths, guards
            ):
                prf = bp.model_dump()
                prf.update(enabled=True, interpolate=place, branches=list(names) if names is not None else None,
                           fb_docs=int(fb), alpha=float(a), beta=float(b), rm3_lambda=float(lam), fb_terms=int(t),
                           depth=int(depth) if depth is not None else None)
                prf["guard"]["enabled"] = bool(g)
                out.append(with_prf(base, prf))
        return out


def _resolve_branches(names: Sequence[str] | None, kinds: Mapping[str, str]) -> list[str]:
    """The branches a PRF branch set names (None: every dense branch), checked against the index."""
    if names is None:
        dense = [n for n, k in kinds.items() if k == "dense"]
        if not dense:
            raise InvalidInputError(
                f"PRF's default branch set is every dense branch, and the index has none ({sorted(kinds)}); "
                "name the branches that get feedback, e.g. --prf-branches bm25"
            )
        return dense
    unknown = [n for n in names if n not in kinds]
    if unknown:
        raise InvalidInputError(f"PRF branch set {list(names)} names unknown branch(es) {unknown}; the index has {list(kinds)}")
    return list(names)


def _has_kinds(names: Sequence[str], kinds: Mapping[str, str]) -> tuple[bool, bool]:
    """Whether the named branches include a dense one, and a sparse one."""
    return any(kinds[n] == "dense" for n in names), any(kinds[n] == "sparse" for n in names)


def with_prf(config: RetrieverConfig, prf: PRFConfig | Mapping[str, Any]) -> RetrieverConfig:
    """``config`` with its ``prf`` section replaced (validated: a bad value is a ConfigError naming the key).

    >>> cfg = with_prf(RetrieverConfig(), {"enabled": True, "fb_docs": 5})
    >>> cfg.prf.enabled, cfg.prf.fb_docs
    (True, 5)
    """
    data = config.model_dump()
    data["prf"] = prf.model_dump() if isinstance(prf, PRFConfig) else dict(prf)
    return RetrieverConfig.validate_data(data)


def prf_label(prf: PRFConfig, kinds: Mapping[str, str]) -> str:
    """A short description of a PRF setting, naming only the parameters its branches use.

    >>> prf_label(PRFConfig(enabled=True, fb_docs=3), {"bm25": "sparse", "dense": "dense"})
    'both [dense] fb_docs=3 alpha=1 beta=0.5 guard=on'
    """
    if not prf.enabled:
        return NO_PRF
    names = _resolve_branches(prf.branches, kinds)
    parts = [prf.interpolate, "[" + ",".join(names) + "]", f"fb_docs={prf.fb_docs}"]
    has_dense, has_sparse = _has_kinds(names, kinds)
    if has_dense and prf.dense_method != "rocchio":
        parts.append(prf.dense_method)
    if (has_dense and prf.dense_method == "rocchio") or (has_sparse and prf.sparse_method == "rocchio"):
        parts.append(f"alpha={prf.alpha:g} beta={prf.beta:g}")
    if has_sparse:
        parts.append(f"rm3_lambda={prf.rm3_lambda:g}" if prf.sparse_method == "rm3" else "sparse rocchio")
        parts.append(f"fb_terms={prf.fb_terms}")
    if prf.depth is not None:
        parts.append(f"depth={prf.depth}")
    parts.append(f"guard={'on' if prf.guard.enabled else 'off'}")
    return " ".join(parts)


@dataclass
class PRFTuningResult:
    """What :func:`tune_prf` found: the chosen PRF setting and its honest comparison with no PRF.

    Candidate 0 is always "no PRF". ``heldout_score`` is the chosen settings' score on
    queries they were not picked on (dev split, or each fold's pick on that fold);
    ``wins``/``losses`` count held-out queries where that beat/lost to no PRF.
    """

    metric: str
    fusion: str
    n_queries: int
    n_heldout: int
    validation: str
    selection: str
    labels: list[str]
    best_index: int
    best_score: float
    default_score: float
    heldout_score: float
    default_heldout_score: float
    significance: dict[str, Any]
    wins: int
    losses: int
    ties: int
    folds: list[dict[str, Any]]
    top: list[dict[str, Any]]
    seconds: float
    first_stage_seconds: float
    prf_ms_per_query: list[float]
    applied: list[float]
    data: dict[str, Any] = field(default_factory=dict)
    configs: list[RetrieverConfig] = field(repr=False, default_factory=list)
    scores: np.ndarray | None = field(repr=False, default=None)
    qids: list[str] = field(repr=False, default_factory=list)
    heldout_qids: list[str] = field(repr=False, default_factory=list)
    heldout_per_query: np.ndarray | None = field(repr=False, default=None)
    default_per_query: np.ndarray | None = field(repr=False, default=None)
    tune_idx: np.ndarray | None = field(repr=False, default=None)
    fold_of: np.ndarray | None = field(repr=False, default=None)
    fold_choice: list[int] = field(repr=False, default_factory=list)

    @property
    def best(self) -> PRFConfig:
        """The chosen ``prf`` section (``enabled: false`` when no PRF was kept)."""
        return self.configs[self.best_index].prf

    @property
    def chosen_label(self) -> str:
        return self.labels[self.best_index]

    @property
    def prf_chosen(self) -> bool:
        """Whether a PRF setting (not "no PRF") was chosen."""
        return self.best.enabled

    def apply(self, config: RetrieverConfig) -> RetrieverConfig:
        """``config`` with the chosen ``prf`` section (fusion, branches, store unchanged)."""
        return with_prf(config, self.best)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, stable keys (schema ``hybrid-retriever/prf-tuning/1``)."""
        return {
            "schema": "hybrid-retriever/prf-tuning/1",
            "data": self.data,
            "metric": self.metric,
            "fusion": self.fusion,
            "n_queries": self.n_queries,
            "n_heldout": self.n_heldout,
            "n_configs": len(self.labels),
            "validation": self.validation,
            "selection": self.selection,
            "chosen": self.chosen_label,
            "prf_enabled": self.prf_chosen,
            "best": self.best.model_dump(mode="json"),
            "best_score": self.best_score,
            "no_prf_score": self.default_score,
            "heldout_score": self.heldout_score,
            "no_prf_heldout_score": self.default_heldout_score,
            "significance": self.significance,
            "wins": self.wins,
            "losses": self.losses,
            "ties": self.ties,
            "folds": self.folds,
            "top": self.top,
            "seconds": round(self.seconds, 3),
            "first_stage_seconds": round(self.first_stage_seconds, 3),
            "candidates": [
                {"label": lab, "score": float(self.scores[i, self.tune_idx].mean()) if self.scores is not None else None,
                 "prf_ms_per_query": ms, "applied": ap}
                for i, (lab, ms, ap) in enumerate(zip(self.labels, self.prf_ms_per_query, self.applied))
            ],
        }

    def header(self) -> str:
        """Comment lines about PRF for the tuned configuration file."""
        held = "cross-validated over queries" if self.validation == "cv" else "on the dev split"
        chosen = self.chosen_label + (
            " (kept: no PRF setting beat it by more than one standard error)"
            if self.best_index == 0 and self.selection == "one-se" else ""
        )
        return "\n".join([
            f"PRF: {len(self.labels) - 1} settings and no PRF tried on top of {self.fusion}",
            f"PRF chosen: {chosen}",
            f"{self.metric} held out ({held}): with the PRF choice {self.heldout_score:.4f} vs no PRF "
            f"{self.default_heldout_score:.4f} (paired {self.significance.get('test')} "
            f"p={self.significance.get('p_value', float('nan')):.3g}; {self.wins} queries better, {self.losses} worse)",
        ])


def _check_same_index(retriever: HybridRetriever, base: RetrieverConfig) -> None:
    """``base`` may change weights, depths, fusion and PRF of the open index, nothing else."""
    names = list(retriever.branches)
    if base.branch_names != names:
        raise InvalidInputError(
            f"the base configuration's branches {base.branch_names} differ from the open index's {names}; "
            "tune on a configuration of this index (only weights, depths, fusion and PRF may differ)"
        )
    for mine, theirs in zip(base.branches, retriever.config.branches):
        a = mine.model_dump(exclude={"weight", "depth"})
        b = theirs.model_dump(exclude={"weight", "depth"})
        if a != b:
            keys = sorted(k for k in a if a.get(k) != b.get(k))
            raise InvalidInputError(
                f"branch {mine.branch_name!r} of the base configuration differs from the open index's in {keys}; "
                "only weights, depths, fusion and PRF may differ: open the index with that configuration"
            )
    if base.fusion.server_side:
        raise InvalidInputError("PRF needs per-branch scores: set fusion.server_side to false in the base configuration")


def _same_search(a: RetrieverConfig, b: RetrieverConfig) -> bool:
    return a.fusion == b.fusion and [(x.weight, x.depth) for x in a.branches] == [(x.weight, x.depth) for x in b.branches]


def _ranked(fused: Sequence[list[FusedItem]], k: int, doc_of: Mapping[str, str]) -> list[list[str]]:
    """Top-k document ids of fused lists (point ids of unjudged documents stay as they are)."""
    return [[doc_of.get(it.id, it.id) for it in items[:k]] for items in fused]


def tune_prf(
    retriever: HybridRetriever,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    base_config: RetrieverConfig | None = None,
    space: PRFSearchSpace | None = None,
    metric: str = "ndcg@10",
    folds: int = 5,
    seed: int = 0,
    train_qids: Sequence[str] | None = None,
    dev_qids: Sequence[str] | None = None,
    test: str = "randomization",
    selection: str = "one-se",
    batch_size: int = 64,
    progress: bool = True,
    top_n: int = 20,
) -> PRFTuningResult:
    """Choose PRF settings on judged queries, on top of ``base_config``'s fusion, and validate the choice.

    ``retriever`` is an open index; ``base_config`` (default: the retriever's own) may
    differ from it in weights, depths, fusion and PRF only — it is the fusion PRF runs
    on, and its ``prf`` section supplies every setting the ``space`` does not vary.
    Judged queries (``queries`` with an entry in ``qrels``) are searched once; each
    PRF setting then runs only its second stage. With ``dev_qids`` the choice is made
    on ``train_qids`` (default: the other queries) and reported on ``dev_qids``;
    otherwise ``folds``-fold cross-validation. ``batch_size`` queries are encoded per
    call.

    SciFact, picked on train and reported on test (docs/tuning.md):

    >>> from hybrid_retriever.evaluation import load_beir                          # doctest: +SKIP
    >>> train, test = load_beir("scifact", split="train"), load_beir("scifact", split="test")  # doctest: +SKIP
    >>> with HybridRetriever.open("./scifact-index") as r:                         # doctest: +SKIP
    ...     res = tune_prf(r, {**train.queries, **test.queries}, {**train.qrels, **test.qrels},
    ...                    train_qids=list(train.queries), dev_qids=list(test.queries))
    >>> res.chosen_label, round(res.heldout_score - res.default_heldout_score, 4)  # doctest: +SKIP
    ('after [dense] fb_docs=3 alpha=1 beta=0.25 guard=on', 0.0008)
    """
    t0 = time.perf_counter()
    m = parse_metric(metric)
    if selection not in SELECTIONS:
        raise InvalidInputError(f"unknown selection rule {selection!r}; use one of {list(SELECTIONS)}")
    if batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size}")
    space = space if space is not None else PRFSearchSpace()
    base = base_config if base_config is not None else retriever.config
    _check_same_index(retriever, base)
    kinds = {n: b.vector_spec.kind for n, b in retriever.branches.items()}

    no_prf = with_prf(base, base.prf.model_copy(update={"enabled": False}))
    configs = [no_prf] + ([base] if base.prf.enabled else []) + space.candidates(base, kinds)
    unique: dict[str, RetrieverConfig] = {}
    for c in configs:
        unique.setdefault(json.dumps(c.prf.model_dump(mode="json"), sort_keys=True), c)
    configs = list(unique.values())
    labels = [prf_label(c.prf, kinds) for c in configs]

    qids = [q for q in queries if q in qrels]
    if not qids:
        raise InvalidInputError("no judged query to tune PRF on: every query needs judgements in the qrels")

    # PRF runs on a retriever whose fusion, weights and depths are the base configuration's.
    stage = retriever
    if not _same_search(retriever.config, no_prf):
        stage = HybridRetriever(no_prf, store=retriever.store, branches=list(retriever.branches.values()))
    try:
        pipes = [None] + [PRFPipeline(stage, c.prf) for c in configs[1:]]  # bad branch kinds fail before any search
        fusion = no_prf.fusion
        # Completion exactly when search() completes, so the first stage is the one search() sees.
        complete = fusion.completes_scores
        t1 = time.perf_counter()
        results: list[dict[str, BranchResult]] = []
        fused: list[list[FusedItem]] = []
        with tqdm(total=len(qids), desc="first stage", unit="query", disable=not progress) as bar:
            for start in range(0, len(qids), batch_size):
                texts = [queries[q] for q in qids[start : start + batch_size]]
                res = stage.search_branches(texts, complete=complete)
                results.extend(res)
                fused.extend(stage.fuse(r) for r in res)
                bar.update(len(texts))
        first_seconds = time.perf_counter() - t1
        log.info("PRF tuning: first stage of %d queries in %.1f s", len(qids), first_seconds)

        rows = [dict(qrels[q]) for q in qids]
        stats = QrelsStats.build(rows, m.k)
        doc_of = {point_id(d): d for r in rows for d in r}

        def score(lists: Sequence[list[FusedItem]]) -> np.ndarray:
            gains, judged = gains_matrix(_ranked(lists, m.k, doc_of), rows, m.k)
            return metric_from_arrays(m, gains, judged, stats)

        S = np.zeros((len(configs), len(qids)))
        S[0] = score(fused)
        ms = [0.0] * len(configs)
        applied = [0.0] * len(configs)
        with tqdm(total=len(configs) - 1, desc="PRF settings", unit="setting", disable=not progress) as bar:
            for i in range(1, len(configs)):
                t2 = time.perf_counter()
                out = pipes[i].run(results, fused, None)  # type: ignore[union-attr]
                ms[i] = (time.perf_counter() - t2) * 1000 / len(qids)
                applied[i] = float(np.mean([inf.applied for inf in out.info]))
                S[i] = score(out.fused)
                log.info("PRF %s: %s %.4f (no PRF %.4f), %.1f ms/query", labels[i], m, S[i].mean(), S[0].mean(), ms[i])
                bar.set_postfix_str(f"{m} {S[i].mean():.4f} vs no PRF {S[0].mean():.4f}")
                bar.update(1)
    finally:
        if stage is not retriever:
            stage.close()  # leaves the shared store open: it belongs to ``retriever``

    train_idx, dev_idx = split_indices(qids, train_qids, dev_qids)
    v = validate(S, selection, folds=folds, seed=seed, train_idx=train_idx, dev_idx=dev_idx)
    diff = v.heldout - v.default_heldout
    sig = v.significance(test)
    means = S[:, v.tune_idx].mean(1)
    top = [
        {"rank": r + 1, "label": labels[i], "score": float(means[i]), "prf_ms_per_query": ms[i], "applied": applied[i]}
        for r, i in enumerate(np.argsort(-means, kind="stable")[:top_n])
    ]
    fold_rows = [{**row, "chosen": labels[row["chosen"]]} for row in v.fold_rows]
    result = PRFTuningResult(
        metric=str(m),
        fusion=_fusion_label(no_prf),
        n_queries=int(len(v.tune_idx)),
        n_heldout=int(len(v.heldout_idx)),
        validation=v.kind,
        selection=selection,
        labels=labels,
        best_index=v.best,
        best_score=float(means[v.best]),
        default_score=float(means[0]),
        heldout_score=float(v.heldout.mean()),
        default_heldout_score=float(v.default_heldout.mean()),
        significance=sig,
        wins=int((diff > 1e-12).sum()),
        losses=int((diff < -1e-12).sum()),
        ties=int((np.abs(diff) <= 1e-12).sum()),
        folds=fold_rows,
        top=top,
        seconds=time.perf_counter() - t0,
        first_stage_seconds=first_seconds,
        prf_ms_per_query=ms,
        applied=applied,
        configs=configs,
        scores=S,
        qids=qids,
        heldout_qids=[qids[i] for i in v.heldout_idx],
        heldout_per_query=np.asarray(v.heldout),
        default_per_query=np.asarray(v.default_heldout),
        tune_idx=v.tune_idx,
        fold_of=v.fold_of,
        fold_choice=v.fold_choice,
    )
    log.info("PRF tuned in %.1f s: %s", result.seconds, result.chosen_label)
    return result


def _fusion_label(config: RetrieverConfig) -> str:
    """The fusion of ``config`` as the fusion tuner labels it."""
    return FusionParams.from_config(config).label(config.branch_names)
