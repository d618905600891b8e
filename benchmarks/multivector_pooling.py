"""Token pooling on the CPU: quality of exact multi-vector search against pool factor, two centroid styles.

    nice .venv/bin/python benchmarks/multivector_pooling.py [--names cisi cranfield ...]

Reads the token cache (``benchmarks/token_cache.py``: the library's own MiniLM token
vectors), pools every document with ``hybrid_retriever``'s ``pool_tokens`` at factors
1-4, and scores every test query against every document by exact MaxSim (one matrix
product over all document tokens, then a per-document max). Two centroid styles:
``mean`` (the plain cluster mean, shorter than unit length) and ``unit`` (the mean
re-normalised to unit length, what the library stores). Writes
``benchmarks/results/multivector_pooling.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    CACHE, QUALITY_COLLECTIONS, add_dataset_arg, load_collection, log, machine_info, machine_md, md_table,
    setup_logging, write_results,
)
from token_cache import load_tokens  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

FACTORS = (1, 2, 3, 4)
#: (factor, centroid style) measured: every factor with the library's unit centroids, factor 2 also with plain means.
VARIANTS = [(1, "unit"), (2, "unit"), (2, "mean"), (3, "unit"), (4, "unit")]
PARTIAL = CACHE / "multivector_pooling.partial.json"


def exact_top(queries: list[np.ndarray], docs: list[np.ndarray], k: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` document indices and MaxSim scores per query, exactly (float32)."""
    flat = np.concatenate(docs).astype(np.float32)
    starts = np.concatenate([[0], np.cumsum([len(d) for d in docs])[:-1]])
    ids = np.zeros((len(queries), k), dtype=np.int64)
    scores = np.zeros((len(queries), k), dtype=np.float32)
    for i, q in enumerate(queries):
        sim = np.asarray(q, dtype=np.float32) @ flat.T  # (query tokens, all document tokens)
        per_doc = np.maximum.reduceat(sim, starts, axis=1).sum(axis=0)
        top = np.argpartition(-per_doc, k - 1)[:k]
        top = top[np.argsort(-per_doc[top], kind="stable")]
        ids[i], scores[i] = top, per_doc[top]
    return ids, scores


def evaluate(qids: list[str], doc_ids: list[str], ids: np.ndarray, scores: np.ndarray, qrels: dict) -> dict[str, float]:
    from ranx import Qrels, Run, evaluate as rx

    run = Run({q: {doc_ids[j]: float(s) for j, s in zip(ids[i], scores[i])} for i, q in enumerate(qids)})
    res = rx(Qrels({q: qrels[q] for q in qids}), run, ["ndcg@10", "recall@100"], make_comparable=True)
    return {"ndcg@10": float(res["ndcg@10"]), "recall@100": float(res["recall@100"])}


def main() -> None:
    from hybrid_retriever.branches.late_interaction.pooling import pool_tokens

    ap = argparse.ArgumentParser()
    ap.add_argument("--names", nargs="+", default=QUALITY_COLLECTIONS)
    add_dataset_arg(ap)
    args = ap.parse_args()
    setup_logging()
    info = machine_info()
    out: dict = {"machine": info, "collections": {}}
    done = json.loads(PARTIAL.read_text()) if PARTIAL.is_file() else {}  # resumable: each variant takes minutes
    for name in args.names:
        col = load_collection(args.datasets, name)
        tok = load_tokens(name)
        qpos = {q: i for i, q in enumerate(tok["query_ids"])}
        qids = col.judged("test")
        queries = [tok["queries"][qpos[q]].astype(np.float32) for q in qids]
        raw = [d.astype(np.float32) for d in tok["docs"]]
        rows: dict = done.setdefault(name, {})
        for factor, style in VARIANTS:
            if f"{factor}/{style}" in rows:
                continue
            t0 = time.perf_counter()
            with threadpool_limits(limits=1, user_api="blas"):  # as the branch pools: small matrices
                docs = raw if factor == 1 else [pool_tokens(d, factor, 1, normalize=style == "unit") for d in raw]
            pool_s = time.perf_counter() - t0
            ids, scores = exact_top(queries, docs)
            m = evaluate(qids, tok["doc_ids"], ids, scores, col.qrels["test"])
            m["vectors_per_doc"] = float(np.mean([len(d) for d in docs]))
            m["pool_s"] = pool_s
            rows[f"{factor}/{style}"] = m
            PARTIAL.write_text(json.dumps(done))
            log.info("%s pool %d %s: %s", name, factor, style, m)
        out["collections"][name] = {f"{f}/{s}": rows[f"{f}/{s}"] for f, s in VARIANTS}
    md = ["# Token pooling: exact multi-vector search on the CPU", "", machine_md(info), "",
          "MiniLM token vectors (the library's `tokens` format) from the token cache; exact MaxSim over the whole "
          "collection, test qrels. `unit`: cluster means re-normalised to unit length (the library's pooling); "
          "`mean`: plain cluster means. Δ is relative to pool factor 1.", ""]
    for name, rows in out["collections"].items():
        base = rows["1/unit"]["ndcg@10"]
        md += [f"## {name}", "", md_table(
            ["pool factor", "centroid", "nDCG@10", "Δ nDCG@10", "Recall@100", "vectors/doc"],
            [[k.split("/")[0], k.split("/")[1] if k != "1/unit" else "–", r["ndcg@10"],
              f"{(r['ndcg@10'] / base - 1) * 100:+.1f}%", r["recall@100"], r["vectors_per_doc"]] for k, r in rows.items()],
        ), ""]
    write_results("multivector_pooling", out, "\n".join(md))


if __name__ == "__main__":
    main()
