"""Latency, ingest time, disk size and memory of the multi-vector modes (parts of ``python -m benchmarks multivector``).

Each part leaves a JSON in ``<cache>/mvdev_out`` (:func:`dev_out`) for the ``report`` part.

- ``synthetic`` (``synthetic_<label>.json``): documents are clustered token matrices (topic centroids + noise,
  L2-normalised), queries noisy samples of one document's tokens, so exact MaxSim has a true answer. Each mode is a
  Qdrant Edge shard with the vector parameters and request shapes of hybrid_retriever/stores/edge.py:
  ``baseline`` the two first-stage searches of BM25+dense (sparse with the IDF modifier, dense with HNSW);
  ``rescorer`` one request whose prefetches are those two, re-scored by MaxSim on an unindexed multivector (m=0);
  ``rescorer_fp16_int8`` the same on float16 storage with int8 quantization (rescored); ``exact`` brute-force
  MaxSim over every document; ``muvera`` an FDE HNSW prefetch (``--candidates``) re-scored by MaxSim; ``full`` HNSW
  on the multivector itself (only when named in ``--modes``: its build is slow). Each mode runs in its own process
  so its peak RSS is its own. Needs only numpy, scipy and qdrant-edge-py (the FDE code is the library's, loaded by
  path), so it runs on the device machine too.
- ``e2e`` (``e2e_local.json``): the real retriever on the first ``--docs`` SciFact documents, every branch encoding
  (dense and multi-vector share one MiniLM pass): ``search()`` at depth 100 for BM25+dense and
  BM25+dense+multivector (rescorer), and ingest with and without the shared pass on ``--share-docs`` documents.
- ``micro`` (``sharing_micro.json``): one shared MiniLM pass against two separate passes, side by side.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import (REPO, SETTINGS, cache, interleaved, load_collection, log, new_edge_retriever, peak_rss_mb,
    percentiles)

LI = REPO / "hybrid_retriever" / "branches" / "late_interaction"


def dev_out(name: str) -> Path:
    """Where the latency parts (and the device part) leave their files for the ``report`` part."""
    return cache("mvdev_out") / name


def late_interaction(name: str) -> Any:
    """The library's ``late_interaction/<name>.py`` loaded by path: the device machine may lack the library's other dependencies."""
    spec = importlib.util.spec_from_file_location(name, LI / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
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

    queries = []
    for i in rng.integers(0, n, size=nq):
        x = doc(int(i))[rng.integers(0, t, size=24)] + 0.3 * rng.standard_normal((24, d)).astype(np.float32)
        queries.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    return doc, queries


def sparse_of(x: np.ndarray, vocab: int = 30000) -> tuple[list[int], list[float]]:
    ids = np.unique((np.abs(x[:, :8]).argmax(1) * 997 + np.abs(x[:, 8:16]).argmax(1) * 31) % vocab)
    return ids.tolist(), [1.0] * len(ids)


def unit_mean(x: np.ndarray) -> list[float]:
    """The synthetic dense vector of a token matrix: its mean, L2-normalised."""
    m = x.mean(0)
    return (m / np.linalg.norm(m)).tolist()


def build(mode: str, args, path: Path) -> dict:
    """One mode's shard on the synthetic data: upsert, optimize, then every query timed (the first 3 not counted)."""
    import qdrant_edge as qe

    mv = late_interaction("muvera")
    fde = mv.FDEEncoder(mv.FDEParams(dimension=args.dim, k_sim=4, dim_proj=8, repetitions=16, seed=42))
    doc, queries = data(args.docs, args.tokens, args.dim, args.queries)
    shutil.rmtree(path, ignore_errors=True)
    mvp = dict(size=args.dim, distance=qe.Distance.Dot, multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim),
               hnsw_config=qe.HnswIndexConfig(m=args.hnsw_m, ef_construct=args.hnsw_ef, full_scan_threshold=10000) if mode == "full"
               else qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10000))
    if mode.endswith("fp16_int8"):
        mvp["datatype"] = qe.VectorStorageDatatype.Float16
        mvp["quantization_config"] = qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99, always_ram=True)
    vectors = {} if mode == "baseline" else {"mv": qe.EdgeVectorParams(**mvp)}
    sparse = None
    if mode.startswith("rescorer") or mode == "baseline":
        vectors["dense"] = qe.EdgeVectorParams(size=args.dim, distance=qe.Distance.Cosine)
        sparse = {"bm25": qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
    if mode == "muvera":
        vectors["fde"] = qe.EdgeVectorParams(size=fde.size, distance=qe.Distance.Dot)
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
                v["dense"] = unit_mean(x)
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

    def requests(q: np.ndarray) -> list:
        """The mode's requests for one query, built the same way for every mode (part of the time measured)."""
        ids, vals = sparse_of(q)
        bm25 = qe.Query.Nearest(qe.SparseVector(indices=ids, values=vals), using="bm25")
        dense = qe.Query.Nearest(unit_mean(q), using="dense")
        maxsim = qe.Query.Nearest(q.tolist(), using="mv")
        if mode == "baseline":
            return [qe.QueryRequest(limit=100, query=bm25), qe.QueryRequest(limit=100, query=dense)]
        if mode.startswith("rescorer"):
            params = None
            if mode.endswith("fp16_int8"):
                params = qe.SearchParams(quantization=qe.QuantizationSearchParams(rescore=True, oversampling=2.0))
            pre = [qe.Prefetch(limit=100, query=bm25), qe.Prefetch(limit=100, query=dense)]
            return [qe.QueryRequest(limit=200, prefetches=pre, query=maxsim, params=params)]
        if mode == "muvera":
            pre = qe.Prefetch(limit=args.candidates, query=qe.Query.Nearest(fde.query(q).tolist(), using="fde"))
            return [qe.QueryRequest(limit=100, prefetches=[pre], query=maxsim)]
        if mode == "exact":
            return [qe.QueryRequest(limit=100, query=maxsim, params=qe.SearchParams(exact=True))]
        return [qe.QueryRequest(limit=100, query=maxsim)]

    lat, answers = [], []
    for q in queries:
        t0 = time.perf_counter()
        r = [shard.query(x) for x in requests(q)]
        lat.append((time.perf_counter() - t0) * 1000)
        answers.append([int(uuid.UUID(str(p.id)).int) - 1 for p in r[-1]])
    shard.close()
    ms = percentiles(lat[3:])
    return {
        "mode": mode, "docs": args.docs, "tokens": args.tokens, "dim": args.dim, "upsert_s": upsert_s,
        "optimize_s": optimize_s, "fde_encode_s": fde_s, "disk_mb": disk / 2**20, "p50_ms": ms["p50"], "p95_ms": ms["p95"],
        "peak_rss_mb": peak_rss_mb(), "answers": answers, "fde_size": fde.size if mode == "muvera" else None,
    }


def run_synthetic(args: argparse.Namespace) -> None:
    args = argparse.Namespace(**{**vars(args), "docs": args.docs or 50000, "queries": args.queries or 53})  # defaults of this part
    work = args.work or cache("mv-synthetic")
    if args.one:
        res = build(args.one, args, work / args.one)
        print(json.dumps(res))
        shutil.rmtree(work / args.one, ignore_errors=True)
        return
    out = dev_out(f"synthetic_{args.label}.json")
    results, failed = [], []
    for mode in args.modes.split(","):
        cmd = [sys.executable, "-m", "benchmarks", "multivector", "--parts", "synthetic", "--one", mode, "--work", str(work)] + [
            a for k in ("docs", "tokens", "dim", "queries", "candidates", "hnsw_m", "hnsw_ef")
            for a in (f"--{k.replace('_', '-')}", str(getattr(args, k)))
        ]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        if proc.returncode != 0:
            log.error("%s failed: %s", mode, proc.stderr[-2000:])
            failed.append(mode)
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res["wall_s"] = time.time() - t0
        results.append(res)
        log.info("%s", {k: v for k, v in res.items() if k != "answers"})
        out.write_text(json.dumps({"cpus": os.cpu_count(), "results": results}))
    exact = next((r["answers"] for r in results if r["mode"] == "exact"), None)
    if exact:
        for r in results:
            r["overlap_at_100_vs_exact"] = float(np.mean([len(set(a) & set(b)) / max(len(b), 1) for a, b in zip(r["answers"], exact)]))
    for r in results:
        r.pop("answers")
    out.write_text(json.dumps({"cpus": os.cpu_count(), "results": results}, indent=1))
    log.info("wrote %s", out)
    if failed:
        raise SystemExit(f"synthetic: modes {failed} failed (their errors are logged above)")


def run_e2e(args: argparse.Namespace) -> None:
    import torch

    from hybrid_retriever import Document
    from hybrid_retriever.retriever import point_id

    args = argparse.Namespace(**{**vars(args), "docs": args.docs or 5183, "queries": args.queries or 100})  # defaults of this part
    work = cache("mv-e2e")
    retriever = lambda path, branches: new_edge_retriever(path, branches, ingest_batch_size=64)  # noqa: E731
    torch.set_num_threads(2)
    col = load_collection(args.datasets, "scifact")
    docs = [Document(text=t, id=i) for i, t in zip(col.doc_ids, col.texts) if t.strip()][: args.docs]
    queries = [col.queries[q] for q in col.judged("test")][: args.queries]
    out: dict = {"docs": len(docs), "queries": len(queries)}
    mv = {"kind": "multivector", "mode": "rescorer"}
    # Shared forward pass: ingest and query encoding with and without it.
    for share in (True, False):
        r = retriever(work / f"share{share}", [{"kind": "bm25"}, {"kind": "dense"}, {**mv, "share_backbone": share}])
        sub = docs[: args.share_docs]
        t0 = time.perf_counter()
        r.add_documents(sub)
        ingest = time.perf_counter() - t0
        search = interleaved({"search": lambda q: r.search(q, k=10)}, queries[:30], warmup=0, desc=f"share {share}")["search"]
        out[f"share_{share}"] = {"ingest_s": ingest, "docs_per_s": len(sub) / ingest, "search_ms": search}
        log.info("%s", out[f"share_{share}"])
        r.close()
    # Rescorer overhead at depth 100 over fused BM25+dense, end to end (query encoding included); both indexes
    # hold the same dense vectors (the three-branch one encodes them, the two-branch one is given them).
    r = retriever(work / "three", [{"kind": "bm25"}, {"kind": "dense"}, mv])
    t0 = time.perf_counter()
    r.add_documents(docs)
    out["ingest_s"] = time.perf_counter() - t0
    out["disk_mb"] = r.store.disk_bytes() / 2**20
    stored = {p.point_id: p.vectors["dense"] for p in r.store.retrieve([point_id(d.id) for d in docs], with_vectors=["dense"])}
    base = retriever(work / "two", [{"kind": "bm25"}, {"kind": "dense"}])
    base.add_documents(docs, vectors={"dense": [stored[point_id(d.id)] for d in docs]})
    out["disk_mb_bm25_dense"] = base.store.disk_bytes() / 2**20
    systems = {"bm25+dense": lambda q: base.search(q, k=10), "bm25+dense+multivector (rescorer)": lambda q: r.search(q, k=10)}
    out["search_ms"] = interleaved(systems, queries, warmup=5, desc="e2e")
    r.close()
    base.close()
    dev_out("e2e_local.json").write_text(json.dumps(out, indent=1))
    log.info("%s", out)


def run_micro(args: argparse.Namespace, rounds: int = 3) -> None:
    """Side-by-side timing of one shared MiniLM pass against two separate passes (docs and queries)."""
    n_docs = min(args.docs or 64, 64)
    rounds = 1 if SETTINGS.smoke else rounds
    from hybrid_retriever.branches import DenseBranch, MultiVectorBranch
    from hybrid_retriever.config import DenseBranchConfig, MultiVectorBranchConfig

    col = load_collection(args.datasets, "scifact")
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
    dev_out("sharing_micro.json").write_text(json.dumps(summary, indent=1))
    log.info("%s", summary)


