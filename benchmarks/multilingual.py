"""Beyond English: BM25 analyzers, completed-score normalisation and adaptive fusion on seven collections.

    .venv/bin/python benchmarks/multilingual.py                 # all seven collections
    .venv/bin/python benchmarks/multilingual.py --collections xquad-r/de

Per collection (scifact, nfcorpus-preprocessed, cranfield, cisi, xquad-r/en, xquad-r/de, xquad-r/zh):

1. Two Edge indexes built with the library (``HybridRetriever.add_documents`` with the cached MiniLM
   document vectors from ``benchmarks/.cache/minilm``): BM25 with the English analyzer (the old
   default) and BM25 with ``language: auto`` (the detected language's analyzer). Query vectors come
   from the same cache.
2. ``search_branches(complete=True)`` at depth 100 for every judged query (cached under
   ``.cache/multilingual``), then fusion offline with ``HybridRetriever.fuse`` under each setting.
3. nDCG@10 per system and paired randomisation tests (``hybrid_retriever.evaluation.significance``)
   against the fixed default; language detection accuracy (documents and queries) on xquad-r; the
   adaptive method's added cost per query (fusion time, interleaved with the fixed method's).

Choices are made on dev data only: scifact ``qrels/train.tsv`` and nfcorpus ``qrels/dev.tsv``. cranfield,
cisi and xquad-r have only a test split; they are evaluated with settings fixed in advance (nothing
is tuned on them). Writes ``results/multilingual.{json,md}``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import pickle
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    CACHE,
    DEV_SPLITS,
    REPO,
    Collection,
    add_dataset_arg,
    load_collection,
    load_embeddings,
    log,
    machine_info,
    machine_md,
    md_table,
    setup_logging,
    write_results,
)
from quality import Evaluator  # noqa: E402

from hybrid_retriever import Document, FusionConfig, HybridRetriever, RetrieverConfig, point_id  # noqa: E402
from hybrid_retriever.branches import build_branch  # noqa: E402
from hybrid_retriever.branches.dense import DenseBranch  # noqa: E402
from hybrid_retriever.config import DenseBranchConfig  # noqa: E402
from hybrid_retriever.evaluation.significance import randomization_test  # noqa: E402
from hybrid_retriever.fusion.adaptive import branch_signals  # noqa: E402
from hybrid_retriever.fusion.results import fuse_results  # noqa: E402
from hybrid_retriever.models.card import branch_languages  # noqa: E402
from hybrid_retriever.types import BranchResult, ScoredId, SparseVector  # noqa: E402

COLLECTIONS = ["scifact", "nfcorpus-preprocessed", "cranfield", "cisi", "xquad-r/en", "xquad-r/de", "xquad-r/zh"]
ENGLISH = {"scifact", "nfcorpus-preprocessed", "cranfield", "cisi", "xquad-r/en"}
MCACHE = CACHE / "multilingual"
DEPTH = 100
#: Analyzers compared: the old default (English rules whatever the corpus) and language detection.
ANALYZERS = {"english": {"language": "english"}, "auto": {"language": "auto"}}

#: Languages of all-MiniLM-L6-v2 from its model card (English).
DENSE_LANGUAGES = branch_languages(DenseBranchConfig())

BranchData = dict[str, tuple[list[str], list[float], dict[str, float], bool]]  # ids, scores, completed, no tokens


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


def splits_of(name: str) -> list[str]:
    return ["test", DEV_SPLITS[name]] if name in DEV_SPLITS else ["test"]


def fingerprint(col: Collection, analyzer: str, qids: list[str]) -> str:
    h = hashlib.sha256()
    for f in ("branches/bm25.py", "languages.py", "retriever.py"):
        h.update((REPO / "hybrid_retriever" / f).read_bytes())
    h.update(json.dumps([col.name, len(col.doc_ids), analyzer, qids, DEPTH]).encode())
    return h.hexdigest()[:16]


def build_index(col: Collection, analyzer: str, dense: CachedQueryDense, path: Path) -> tuple[HybridRetriever, dict[str, str]]:
    emb = load_embeddings(col.name)
    docs = [Document(text=t, id=i) for i, t in zip(col.doc_ids, col.texts) if t.strip()]
    shutil.rmtree(path, ignore_errors=True)
    cfg = RetrieverConfig.validate_data({
        "store": {"kind": "edge", "path": str(path)},
        "branches": [{"kind": "bm25", "weight": 0.5, **ANALYZERS[analyzer]}, {"kind": "dense", "weight": 0.5}],
        "runtime": {"show_progress": False},
    })
    r = HybridRetriever(cfg, branches=[build_branch(cfg.branches[0]), dense])
    r.add_documents(docs, vectors={"dense": list(emb.doc_vectors([d.id for d in docs]))})
    r.optimize()
    return r, {point_id(d.id): d.id for d in docs}  # type: ignore[misc]


def branch_data(col: Collection, analyzer: str, dense: CachedQueryDense, qids: list[str], tmp: Path) -> dict[str, Any]:
    """Branch lists (with completion) of every query, and the BM25 analyzer the index chose; cached."""
    f = MCACHE / f"{col.name.replace('/', '__')}.{analyzer}.{fingerprint(col, analyzer, qids)}.pkl"
    if f.is_file():
        return pickle.loads(f.read_bytes())
    r, back = build_index(col, analyzer, dense, tmp / f"{col.name.replace('/', '__')}-{analyzer}")
    try:
        bm25 = r.branches["bm25"]
        out: dict[str, Any] = {"describe": bm25.describe(), "manifest": bm25.manifest(), "queries": []}
        texts = [col.queries[q] for q in qids]
        for i in range(0, len(texts), 64):
            for per in r.search_branches(texts[i : i + 64], depth=DEPTH, complete=True):
                out["queries"].append({
                    n: (
                        [back[h.point_id] for h in res.hits],
                        [h.score for h in res.hits],
                        {back[p]: s for p, s in res.completed.items()},
                        bool(n == "bm25" and not res.query_vector.indices),
                    )
                    for n, res in per.items()
                })
    finally:
        r.close()
    MCACHE.mkdir(parents=True, exist_ok=True)
    for old in MCACHE.glob(f"{col.name.replace('/', '__')}.{analyzer}.*.pkl"):
        old.unlink()
    f.write_bytes(pickle.dumps(out))
    return out


def as_results(data: BranchData) -> dict[str, BranchResult]:
    return {
        n: BranchResult(
            branch=n,
            hits=[ScoredId(i, s, k) for k, (i, s) in enumerate(zip(ids, sc), start=1)],
            completed=dict(comp),
            # Fusion reads only whether a sparse query vector had tokens.
            query_vector=SparseVector(indices=[], values=[]) if blind else None,
        )
        for n, (ids, sc, comp, blind) in data.items()
    }


def gather(args: argparse.Namespace) -> dict[str, Any]:
    """Branch data of every collection and analyzer (built or read from the cache)."""
    out: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="multilingual-"))
    try:
        for name in args.collections:
            col = load_collection(args.datasets, name, splits_of(name))
            qids = sorted({q for s in col.qrels.values() for q in s if q in col.queries})
            emb = load_embeddings(name)
            dense = CachedQueryDense(dict(zip([col.queries[q] for q in emb.query_ids if q in col.queries],
                                              emb.query_vectors([q for q in emb.query_ids if q in col.queries]))))
            per: dict[str, Any] = {"collection": col, "qids": qids}
            for analyzer in ANALYZERS:
                t0 = time.perf_counter()
                per[analyzer] = branch_data(col, analyzer, dense, qids, tmp)
                log.info("%s / %s: %s (%.0f s)", name, analyzer, per[analyzer]["describe"], time.perf_counter() - t0)
            out[name] = per
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out



# ------------------------------------------------------------------------------ systems

BASE = {"method": "interpolation", "normalization": "minmax", "missing": "exact"}
#: The fixed default before this change (completed scores normalised unbounded below).
OLD_DEFAULT = {**BASE, "completed": "raw"}


def fused_lists(per: dict[str, Any], analyzer: str, fusion: dict[str, Any], w_dense: float = 0.5) -> dict[str, list[str]]:
    """Ranked ids per query under one fusion setting, as ``HybridRetriever.fuse`` ranks them."""
    run = per[analyzer]
    cfg = FusionConfig(**fusion)
    weights = {"bm25": 1.0 - w_dense, "dense": w_dense}
    content = (run["manifest"].get("language_detection") or {}).get("language") or run["manifest"]["language"]
    langs = {"bm25": None, "dense": DENSE_LANGUAGES}
    out = {}
    for q, data in zip(per["qids"], run["queries"]):
        res = as_results(data)
        signals = branch_signals(res, content, langs) if cfg.method == "adaptive" else None
        out[q] = [it.id for it in fuse_results(res, cfg, weights, signals)[:100]]
    return out


def single_lists(per: dict[str, Any], analyzer: str, branch: str) -> dict[str, list[str]]:
    return {q: data[branch][0][:100] for q, data in zip(per["qids"], per[analyzer]["queries"])}


def ndcg(per: dict[str, Any], split: str, lists: dict[str, list[str]]) -> np.ndarray:
    ev = Evaluator(per["collection"].qrels[split], per["qids"])
    return ev.per_query(lists)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_dataset_arg(ap)
    ap.add_argument("--collections", nargs="+", default=COLLECTIONS)
    ap.add_argument("--gather-only", action="store_true", help="only build the branch-data cache")
    args = ap.parse_args()
    setup_logging()
    data = gather(args)
    if args.gather_only:
        return


if __name__ == "__main__":
    main()
