"""Latency, ingest time, disk size and peak memory of the multi-vector modes on synthetic data.

    python benchmarks/multivector_synthetic.py --docs 50000 --tokens 64 --dim 128 --out results.json

Documents are clustered token matrices (topic centroids + noise, L2-normalised); queries are
noisy samples of one document's tokens, so exact MaxSim has a true answer. Each mode is a
Qdrant Edge shard built and queried the way the library builds and queries it (the same
vector parameters and request shapes as hybrid_retriever/stores/edge.py):

- ``baseline``: the two first-stage searches of a BM25+dense retriever (a sparse vector with
  the IDF modifier and a dense vector with HNSW), as one batch;
- ``rescorer``: one request whose prefetches are those two searches, re-scored by MaxSim on an
  unindexed multivector (m=0); reported as overhead over ``baseline``;
- ``exact``: brute-force MaxSim over every document (``SearchParams(exact=True)``);
- ``muvera``: FDE vector with HNSW prefetch (``candidates``), re-scored by MaxSim;
- ``full``: HNSW on the multivector itself (only with ``--full``: its build is slow);
- ``rescorer_fp16_int8``: the rescorer on float16 storage with int8 scalar quantization (rescored).

Each mode runs in its own process so its peak RSS is its own. Needs only numpy, scipy and
qdrant-edge-py (the FDE code is the library's, loaded by path).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
LI = HERE.parent / "hybrid_retriever" / "branches" / "late_interaction"


def _muvera():
    spec = importlib.util.spec_from_file_location("muvera", LI / "muvera.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["muvera"] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def data(n: int, t: int, d: int, nq: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((max(n // 50, 8), d)).astype(np.float32)

    def doc(i: int) -> np.ndarray:
        r = np.random.default_rng(seed * 1_000_003 + i)
        picks = r.integers(0, len(topics), size=4)
        x = topics[picks[r.integers(0, 4, size=t)]] + 0.8 * r.standard_normal((t, d)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    targets = rng.integers(0, n, size=nq)
    queries = []
    for j, i in enumerate(targets):
        x = doc(int(i))[rng.integers(0, t, size=24)] + 0.3 * rng.standard_normal((24, d)).astype(np.float32)
        queries.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    return doc, queries


def sparse_of(x: np.ndarray, vocab: int = 30000) -> tuple[list[int], list[float]]:
    ids = np.unique((np.abs(x[:, :8]).argmax(1) * 997 + np.abs(x[:, 8:16]).argmax(1) * 31) % vocab)
    return ids.tolist(), [1.0] * len(ids)


def build(mode: str, args, path: Path) -> dict:
    import qdrant_edge as qe

    mv = _muvera()
    fde = mv.FDEEncoder(mv.FDEParams(dimension=args.dim, k_sim=4, dim_proj=8, repetitions=16, seed=42))
    doc, queries = data(args.docs, args.tokens, args.dim, args.queries)
    shutil.rmtree(path, ignore_errors=True)
    mvp = dict(size=args.dim, distance=qe.Distance.Dot, multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim))
    if mode == "full":
        mvp["hnsw_config"] = qe.HnswIndexConfig(m=args.hnsw_m, ef_construct=args.hnsw_ef, full_scan_threshold=10000)
    else:
        mvp["hnsw_config"] = qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10000)
    if mode.endswith("fp16_int8"):
        mvp["datatype"] = qe.VectorStorageDatatype.Float16
        mvp["quantization_config"] = qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99, always_ram=True)
    vectors = {"mv": qe.EdgeVectorParams(**mvp)}
    sparse = None
    if mode.startswith("rescorer") or mode == "baseline":
        vectors["dense"] = qe.EdgeVectorParams(size=args.dim, distance=qe.Distance.Cosine)
        sparse = {"bm25": qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
    if mode == "muvera":
        vectors["fde"] = qe.EdgeVectorParams(size=fde.size, distance=qe.Distance.Dot)
    if mode == "baseline":
        del vectors["mv"]
    shard = qe.EdgeShard.create(str(path), qe.EdgeConfig(vectors=vectors, sparse_vectors=sparse))
    t0 = time.perf_counter()
    fde_s = 0.0
    for s in range(0, args.docs, 500):
        pts = []
        for i in range(s, min(args.docs, s + 500)):
            x = doc(i)
            v: dict = {}
            if "mv" in vectors:
                v["mv"] = x.tolist()
            if "dense" in vectors:
                m = x.mean(0)
                v["dense"] = (m / np.linalg.norm(m)).tolist()
                ids, vals = sparse_of(x)
                v["bm25"] = qe.SparseVector(indices=ids, values=vals)
            if "fde" in vectors:
                t1 = time.perf_counter()
                v["fde"] = fde.document(x).tolist()
                fde_s += time.perf_counter() - t1
            pts.append(qe.Point(id=str(uuid.UUID(int=i + 1)), vector=v, payload={}))
        shard.update(qe.UpdateOperation.upsert_points(pts))
    shard.flush()
    upsert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    shard.optimize()
    optimize_s = time.perf_counter() - t0
    shard.flush()
    disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())

    def req(q: np.ndarray, kind: str):
        m = q.mean(0)
        dense = qe.Prefetch(limit=100, query=qe.Query.Nearest((m / np.linalg.norm(m)).tolist(), using="dense"))
        ids, vals = sparse_of(q)
        bm25 = qe.Prefetch(limit=100, query=qe.Query.Nearest(qe.SparseVector(indices=ids, values=vals), using="bm25"))
        if kind == "baseline":
            return [
                qe.QueryRequest(limit=100, query=qe.Query.Nearest(qe.SparseVector(indices=ids, values=vals), using="bm25")),
                qe.QueryRequest(limit=100, query=qe.Query.Nearest((m / np.linalg.norm(m)).tolist(), using="dense")),
            ]
        params = None
        if kind.endswith("fp16_int8"):
            params = qe.SearchParams(quantization=qe.QuantizationSearchParams(rescore=True, oversampling=2.0))
        if kind.startswith("rescorer"):
            return [qe.QueryRequest(limit=200, prefetches=[bm25, dense], query=qe.Query.Nearest(q.tolist(), using="mv"), params=params)]
        if kind == "muvera":
            pre = qe.Prefetch(limit=args.candidates, query=qe.Query.Nearest(fde.query(q).tolist(), using="fde"))
            return [qe.QueryRequest(limit=100, prefetches=[pre], query=qe.Query.Nearest(q.tolist(), using="mv"))]
        if kind == "exact":
            return [qe.QueryRequest(limit=100, query=qe.Query.Nearest(q.tolist(), using="mv"), params=qe.SearchParams(exact=True))]
        return [qe.QueryRequest(limit=100, query=qe.Query.Nearest(q.tolist(), using="mv"))]

    lat, answers = [], []
    for q in queries:
        t0 = time.perf_counter()
        r = [shard.query(x) for x in req(q, mode)] if mode == "baseline" else [shard.query(req(q, mode)[0])]
        lat.append((time.perf_counter() - t0) * 1000)
        answers.append([int(uuid.UUID(str(p.id)).int) - 1 for p in r[-1]])
    shard.close()
    return {
        "mode": mode, "docs": args.docs, "tokens": args.tokens, "dim": args.dim, "upsert_s": upsert_s,
        "optimize_s": optimize_s, "fde_encode_s": fde_s, "disk_mb": disk / 2**20,
        "p50_ms": float(np.percentile(lat[3:], 50)), "p95_ms": float(np.percentile(lat[3:], 95)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "answers": answers,
        "fde_size": fde.size if mode == "muvera" else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=50000)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=53)
    ap.add_argument("--candidates", type=int, default=300)
    ap.add_argument("--hnsw-m", type=int, default=16)
    ap.add_argument("--hnsw-ef", type=int, default=100)
    ap.add_argument("--modes", default="baseline,rescorer,rescorer_fp16_int8,exact,muvera")
    ap.add_argument("--work", type=Path, default=Path("/tmp/mv-synthetic"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        res = build(args.one, args, args.work / args.one)
        print(json.dumps(res))
        shutil.rmtree(args.work / args.one, ignore_errors=True)
        return
    results = []
    for mode in args.modes.split(","):
        cmd = [sys.executable, __file__, "--one", mode] + [
            a for k, v in vars(args).items() if k not in ("one", "modes", "out") for a in (f"--{k.replace('_', '-')}", str(v))
        ] + ["--out", str(args.out)]
        t0 = time.time()
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(mode, "failed", out.stderr[-2000:], flush=True)
            continue
        res = json.loads(out.stdout.strip().splitlines()[-1])
        res["wall_s"] = time.time() - t0
        results.append(res)
        print({k: v for k, v in res.items() if k != "answers"}, flush=True)
        args.out.write_text(json.dumps({"cpus": os.cpu_count(), "results": results}))
    exact = next((r["answers"] for r in results if r["mode"] == "exact"), None)
    if exact:
        for r in results:
            r["overlap_at_100_vs_exact"] = float(np.mean([len(set(a) & set(b)) / max(len(b), 1) for a, b in zip(r["answers"], exact)]))
    for r in results:
        r.pop("answers")
    args.out.write_text(json.dumps({"cpus": os.cpu_count(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
