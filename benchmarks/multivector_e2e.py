"""End-to-end latency of the real retriever (MiniLM query encoding included) and the shared forward pass.

    nice .venv/bin/python benchmarks/multivector_e2e.py --docs 5183 --queries 100 --out FILE.json

Builds BM25 + dense (+ multivector rescorer) indexes on the first ``--docs`` SciFact documents
with the library itself (every branch encodes; dense and multivector share one MiniLM pass),
then times ``search()`` at depth 100 for BM25+dense and for BM25+dense+multivector (rescorer),
and ingest with and without the shared forward pass on ``--share-docs`` documents.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_DATASETS, load_collection, new_edge_retriever, percentiles  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402


def retriever(path: Path, branches: list[dict]):
    return new_edge_retriever(path, branches, ingest_batch_size=64)


def main() -> None:
    from hybrid_retriever import Document

    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=5183)
    ap.add_argument("--share-docs", type=int, default=256)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--work", type=Path, default=Path("/tmp/mv-e2e"))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(2)
    col = load_collection(DEFAULT_DATASETS, "scifact")
    docs = [Document(text=t, id=i) for i, t in zip(col.doc_ids, col.texts) if t.strip()][: args.docs]
    queries = [col.queries[q] for q in col.judged("test")][: args.queries]
    out: dict = {"docs": len(docs), "queries": len(queries)}
    mv = {"kind": "multivector", "mode": "rescorer"}
    # Shared forward pass: ingest and query encoding with and without it.
    for share in (True, False):
        r = retriever(args.work / f"share{share}", [{"kind": "bm25"}, {"kind": "dense"}, {**mv, "share_backbone": share}])
        sub = docs[: args.share_docs]
        t0 = time.perf_counter()
        r.add_documents(sub)
        ingest = time.perf_counter() - t0
        lat = []
        for q in queries[:30]:
            t0 = time.perf_counter()
            r.search(q, k=10)
            lat.append((time.perf_counter() - t0) * 1000)
        out[f"share_{share}"] = {"ingest_s": ingest, "docs_per_s": len(sub) / ingest, "search_ms": percentiles(lat)}
        print(out[f"share_{share}"], flush=True)
        r.close()
    # Rescorer overhead at depth 100 over fused BM25+dense, end to end (query encoding included).
    r = retriever(args.work / "three", [{"kind": "bm25"}, {"kind": "dense"}, mv])
    t0 = time.perf_counter()
    r.add_documents(docs)
    out["ingest_s"] = time.perf_counter() - t0
    out["disk_mb"] = r.store.disk_bytes() / 2**20
    from hybrid_retriever.retriever import point_id

    stored = {p.point_id: p.vectors["dense"] for p in r.store.retrieve([point_id(d.id) for d in docs], with_vectors=["dense"])}
    dense_vecs = [stored[point_id(d.id)] for d in docs]
    base = retriever(args.work / "two", [{"kind": "bm25"}, {"kind": "dense"}])
    base.add_documents(docs, vectors={"dense": dense_vecs})
    out["disk_mb_bm25_dense"] = base.store.disk_bytes() / 2**20
    for q in queries[:5]:
        r.search(q)
        base.search(q)
    times: dict[str, list[float]] = {"bm25+dense": [], "bm25+dense+multivector (rescorer)": []}
    for q in queries:
        for name, ret in (("bm25+dense", base), ("bm25+dense+multivector (rescorer)", r)):
            t0 = time.perf_counter()
            ret.search(q, k=10)
            times[name].append((time.perf_counter() - t0) * 1000)
    out["search_ms"] = {k: percentiles(v) for k, v in times.items()}
    r.close()
    base.close()
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__" and "--micro" not in sys.argv:
    main()


def micro(out_path: Path, n_docs: int = 64, rounds: int = 3) -> None:
    """Side-by-side timing of one shared MiniLM pass against two separate passes (docs and queries)."""
    from hybrid_retriever.branches import DenseBranch, MultiVectorBranch
    from hybrid_retriever.config import DenseBranchConfig, MultiVectorBranchConfig

    col = load_collection(DEFAULT_DATASETS, "scifact")
    texts = [t for t in col.texts if t.strip()][:n_docs]
    queries = [col.queries[q] for q in col.judged("test")][:64]
    shared_d, shared_m = DenseBranch(DenseBranchConfig()), MultiVectorBranch(MultiVectorBranchConfig())
    shared_m.attach({"dense": shared_d, "multivector": shared_m})
    solo_d, solo_m = DenseBranch(DenseBranchConfig()), MultiVectorBranch(MultiVectorBranchConfig(share_backbone=False))
    res: dict = {"shared": {"docs": [], "queries": []}, "separate": {"docs": [], "queries": []}}
    pairs = (("shared", (shared_d, shared_m)), ("separate", (solo_d, solo_m)))
    for _ in range(rounds):
        for name, (d, m) in pairs:  # one query at a time, as search() sees them
            t = 0.0
            for q in queries:
                t0 = time.perf_counter()
                d.encode_queries([q])
                m.encode_queries([q])
                t += time.perf_counter() - t0
            res[name]["queries"].append(t / len(queries) * 1000)
    for _ in range(rounds):
        for name, (d, m) in pairs:
            t0 = time.perf_counter()
            d.encode_documents(texts)
            m.encode_documents(texts)
            res[name]["docs"].append(len(texts) / (time.perf_counter() - t0))
    summary = {
        name: {"docs_per_s": float(np.median(res[name]["docs"])), "query_ms": float(np.median(res[name]["queries"]))}
        for name in ("shared", "separate")
    }
    summary["docs"], summary["queries"] = n_docs, len(queries)
    out_path.write_text(json.dumps(summary, indent=1))
    print(summary)


if __name__ == "__main__" and "--micro" in sys.argv:
    micro(Path(sys.argv[sys.argv.index("--micro") + 1]))
