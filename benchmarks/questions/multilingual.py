"""Beyond English: BM25 analyzers, completed-score normalisation and adaptive fusion on seven collections.

    python -m benchmarks multilingual                 # all seven collections
    python -m benchmarks multilingual --collections xquad-r/de
    python -m benchmarks multilingual --fragmentation --collections xquad-r/de xquad-r/zh
    python -m benchmarks multilingual --fragmentation --collections cisi   # and each other collection

Per collection and BM25 analyzer, one library index (:func:`harness.index_collection`, query vectors from the MiniLM
cache too) and ``search_branches(complete=True)`` at depth 100 once (cached), then offline fusion under each setting.
``--mixed``, ``--bm25-grid`` and ``--fragmentation`` each add their section to the existing results. Choices are made
on dev data only (scifact ``qrels/train.tsv``, nfcorpus ``qrels/dev.tsv``; for ``--fragmentation`` the dev halves of
xquad-r/de and zh, by a fixed hash of the query id); cranfield, cisi and xquad-r are evaluated with settings fixed
in advance. ``--fragmentation`` without xquad-r/de and zh keeps the earlier choice and adds the collections given.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmarks.harness import (DEV_SPLITS, Collection, Question, branch_lists, cache, fingerprint, index_collection,
    interleaved, judged_qrels, load_collection, load_embeddings, log, machine_info, machine_md, md_table, per_query_metrics,
    pickled, read_results, single_lists, write_results)

from hybrid_retriever import FusionConfig, HybridRetriever, RetrieverConfig
from hybrid_retriever.branches import build_branch
from hybrid_retriever.branches.dense import DenseBranch
from hybrid_retriever.config import DenseBranchConfig
from hybrid_retriever.evaluation.significance import randomization_test
from hybrid_retriever.fusion.adaptive import branch_signals, clarity
from hybrid_retriever.fusion.results import fuse_results
from hybrid_retriever.models.card import branch_languages
from hybrid_retriever.types import BranchResult, ScoredId, SparseVector

COLLECTIONS = ["scifact", "nfcorpus-preprocessed", "cranfield", "cisi", "xquad-r/en", "xquad-r/de", "xquad-r/zh"]
ENGLISH = {"scifact", "nfcorpus-preprocessed", "cranfield", "cisi", "xquad-r/en"}
DEPTH = 100
NOTES = (
    "How the choices were made. Only the dev splits, scifact train and nfcorpus-preprocessed dev, were used "
    "to choose anything; cranfield, cisi and xquad-r have no dev split and are reported with the dev choices, nothing "
    "tuned on them. (1) Completion and normalisation: union completion with z-score/DBSF is the best of the six on both "
    "dev splits (tables above); mixing per branch (union for one branch, raw or clamp for the other) was worse on both, "
    "and a per-query switch (raw completion unless a branch's completed scores fall more than tau z-units below its "
    "lowest returned score, tau in 0..6) was best at tau = 0, i.e. union always (exploratory, on cached runs). "
    "(2) Query-performance signals for adaptive fusion, each a per-branch factor exp(weight * signal) on the "
    "configured weight: NQC clarity (std / mean of the top 10 scores, capped at 1, with an offset for the sparse "
    "branch) and support (the share of a branch's top 10 that the other branch also returned). They were chosen "
    "with BM25's k1 at 1.2: the joint grid's maximum, support 3.0 with clarity 0.5 (+0.25 points on the dev mean), lost "
    "on the test splits (scifact -1.10 points against fixed weights, p = 0.0045), so the default keeps both weights "
    "at 0 (the issue's rule: adaptive is the default only if it ties or beats fixed weights on every English "
    "collection). Rerun with k1 0.9 (tables above) the joint grid's maximum is the same setting (+0.21 on the dev "
    "mean) and it again loses on test (scifact -0.73, p = 0.11; xquad-r/en -0.28; cisi -0.36), and NQC alone is "
    "best off. The signals are measured and put in each hit's provenance; fusion.support_weight / clarity_weight "
    "switch them on. (3) foreign_weight 0.3 was set before these runs (its table shows the leave-one-language-out "
    "check: the best on zh, 0.2, gives de 0.793; the best on de, 0.3, gives zh 0.809). (4) BM25's k1 / b: a grid of "
    "12 settings on the dev splits (section 'BM25 k1 / b') chose k1 0.9, b 0.75 (+0.06 points on the dev mean over "
    "Qdrant's 1.2, within noise). Run once on every test split against 1.2 it ties within 0.3 points on every "
    "English collection and wins on xquad-r/de (+0.53, p = 0.0001), zh (+0.36, p = 0.01) and en (+0.25, p = 0.015), "
    "which passes the issue's rule for a default, so it became the default (bm25.k1 unset: 0.9 for a new index; an "
    "existing index keeps the k1 it records). Every table above uses it; the rows marked k1 1.2 are the old default. "
    "Outcome against the issue's bounds (nDCG@10 of the default vs the old default): scifact +1.40 (p = 0.007), "
    "nfcorpus +0.28, cranfield +0.03, xquad-r/en +0.40 (p = 0.01): met; cisi 0.426 vs 0.435, -0.90 points (p = 0.18, "
    "76 queries): missed (the bound needs >= 0.432; union completion, which wins on both dev splits, costs it there, "
    "and no dev-chosen variant recovers it); xquad-r/de 0.794 (>= 0.79) and xquad-r/zh 0.809 (>= 0.80): met. Against "
    "the fixed method every English collection ties exactly and both non-English ones win (p = 0.0001). Cost: "
    "adaptive fusion reads signals fusion already has (the BM25 query vector and the language it was analysed in, the "
    "corpus language, each model's languages read once) and measures clarity and support of the top 10 of each list "
    "(also when their weights are 0, for provenance): 0.04 to 0.05 ms per query (table above), small against "
    "fusion's own time. Mixed-language corpus: nothing is chosen there; per-document analysis is on for a corpus "
    "whose majority language covers less than 80% of the sample (the threshold detection already used to warn)."
)
#: The old default: English rules whatever the corpus, and Qdrant's k1 1.2 (today's default is 0.9, see BM25_GRID).
ANALYZERS = {"english": {"language": "english", "k1": 1.2}, "auto": {"language": "auto"}}
#: The mixed-language corpus: one analyzer for all (the majority language's) or each document's own.
MIXED_ANALYZERS = {"majority": {"language": "auto", "language_per_document": False}, "per_document": {"language": "auto"}}
MIXED_PARTS = {"en": "english", "de": "german", "zh": "chinese"}
#: BM25's k1 / b on the dev splits (auto analyzer, the adaptive default); the first is the library's default
#: before this grid (Qdrant's), the dev choice became the new one.
BM25_GRID = [(1.2, 0.75), (0.9, 0.4), (0.9, 0.75), (0.9, 0.9), (1.2, 0.5), (1.2, 0.6), (1.2, 0.9), (1.5, 0.5),
             (1.5, 0.75), (1.5, 0.9), (2.0, 0.75), (2.0, 0.9)]


def grid_name(k1: float, b: float) -> str:
    return f"auto-k1={k1}-b={b}"


#: Every BM25 setting an index is built with, by name.
BM25_SETTINGS = {**ANALYZERS, **MIXED_ANALYZERS,
                 **{grid_name(k1, b): {"language": "auto", "k1": k1, "b": b} for k1, b in BM25_GRID}}

#: Each branch's languages: all-MiniLM-L6-v2's from its model card (English); BM25's are any.
BRANCH_LANGUAGES = {"bm25": None, "dense": branch_languages(DenseBranchConfig())}

#: Per branch: ids, scores, completed, no tokens (BM25), fragmentation (dense, under MiniLM's tokenizer), the
#: language a BM25 query was analysed in.
BranchData = dict[str, tuple[Any, ...]]


class CachedQueryDense(DenseBranch):
    """The library's dense branch with query vectors taken from the MiniLM cache (by query text)."""

    def __init__(self, known: dict[str, np.ndarray]) -> None:
        super().__init__(DenseBranchConfig())
        self.known = known

    def encode_queries(self, texts: Sequence[str]) -> list[Any]:
        missing = [t for t in texts if t not in self.known]
        if missing:
            self.known.update(zip(missing, super().encode_queries(missing)))
        return [self.known[t] for t in texts]


def cached_dense(col: Collection) -> CachedQueryDense:
    """The dense branch with the collection's query vectors from the MiniLM cache."""
    emb = load_embeddings(col.name)
    have = [q for q in emb.query_ids if q in col.queries]
    return CachedQueryDense(dict(zip([col.queries[q] for q in have], emb.query_vectors(have))))


def splits_of(name: str) -> list[str]:
    return ["test", DEV_SPLITS[name]] if name in DEV_SPLITS else ["test"]


def bm25_config(analyzer: str) -> dict[str, Any]:
    """The retriever configuration data of an index: BM25 with the named setting and dense, 0.5 / 0.5."""
    return {"branches": [{"kind": "bm25", "weight": 0.5, **BM25_SETTINGS[analyzer]}, {"kind": "dense", "weight": 0.5}]}


def index_path(name: str, analyzer: str, tmp: Path) -> Path:
    """Where a collection's index is built: the auto analyzer's is kept (the search path is run on it later)."""
    if analyzer == "auto":
        return cache("multilingual", "indexes") / name.replace("/", "__")
    return tmp / f"{name.replace('/', '__')}-{analyzer}"


def _more(n: str, res: BranchResult) -> tuple[Any, ...]:
    """What fusion reads of a branch result besides its lists (:data:`BranchData`)."""
    bm25 = n == "bm25"
    return bool(bm25 and not res.query_vector.indices), res.signals.get("fragmentation"), res.query_vector.language if bm25 else None


def branch_data(col: Collection, analyzer: str, dense: CachedQueryDense, qids: list[str], tmp: Path,
                doc_vectors: Any = "cache") -> dict[str, Any]:
    """Branch lists (with completion) of every query (:data:`BranchData`), and the BM25 analyzer the index chose; cached."""
    def compute() -> dict[str, Any]:
        r, docs = index_collection(col, index_path(col.name, analyzer, tmp), bm25_config(analyzer), dense, doc_vectors)
        try:
            bm25 = r.branches["bm25"]
            return {"describe": bm25.describe(), "manifest": bm25.manifest(),
                    "queries": branch_lists(r, docs, [col.queries[q] for q in qids], DEPTH, 64, _more)}
        finally:
            r.close()

    key = fingerprint(col.name, len(col.doc_ids), analyzer, qids, DEPTH)
    return pickled(cache("multilingual"), f"{col.name.replace('/', '__')}.{analyzer}", key, compute)


def as_results(data: BranchData, language: str | None = None) -> dict[str, BranchResult]:
    return {
        n: BranchResult(
            branch=n,
            hits=[ScoredId(i, s, k) for k, (i, s) in enumerate(zip(ids, sc), start=1)],
            completed=dict(comp),
            # Fusion reads only whether a branch is sparse, whether its query vector had tokens and the
            # language the query was analysed in (per-document-language BM25).
            query_vector=SparseVector(indices=[] if blind else [0], values=[] if blind else [1.0], language=language)
            if n == "bm25" else None,
            signals={"fragmentation": frag} if frag is not None else {},
        )
        for n, (ids, sc, comp, blind, frag, _) in data.items()
    }


def collection_runs(root: Path, name: str, analyzers: Sequence[str], splits: list[str], tmp: Path) -> dict[str, Any]:
    """A collection's judged queries and their branch data under each BM25 setting (built or read from the cache)."""
    col = load_collection(root, name, splits)
    qids = sorted({q for s in col.qrels.values() for q in s if q in col.queries})
    dense = cached_dense(col)
    per: dict[str, Any] = {"collection": col, "qids": qids}
    for analyzer in analyzers:
        t0 = time.perf_counter()
        per[analyzer] = branch_data(col, analyzer, dense, qids, tmp)
        log.info("%s / %s: %s (%.0f s)", name, analyzer, per[analyzer]["describe"], time.perf_counter() - t0)
    return per


def gather(args: argparse.Namespace, analyzers: Sequence[str] = tuple(ANALYZERS)) -> dict[str, Any]:
    """Branch data of every collection and analyzer (built or read from the cache)."""
    tmp = Path(tempfile.mkdtemp(prefix="multilingual-"))
    try:
        return {name: collection_runs(args.datasets, name, analyzers, splits_of(name), tmp) for name in args.collections}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------ systems

BASE = {"method": "interpolation", "normalization": "minmax", "missing": "exact"}
#: The fixed default before this change (completed scores normalised unbounded below).
OLD_DEFAULT = {**BASE, "completed": "raw"}


def fused_lists(per: dict[str, Any], analyzer: str, fusion: dict[str, Any], w_dense: float = 0.5,
                signal: Any = None, only: set[str] | None = None) -> dict[str, list[str]]:
    """Ranked ids per query under one fusion setting, as ``HybridRetriever.fuse`` ranks them.

    ``signal`` (adaptive only) replaces each branch's clarity by another per-branch signal
    (:data:`OTHER_SIGNALS`); ``only`` limits the queries fused.
    """
    run = per[analyzer]
    cfg = FusionConfig(**fusion)
    weights = {"bm25": 1.0 - w_dense, "dense": w_dense}
    content = (run["manifest"].get("language_detection") or {}).get("language") or run["manifest"]["language"]
    out = {}
    for q, data in zip(per["qids"], run["queries"]):
        if only is not None and q not in only:
            continue
        res = as_results(data, data["bm25"][5])
        signals = branch_signals(res, content, BRANCH_LANGUAGES) if cfg.method == "adaptive" else None
        if signal is not None and signals is not None:
            for n, sig in signals.items():
                other = next(m for m in data if m != n)
                sig.clarity = signal(data[n][0], data[n][1], data[other][0])
        out[q] = [it.id for it in fuse_results(res, cfg, weights, signals)[:100]]
    return out


def _ztop(scores: list[float]) -> float | None:
    a = np.asarray(scores, dtype=np.float64)
    return None if a.size < 2 or a.std() == 0 else float((a[0] - a.mean()) / a.std())


#: Other per-branch query-performance signals tried on dev in place of NQC over the top 10, with the same
#: mapping exp(clarity_weight * (signal - offset on the sparse branch)); each is roughly in [0, 1].
OTHER_SIGNALS: dict[str, Any] = {
    "NQC, top 100": lambda ids, sc, other: clarity(sc, 100),
    "top score's z in the top 100, / 10": lambda ids, sc, other: None if _ztop(sc) is None else _ztop(sc) / 10,
    "gap ratio (s1 - s10) / (s1 - s100)": lambda ids, sc, other: (
        None if len(sc) < 10 or sc[0] == sc[-1] else (sc[0] - sc[9]) / (sc[0] - sc[-1])),
    "support: share of its top 10 in the other branch's list": lambda ids, sc, other: (
        None if not ids else len(set(ids[:10]) & set(other)) / min(10, len(ids))),
}
OTHER_GRID = [(b, o) for b in (0.5, 1.0, 2.0, 4.0) for o in (0.0, 0.125, 0.25)]


def ndcg(per: dict[str, Any], split: str, lists: dict[str, list[str]]) -> np.ndarray:
    """nDCG@10 per judged query of ``split`` (sorted query ids)."""
    return per_query_metrics(lists, judged_qrels(per["collection"].qrels[split], per["qids"]))["ndcg@10"]


def mean_ndcg(per: dict[str, Any], split: str, analyzer: str, fusion: dict[str, Any], **kw: Any) -> float:
    """Mean nDCG@10 on ``split`` of one fusion setting (:func:`fused_lists`)."""
    return float(ndcg(per, split, fused_lists(per, analyzer, fusion, **kw)).mean())


# ------------------------------------------------------------------------------ the tables

NEW_DEFAULT = {k: v for k, v in FusionConfig().model_dump().items() if k in ("method", "normalization", "missing", "completed", "foreign_weight", "clarity_weight", "sparse_clarity_offset", "support_weight", "fragmentation_weight")}
FIXED_DEFAULT = {**NEW_DEFAULT, "method": "interpolation"}
#: Systems of the main table: (label, analyzer, fusion setting or branch name).
SYSTEMS: list[tuple[str, str, Any]] = [
    ("BM25, English analyzer (k1 1.2)", "english", "bm25"),
    ("BM25, auto analyzer", "auto", "bm25"),
    ("dense MiniLM", "auto", "dense"),
    ("old default (English BM25 k1 1.2, min-max, raw completion)", "english", OLD_DEFAULT),
    ("old fusion, auto analyzer", "auto", OLD_DEFAULT),
    ("fixed default (auto, DBSF, union completion)", "auto", FIXED_DEFAULT),
    ("adaptive default (fixed + token and language flags; QPP weights 0)", "auto", NEW_DEFAULT),
    ("adaptive + QPP, dev-chosen (support 3.0, clarity 0.5)", "auto", {**NEW_DEFAULT, "support_weight": 3.0, "clarity_weight": 0.5}),
    ("adaptive + NQC clarity only, first dev choice (clarity 0.5)", "auto", {**NEW_DEFAULT, "support_weight": 0.0, "clarity_weight": 0.5}),
]
#: The dev grid the clarity parameters were chosen on (the best mean nDCG@10 over the dev splits).
CLARITY_WEIGHTS = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
CLARITY_OFFSETS = [0.0, 0.0625, 0.125, 0.1875, 0.25, 0.375]
#: The joint dev grid of the two signals' weights (offset 0), after the single-signal grids.
JOINT_GRID = [(s, c) for s in (0.0, 1.0, 2.0, 3.0, 4.0, 6.0) for c in (0.0, 0.5)]
#: The clarity-only runs (the first grid and the other signals) are run with support off.
NO_SUPPORT = {"support_weight": 0.0}
FOREIGN_WEIGHTS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0]
COMPLETION_GRID = [(n, c) for n in ("minmax", "zscore") for c in ("raw", "clamp", "union")]
#: The paired tests of the main table: name -> (A, B), indexes into SYSTEMS; the difference is B - A.
TESTS = {"adaptive vs fixed": (5, 6), "adaptive vs old default": (3, 6), "fixed vs old default": (3, 5),
         "BM25 auto vs English": (0, 1), "adaptive + QPP vs adaptive": (6, 7), "adaptive + QPP vs fixed": (5, 7),
         "adaptive + QPP vs old default": (3, 7), "adaptive + NQC vs old default": (3, 8)}


def system_lists(per: dict[str, Any], analyzer: str, what: Any) -> dict[str, list[str]]:
    """A branch's own lists (``what`` names it) or a fusion setting's."""
    if isinstance(what, str):
        return single_lists(per[analyzer]["queries"], per["qids"], what)
    return fused_lists(per, analyzer, what)


def evaluate_collection(name: str, per: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"analyzer": per["auto"]["describe"], "splits": {}}
    for split in splits_of(name):
        rows: dict[str, np.ndarray] = {label: ndcg(per, split, system_lists(per, an, what)) for label, an, what in SYSTEMS}
        out["splits"][split] = res = {
            "n": int(len(rows[SYSTEMS[5][0]])),
            "ndcg@10": {k: float(v.mean()) for k, v in rows.items()},
            "tests": {t: randomization_test(rows[SYSTEMS[a][0]], rows[SYSTEMS[b][0]]).as_dict() for t, (a, b) in TESTS.items()},
            "completion": {f"{n} {c}": mean_ndcg(per, split, "auto", {**BASE, "normalization": n, "completed": c})
                           for n, c in COMPLETION_GRID},
        }
        if split != "test":  # the parameters are chosen here, never on a test split
            res["clarity_grid"] = {
                f"{b}/{o}": mean_ndcg(per, split, "auto", {**NEW_DEFAULT, **NO_SUPPORT, "clarity_weight": b, "sparse_clarity_offset": o})
                for b in CLARITY_WEIGHTS for o in (CLARITY_OFFSETS if b > 0 else [0.0])
            }
            only = set(per["collection"].judged(split))
            res["other_signals"] = {
                name: {f"{b}/{o}": mean_ndcg(per, split, "auto", {**NEW_DEFAULT, **NO_SUPPORT, "clarity_weight": b,
                                                                  "sparse_clarity_offset": o}, signal=fn, only=only)
                       for b, o in OTHER_GRID}
                for name, fn in OTHER_SIGNALS.items()
            }
            res["joint_grid"] = {
                f"{sw}/{cw}": mean_ndcg(per, split, "auto", {**NEW_DEFAULT, "support_weight": sw, "clarity_weight": cw,
                                                             "sparse_clarity_offset": 0.0}, only=only)
                for sw, cw in JOINT_GRID
            }
    if name not in ENGLISH:
        out["foreign_weight"] = {str(fw): mean_ndcg(per, "test", "auto", {**NEW_DEFAULT, "foreign_weight": fw}) for fw in FOREIGN_WEIGHTS}
    return out


# ------------------------------------------------------------------------------ fragmentation (issue 22)

#: Today's default before issue 22 (foreign_weight 0.3 for every out-of-language query).
ISSUE13_DEFAULT = {**NEW_DEFAULT, "foreign_weight": 0.3, "fragmentation_weight": 0.0}
#: The dev grid: foreign_weight x fragmentation_weight (dense factor foreign_weight * exp(-w * fragmentation)).
FRAG_GRID = [(fw, w) for fw in (0.3, 0.5, 0.7, 1.0) for w in (0.0, 1.0, 2.0, 3.0, 4.0, 6.0)]
#: Collections whose queries are split into a dev half (choices) and a test half (reported once).
SPLIT_HALVES = ("xquad-r/de", "xquad-r/zh")


def is_dev(qid: str) -> bool:
    """The dev half of a collection without a dev split: a fixed hash of the query id (about half the queries)."""
    return hashlib.sha1(qid.encode()).digest()[0] % 2 == 0


def served_ndcg(per: dict[str, Any], fusion: dict[str, Any], dense: CachedQueryDense, tmp: Path) -> np.ndarray:
    """nDCG@10 per judged query (test split) of ``HybridRetriever.search_batch`` on the collection's index with
    ``fusion``: the search path end to end (query vectors from the MiniLM cache, which `cache embeddings` checks are
    the library's own encodings; fragmentation measured by the library's MiniLM tokenizer)."""
    col = per["collection"]
    path = index_path(col.name, "auto", tmp)
    if not (path / "manifest.json").is_file():
        index_collection(col, path, bm25_config("auto"), dense)[0].close()
    cfg = RetrieverConfig.validate_data({"store": {"kind": "edge", "path": str(path)}, **bm25_config("auto"),
                                         "fusion": fusion, "runtime": {"show_progress": False}})
    qids = per["qids"]
    lists: dict[str, list[str]] = {}
    with HybridRetriever(cfg, branches=[build_branch(cfg.branches[0]), dense]) as r:
        for i in range(0, len(qids), 64):
            part = qids[i : i + 64]
            for q, hits in zip(part, r.search_batch([col.queries[q] for q in part], k=100)):
                lists[q] = [h.id for h in hits]
    return ndcg(per, "test", lists)


def evaluate_fragmentation(args: argparse.Namespace, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Choose foreign_weight / fragmentation_weight on the dev halves of xquad-r/de and zh, then run today's default,
    the dev choice and each single branch on every collection through the search path, once.

    Without xquad-r/de and zh among the collections, the choice of ``previous`` (an earlier run) is kept and these
    collections are added to it."""
    data = gather(args, analyzers=("auto",))
    out: dict[str, Any] = {"grid": {}, "collections": {}, "fragmentation": {}}
    choose = all(n in data for n in SPLIT_HALVES)
    if not choose:
        if not previous:
            raise SystemExit(f"the dev choice needs {SPLIT_HALVES} (or an earlier --fragmentation run to add to)")
        out = {k: previous[k] for k in ("grid", "collections", "fragmentation", "chosen")}
    for name in SPLIT_HALVES if choose else ():
        per = data[name]
        dev = {q for q in per["collection"].judged("test") if is_dev(q)}
        qrels = judged_qrels(per["collection"].qrels["test"], dev)
        out["grid"][name] = {}
        for fw, w in FRAG_GRID:
            lists = fused_lists(per, "auto", {**NEW_DEFAULT, "foreign_weight": fw, "fragmentation_weight": w}, only=dev)
            out["grid"][name][f"{fw}/{w}"] = float(per_query_metrics(lists, qrels)["ndcg@10"].mean())
            log.info("%s dev half: foreign %s, fragmentation %s: %.4f", name, fw, w, out["grid"][name][f"{fw}/{w}"])
    if choose:
        keys = list(out["grid"][SPLIT_HALVES[0]])
        mean = {k: float(np.mean([out["grid"][n][k] for n in SPLIT_HALVES])) for k in keys}
        best = max(keys, key=lambda k: (mean[k], -keys.index(k)))
        fw, w = (float(x) for x in best.split("/"))
        out["chosen"] = {"foreign_weight": fw, "fragmentation_weight": w, "dev_mean": mean[best],
                         "issue13_dev_mean": mean["0.3/0.0"]}
    chosen = {**NEW_DEFAULT, **{k: out["chosen"][k] for k in ("foreign_weight", "fragmentation_weight")}}
    tmp = Path(tempfile.mkdtemp(prefix="multilingual-"))
    try:
        for name, per in data.items():
            dense = cached_dense(per["collection"])
            t0 = time.perf_counter()
            old, new = served_ndcg(per, ISSUE13_DEFAULT, dense, tmp), served_ndcg(per, chosen, dense, tmp)
            offline = ndcg(per, "test", fused_lists(per, "auto", chosen))
            bm25, dense_ = (ndcg(per, "test", system_lists(per, "auto", b)) for b in ("bm25", "dense"))
            row: dict[str, Any] = {
                "n": int(len(old)),
                "issue13_default": float(old.mean()), "default": float(new.mean()),
                "bm25": float(bm25.mean()), "dense": float(dense_.mean()),
                "default_vs_issue13": randomization_test(old, new).as_dict(),
                "default_vs_best_branch": randomization_test(bm25 if bm25.mean() >= dense_.mean() else dense_, new).as_dict(),
                "offline_max_abs_diff": float(np.abs(offline - new).max()),
                "seconds": time.perf_counter() - t0,
            }
            if name in SPLIT_HALVES:
                judged = [q for q in per["qids"] if q in per["collection"].qrels["test"]]
                mask = np.array([not is_dev(q) for q in judged])
                row["test_half"] = {"n": int(mask.sum()), "issue13_default": float(old[mask].mean()), "default": float(new[mask].mean()),
                                    "bm25": float(bm25[mask].mean()), "dense": float(dense_[mask].mean()),
                                    "default_vs_issue13": randomization_test(old[mask], new[mask]).as_dict()}
            frag = [d["dense"][4] for d in per["auto"]["queries"] if d["dense"][4] is not None]
            out["fragmentation"][name] = {"mean": float(np.mean(frag)), "p10": float(np.percentile(frag, 10)),
                                          "p50": float(np.percentile(frag, 50)), "p90": float(np.percentile(frag, 90))}
            out["collections"][name] = row
            log.info("%s: %s", name, {k: v for k, v in row.items() if isinstance(v, float)})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


FRAG_NOTES = (
    "Issue 22. Every number in this section's main table comes from the search path: the collection's index "
    "(built with the library, auto analyzer) reopened with each fusion setting and queried with "
    "`search_batch` (query vectors from the MiniLM cache, checked by embed_cache.py to be the library's own "
    "encodings; fragmentation measured at search time by the library's MiniLM tokenizer), scored with ranx; 'offline' is the largest "
    "per-query difference to fusing the cached `search_branches` lists with `fuse_results` + `branch_signals` (the "
    "functions search calls), which is how the older sections below (issue 13) were computed. Single-branch columns "
    "are each branch's own list from `search_branches`. The dense weight of an out-of-language query is now "
    "foreign_weight * exp(-fragmentation_weight * fragmentation), fragmentation being the share of the query's word "
    "pieces that MiniLM's own tokenizer continues or does not know. Both weights were chosen on dev data only: the "
    "dev halves (a fixed hash of the query id) of xquad-r/de and zh, maximum of the mean nDCG@10 over the grid "
    "below; the test halves are reported once, as is every full collection (which contains its dev half: the "
    "issue's targets are stated on full collections). English collections cannot move: the signal applies only "
    "to a branch whose model card excludes the content language. xquad-r/de and zh were run first (with the dev "
    "choice), the English collections in later runs of the same command (`--fragmentation --collections NAME`, "
    "which keeps the earlier choice). Outcome against the issue's targets: xquad-r/zh 0.812 (>= 0.809: met, +0.32 "
    "points over the issue-13 default, p = 0.11); xquad-r/de 0.793, 0.13 points under the 0.794 target (p = 0.46 "
    "against the issue-13 default; the held-out test half ties, -0.02): the dev grid trades German for Chinese "
    "(on the dev halves 0.3 / 0 is the best setting for German, 0.7 / 3 gives -0.24 there and +0.52 on Chinese), "
    "because per query the fragmentation of a German query says little about whether MiniLM still finds its "
    "passage, while the Chinese queries with many unknown characters are those where it does not. Every English "
    "collection ties the issue-13 default exactly, and on every collection the default is above its best single "
    "branch (table). Not measured here: languages MiniLM barely reads (the issue's Arabic-like cases), where "
    "fragmentation is highest and the dense weight falls towards 0 (0.7 * exp(-3 * 0.9) = 0.05)."
)


# ------------------------------------------------------------------------------ mixed-language corpus


def mixed_collection(root: Path) -> tuple[Collection, dict[str, str], Any, dict[str, np.ndarray]]:
    """The three xquad-r corpora as one (ids and query ids prefixed ``en/``, ``de/``, ``zh/``), the source
    language of each query, the cached document vectors by prefixed id and the query vectors by text.

    Each query's judged document is the one in its own language; the parallel translations in the other
    two are unjudged (a cross-lingual hit counts as a miss, as in any monolingual qrels)."""
    ids: list[str] = []
    texts: list[str] = []
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    source: dict[str, str] = {}
    vectors: dict[str, np.ndarray] = {}
    known: dict[str, np.ndarray] = {}
    for part, lang in MIXED_PARTS.items():
        col = load_collection(root, f"xquad-r/{part}")
        emb = load_embeddings(col.name)
        ids += [f"{part}/{i}" for i in col.doc_ids]
        texts += col.texts
        vectors.update(zip((f"{part}/{i}" for i in emb.doc_ids), emb.docs))
        for q, t in col.queries.items():
            queries[f"{part}/{q}"] = t
            source[f"{part}/{q}"] = lang
        qrels.update({f"{part}/{q}": {f"{part}/{d}": g for d, g in rel.items()} for q, rel in col.qrels["test"].items()})
        have = [q for q in emb.query_ids if q in col.queries]
        known.update(zip((col.queries[q] for q in have), emb.query_vectors(have)))
    # xquad-r's corpora are parallel ("de-0-0-3" translates "en-0-0-3"): the same qrels with the translations relevant too.
    parallel = {q: {f"{p}/{p}-{d.split('/', 1)[1].split('-', 1)[1]}": g for d, g in rel.items() for p in MIXED_PARTS}
                for q, rel in qrels.items()}
    col = Collection("xquad-r/mixed", ids, texts, queries, {"test": qrels, "parallel": parallel})
    return col, source, lambda wanted: np.stack([vectors[i] for i in wanted]), known


def evaluate_mixed(root: Path) -> dict[str, Any]:
    """Majority analyzer vs per-document languages on the mixed corpus: BM25 alone and the adaptive default."""
    from hybrid_retriever.languages import detect_each

    col, source, doc_vectors, known = mixed_collection(root)
    qids = sorted(q for q in col.qrels["test"] if q in col.queries)
    dense = CachedQueryDense(known)
    tmp = Path(tempfile.mkdtemp(prefix="multilingual-mixed-"))
    per: dict[str, Any] = {"collection": col, "qids": qids}
    try:
        for analyzer in MIXED_ANALYZERS:
            per[analyzer] = branch_data(col, analyzer, dense, qids, tmp, doc_vectors)
            log.info("mixed / %s: %s", analyzer, per[analyzer]["describe"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    langs = list(per["per_document"]["manifest"]["per_document_languages"])
    subsets = {"all": set(qids), **{lang: {q for q in qids if source[q] == lang} for lang in MIXED_PARTS.values()}}
    index = {q: k for k, q in enumerate(qids)}

    def part(v: np.ndarray, sub: set[str]) -> np.ndarray:  # the per-query values of a subset of the queries
        return v[[index[q] for q in sorted(sub)]]

    runs: dict[str, dict[str, np.ndarray]] = {}  # qrels -> system -> nDCG@10 per query
    for split in ("test", "parallel"):
        rows = runs[split] = {}
        for analyzer in MIXED_ANALYZERS:
            rows[f"BM25, {analyzer}"] = ndcg(per, split, system_lists(per, analyzer, "bm25"))
            rows[f"adaptive default, {analyzer}"] = ndcg(per, split, fused_lists(per, analyzer, NEW_DEFAULT))
        rows["dense MiniLM"] = ndcg(per, split, system_lists(per, "per_document", "dense"))
    tables = {split: {label: {name: float(part(v, sub).mean()) for name, sub in subsets.items()} for label, v in rows.items()}
              for split, rows in runs.items()}
    tests = {what: {name: randomization_test(part(runs["test"][f"{what}, majority"], sub),
                                             part(runs["test"][f"{what}, per_document"], sub)).as_dict()
                    for name, sub in subsets.items()}
             for what in ("BM25", "adaptive default")}
    query_langs = [d["bm25"][5] for d in per["per_document"]["queries"]]
    t0 = time.perf_counter()
    doc_langs = detect_each(col.texts, langs)
    doc_ms = 1000 * (time.perf_counter() - t0) / len(col.texts)
    t0 = time.perf_counter()
    detect_each([col.queries[q] for q in qids], langs)
    query_ms = 1000 * (time.perf_counter() - t0) / len(qids)
    truth = [MIXED_PARTS[i.split("/")[0]] for i in col.doc_ids]
    return {
        "documents": len(col.doc_ids),
        "queries": len(qids),
        "analyzers": {a: per[a]["describe"] for a in MIXED_ANALYZERS},
        "ndcg@10": tables["test"],
        "ndcg@10_translations_relevant": tables["parallel"],
        "tests": tests,
        "query_language_accuracy": {name: float(np.mean([query_langs[index[q]] == source[q] for q in sub])) for name, sub in subsets.items()},
        "document_language_accuracy": float(np.mean([d == t for d, t in zip(doc_langs, truth)])),
        "detection_ms": {"per_document": doc_ms, "per_query": query_ms},
    }


def evaluate_bm25_grid(root: Path) -> dict[str, Any]:
    """BM25's k1 / b chosen on the dev splits (the adaptive default's mean nDCG@10), then the choice
    against the library's default on every test split, once."""
    tmp = Path(tempfile.mkdtemp(prefix="multilingual-bm25-"))
    names = [grid_name(k1, b) for k1, b in BM25_GRID]
    try:
        dev: dict[str, dict[str, float]] = {n: {} for n in names}
        for name, split in DEV_SPLITS.items():
            per = collection_runs(root, name, names, [split], tmp)
            only = set(per["collection"].judged(split))
            for n in names:
                dev[n][f"{name} ({split})"] = mean_ndcg(per, split, n, NEW_DEFAULT, only=only)
        chosen = max(names, key=lambda n: float(np.mean(list(dev[n].values()))))
        default = names[0]
        test: dict[str, Any] = {}
        for name in COLLECTIONS:
            per = collection_runs(root, name, [default, chosen], ["test"], tmp)
            a, b = (ndcg(per, "test", fused_lists(per, n, NEW_DEFAULT)) for n in (default, chosen))
            test[name] = {"default": float(a.mean()), "chosen": float(b.mean()),
                          "bm25_default": float(ndcg(per, "test", system_lists(per, default, "bm25")).mean()),
                          "bm25_chosen": float(ndcg(per, "test", system_lists(per, chosen, "bm25")).mean()),
                          "test": randomization_test(a, b).as_dict()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"dev": dev, "chosen": chosen, "default": default, "test": test}


def detection_accuracy(col: Collection, expected: str) -> dict[str, Any]:
    """Per-text detection accuracy on every document and query, and the corpus-level vote."""
    from hybrid_retriever.languages import detect_language, detect_query_language

    docs = [t for t in col.texts if t.strip()]
    qs = list(col.queries.values())
    t0 = time.perf_counter()
    doc_hits = sum(detect_query_language(t[:1000]) == expected for t in docs)
    doc_s = time.perf_counter() - t0
    q_hits = sum(detect_query_language(q) == expected for q in qs)
    vote = detect_language(docs)
    return {
        "expected": expected,
        "corpus_vote": vote.language,
        "vote_share": vote.share,
        "documents": len(docs),
        "document_accuracy": doc_hits / len(docs),
        "queries": len(qs),
        "query_accuracy": q_hits / len(qs),
        "ms_per_document": 1000 * doc_s / len(docs),
    }


def adaptive_cost(per: dict[str, Any], rounds: int = 3) -> dict[str, float]:
    """Fusion time per query, adaptive vs fixed, timed interleaved (the same branch results, ``rounds`` times over)."""
    run = per["auto"]
    fixed, adapt = FusionConfig(**FIXED_DEFAULT), FusionConfig(**NEW_DEFAULT)
    weights = {"bm25": 0.5, "dense": 0.5}
    content = run["manifest"]["language"]
    results = [as_results(d) for d in run["queries"]] * rounds
    ms = interleaved({"fixed": lambda res: fuse_results(res, fixed, weights),
                      "adaptive": lambda res: fuse_results(res, adapt, weights, branch_signals(res, content, BRANCH_LANGUAGES))},
                     results, 0, f"{per['collection'].name}: fusion cost")  # type: ignore[arg-type]
    t_fixed, t_adapt = ms["fixed"]["mean"], ms["adaptive"]["mean"]
    return {"fixed_ms": t_fixed, "adaptive_ms": t_adapt, "added_ms": t_adapt - t_fixed}


def diff_p(t: dict[str, float]) -> str:
    """A paired test's table cell: the mean difference and p."""
    return f"{t['mean_diff']:+.4f} (p={t['p_value']:.3g})"


def with_mean(xs: list[float]) -> list[str]:
    """The values and their mean, to 4 decimals."""
    return [f"{x:.4f}" for x in xs + [float(np.mean(xs))]]


def fragmentation_md(f: dict[str, Any]) -> str:
    c, by = f["chosen"], f["collections"]
    cols = list(by)
    rows = [[label] + [by[k][key] for k in cols] for label, key in (
        ("BM25 alone (auto analyzer; its list from search_branches)", "bm25"),
        ("dense MiniLM alone (its list from search_branches)", "dense"),
        ("issue-13 default (foreign_weight 0.3; search_batch)", "issue13_default"),
        ("default with fragmentation (search_batch)", "default"))]
    rows += [["default - issue-13 default (p)"] + [diff_p(by[k]["default_vs_issue13"]) for k in cols],
             ["default - best branch (p)"] + [diff_p(by[k]["default_vs_best_branch"]) for k in cols],
             ["queries"] + [by[k]["n"] for k in cols],
             ["offline fusion vs search_batch: max per-query difference"] + [f"{by[k]['offline_max_abs_diff']:.1e}" for k in cols]]
    out = ["\n## The default against its best single branch, through the search path (issue 22)\n",
           f"- Run: {f['machine']['date']}, git {f['machine']['git_commit']}\n",
           f"\nDev choice: foreign_weight {c['foreign_weight']:g}, fragmentation_weight {c['fragmentation_weight']:g} (dev mean "
           f"{c['dev_mean']:.4f}; issue 13's 0.3 / 0: {c['issue13_dev_mean']:.4f}).\n\n",
           md_table(["nDCG@10, test split"] + cols, rows)]
    halves = [k for k in cols if "test_half" in by[k]]
    if halves:
        out.append("\nThe test halves (queries not used for the choice), search path:\n\n")
        out.append(md_table(["test half"] + halves, [
            [key] + [by[k]["test_half"][key] for k in halves] for key in ("n", "bm25", "dense", "issue13_default", "default")
        ] + [["default - issue-13 default (p)"] + [diff_p(by[k]["test_half"]["default_vs_issue13"]) for k in halves]]))
    out.append("\nQuery fragmentation under MiniLM's tokenizer (share of word pieces continued or unknown):\n\n")
    out.append(md_table(["collection", "mean", "p10", "median", "p90"],
                        [[k, v["mean"], v["p10"], v["p50"], v["p90"]] for k, v in f["fragmentation"].items()]))
    out.append("\nDev grid (dev halves; nDCG@10 per `foreign_weight / fragmentation_weight`, mean of the two):\n\n")
    names = list(f["grid"])
    out.append(md_table(["foreign / fragmentation"] + names + ["mean"],
                        [[k] + with_mean([f["grid"][n][k] for n in names]) for k in f["grid"][names[0]]]))
    out.append("\n" + f.get("notes", "") + "\n")
    return "".join(out)


def markdown(report: dict[str, Any]) -> str:
    cols = list(report["collections"])

    def at(c: str, s: str) -> dict[str, Any]:  # one collection's results on one split
        return report["collections"][c]["splits"][s]

    def dev_grid(key: str, intro: str, first: str, fmt: Any) -> str:
        """A dev grid on the dev splits that have it, with the mean over them (the best mean in bold)."""
        where = [(c, s) for c, s in dev if key in at(c, s)]
        if not where:
            return ""
        vals = {k: [at(c, s)[key][k] for c, s in where] for k in at(*where[0])[key]}
        best = max(vals, key=lambda k: float(np.mean(vals[k])))
        return intro + md_table([first] + [f"{c} ({s})" for c, s in where] + ["mean"],
                                [[f"**{k}**" if k == best else k] + fmt(vals[k]) for k in vals])

    out = [
        "# Beyond English: language-aware BM25, completed-score normalisation, adaptive fusion (issue 13)\n",
        machine_md(report["machine"]),
        "\nnDCG@10 on each collection's test split (judged queries), BM25 + all-MiniLM-L6-v2 (cached vectors), "
        "weights 0.5/0.5, depth 100, on Qdrant Edge through the library. p-values: paired randomisation test "
        "(`hybrid_retriever.evaluation.significance`, 10,000 sign flips).\n",
    ]
    if report.get("fragmentation"):
        out.append(fragmentation_md(report["fragmentation"]))
    labels = [s[0] for s in SYSTEMS]
    out.append("\n## nDCG@10 (test; issue 13, offline fusion of cached branch lists)\n")
    out.append(md_table(["system"] + cols, [[label] + [at(c, "test")["ndcg@10"][label] for c in cols] for label in labels]))
    out.append("\n## Paired tests (test split): mean difference B - A and p\n")
    out.append(md_table(["test"] + cols, [[t] + [diff_p(at(c, "test")["tests"][t]) for c in cols] for t in at(cols[0], "test")["tests"]]))
    dev = [(c, s) for c in cols for s in report["collections"][c]["splits"] if s != "test"]
    if dev:
        heads = [f"{c} ({s})" for c, s in dev]
        out.append("\n## Dev splits (where the choices were made)\n")
        out.append(md_table(["system"] + heads, [[label] + [at(c, s)["ndcg@10"][label] for c, s in dev] for label in labels]))
        out.append("\nCompleted-score normalisation on dev (interpolation, auto analyzer, 0.5/0.5):\n\n")
        out.append(md_table(["normalisation, completion"] + heads,
                            [[k] + [at(c, s)["completion"][k] for c, s in dev] for k in at(*dev[0])["completion"]]))
        out.append(dev_grid("clarity_grid", "\nAdaptive fusion's clarity parameters on dev (support off): nDCG@10 per "
                            "`clarity_weight / sparse_clarity_offset` (0/0 = clarity off), and the mean over the dev splits "
                            "(the first choice was its maximum):\n\n", "clarity_weight / offset",
                            lambda xs: xs + [float(np.mean(xs))]))
        others = [(c, s) for c, s in dev if "other_signals" in at(c, s)]
        if others:
            out.append("\nOther per-branch signals in place of NQC over the top 10 (dev, same mapping; the best "
                       "`clarity_weight / offset` of each by the mean over the dev splits, and that mean; NQC top 10 for "
                       "comparison):\n\n")
            grids = {name: {k: [at(c, s)["other_signals"][name][k] for c, s in others] for k in g}
                     for name, g in at(*others[0])["other_signals"].items()}
            grids["NQC, top 10 (the library's)"] = {k: [at(c, s)["clarity_grid"][k] for c, s in others] for k in at(*others[0])["clarity_grid"]}
            rows = []
            for name, g in grids.items():
                k = max(g, key=lambda x: float(np.mean(g[x])))
                rows.append([name, k] + with_mean(g[k]))
            rows.append(["none (clarity off)", "0.0/0.0"] + with_mean(grids["NQC, top 10 (the library's)"]["0.0/0.0"]))
            out.append(md_table(["signal", "best weight / offset"] + [f"{c} ({s})" for c, s in others] + ["mean"], rows))
        out.append(dev_grid("joint_grid", "\nBoth signals together on dev: nDCG@10 per `support_weight / clarity_weight` "
                            "(offset 0; the dev choice is the maximum of the mean; the default keeps both at 0, see the "
                            "notes):\n\n", "support_weight / clarity_weight", with_mean))
    out.append("\n## Completed-score normalisation on every collection (test; interpolation, auto analyzer, 0.5/0.5)\n")
    out.append(md_table(["normalisation, completion"] + cols,
                        [[k] + [at(c, "test")["completion"][k] for c in cols] for k in at(cols[0], "test")["completion"]]))
    fw = [c for c in cols if "foreign_weight" in report["collections"][c]]
    if fw:
        out.append("\n## Adaptive: foreign_weight (dense weight multiplier outside the model's languages), test\n")
        out.append(md_table(["foreign_weight"] + fw, [[w] + [report["collections"][c]["foreign_weight"][w] for c in fw]
                                                       for w in report["collections"][fw[0]]["foreign_weight"]]))
    if report.get("detection"):
        out.append("\n## Language detection (lingua, low-accuracy mode, the languages of docs/languages.md)\n")
        out.append(md_table(["corpus", "expected", "corpus vote", "vote share", "documents: accuracy", "queries: accuracy", "ms/document"],
                            [[c, d["expected"], d["corpus_vote"], d["vote_share"], d["document_accuracy"], d["query_accuracy"], d["ms_per_document"]]
                             for c, d in report["detection"].items()]))
    if report.get("cost"):
        out.append("\n## Added cost of adaptive fusion per query (fusion only, interleaved with the fixed method)\n")
        out.append(md_table(["collection", "fixed ms", "adaptive ms", "added ms"],
                            [[c, x["fixed_ms"], x["adaptive_ms"], x["added_ms"]] for c, x in report["cost"].items()]))
    if report.get("mixed"):
        out.append(mixed_md(report["mixed"]))
    if report.get("bm25_grid"):
        g = report["bm25_grid"]
        out.append("\n## BM25 k1 / b on the dev splits (auto analyzer, adaptive default fusion)\n")
        out.append(md_table(["setting"] + list(next(iter(g["dev"].values()))) + ["mean"],
                            [[f"**{n}**" if n == g["chosen"] else n] + with_mean(list(v.values())) for n, v in g["dev"].items()]))
        out.append(f"\nThe dev choice ({g['chosen']}, since then the default) against Qdrant's ({g['default']}, the default "
                   "before) on every test split, run once:\n\n")
        out.append(md_table(["collection", "BM25, k1 before", "BM25, dev choice", "adaptive, k1 before", "adaptive, dev choice",
                             "difference (p)"], [[c, x["bm25_default"], x["bm25_chosen"], x["default"], x["chosen"], diff_p(x["test"])]
                                                 for c, x in g["test"].items()]))
    out.append("\n" + report.get("notes", "") + "\n")
    return "".join(out)


def mixed_md(m: dict[str, Any]) -> str:
    names = list(next(iter(m["ndcg@10"].values())))
    acc = m["query_language_accuracy"]
    return "".join([
        f"\n## Mixed-language corpus: the three xquad-r corpora in one index ({m['documents']:,} documents, "
        f"{m['queries']:,} queries, test)\n",
        "".join(f"- BM25 `{a}`: {d}\n" for a, d in m["analyzers"].items()),
        "\nnDCG@10 by the queries' language (each query's judged document is the one in its own language):\n\n",
        md_table(["system"] + names, [[label] + [v[n] for n in names] for label, v in m["ndcg@10"].items()]),
        "\nThe same runs with the judged document's translations in the two other languages relevant too (the "
        "corpora are parallel):\n\n",
        md_table(["system"] + names, [[label] + [v[n] for n in names] for label, v in m["ndcg@10_translations_relevant"].items()]),
        "\nPer-document languages vs the majority's analyzer (own-language qrels; mean difference, p):\n\n",
        md_table(["system"] + names, [[what] + [diff_p(t[n]) for n in names] for what, t in m["tests"].items()]),
        f"\nLanguage routing: documents placed in their own language {m['document_language_accuracy']:.3f}; queries "
        + ", ".join(f"{n} {acc[n]:.3f}" for n in names)
        + f". Detection costs {m['detection_ms']['per_document']:.2f} ms per document at ingest and "
        f"{m['detection_ms']['per_query']:.2f} ms per query.\n",
    ])


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--collections", nargs="+", default=COLLECTIONS)
    ap.add_argument("--mixed", action="store_true", help="only the mixed-language corpus, added to the existing results")
    ap.add_argument("--fragmentation", action="store_true", help="only issue 22: the fragmentation signal chosen on dev halves, "
                    "then every collection through the search path, added to the existing results")
    ap.add_argument("--bm25-grid", action="store_true", help="only BM25's k1 / b on dev and the dev choice on test, added to the existing results")


def run(args: argparse.Namespace) -> None:
    info = machine_info()
    if args.fragmentation or args.mixed or args.bm25_grid:  # a section added to the existing results
        report = read_results("multilingual")
        if args.fragmentation:
            previous = report.get("fragmentation")
            frag = report["fragmentation"] = {"machine": previous["machine"] if previous and not all(
                n in args.collections for n in SPLIT_HALVES) else info, **evaluate_fragmentation(args, previous)}
            frag["collections"] = {c: frag["collections"][c] for c in COLLECTIONS if c in frag["collections"]}
        if args.mixed:
            report["mixed"] = {"machine": info, **evaluate_mixed(args.datasets)}
        if args.bm25_grid:
            report["bm25_grid"] = {"machine": info, **evaluate_bm25_grid(args.datasets)}
        write_results("multilingual", report, render(report))
        return
    report: dict[str, Any] = {"machine": info, "defaults": {"fixed": FIXED_DEFAULT, "adaptive": NEW_DEFAULT}, "collections": {},
                              "detection": {}, "cost": {}}
    for name, per in gather(args).items():
        log.info("%s: evaluating", name)
        report["collections"][name] = evaluate_collection(name, per)
        if name.startswith("xquad-r/"):
            report["detection"][name] = detection_accuracy(per["collection"], MIXED_PARTS[name.split("/")[1]])
        report["cost"][name] = adaptive_cost(per)
    info["loadavg_end"] = list(__import__("os").getloadavg())
    report["collections"] = {c: report["collections"][c] for c in COLLECTIONS if c in report["collections"]}
    write_results("multilingual", report, render(report))


def render(report: dict[str, Any]) -> str:
    """The Markdown of a results file, with the current notes (also written back to its JSON)."""
    report["notes"] = NOTES
    if report.get("fragmentation"):
        report["fragmentation"]["notes"] = FRAG_NOTES
    return markdown(report)


QUESTION = Question("multilingual", "BM25 analyzers, completed-score normalisation and adaptive fusion on seven collections; "
                    "--mixed, --bm25-grid, --fragmentation", add_arguments, run, {"multilingual": render},
                    smoke=["--collections", "scifact", "xquad-r/zh"])
