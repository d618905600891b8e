"""Pseudo-relevance feedback: quality and cost of every placement, with and without the drift guard.

    nice python -m benchmarks prf tune      # choose parameters on dev splits -> results/prf_tuning.{json,md}
    nice python -m benchmarks prf guard     # choose the drift guard on dev splits -> results/prf_guard_tuning.{json,md}
    nice python -m benchmarks prf tune-feedback  # Qdrant's feedback query on dev splits -> results/prf_feedback_tuning.{json,md}
    nice python -m benchmarks prf report    # the test collections -> results/prf.{json,md}

The index is the default one (BM25 + MiniLM, document vectors from the embedding cache). The first stage runs
once per collection through ``HybridRetriever.search_branches`` + ``fuse``; each PRF variant then runs the library's
``PRFPipeline`` on that first stage, so rows differ only by PRF. Times are per query for a whole batch (all queries
at once): first stage + PRF.

Parameters are chosen with ``tune`` (and ``tune-feedback`` for Qdrant's relevance-feedback
query) on dev data only (scifact qrels/train.tsv, nfcorpus-preprocessed qrels/dev.tsv);
``report`` uses the test qrels.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from benchmarks.harness import (DEV_SPLITS, Question, cache, index_collection, load_collection, log, machine_info,
    machine_md, md_table, open_or_index, per_query_metrics, write_results)

from hybrid_retriever import HybridRetriever
from hybrid_retriever.config import PRFConfig
from hybrid_retriever.prf import PRFPipeline
from hybrid_retriever.types import BranchResult

COLLECTIONS = ["scifact", "nfcorpus-preprocessed", "cranfield", "cisi", "xquad-r/en"]
DEPTH = 100

#: nDCG@10 of the issue's quick script (interpolation -> best "both"), for the target column.
TARGETS = {
    "scifact": (0.726, 0.738),
    "cranfield": (0.401, 0.416),
    "nfcorpus-preprocessed": (0.354, 0.368),
    "xquad-r/en": (0.874, 0.876),
    "cisi": (0.427, 0.418),
}


# ------------------------------------------------------------------------------ metrics


@dataclass
class Scores:
    ndcg: np.ndarray
    recall: np.ndarray
    ms: float

    def summary(self) -> dict[str, float]:
        return {"ndcg@10": float(self.ndcg.mean()), "recall@100": float(self.recall.mean()), "ms_per_query": self.ms}


# ------------------------------------------------------------------------------- index


def open_index(root: Path, name: str) -> HybridRetriever:
    """The collection's Edge index (BM25 + MiniLM), built once from the embedding cache."""
    path = cache("prf-index") / name.replace("/", "__")
    return open_or_index(path, lambda: index_collection(load_collection(root, name), path)[0])


@dataclass
class FirstStage:
    qids: list[str]
    results: list[dict[str, BranchResult]]
    fused: list[list[Any]]
    ms: float  # per query, hybrid: encode both branches + search + completion + fusion
    single: dict[str, tuple[list[dict[str, BranchResult]], float]]  # branch -> (results, ms/query)


def first_stage(r: HybridRetriever, queries: dict[str, str], qids: list[str]) -> FirstStage:
    texts = [queries[q] for q in qids]
    t0 = time.perf_counter()
    results = r.search_branches(texts, complete=True)
    fused = [r.fuse(x) for x in results]
    ms = (time.perf_counter() - t0) * 1000 / len(qids)
    single = {}
    for name, branch in r.branches.items():
        from hybrid_retriever.retriever import _tie_margin, _tie_sorted
        from hybrid_retriever.stores import SearchRequest
        from hybrid_retriever.types import ScoredId

        t0 = time.perf_counter()
        vecs = branch.encode_queries(texts)
        # The library's own rule for one branch's list: a few more than DEPTH, cut after sorting ties by point id
        # (Qdrant leaves the order of equal scores open, Edge's changes from process to process, and a tie at the
        # cut changes nDCG).
        answers = r.store.search_ranked([SearchRequest(vector_name=name, vector=v, limit=DEPTH + _tie_margin(DEPTH))
                                         for v in vecs])
        res = []
        for a, v in zip(answers, vecs):
            keys, scores = _tie_sorted(a)
            ids = r.store.key_texts(keys[:DEPTH])
            res.append({name: BranchResult(name, [ScoredId(p, s, k) for k, (p, s) in enumerate(zip(ids, scores), 1)],
                                           query_vector=v)})
        single[name] = (res, (time.perf_counter() - t0) * 1000 / len(qids))
    return FirstStage(qids, results, fused, ms, single)


class Runner:
    """Runs named variants on one collection's first stage and scores them."""

    def __init__(self, r: HybridRetriever, fs: FirstStage, qrels: dict[str, dict[str, int]]) -> None:
        self.r = r
        self.fs = fs
        self.qrels = qrels
        self.to_doc: dict[str, str] = {}

    def doc_ids(self, pids: Sequence[str]) -> list[str]:
        missing = [p for p in pids if p not in self.to_doc]
        if missing:
            for p in self.r.store.retrieve(missing):
                self.to_doc[p.point_id] = p.payload.get("doc_id", p.point_id)
        return [self.to_doc.get(p, p) for p in pids]

    def score(self, pids: list[list[str]], ms: float) -> Scores:
        """Ranked point ids per query, scored on their top :data:`DEPTH` (as document ids)."""
        runs = [self.doc_ids(p[:DEPTH]) for p in pids]
        m = per_query_metrics(dict(zip(self.fs.qids, runs)), {q: self.qrels[q] for q in self.fs.qids})
        return Scores(m["ndcg@10"], m["recall@100"], ms)

    def score_fused(self, fused: list[list[Any]], ms: float) -> Scores:
        return self.score([[it.id for it in items] for items in fused], ms)

    def interpolation(self) -> Scores:
        return self.score_fused(self.fs.fused, self.fs.ms)

    def branch_alone(self, name: str) -> Scores:
        res, ms = self.fs.single[name]
        return self.score([[h.point_id for h in x[name].hits] for x in res], ms)

    def prf(self, cfg: PRFConfig, single: str | None = None) -> tuple[Scores, list[Any]]:
        """A PRF variant on the hybrid first stage (or on one branch alone with ``single``)."""
        pipe = PRFPipeline(self.r, cfg)
        if single is not None:
            res, base_ms = self.fs.single[single]
            fused = [self.r.fuse(x) for x in res]
        else:
            res, fused, base_ms = self.fs.results, self.fs.fused, self.fs.ms
        t0 = time.perf_counter()
        out = pipe.run(res, fused, None)
        ms = (time.perf_counter() - t0) * 1000 / len(res)
        return self.score_fused(out.fused, base_ms + ms), out.info


def prf_config(**kw: Any) -> PRFConfig:
    guard = kw.pop("guard", {"enabled": False})
    return PRFConfig.model_validate({"enabled": True, **kw, "guard": guard})


def wins(a: Scores, base: Scores, eps: float = 1e-9) -> tuple[int, int, int]:
    d = a.ndcg - base.ndcg
    return int((d > eps).sum()), int((d < -eps).sum()), int((np.abs(d) <= eps).sum())


# -------------------------------------------------------------------------------- tune


def runner(args: argparse.Namespace, name: str, split: str) -> Runner:
    """A runner on the collection's first stage for the queries of ``split`` with at least one relevant document."""
    coll = load_collection(args.datasets, name, splits=(split,))
    qrels = coll.qrels[split]
    qids = [q for q in coll.judged(split) if any(g > 0 for g in qrels[q].values())]
    r = open_index(args.datasets, name)
    return Runner(r, first_stage(r, coll.queries, qids), qrels)


def dev_runs(args: argparse.Namespace) -> Iterator[tuple[str, str, Runner, Scores]]:
    """Per dev split (never a test split): a runner on its first stage, and interpolation without PRF."""
    for name, split in DEV_SPLITS.items():
        run = runner(args, name, split)
        yield name, split, run, run.interpolation()


def tune_grid() -> list[tuple[str, dict[str, Any], str | None]]:
    """The PRF parameter search: (label, PRF config, single branch or None for hybrid)."""
    grid: list[tuple[str, dict[str, Any], str | None]] = []
    ratios = [(1.0, 0.25), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0), (0.25, 1.0)]
    for fb, (a, b) in itertools.product([1, 3, 5, 10], ratios):
        grid.append((f"dense rocchio fb{fb} a{a} b{b} both", dict(fb_docs=fb, alpha=a, beta=b, interpolate="both", branches=["dense"]), None))
    for fb, (a, b) in itertools.product([3, 5], ratios[1:4]):
        for place in ["after", "before"]:
            grid.append((f"dense rocchio fb{fb} a{a} b{b} {place}", dict(fb_docs=fb, alpha=a, beta=b, interpolate=place, branches=["dense"]), None))
    for fb, (a, b) in itertools.product([3, 5], ratios):
        grid.append((f"dense-alone rocchio fb{fb} a{a} b{b}", dict(fb_docs=fb, alpha=a, beta=b, interpolate="none", branches=["dense"]), "dense"))
    for fb in [3, 5, 10]:
        grid.append((f"dense average fb{fb} both", dict(fb_docs=fb, dense_method="average", interpolate="both", branches=["dense"]), None))
    for fb, lam, terms, idf in itertools.product([5, 10], [0.3, 0.5, 0.7], [10, 30], [False, True]):
        kw = dict(fb_docs=fb, rm3_lambda=lam, fb_terms=terms, idf_terms=idf, branches=["bm25"])
        grid.append((f"bm25-alone rm3 fb{fb} l{lam} t{terms} idf{int(idf)}", dict(kw, interpolate="none"), "bm25"))
    for fb, lam, terms in itertools.product([5, 10], [0.5, 0.7], [10, 30]):
        kw = dict(fb_docs=fb, rm3_lambda=lam, fb_terms=terms, idf_terms=True, branches=["bm25"])
        grid.append((f"rm3 fb{fb} l{lam} t{terms} idf1 both", dict(kw, interpolate="both"), None))
    for fb, (a, b), lam in itertools.product([3, 5], ratios[1:4], [0.5, 0.7]):
        for place in ["both", "after"]:
            kw = dict(fb_docs=fb, alpha=a, beta=b, rm3_lambda=lam, fb_terms=20, idf_terms=True, interpolate=place, branches=["dense", "bm25"])
            grid.append((f"dense+rm3 fb{fb} a{a} b{b} l{lam} t20 {place}", kw, None))
    return grid


def tune(args: argparse.Namespace) -> None:
    rows = []
    for name, split, run, base in dev_runs(args):
        for label, s in [("interpolation", base), ("dense", run.branch_alone("dense")), ("bm25", run.branch_alone("bm25"))]:
            rows.append({"collection": name, "split": split, "variant": label, **s.summary()})
        for label, kw, single in tune_grid():
            t0 = time.perf_counter()
            s, _ = run.prf(prf_config(**kw), single=single)
            rows.append({"collection": name, "split": split, "variant": label, **s.summary()})
            log.info("%s %s: nDCG@10 %.4f (base %.4f) in %.1fs", name, label, s.ndcg.mean(), base.ndcg.mean(), time.perf_counter() - t0)
        run.r.close()
    out = {"machine": machine_info(), "rows": rows}
    write_results("prf_tuning", out, render_tuning(out))


def by_variant(rows: list[dict[str, Any]]) -> dict[str, tuple[dict[str, Any], float]]:
    """A parameter search's rows: per variant, its row of each collection and its mean nDCG@10; best mean first."""
    per: dict[str, dict[str, Any]] = {}
    for x in rows:
        per.setdefault(x["variant"], {})[x["collection"]] = x
    mean = {v: float(np.mean([x["ndcg@10"] for x in cols.values()])) for v, cols in per.items()}
    return {v: (per[v], mean[v]) for v in sorted(per, key=lambda v: -mean[v])}


#: The dev columns of a parameter search's table.
DEV_COLUMNS = [f"{c} ({s})" for c, s in DEV_SPLITS.items()]


def render_tuning(out: dict[str, Any]) -> str:
    table = [[v] + [vals[c]["ndcg@10"] if c in vals else None for c in DEV_SPLITS] + [mean]
             for v, (vals, mean) in by_variant(out["rows"]).items()]
    md = "# PRF parameter search on dev splits\n\n" + machine_md(out["machine"]) + "\n"
    md += "nDCG@10 on scifact qrels/train.tsv and nfcorpus-preprocessed qrels/dev.tsv, best mean first.\n\n"
    md += md_table(["variant", *DEV_COLUMNS, "mean"], table)
    return md


def tune_guard(args: argparse.Namespace) -> None:
    """Choose the drift guard on dev data, for the dense configuration chosen by ``tune`` (DENSE, ``both``)."""
    from hybrid_retriever.prf.guard import agreement

    variants_ = [
        ("no guard", {"enabled": False}),
        ("skip if agreement < 0.2 (unreliable)", {"max_agreement": None, "min_agreement": 0.2}),
        ("skip if agreement < 0.3 (unreliable)", {"max_agreement": None, "min_agreement": 0.3}),
        ("damp below agreement 0.5", {"max_agreement": None, "min_agreement": 0.0, "full_agreement": 0.5}),
        ("confirmed feedback, depth 10", {"max_agreement": None, "consensus_depth": 10}),
        ("confirmed feedback, depth 20", {"max_agreement": None, "consensus_depth": 20}),
    ] + [(f"skip if agreement >= {t} (settled)", {"max_agreement": t}) for t in (0.3, 0.4, 0.5, 0.6, 0.7)]
    rows = []
    bins_out = []
    for name, split, run, base in dev_runs(args):
        agree = np.array([agreement(per, 10) or 0.0 for per in run.fs.results])  # overlap of the BM25 and dense top 10
        full = None
        for label, g in variants_:
            s, info = run.prf(prf_config(**DENSE, interpolate="both", guard=g))
            if full is None:
                full = s
            w, l, _ = wins(s, base)
            rows.append({"collection": name, "split": split, "guard": label, "gain": float(s.ndcg.mean() - base.ndcg.mean()),
                         "applied": int(sum(i.applied for i in info)), "queries": len(run.fs.qids), "wins": w, "losses": l})
            log.info("%s %-40s gain %+.4f applied %d/%d", name, label, rows[-1]["gain"], rows[-1]["applied"], len(run.fs.qids))
        delta = full.ndcg - base.ndcg
        for lo, hi in [(0.0, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5), (0.5, 0.7), (0.7, 1.01)]:
            m = (agree >= lo) & (agree < hi)
            bins_out.append({"collection": name, "agreement": f"[{lo:.1f}, {min(hi, 1.0):.1f}{']' if hi > 1 else ')'}",
                             "queries": int(m.sum()), "gain_without_guard": float(delta[m].mean()) if m.any() else None,
                             "first_stage_ndcg": float(base.ndcg[m].mean()) if m.any() else None})
        run.r.close()
    out = {"machine": machine_info(), "dense": DENSE, "rows": rows, "by_agreement": bins_out}
    write_results("prf_guard_tuning", out, render_guard(out))


def render_guard(out: dict[str, Any]) -> str:
    rows, bins_out = out["rows"], out["by_agreement"]
    md = "# Drift guard on dev splits\n\n" + machine_md(out["machine"]) + "\n"
    md += (f"Dense Rocchio {json.dumps(out['dense'])}, placement `both`; nDCG@10 gain (points) over interpolation without PRF "
           "on scifact qrels/train.tsv and nfcorpus-preprocessed qrels/dev.tsv. Agreement = overlap of the BM25 and "
           "dense top 10.\n\n")
    cols = list(DEV_SPLITS)
    table = []
    for label in dict.fromkeys(x["guard"] for x in rows):
        vals = {x["collection"]: x for x in rows if x["guard"] == label}
        table.append([label] + [f"{vals[c]['gain'] * 100:+.2f} ({vals[c]['applied']}/{vals[c]['queries']} fed back)" for c in cols]
                     + [f"{np.mean([vals[c]['gain'] for c in cols]) * 100:+.2f}"])
    md += md_table(["guard"] + cols + ["mean"], table)
    md += "\n## Gain of unguarded PRF by first-stage agreement\n\n"
    md += md_table(["collection", "agreement", "queries", "first-stage nDCG@10", "PRF gain"],
                   [[b["collection"], b["agreement"], b["queries"], b["first_stage_ndcg"], b["gain_without_guard"]] for b in bins_out])
    return md

def feedback_grid() -> list[tuple[str, dict[str, Any]]]:
    """Qdrant's relevance-feedback query, placement ``both``: feedback documents, negatives, b and c.

    ``a`` stays 1: with min-max interpolation (or RRF) only the ratio c/a and b change the
    ranking, since the branch's scores are rescaled anyway.
    """
    out = []
    for fb, neg, b, c in itertools.product([1, 2, 3, 5], [0, 1, 3], [0.0, 1.0], [0.05, 0.1, 0.2, 0.3, 0.5, 1.0]):
        if fb + neg < 2:
            continue
        kw = dict(dense_method="qdrant_feedback", fb_docs=fb, fb_negatives=neg, feedback_a=1.0, feedback_b=b, feedback_c=c)
        out.append((f"qdrant feedback fb{fb} neg{neg} b{b:g} c{c:g} both", dict(kw, interpolate="both", branches=["dense"])))
    return out


def tune_feedback(args: argparse.Namespace) -> None:
    """Choose Qdrant's relevance-feedback parameters on dev data (best mean nDCG@10, as ``tune`` does for Rocchio)."""
    rows = []
    for name, split, run, base in dev_runs(args):
        rows.append({"collection": name, "split": split, "variant": "interpolation", **base.summary()})
        grid = [(f"dense rocchio fb{DENSE['fb_docs']} a{DENSE['alpha']} b{DENSE['beta']} both (chosen by tune)", dict(DENSE, interpolate="both"))]
        for label, kw in grid + feedback_grid():
            s, _ = run.prf(prf_config(**kw))
            w, l, _ = wins(s, base)
            rows.append({"collection": name, "split": split, "variant": label, **s.summary(), "wins": w, "losses": l})
            log.info("%s %s: nDCG@10 %.4f (base %.4f)", name, label, s.ndcg.mean(), base.ndcg.mean())
        run.r.close()
    out = {"machine": machine_info(), "rows": rows}
    write_results("prf_feedback_tuning", out, render_feedback_tuning(out))


def render_feedback_tuning(out: dict[str, Any]) -> str:
    variants = by_variant(out["rows"])
    mean = {v: m for v, (_, m) in variants.items()}
    labels = list(variants)
    table = [[v] + [vals[c]["ndcg@10"] for c in DEV_SPLITS] + [m] + [vals[c]["recall@100"] for c in DEV_SPLITS]
             for v, (vals, m) in variants.items()]
    md = "# Qdrant's relevance-feedback query: parameter search on dev splits\n\n" + machine_md(out["machine"]) + "\n"
    md += (
        "`dense_method: qdrant_feedback`, placement `both`, no guard: the top `fb` documents of the fused first stage "
        "and `neg` documents from rank 50 on are sent with their fused first-stage scores; a = 1, b and c as named. "
        "nDCG@10 (and Recall@100) on scifact qrels/train.tsv and nfcorpus-preprocessed qrels/dev.tsv, best mean "
        "nDCG@10 first; the top `qdrant feedback` row is the one used in [prf.md](prf.md). Qdrant Edge pairs every "
        "two feedback documents with different scores; a Qdrant server whose source pairs best with worst (at most "
        "3 pairs) scores alike only with 2 feedback documents.\n\n"
    )
    two = [v for v in labels if v.startswith("qdrant feedback") and _items(v) == 2]
    best = next(v for v in labels if v.startswith("qdrant feedback"))
    md += f"- Best: `{best}`, mean nDCG@10 {mean[best]:.4f}.\n"
    if two:
        md += f"- Best with exactly 2 feedback documents (the same on every Qdrant): `{two[0]}`, mean nDCG@10 {mean[two[0]]:.4f}.\n"
    md += "\n" + md_table(["variant", *DEV_COLUMNS, "mean"] + [f"R@100 {c}" for c in DEV_SPLITS], table)
    return md


def _items(label: str) -> int:
    """Feedback documents sent by a ``qdrant feedback fbF negN ...`` variant: F + N."""
    parts = {p[:2]: p for p in label.split()}
    return int(parts["fb"][2:]) + int(parts["ne"][3:])


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "part", nargs="?", default="report", choices=["tune", "guard", "tune-feedback", "report"],
        help="tune: PRF parameters, guard: the drift guard, tune-feedback: Qdrant's feedback query (all on dev data); "
        "report: test collections (default)",
    )
    ap.add_argument("--collections", nargs="*", default=COLLECTIONS)


def run(args: argparse.Namespace) -> None:
    {"tune": tune, "guard": tune_guard, "tune-feedback": tune_feedback, "report": report}[args.part](args)


# ------------------------------------------------------------------------------- report

#: Parameters chosen by ``tune`` on dev data (results/prf_tuning.md); the library's PRFConfig defaults match DENSE.
DENSE = dict(fb_docs=3, alpha=1.0, beta=0.5, branches=["dense"])
RM3 = dict(fb_docs=10, rm3_lambda=0.7, fb_terms=30, idf_terms=False, branches=["bm25"])
#: Qdrant's relevance-feedback query, chosen by ``tune-feedback`` on dev data (results/prf_feedback_tuning.md).
QDRANT_FB = dict(dense_method="qdrant_feedback", fb_docs=5, fb_negatives=1, feedback_a=1.0, feedback_b=1.0, feedback_c=0.1, branches=["dense"])
#: Qdrant feedback rows -> the Rocchio row they are compared with.
QDRANT_VS_ROCCHIO = {"both, Qdrant feedback query": "both", "both, Qdrant feedback query, guarded": "both, guarded"}


def variants() -> list[tuple[str, dict[str, Any] | None, str | None]]:
    """(label, PRF config or None for a baseline, single branch or None for hybrid)."""
    guard = PRFConfig().guard.model_dump()
    out: list[tuple[str, dict[str, Any] | None, str | None]] = [
        ("dense", None, "dense"),
        ("dense + PRF (Rocchio)", dict(DENSE, interpolate="none"), "dense"),
        ("BM25", None, "bm25"),
        ("BM25 + RM3", dict(RM3, interpolate="none"), "bm25"),
        ("interpolation, no PRF", None, None),
    ]
    for place, label in [("after", "PRF then interpolate (after)"), ("before", "interpolate then PRF (before)"), ("both", "both")]:
        out.append((label, dict(DENSE, interpolate=place), None))
        out.append((label + ", guarded", dict(DENSE, interpolate=place, guard=guard), None))
    rm3 = {k: v for k, v in RM3.items() if k not in ("fb_docs", "branches")}
    out.append(("both, dense Rocchio + BM25 RM3", dict(DENSE, **rm3, interpolate="both", branches=["dense", "bm25"]), None))
    out.append(("both, dense Rocchio + BM25 RM3, guarded", dict(DENSE, **rm3, interpolate="both", branches=["dense", "bm25"], guard=guard), None))
    out.append(("default PRFConfig (enabled, guarded)", {"guard": guard}, None))
    out.append(("both, Qdrant feedback query", dict(QDRANT_FB, interpolate="both"), None))
    out.append(("both, Qdrant feedback query, guarded", dict(QDRANT_FB, interpolate="both", guard=guard), None))
    return out


def guard_effect(info: list[Any], guarded: Scores, unguarded: Scores) -> dict[str, Any]:
    """How many queries the guard skipped or damped, and what that did relative to full feedback."""
    strength = np.array([max(i.strength.values(), default=0.0) for i in info])
    d = guarded.ndcg - unguarded.ndcg
    touched = strength < 1.0
    return {
        "skipped": int((strength <= 0).sum()),
        "damped": int(((strength > 0) & (strength < 1)).sum()),
        "protected": int((touched & (d > 1e-9)).sum()),  # guard better than full feedback
        "cost": int((touched & (d < -1e-9)).sum()),  # guard worse than full feedback
        "ndcg_change_vs_unguarded": float(d.mean()),
    }


def report(args: argparse.Namespace) -> None:
    info0 = machine_info()
    params = {"dense": DENSE, "rm3": RM3, "qdrant_feedback": QDRANT_FB, "default": PRFConfig().model_dump()}
    data: dict[str, Any] = {"machine": info0, "parameters": params, "collections": {}}
    for name in args.collections:
        run = runner(args, name, "test")
        base, qids = run.interpolation(), run.fs.qids
        rows: dict[str, Any] = {}
        unguarded: dict[str, Scores] = {}
        for label, kw, single in variants():
            if kw is None:
                s = base if single is None else run.branch_alone(single)
                info = None
            else:
                s, info = run.prf(prf_config(**kw), single=single)
            w, l, t = wins(s, base)
            row = {**s.summary(), "wins": w, "losses": l, "ties": t, "queries": len(qids)}
            if info is not None and single is None:
                row["prf_applied"] = int(sum(i.applied for i in info))
            if label.endswith(", guarded") and info is not None:
                row["guard"] = guard_effect(info, s, unguarded[label[: -len(", guarded")]])
            if label in QDRANT_VS_ROCCHIO:
                w2, l2, t2 = wins(s, unguarded[QDRANT_VS_ROCCHIO[label]])
                row["vs_rocchio"] = {"wins": w2, "losses": l2, "ties": t2}
            unguarded[label] = s
            rows[label] = row
            log.info("%s %-40s nDCG@10 %.4f R@100 %.4f %.1f ms/q W/L %d/%d", name, label, s.ndcg.mean(), s.recall.mean(), s.ms, w, l)
        data["collections"][name] = {"queries": len(qids), "documents": run.r.count(), "rows": rows}
        run.r.close()
    data["machine"]["loadavg_end"] = list(__import__("os").getloadavg())
    write_results("prf", data, render(data))


def summary(data: dict[str, Any]) -> str:
    """The headline: the default (guarded) configuration and the issue's targets, computed from the rows."""
    cols = list(data["collections"])
    base = {c: data["collections"][c]["rows"]["interpolation, no PRF"]["ndcg@10"] for c in cols}
    default = {c: data["collections"][c]["rows"]["default PRFConfig (enabled, guarded)"]["ndcg@10"] - base[c] for c in cols}
    both = {c: data["collections"][c]["rows"]["both"]["ndcg@10"] - base[c] for c in cols}
    out = ["\n## Summary\n\n"]
    mean = float(np.mean(list(default.values())))
    worst = min(default, key=default.get)
    out.append(
        f"- Default configuration (`prf.enabled: true`: dense Rocchio, `both`, guarded): mean nDCG@10 gain over "
        f"interpolation without PRF {mean * 100:+.2f} points; worst collection {worst} {default[worst] * 100:+.2f} points "
        f"(target: positive mean, none below -0.5 points: {'met' if mean > 0 and default[worst] > -0.005 else 'not met'}).\n"
    )
    for c in cols:
        if c in TARGETS:
            t0, t1 = TARGETS[c]
            gain = t1 - t0
            ok = both[c] >= gain - 1e-9
            out.append(
                f"- {c}: 'both' {both[c] * 100:+.2f} points (issue: {t0:.3f} -> {t1:.3f}, {gain * 100:+.1f}): "
                f"{'met' if ok else 'not met'}; default (guarded) {default[c] * 100:+.2f}.\n"
            )
    for c in cols:
        rows = data["collections"][c]["rows"]
        out.append(
            f"- {c}: BM25 {rows['BM25']['ndcg@10']:.3f} -> BM25 + RM3 {rows['BM25 + RM3']['ndcg@10']:.3f}; "
            f"dense {rows['dense']['ndcg@10']:.3f} -> dense + PRF {rows['dense + PRF (Rocchio)']['ndcg@10']:.3f}.\n"
        )
    return "".join(out)


def qdrant_feedback_section(data: dict[str, Any]) -> str:
    """Qdrant's relevance-feedback query against the library's Rocchio, both in placement ``both``."""
    cols = list(data["collections"])
    rows_of = {c: data["collections"][c]["rows"] for c in cols}
    pairs = [(q, r) for q, r in QDRANT_VS_ROCCHIO.items() if all(q in rows_of[c] for c in cols)]
    if not pairs:
        return ""
    p = data["parameters"].get("qdrant_feedback", {})
    md = ["\n## Qdrant's relevance-feedback query vs Rocchio\n\n"]
    md.append(
        "`dense_method: qdrant_feedback` sends the feedback documents' stored vectors with their fused first-stage "
        "scores as Qdrant's relevance-feedback query (Qdrant Edge `Query.FeedbackNaive`; qdrant-client "
        "`RelevanceFeedbackQuery`) and Qdrant scores the second stage itself: "
        f"a = {p.get('feedback_a')}, b = {p.get('feedback_b')}, c = {p.get('feedback_c')}, "
        f"fb_docs = {p.get('fb_docs')}, fb_negatives = {p.get('fb_negatives')} (chosen on dev data). "
        "The Rocchio rows rewrite the query vector instead (one plain search). "
        "+ms/q: the row's ms/query minus that of interpolation without PRF (same run), i.e. what PRF adds. "
        "Head-to-head: per-query nDCG@10 wins/losses/ties of the Qdrant row against its Rocchio row.\n\n"
    )
    table = []
    for q, r in pairs:
        for c in cols:
            a, b, base = rows_of[c][r], rows_of[c][q], rows_of[c]["interpolation, no PRF"]["ms_per_query"]
            table.append(
                [q, c, a["ndcg@10"], b["ndcg@10"], a["recall@100"], b["recall@100"],
                 a["ms_per_query"] - base, b["ms_per_query"] - base,
                 f"{a['wins']}/{a['losses']}", f"{b['wins']}/{b['losses']}", "{wins}/{losses}/{ties}".format(**b["vs_rocchio"])]
            )
    md.append(md_table(
        ["Qdrant row", "collection", "nDCG@10 Rocchio", "nDCG@10 Qdrant", "R@100 Rocchio", "R@100 Qdrant",
         "+ms/q Rocchio", "+ms/q Qdrant", "W/L vs interp. Rocchio", "W/L vs interp. Qdrant", "head-to-head W/L/T"],
        table,
    ))
    md.append("\n")
    for q, r in pairs:
        mean = lambda lab, key: float(np.mean([rows_of[c][lab][key] for c in cols]))  # noqa: E731
        h2h = [sum(rows_of[c][q]["vs_rocchio"][k] for c in cols) for k in ("wins", "losses")]
        better = sum(rows_of[c][q]["ndcg@10"] > rows_of[c][r]["ndcg@10"] + 5e-4 for c in cols)
        worse = sum(rows_of[c][q]["ndcg@10"] < rows_of[c][r]["ndcg@10"] - 5e-4 for c in cols)
        base_ms = mean("interpolation, no PRF", "ms_per_query")
        md.append(
            f"- `{q}` vs `{r}`: mean nDCG@10 {mean(q, 'ndcg@10'):.3f} vs {mean(r, 'ndcg@10'):.3f} "
            f"(higher on {better}, lower on {worse} of {len(cols)} collections by more than 0.05 points), "
            f"mean Recall@100 {mean(q, 'recall@100'):.3f} vs {mean(r, 'recall@100'):.3f}, "
            f"PRF's added ms/query (mean) {mean(q, 'ms_per_query') - base_ms:+.1f} vs {mean(r, 'ms_per_query') - base_ms:+.1f}; "
            f"per query {h2h[0]} wins and {h2h[1]} losses against Rocchio over all collections.\n"
        )
    md.append(
        "\nWhy they land so close: for cosine (and dot) similarity Qdrant's formula is linear in the candidate's unit "
        "vector, so it ranks exactly like one plain search with `a·q + Σ_k λ_k·d_k` (unit vectors), where `λ_k` adds the "
        "pair weights `(s_pos − s_neg)^b·c` document k gets as the better of a pair and subtracts those it gets as the "
        "worse. That is a Rocchio query whose feedback weights come from first-stage score gaps and sum to zero: the "
        "best-scored feedback documents pull, the worst-scored ones push (with these settings typically the rank-50 "
        "negative and the 4th and 5th feedback documents). The cost differs: for every candidate it scores, Qdrant "
        "evaluates the similarity to the query and to both vectors of every feedback pair (Qdrant Edge: every two "
        "feedback documents with different scores, 15 pairs for 6 documents), where a rewritten Rocchio vector needs "
        "one similarity.\n"
    )
    return "".join(md)


def render(data: dict[str, Any]) -> str:
    cols = list(data["collections"])
    md = ["# Pseudo-relevance feedback: placements, RM3, drift guard\n"]
    md.append(machine_md(data["machine"]))
    md.append(
        "\nQdrant Edge, BM25 (Qdrant's, IDF modifier) + all-MiniLM-L6-v2, min-max interpolation 0.5/0.5 with exact "
        "score completion, depth 100 per branch; test qrels, queries with at least one relevant document. "
        "PRF parameters were chosen on dev data only (scifact train, nfcorpus-preprocessed dev; see "
        "[prf_tuning.md](prf_tuning.md); the drift guard in [prf_guard_tuning.md](prf_guard_tuning.md)): dense Rocchio "
        f"{json.dumps(data['parameters']['dense'])}, BM25 RM3 {json.dumps(data['parameters']['rm3'])}"
        + (
            f", Qdrant's relevance-feedback query {json.dumps(data['parameters']['qdrant_feedback'])} "
            "([prf_feedback_tuning.md](prf_feedback_tuning.md))"
            if "qdrant_feedback" in data["parameters"]
            else ""
        )
        + ". "
        "ms/query: the whole batch of queries at once (first stage + PRF), divided by the number of queries, on 2 shared cores.\n"
    )
    labels = list(next(iter(data["collections"].values()))["rows"])
    md.append(summary(data))
    cells = {"nDCG@10": itemgetter("ndcg@10"), "Recall@100": itemgetter("recall@100"),
             "ms/query (batch)": itemgetter("ms_per_query"),
             "Per-query wins / losses / ties against interpolation without PRF (nDCG@10)": "{wins}/{losses}/{ties}".format_map}
    for title, cell in cells.items():
        table = [[lab] + [cell(data["collections"][c]["rows"][lab]) for c in cols] for lab in labels]
        if title == "nDCG@10":  # with the mean over the collections
            table = [row + [float(np.mean(row[1:]))] for row in table]
        md.append(f"\n## {title}\n\n" + md_table(["variant", *cols] + (["mean"] if title == "nDCG@10" else []), table))
    md.append("\n## The drift guard\n\n")
    md.append(
        "Per guarded row: queries whose feedback the guard skipped / damped; of those, how many ended better "
        "(protected) or worse (cost) than with full feedback; mean nDCG@10 change against the unguarded row.\n\n"
    )
    grows = []
    for lab in labels:
        for c in cols:
            g = data["collections"][c]["rows"][lab].get("guard")
            if g:
                grows.append([lab, c, g["skipped"], g["damped"], g["protected"], g["cost"], g["ndcg_change_vs_unguarded"]])
    md.append(md_table(["variant", "collection", "skipped", "damped", "protected", "cost", "Δ nDCG@10 vs unguarded"], grows))
    md.append(qdrant_feedback_section(data))
    md.append("\n## Targets (nDCG@10)\n\n")
    trows = []
    for c in cols:
        rws = data["collections"][c]["rows"]
        t0, t1 = TARGETS.get(c, (None, None))
        both = rws["both"]["ndcg@10"]
        base = rws["interpolation, no PRF"]["ndcg@10"]
        best = max(rws[k]["ndcg@10"] for k in rws if k.startswith("both"))
        gain_t = (t1 - t0) if t0 is not None else None
        trows.append([c, t0, t1, gain_t, base, both, both - base, best - base, rws["default PRFConfig (enabled, guarded)"]["ndcg@10"] - base])
    md.append(md_table(["collection", "issue: interp.", "issue: both", "issue gain", "interp.", "both", "gain", "best 'both' row gain", "default (guarded) gain"], trows))
    return "".join(md)


QUESTION = Question("prf", "pseudo-relevance feedback: quality and cost of every placement, the drift guard, parameters chosen on dev",
                    add_arguments, run,
                    {"prf": render, "prf_tuning": render_tuning, "prf_guard_tuning": render_guard,
                     "prf_feedback_tuning": render_feedback_tuning},
                    smoke=["report", "--collections", "scifact"])
