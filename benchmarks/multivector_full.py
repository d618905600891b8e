"""Mode ``full`` on real collections: HNSW over MaxSim in Qdrant Edge against exact MaxSim search.

    nice .venv/bin/python benchmarks/multivector_full.py --names cisi cranfield

Builds a multi-vector-only index (mode ``full``, the branch's default storage: pool factor 2,
int8) with the library from the token cache, times the HNSW build (``optimize``), then
searches every test query twice through the same Qdrant shard: the HNSW search the branch
makes, and an exact MaxSim scan (``exact=True``). Reports nDCG@10 / Recall@100 of both,
the overlap of their top 100, latency and build cost. Writes
``benchmarks/results/multivector_full.{json,md}``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    add_dataset_arg, load_collection, log, machine_info, machine_md, md_table, new_edge_retriever, peak_rss_mb,
    percentiles, setup_logging, write_results,
)
from token_cache import load_tokens  # noqa: E402

import numpy as np  # noqa: E402

WORK = Path("/tmp/hr-mv-full")


def run(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from multivector import metrics

    from hybrid_retriever import Document
    from hybrid_retriever.retriever import point_id
    from hybrid_retriever.stores import SearchRequest

    col = load_collection(args.datasets, name)
    tok = load_tokens(name)
    pos = {d: i for i, d in enumerate(col.doc_ids)}
    path = WORK / name
    r = new_edge_retriever(path, [{"kind": "multivector", "mode": "full", "depth": 100}])
    docs = [Document(text=col.texts[pos[i]], id=i) for i in tok["doc_ids"]]
    t0 = time.perf_counter()
    r.add_documents(docs, vectors={"multivector": [m.astype(np.float32) for m in tok["docs"]]}, show_progress=False)
    upsert = time.perf_counter() - t0  # add_documents optimises (builds the graph) after large adds
    t0 = time.perf_counter()
    r.optimize()
    optimize = time.perf_counter() - t0
    back = {point_id(i): i for i in tok["doc_ids"]}
    qpos = {q: i for i, q in enumerate(tok["query_ids"])}
    qids = col.judged("test")
    hnsw, exact, t_hnsw, t_exact, overlap = {}, {}, [], [], []
    for q in qids:
        qv = tok["queries"][qpos[q]].astype(np.float32)
        t0 = time.perf_counter()
        a = r.store.search_batch([SearchRequest(vector_name="multivector", vector=qv, limit=100)])[0]
        t_hnsw.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        b = r.store.search_batch([SearchRequest(vector_name="multivector", vector=qv, limit=100, exact=True)])[0]
        t_exact.append((time.perf_counter() - t0) * 1000)
        hnsw[q] = [back[p] for p, _ in a]
        exact[q] = [back[p] for p, _ in b]
        overlap.append(len(set(hnsw[q]) & set(exact[q])) / max(len(exact[q]), 1))
    out = {
        "docs": len(docs), "queries": len(qids),
        "hnsw": {**metrics(hnsw, col.qrels["test"]), "ms": percentiles(t_hnsw)},
        "exact": {**metrics(exact, col.qrels["test"]), "ms": percentiles(t_exact)},
        "overlap_at_100": float(np.mean(overlap)), "upsert_s": upsert, "optimize_s": optimize,
        "disk_mib": r.store.disk_bytes() / 2**20, "peak_rss_mib": peak_rss_mb(),
    }
    r.close()
    shutil.rmtree(path, ignore_errors=True)
    log.info("%s: %s", name, out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--names", nargs="+", default=["cisi", "cranfield"])
    add_dataset_arg(ap)
    args = ap.parse_args()
    setup_logging()
    info = machine_info()
    res = {"machine": info, "collections": {n: run(n, args) for n in args.names}}
    rows = []
    for n, c in res["collections"].items():
        for kind in ("hnsw", "exact"):
            rows.append([n, "HNSW (m 16, ef_construct 100)" if kind == "hnsw" else "exact MaxSim scan", c[kind]["ndcg@10"],
                         c[kind]["recall@100"], c[kind]["ms"]["p50"], c["overlap_at_100"] if kind == "hnsw" else 1.0,
                         c["upsert_s"] + c["optimize_s"] if kind == "hnsw" else None])
    md = ["# Multi-vector mode `full` on real collections: HNSW over MaxSim vs exact", "", machine_md(info), "",
          "Multi-vector branch alone (MiniLM tokens, the branch's default storage: pool factor 2, int8 without "
          "re-scoring), Qdrant Edge, test qrels, depth 100. Both rows search the same shard; `exact` scans every "
          "document. Build: upsert + graph construction (`optimize`).", "",
          md_table(["collection", "search", "nDCG@10", "Recall@100", "p50 ms", "overlap@100 with exact", "build s"], rows)]
    write_results("multivector_full", res, "\n".join(md))


if __name__ == "__main__":
    main()
