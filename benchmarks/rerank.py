"""Rerank stage on SciFact: a cross-encoder trained on the train queries, evaluated on test.

    python benchmarks/rerank.py train     # build the index (cached MiniLM vectors), train-reranker on qrels/train.tsv
    python benchmarks/rerank.py report    # fused vs fused + reranker at depth 20/50/100 on test, latency on CPU
    python benchmarks/rerank.py render    # the Markdown from benchmarks/results/rerank.json

Nothing is tuned on the test split: the reranker sees only training queries, and the
order (reranker score alone) is the library's default. The reranker's scores of the
fused top 100 are computed once per test query and reused for depth 20 and 50 (a pair's
score does not depend on the depth). Latency: each query is searched fused-only and
with reranking at each depth, interleaved in a rotating order; the table reports the
median over queries of (reranked ms / fused ms) and the added milliseconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import CACHE, RESULTS, add_dataset_arg, load_collection, load_embeddings, machine_info, machine_md, md_table
from _common import setup_logging, write_results

from hybrid_retriever import Document, HybridRetriever, RetrieverConfig

log = logging.getLogger("benchmarks.rerank")

NAME = "scifact"
WORK = CACHE / "rerank"
INDEX = WORK / "scifact-index"
MODEL = WORK / "scifact-reranker"
DEPTHS = (20, 50, 100)
#: Training budget for 2 CPU cores shared by several sessions (load average 11-13 while this ran, this
#: process niced): one epoch, two negatives per judged pair from the fused top 10, 128 tokens per pair (the
#: reranker scores with the same max length), the negative pool embedded at 128 tokens.
MAX_LENGTH = 128
TRAINING = {"epochs": 1.0, "batch_size": 16, "learning_rate": 3e-5, "num_negatives": 2, "mine_depth": 10,
            "max_length": MAX_LENGTH, "mining_max_length": MAX_LENGTH, "seed": 0, "save_steps": 25}


def open_index(root: Path) -> HybridRetriever:
    """SciFact's Edge index (BM25 + MiniLM, the default configuration), built once from the embedding cache."""
    if (INDEX / "manifest.json").is_file():
        return HybridRetriever.open(str(INDEX), runtime={"show_progress": False})
    coll = load_collection(root, NAME)
    emb = load_embeddings(NAME)
    texts = dict(zip(coll.doc_ids, coll.texts))
    keep = [i for i, d in enumerate(emb.doc_ids) if texts.get(d, "").strip()]
    docs = [Document(text=texts[emb.doc_ids[i]], id=emb.doc_ids[i]) for i in keep]
    r = HybridRetriever(RetrieverConfig.validate_data({"store": {"kind": "edge", "path": str(INDEX)},
                                                       "runtime": {"show_progress": False}}))
    log.info("indexing %d documents", len(docs))
    r.add_documents(docs, vectors={"dense": [emb.docs[i] for i in keep]})
    r.optimize()
    return r


def train(args: argparse.Namespace) -> None:
    from hybrid_retriever.rerank.training import TrainingSettings, train_reranker

    coll = load_collection(args.datasets, NAME, splits=("train",))
    qids = coll.judged("train")
    queries = {q: coll.queries[q] for q in qids}
    with open_index(args.datasets) as r:
        t0 = time.perf_counter()
        result = train_reranker(r, queries, coll.qrels["train"], MODEL, TrainingSettings(**TRAINING), progress=True)
        wall = time.perf_counter() - t0
    out = {"training": result.as_dict(), "wall_seconds": wall, "machine": machine_info()}
    (WORK / "training.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    log.info("trained in %.0f s: %s", wall, result.seconds)


def main() -> None:
    setup_logging()
    logging.getLogger("hybrid_retriever").setLevel(logging.INFO)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arg(p)
    p.add_argument("command", choices=["train", "report", "render"])
    args = p.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    if args.command == "train":
        train(args)
    elif args.command == "report":
        report(args)
    else:
        data = json.loads((RESULTS / "rerank.json").read_text())
        write_results("rerank", data, render(data))


if __name__ == "__main__":
    main()
