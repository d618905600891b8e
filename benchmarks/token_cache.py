"""Cache the multi-vector branch's MiniLM token vectors of a collection (documents and queries).

    nice .venv/bin/python benchmarks/token_cache.py cisi cranfield scifact nfcorpus-preprocessed

Uses the library's own ``MultiVectorBranch`` (format ``tokens``), so the cached vectors are
exactly what the branch stores and searches with. One ``.npz`` per collection under
``benchmarks/.cache/tokens/``: ``doc_vectors`` (all documents' token vectors stacked,
float16), ``doc_offsets`` (row ``i``'s tokens are ``doc_vectors[off[i]:off[i+1]]``), the same
for queries, and the ids. Documents with empty text are skipped (the library refuses them).
About 15 documents/s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, add_dataset_arg, load_collection, log, setup_logging  # noqa: E402

import numpy as np  # noqa: E402

TOKENS_CACHE = CACHE / "tokens"


def cache_path(name: str) -> Path:
    return TOKENS_CACHE / f"{name.replace('/', '__')}.npz"


def stack(mats: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(mats) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(m) for m in mats])
    return np.concatenate(mats).astype(np.float16), offsets


def unstack(vectors: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [vectors[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def load_tokens(name: str) -> dict:
    """``doc_ids``, ``docs`` (list of float16 matrices), ``query_ids``, ``queries`` of a cached collection."""
    p = cache_path(name)
    if not p.is_file():
        raise SystemExit(f"no token cache at {p}; run: .venv/bin/python benchmarks/token_cache.py {name}")
    z = np.load(p)
    return {
        "doc_ids": json.loads(str(z["doc_ids"])),
        "docs": unstack(z["doc_vectors"], z["doc_offsets"]),
        "query_ids": json.loads(str(z["query_ids"])),
        "queries": unstack(z["query_vectors"], z["query_offsets"]),
    }


def main() -> None:
    from hybrid_retriever.branches import MultiVectorBranch
    from hybrid_retriever.config import MultiVectorBranchConfig

    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="+")
    add_dataset_arg(ap)
    args = ap.parse_args()
    setup_logging()
    TOKENS_CACHE.mkdir(parents=True, exist_ok=True)
    branch = MultiVectorBranch(MultiVectorBranchConfig(share_backbone=False))
    for name in args.names:
        if cache_path(name).is_file():
            log.info("%s: cached", name)
            continue
        col = load_collection(args.datasets, name)
        keep = [i for i, t in enumerate(col.texts) if t.strip()]
        t0 = time.perf_counter()
        docs = []
        for s in range(0, len(keep), 256):
            docs += branch.encode_documents([col.texts[i] for i in keep[s : s + 256]])
            log.info("%s: %d/%d documents, %.1f docs/s", name, len(docs), len(keep), len(docs) / (time.perf_counter() - t0))
        qids = list(col.queries)
        queries = branch.encode_queries([col.queries[q] for q in qids])
        dv, do = stack(docs)
        qv, qo = stack(queries)
        np.savez(
            cache_path(name), doc_vectors=dv, doc_offsets=do, query_vectors=qv, query_offsets=qo,
            doc_ids=json.dumps([col.doc_ids[i] for i in keep]), query_ids=json.dumps(qids),
        )
        log.info("%s: %d documents in %.0f s", name, len(docs), time.perf_counter() - t0)


if __name__ == "__main__":
    main()
