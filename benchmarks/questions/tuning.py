"""Tuning benchmark: default vs tuned vs synthetic-tuned fusion, and whether tuning transfers (tuning.md says how
each is validated: every score is on queries the configuration was not tuned on).

Documents are indexed with the cached MiniLM embeddings (benchmarks/.cache/minilm,
``python -m benchmarks cache embeddings``), so no document is re-encoded; queries and pseudo-queries are
encoded by the library. Branch runs are cached under benchmarks/.cache/tuning, so a
rerun only re-scores.

    nice python -m benchmarks tuning [--collections scifact,cisi] [--n-synthetic 500]

Writes benchmarks/results/tuning.{json,md} and docs/tuning-weights-scifact.png.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np

from benchmarks.harness import (REPO, SETTINGS, Question, cache, dense_branch, index_collection, load_collection,
    machine_info, machine_md, md_table, write_results)
from hybrid_retriever import Document, HybridRetriever, RetrieverConfig
from hybrid_retriever.branches import build_branch
from hybrid_retriever.evaluation import FusionGrid, FusionParams, SearchSpace, collect_runs, pseudo_queries, tune
from hybrid_retriever.evaluation.report import plot_weight_line
from hybrid_retriever.evaluation.significance import randomization_test

log = logging.getLogger("benchmarks.tuning")

COLLECTIONS = ["scifact", "nfcorpus-preprocessed", "cranfield", "cisi"]
#: Collections tuned on a train split and reported on test; the others are cross-validated.
SPLITS = {"scifact": ("train", "test")}
METRIC = "ndcg@10"
REPORT = ("ndcg@10", "recall@100")


def build_index(name: str, coll: Any, dense: Any, rebuild: bool) -> HybridRetriever:
    """The collection's Edge index (cached MiniLM document vectors), kept between runs (``--rebuild``: built again).

    Built or reopened, its queries are encoded by this process's one dense branch: a second instance of the model
    gives query vectors that differ in the last bits, enough to reorder near-ties.
    """
    path = cache("tuning", name) / "index"
    if rebuild or not (path / "manifest.json").is_file():
        return index_collection(coll, path, dense=dense)[0]
    cfg = RetrieverConfig.validate_data({"store": {"kind": "edge", "path": str(path)}, "runtime": {"show_progress": False}})
    return HybridRetriever(cfg, branches=[dense if c.kind == "dense" else build_branch(c) for c in cfg.branches])


def means(grid: FusionGrid, p: FusionParams, idx: np.ndarray | None = None) -> dict[str, float]:
    out = {}
    for m in REPORT:
        v = grid.score([p], m)[0]
        out[m] = float(v[idx].mean() if idx is not None else v.mean())
    return out


def run_collection(name: str, args: argparse.Namespace, dense: Any, space: SearchSpace) -> tuple[dict[str, Any], Any]:
    t_start = time.perf_counter()
    splits = SPLITS.get(name, ("test",))
    coll = load_collection(args.datasets, name, splits=splits)
    r = build_index(name, coll, dense, args.rebuild)
    base = r.config
    split_q = {s: coll.judged(s) for s in splits}
    qrels = {q: coll.qrels[s][q] for s in splits for q in split_q[s]}
    queries = {q: coll.queries[q] for q in qrels}
    runs = collect_runs(r, queries, depth=100, complete=True, batch_size=64, cache_dir=cache("tuning", name) / "runs", progress=False)
    search_s = sum(runs[q].wall_ms for q in queries) / 1000  # measured when searched, also when resumed from the cache
    grid = FusionGrid.from_cache(runs, qrels, qids=list(queries), max_k=100)
    pos = {q: i for i, q in enumerate(grid.qids)}

    def per_query(p: FusionParams) -> np.ndarray:
        return grid.score([p], METRIC)[0][report_idx]

    default = FusionParams.from_config(base)
    deep_space = SearchSpace(depths=(10, 20, 50, 100))
    variants = {"tuned": (space, "one-se"), "tuned_top_score": (space, "best"), "tuned_depths": (deep_space, "best")}
    results: dict[str, Any] = {}
    reports: dict[str, dict[str, float]] = {}
    if len(splits) == 2:
        train, test = split_q[splits[0]], split_q[splits[1]]
        report_idx = np.array([pos[q] for q in test])
        for key, (sp, sel) in variants.items():
            results[key] = tune(grid, base, metric=METRIC, space=sp, train_qids=train, dev_qids=test, seed=args.seed,
                                selection=sel)
            reports[key] = means(grid, results[key].best, report_idx)
        tuned_pq, top_pq = per_query(results["tuned"].best), per_query(results["tuned_top_score"].best)
        validation = f"tuned on {splits[0]} ({len(train)} queries), reported on {splits[1]} ({len(test)} queries)"
    else:
        report_idx = np.arange(grid.n_queries)
        for key, (sp, sel) in variants.items():
            results[key] = tune(grid, base, metric=METRIC, space=sp, folds=args.folds, seed=args.seed, selection=sel)
            reports[key] = {m: float(results[key].heldout_scores(grid, m).mean()) for m in REPORT}
        tuned_pq = results["tuned"].heldout_scores(grid, METRIC)
        top_pq = results["tuned_top_score"].heldout_scores(grid, METRIC)
        validation = f"{args.folds}-fold cross-validation over {grid.n_queries} queries"
    default_report = means(grid, default, report_idx)
    default_pq = per_query(default)
    branch_report = {}
    for bi, b in enumerate(grid.branches):
        w = tuple(1.0 if j == bi else 0.0 for j in range(len(grid.branches)))
        only = FusionParams("interpolation", w, tuple(grid.cached_depths), "minmax", "floor")
        branch_report[b] = means(grid, only, report_idx)
    # synthetic: pseudo-queries from the corpus, tuned without judgements, reported on the real queries
    docs = [Document(text=t, id=d) for d, t in zip(coll.doc_ids, coll.texts) if t.strip()]
    sq, sqrels = pseudo_queries(docs, n=args.n_synthetic, seed=args.seed)
    sruns = collect_runs(r, sq, depth=100, complete=True, batch_size=64, cache_dir=cache("tuning", name) / "runs-synthetic", progress=False)
    synth_search_s = sum(sruns[q].wall_ms for q in sq) / 1000
    sgrid = FusionGrid.from_cache(sruns, sqrels, max_k=100)
    sres = tune(sgrid, base, metric=METRIC, space=space, folds=args.folds, seed=args.seed)
    synth_report = means(grid, sres.best, report_idx)
    # the same weights, qrels-tuned vs synthetic: the real-query score of the synthetic choice against the best
    # configuration in hindsight on the report queries (an upper bound no tuner reaches)
    oracle = float(results["tuned_depths"].scores[:, report_idx].mean(1).max())
    r.close()
    row = {
        "collection": name,
        "validation": validation,
        "n_docs": len(docs),
        "n_queries_report": int(len(report_idx)),
        "default": {"config": default.as_dict(grid.branches), **default_report},
        **{key: {"config": results[key].best.as_dict(grid.branches), **reports[key],
                 "tuning_score": results[key].best_score, "n_configs": results[key].n_configs,
                 "fold_choices": [f["chosen"] for f in results[key].folds]} for key in variants},
        "synthetic": {"config": sres.best.as_dict(grid.branches), **synth_report,
                      "n_pseudo_queries": len(sq), "pseudo_query_score": sres.best_score,
                      "p_vs_default": randomization_test(default_pq, per_query(sres.best)).p_value,
                      "examples": list(sq.values())[:3]},
        "branches": branch_report,
        "oracle_ndcg@10": oracle,
        "n_configs": results["tuned_depths"].n_configs,
        "tune_seconds": results["tuned_depths"].seconds,
        "search_seconds": {"real": search_s, "synthetic": synth_search_s},
        "seconds": time.perf_counter() - t_start,
    }
    row["tuned"]["p_vs_default"] = randomization_test(default_pq, tuned_pq).p_value
    row["tuned_top_score"]["p_vs_default"] = randomization_test(default_pq, top_pq).p_value
    log.info("%s: default %.4f tuned %.4f top %.4f depths %.4f synthetic %.4f (nDCG@10)", name, default_report[METRIC],
             reports["tuned"][METRIC], reports["tuned_top_score"][METRIC], reports["tuned_depths"][METRIC],
             synth_report[METRIC])
    return row, (results["tuned_top_score"], grid, report_idx)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--collections", default=",".join(COLLECTIONS))
    ap.add_argument("--n-synthetic", type=int, default=500)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rebuild", action="store_true", help="rebuild the indexes")


def run(args: argparse.Namespace) -> None:
    info = machine_info()
    dense = dense_branch()
    space = SearchSpace()
    rows: dict[str, dict[str, Any]] = {}
    extra: dict[str, Any] = {}
    for name in [c for c in args.collections.split(",") if c]:
        rows[name], extra[name] = run_collection(name, args, dense, space)
    # transfer: scifact's tuned configuration applied unchanged to the others
    transfer = {}
    if "scifact" in extra:
        sci_res = extra["scifact"][0]
        for name, (_, grid, idx) in extra.items():
            if name == "scifact":
                continue
            transfer[name] = {**means(grid, sci_res.best, idx),
                              "p_vs_default": randomization_test(
                                  grid.score([FusionParams.from_config(RetrieverConfig())], METRIC)[0][idx],
                                  grid.score([sci_res.best], METRIC)[0][idx]).p_value}
        plot_weight_line(sci_res, (SETTINGS.out if SETTINGS.smoke else REPO / "docs") / "tuning-weights-scifact.png")
    info["loadavg_end"] = list(__import__("os").getloadavg())
    data = {"machine": info, "metric": METRIC, "space": {
        "methods": space.methods, "normalizations": space.normalizations, "missing": space.missing,
        "rrf_ks": space.rrf_ks, "weight_step": space.weight_step, "depths": space.depths},
        "collections": rows, "transfer_from_scifact": transfer}
    write_results("tuning", data, markdown(data))


def markdown(data: dict[str, Any]) -> str:
    rows = data["collections"]
    out = ["# Tuning: default vs tuned vs synthetic-tuned fusion", "",
           "BM25 (Qdrant) + all-MiniLM-L6-v2 on Qdrant Edge. Fusion is tuned for "
           "nDCG@10 on cached branch runs (depth 100, score completion); every score below is on queries the "
           "configuration was not tuned on:", "",
           "- **scifact**: tuned on `qrels/train.tsv` (809 queries), reported on `test` (300).",
           "- **nfcorpus-preprocessed, cranfield, cisi**: 5-fold cross-validation over the test queries; each query is "
           "scored by the configuration picked on the other four folds.",
           "- **default**: the library default — min-max interpolation, weights 0.5/0.5, exact missing scores, depth 100.",
           "- **tuned**: what `hybrid-retriever tune` does by default — method, normalisation, missing-score policy, "
           "RRF k and weights (0.05 grid), depths kept at 100, selection `one-se` (the default is kept unless the best "
           "configuration beats it by more than one standard error of the paired per-query difference).",
           "- **top score**: the same space, plainly the highest-scoring configuration (`--selection best`).",
           "- **+depths**: top score with per-branch depth searched too (`--depths 10,20,50,100`).",
           "- **synthetic**: `tune --synthetic` — 500 pseudo-queries cut from the corpus (a 6-14 word span of a sentence, "
           "its rarer half of words dropped; the source document is the one relevant document), no judgements; "
           "reported on all the real report queries.",
           "- p: paired randomisation test against the default on the report queries; \"best in hindsight\" is the "
           "best configuration of the whole space (depths included) picked on the report queries themselves — an "
           "upper bound, not a result.", "",
           "## nDCG@10", ""]
    head = ["collection", "queries", "bm25", "dense", "default", "tuned", "p", "top score", "p", "+depths", "synthetic",
            "p", "best in hindsight"]
    table = []
    for name, r in rows.items():
        table.append([name, r["n_queries_report"], r["branches"]["bm25"]["ndcg@10"], r["branches"]["dense"]["ndcg@10"],
                      r["default"]["ndcg@10"], r["tuned"]["ndcg@10"], _pv(r["tuned"]["p_vs_default"]),
                      r["tuned_top_score"]["ndcg@10"], _pv(r["tuned_top_score"]["p_vs_default"]),
                      r["tuned_depths"]["ndcg@10"], r["synthetic"]["ndcg@10"], _pv(r["synthetic"]["p_vs_default"]),
                      r["oracle_ndcg@10"]])
    out.append(md_table(head, table))
    out += ["## Recall@100", ""]
    table = [[name, r["branches"]["bm25"]["recall@100"], r["branches"]["dense"]["recall@100"], r["default"]["recall@100"],
              r["tuned"]["recall@100"], r["tuned_top_score"]["recall@100"], r["tuned_depths"]["recall@100"],
              r["synthetic"]["recall@100"]] for name, r in rows.items()]
    out.append(md_table(["collection", "bm25", "dense", "default", "tuned", "top score", "+depths", "synthetic"], table))
    out += ["## Chosen configurations (picked on all tuning queries; the ones to deploy)", ""]
    ct = []
    labels = {"tuned": "tuned (one-se)", "tuned_top_score": "top score", "tuned_depths": "+depths", "synthetic": "synthetic"}
    for name, r in rows.items():
        for key, lab in labels.items():
            ct.append([name, lab, f"`{r[key]['config']['label']}`"])
    out.append(md_table(["collection", "variant", "configuration"], ct))
    for name, r in rows.items():
        if len(r["tuned"]["fold_choices"]) > 1:
            for key in ("tuned", "tuned_top_score"):
                out.append(f"\n{name}, {labels[key]}, picked in each CV fold: "
                           + "; ".join(f"`{c}`" for c in r[key]["fold_choices"]))
    if data["transfer_from_scifact"]:
        out += ["", "## Does tuning transfer? scifact's top-score configuration applied unchanged", ""]
        tt = []
        for name, t in data["transfer_from_scifact"].items():
            r = rows[name]
            tt.append([name, r["default"]["ndcg@10"], t["ndcg@10"], _pv(t["p_vs_default"]), r["tuned_top_score"]["ndcg@10"],
                       r["default"]["recall@100"], t["recall@100"]])
        out.append(md_table(["collection", "default nDCG@10", "scifact-tuned nDCG@10", "p", "top score in-domain (CV)",
                             "default R@100", "scifact-tuned R@100"], tt))
    out += ["## Cost", ""]
    cost = [[n, r["n_docs"], r["tuned"]["n_configs"], r["tuned_depths"]["n_configs"], r["search_seconds"]["real"],
             r["search_seconds"]["synthetic"], r["tune_seconds"]] for n, r in rows.items()]
    out.append(md_table(["collection", "docs", "configs (default space)", "configs (+depths)",
                         "search s, real queries (once, batches of 64)", "search s, pseudo-queries",
                         "scoring + CV s (+depths)"], cost))
    sp = data["space"]
    out += ["", f"Search space: methods {list(sp['methods'])}; normalisations {list(sp['normalizations'])} × missing "
            f"{list(sp['missing'])}; RRF k {list(sp['rrf_ks'])}; weights on a {sp['weight_step']} grid; depths kept "
            "(+depths: 10, 20, 50, 100 per branch).", "", "## Machine", "", machine_md(data["machine"])]
    return "\n".join(out)


def _pv(p: float) -> str:
    return f"{p:.3g}" if p >= 0.001 else "<0.001"


QUESTION = Question("tuning", "tuned vs default fusion, synthetic tuning, and whether tuning transfers", add_arguments, run,
                    {"tuning": markdown}, smoke=["--collections", "scifact", "--n-synthetic", "20"])
