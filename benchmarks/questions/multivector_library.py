"""The multi-vector branch through the library on the CPU (parts of ``python -m benchmarks multivector``).

- ``tokens`` (also ``python -m benchmarks cache tokens --collections NAMES``): the branch's own MiniLM token vectors
  (``MultiVectorBranch``, format ``tokens``), so the cache holds exactly what the branch stores and searches with:
  ``<cache>/tokens/<name>.npz``, every document's token vectors stacked (float16) with their offsets, the same for
  queries, and the ids. Documents with empty text are skipped (the library refuses them). About 15 documents/s on
  the 2-core machine; under ``--smoke`` the slice's tokens are encoded on the spot.
- ``pooling``: every document pooled with the library's ``pool_tokens`` at factors 1-4, every test query scored
  against every document by exact MaxSim. ``unit``: centroids re-normalised to unit length (what the library
  stores); ``mean``: plain cluster means (shorter than unit length). Results ``multivector_pooling``.
- ``rescorer`` / ``rescorer-latency``: the rescorer's cost is MaxSim arithmetic (candidates × document vectors ×
  query vectors × dimension); pool factor 2 halves the document vectors, int8 without re-scoring makes Qdrant
  compute MaxSim on the int8 copy. ``rescorer``: one Edge index per setting and collection (BM25 + dense +
  multi-vector, vectors from the embedding and token caches), every test query through ``search_branches``, fused
  with equal weights and with those tuned on SciFact train (results/multivector.json). ``rescorer-latency``:
  ``search()`` end to end (real MiniLM query encoding) for BM25+dense and each setting. Results ``multivector_rescorer``.
- ``full``: a multi-vector-only index in mode ``full`` (the branch's default storage), the HNSW build timed, then
  every test query searched through the same shard twice: the HNSW search the branch makes and an exact MaxSim
  scan. Results ``multivector_full``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import (RESULTS, SETTINGS, cache, interleaved, load_collection, load_embeddings, log, machine_info,
    machine_md, md_table, metrics, new_edge_retriever, peak_rss_mb, read_results, write_results)

# ----------------------------------------------------------------------------- token cache


def cache_path(name: str) -> Path:
    return cache("tokens") / f"{name.replace('/', '__')}.npz"


def stack(mats: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(mats) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(m) for m in mats])
    return np.concatenate(mats).astype(np.float16), offsets


def unstack(vectors: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [vectors[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def load_tokens(name: str, datasets: Path) -> dict:
    """``doc_ids``, ``docs`` (list of float16 matrices), ``query_ids``, ``queries`` of a cached collection
    (under ``--smoke``, of its slice, encoded here)."""
    p = cache_path(name)
    if SETTINGS.smoke and not p.is_file():
        build_tokens(datasets, [name])
    if not p.is_file():
        raise SystemExit(f"no token cache at {p}; run: python -m benchmarks cache tokens --collections {name}")
    z = np.load(p)
    return {
        "doc_ids": json.loads(str(z["doc_ids"])),
        "docs": unstack(z["doc_vectors"], z["doc_offsets"]),
        "query_ids": json.loads(str(z["query_ids"])),
        "queries": unstack(z["query_vectors"], z["query_offsets"]),
    }


def build_tokens(datasets: Path, names: list[str]) -> None:
    """Cache the token vectors of each collection (kept when already cached)."""
    branch = _mv_branch()
    for name in names:
        if cache_path(name).is_file():
            log.info("%s: cached", name)
            continue
        col = load_collection(datasets, name)
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


@lru_cache(maxsize=1)
def _mv_branch() -> Any:
    from hybrid_retriever.branches import MultiVectorBranch
    from hybrid_retriever.config import MultiVectorBranchConfig

    return MultiVectorBranch(MultiVectorBranchConfig(share_backbone=False))


# --------------------------------------------------------------------------------- pooling

#: (factor, centroid style) measured: every factor with the library's unit centroids, factor 2 also with plain means.
VARIANTS = [(1, "unit"), (2, "unit"), (2, "mean"), (3, "unit"), (4, "unit")]


def exact_top(queries: list[np.ndarray], docs: list[np.ndarray], k: int = 100) -> np.ndarray:
    """Top-``k`` document indices per query by exact MaxSim (float32): one matrix product over all document
    tokens, then a per-document max."""
    k = min(k, len(docs))
    flat = np.concatenate(docs).astype(np.float32)
    starts = np.concatenate([[0], np.cumsum([len(d) for d in docs])[:-1]])
    ids = np.zeros((len(queries), k), dtype=np.int64)
    for i, q in enumerate(queries):
        sim = np.asarray(q, dtype=np.float32) @ flat.T  # (query tokens, all document tokens)
        per_doc = np.maximum.reduceat(sim, starts, axis=1).sum(axis=0)
        top = np.argpartition(-per_doc, k - 1)[:k]
        ids[i] = top[np.argsort(-per_doc[top], kind="stable")]
    return ids


def run_pooling(args: argparse.Namespace) -> None:
    from threadpoolctl import threadpool_limits

    from hybrid_retriever.branches.late_interaction.pooling import pool_tokens

    partial = cache() / "multivector_pooling.partial.json"
    out: dict = {"machine": machine_info(), "collections": {}}
    done = json.loads(partial.read_text()) if partial.is_file() else {}  # resumable: each variant takes minutes
    for name in args.collections:
        col = load_collection(args.datasets, name)
        tok = load_tokens(name, args.datasets)
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
            ids = exact_top(queries, docs)
            m = metrics({q: [tok["doc_ids"][j] for j in ids[i]] for i, q in enumerate(qids)}, {q: col.qrels["test"][q] for q in qids})
            m["vectors_per_doc"] = float(np.mean([len(d) for d in docs]))
            m["pool_s"] = pool_s
            rows[f"{factor}/{style}"] = m
            partial.write_text(json.dumps(done))
            log.info("%s pool %d %s: %s", name, factor, style, m)
        out["collections"][name] = {f"{f}/{s}": rows[f"{f}/{s}"] for f, s in VARIANTS}
    write_results("multivector_pooling", out, render_pooling(out))


def render_pooling(out: dict[str, Any]) -> str:
    md = ["# Token pooling: exact multi-vector search on the CPU", "", machine_md(out["machine"]), "",
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
    return "\n".join(md)


# -------------------------------------------------------------------------------- rescorer

MV = {"kind": "multivector", "mode": "rescorer"}
#: Every setting spelled out (the branch's defaults are the last one).
STORAGE: dict[str, dict[str, Any]] = {
    "float32": {"pool_factor": 1, "quantization": None},
    "pool 2": {"pool_factor": 2, "quantization": None},
    "int8": {"pool_factor": 1, "quantization": "int8", "quantization_rescore": False},
    "pool 2 + int8": {"pool_factor": 2, "quantization": "int8", "quantization_rescore": False},
}
EQUAL = {"bm25": 1 / 3, "dense": 1 / 3, "multivector": 1 / 3}


def build(path: Path, col: Any, ids: list[str], dense: np.ndarray, mats: list[np.ndarray] | None = None, mv: dict | None = None) -> Any:
    """BM25 + dense (+ the multi-vector rescorer with storage ``mv``) on the documents ``ids``, vectors from the caches."""
    from hybrid_retriever import Document

    r = new_edge_retriever(path, [{"kind": "bm25"}, {"kind": "dense"}] + ([{**MV, **mv}] if mv is not None else []))
    pos = {d: i for i, d in enumerate(col.doc_ids)}
    vectors = {"dense": list(dense)} if mv is None else {"dense": list(dense), "multivector": mats}
    r.add_documents([Document(text=col.texts[pos[i]], id=i) for i in ids], vectors=vectors)
    return r


def fused_run(results: list[dict], weights: dict[str, float], back: dict[str, str]) -> list[list[str]]:
    from hybrid_retriever.fusion import BranchList, interpolate

    out = []
    for per in results:
        lists = {n: BranchList([h.point_id for h in r.hits], [h.score for h in r.hits], extra=r.completed)
                 for n, r in per.items() if n in weights}
        out.append([back[f.id] for f in interpolate(lists, weights, normalization="minmax")][:100])
    return out


def quality(args: argparse.Namespace) -> dict[str, Any]:
    from hybrid_retriever.retriever import point_id

    tuned = (read_results("multivector") or json.loads((RESULTS / "multivector.json").read_text()))["tuned"]["rescorer"]["weights"]
    out: dict[str, Any] = {"tuned_weights": tuned, "collections": {}}
    for name in args.collections:
        col = load_collection(args.datasets, name)
        tok = load_tokens(name, args.datasets)
        ids = tok["doc_ids"]
        dense = load_embeddings(name).doc_vectors(ids)
        mats = [m.astype(np.float32) for m in tok["docs"]]
        qids = col.judged("test")
        texts = [col.queries[q] for q in qids]
        qrels = col.qrels["test"]
        back = {point_id(i): i for i in ids}
        score = lambda runs: metrics(dict(zip(qids, runs)), qrels)  # noqa: E731
        rows: dict[str, Any] = {}
        for label, setting in STORAGE.items():
            path = cache("mv-rescorer") / name / label.replace(" ", "")
            t0 = time.perf_counter()
            r = build(path, col, ids, dense, mats, setting)
            ingest = time.perf_counter() - t0
            disk = r.store.disk_bytes() / 2**20
            results: list[dict] = []
            t0 = time.perf_counter()
            for s in range(0, len(texts), 64):
                results += r.search_branches(texts[s : s + 64])
            search = time.perf_counter() - t0
            r.close()
            shutil.rmtree(path, ignore_errors=True)
            if label == "float32":
                rows["bm25+dense (0.5/0.5)"] = score(fused_run(results, {"bm25": 0.5, "dense": 0.5}, back))
            rows[label] = {
                "multivector alone": score([[back[h.point_id] for h in per["multivector"].hits][:100] for per in results]),
                "equal weights": score(fused_run(results, EQUAL, back)),
                "tuned weights": score(fused_run(results, tuned, back)),
                "ingest_s": ingest, "disk_mib": disk, "search_s": search,
            }
            log.info("%s %s: %s", name, label, rows[label])
        out["collections"][name] = rows
    return out


def latency(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(2)
    col = load_collection(args.datasets, "scifact")
    tok = load_tokens("scifact", args.datasets)
    ids = tok["doc_ids"][: (args.docs or 1000)]
    dense = load_embeddings("scifact").doc_vectors(ids)
    mats = [m.astype(np.float32) for m in tok["docs"][: (args.docs or 1000)]]
    queries = [col.queries[q] for q in col.judged("test")][: (args.queries or 200)]
    systems = {"bm25+dense": build(cache("mv-rescorer") / "lat" / "base", col, ids, dense)}
    for label, setting in STORAGE.items():
        systems[label] = build(cache("mv-rescorer") / "lat" / label.replace(" ", ""), col, ids, dense, mats, setting)
    times: dict[str, list[float]] = {}
    ms = interleaved({k: partial(r.search, k=10) for k, r in systems.items()}, queries, warmup=5, desc="rescorer latency", keep=times)
    base = np.array(times["bm25+dense"])
    out = {"docs": len(ids), "queries": len(queries),
           "systems": {k: {**ms[k], "median_ratio_vs_bm25_dense": float(np.median(np.array(v) / base))} for k, v in times.items()}}
    for r in systems.values():
        r.close()
    return out


def run_rescorer(args: argparse.Namespace) -> None:
    res = read_results("multivector_rescorer")
    if args.part == "rescorer":  # collections measured earlier are kept
        new = quality(args)
        new["collections"] = {**res.get("quality", {}).get("collections", {}), **new["collections"]}
        res["quality"] = new
        res["machine"] = machine_info()
    else:
        res["latency"] = latency(args)
        res["latency_machine"] = machine_info()
    write_results("multivector_rescorer", res, render_rescorer(res))


def render_rescorer(res: dict[str, Any]) -> str:
    md = ["# Multi-vector rescorer: cheaper MaxSim (pooling, int8) through Qdrant Edge", ""]
    if "machine" in res:
        md += [machine_md(res["machine"]), ""]
    q = res.get("quality")
    if q:
        w = q["tuned_weights"]
        md += [
            "All numbers from the library itself on Qdrant Edge: BM25 + dense + multi-vector (mode `rescorer`, MiniLM "
            "tokens), depth 100 per branch, exact score completion, min-max interpolation. `tuned weights`: "
            f"bm25 {w['bm25']}, dense {w['dense']}, multivector {w['multivector']} (chosen on SciFact train, "
            "multivector.md). `int8`: Qdrant scalar quantization, MaxSim on the int8 copy only "
            "(`quantization_rescore: false`). nDCG@10 / Recall@100 on test qrels.", ""]
        for name, rows in q["collections"].items():
            bd = rows["bm25+dense (0.5/0.5)"]
            md += [f"## {name}", "", f"BM25+dense (0.5/0.5): nDCG@10 {bd['ndcg@10']:.3f}, Recall@100 {bd['recall@100']:.3f}", ""]
            table = []
            for label in STORAGE:
                r = rows[label]
                table.append([label, r["multivector alone"]["ndcg@10"], r["equal weights"]["ndcg@10"], r["tuned weights"]["ndcg@10"],
                              r["tuned weights"]["recall@100"], r["disk_mib"], r["ingest_s"]])
            md += [md_table(["setting", "multivector alone nDCG@10", "fused, equal weights", "fused, tuned weights",
                             "Recall@100 (tuned)", "disk MiB", "ingest s"], table), ""]
    lat = res.get("latency")
    if lat:
        md += ["## Latency, end to end", "",
               f"`search()` on the first {lat['docs']:,} SciFact documents, {lat['queries']} test queries one at a time, "
               "systems interleaved query by query; real MiniLM query encoding (dense and multi-vector share one forward "
               "pass). Ratio: median over queries of (system ms / BM25+dense ms) for the same query.", ""]
        md += [md_table(["system", "p50 ms", "p95 ms", "ratio to BM25+dense"],
                        [[k, v["p50"], v["p95"], f"{v['median_ratio_vs_bm25_dense']:.2f}×"] for k, v in lat["systems"].items()]), ""]
    return "\n".join(md)


# ------------------------------------------------------------------------------------ full

def run_full_one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from hybrid_retriever import Document
    from hybrid_retriever.retriever import point_id
    from hybrid_retriever.stores import SearchRequest

    col = load_collection(args.datasets, name)
    tok = load_tokens(name, args.datasets)
    pos = {d: i for i, d in enumerate(col.doc_ids)}
    path = cache("mv-full") / name
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
    qvec = {q: tok["queries"][qpos[q]].astype(np.float32) for q in qids}
    found: dict[str, dict[str, list[str]]] = {"hnsw": {}, "exact": {}}

    def search(kind: str) -> Any:
        """The HNSW search the branch makes, or an exact MaxSim scan of the same shard."""
        def one(q: str) -> None:
            req = SearchRequest(vector_name="multivector", vector=qvec[q], limit=100, exact=kind == "exact")
            found[kind][q] = [back[p] for p, _ in r.store.search_batch([req])[0]]
        return one

    ms = interleaved({kind: search(kind) for kind in found}, qids, warmup=0, desc=name)
    hnsw, exact = found["hnsw"], found["exact"]
    out = {
        "docs": len(docs), "queries": len(qids),
        "hnsw": {**metrics(hnsw, col.qrels["test"]), "ms": ms["hnsw"]},
        "exact": {**metrics(exact, col.qrels["test"]), "ms": ms["exact"]},
        "overlap_at_100": float(np.mean([len(set(hnsw[q]) & set(exact[q])) / max(len(exact[q]), 1) for q in qids])),
        "upsert_s": upsert, "optimize_s": optimize, "disk_mib": r.store.disk_bytes() / 2**20, "peak_rss_mib": peak_rss_mb(),
    }
    r.close()
    shutil.rmtree(path, ignore_errors=True)
    log.info("%s: %s", name, out)
    return out


def run_full(args: argparse.Namespace) -> None:
    res = {"machine": machine_info(), "collections": {n: run_full_one(n, args) for n in args.collections}}
    write_results("multivector_full", res, render_full(res))


def render_full(res: dict[str, Any]) -> str:
    rows = []
    for n, c in res["collections"].items():
        for kind in ("hnsw", "exact"):
            rows.append([n, "HNSW (m 16, ef_construct 100)" if kind == "hnsw" else "exact MaxSim scan", c[kind]["ndcg@10"],
                         c[kind]["recall@100"], c[kind]["ms"]["p50"], c["overlap_at_100"] if kind == "hnsw" else 1.0,
                         c["upsert_s"] + c["optimize_s"] if kind == "hnsw" else None])
    md = ["# Multi-vector mode `full` on real collections: HNSW over MaxSim vs exact", "", machine_md(res["machine"]), "",
          "Multi-vector branch alone (MiniLM tokens, the branch's default storage: pool factor 2, int8 without "
          "re-scoring), Qdrant Edge, test qrels, depth 100. Both rows search the same shard; `exact` scans every "
          "document. Build: upsert + graph construction (`optimize`).", "",
          md_table(["collection", "search", "nDCG@10", "Recall@100", "p50 ms", "overlap@100 with exact", "build s"], rows)]
    return "\n".join(md)
