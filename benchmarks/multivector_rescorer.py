"""The rescorer mode through Qdrant Edge on this machine: quality and latency of cheaper MaxSim.

    nice .venv/bin/python benchmarks/multivector_rescorer.py quality     # the four collections
    nice .venv/bin/python benchmarks/multivector_rescorer.py latency     # SciFact, end to end
    .venv/bin/python benchmarks/multivector_rescorer.py render

The rescorer's cost is MaxSim arithmetic: candidates × document vectors × query vectors ×
dimension. Two settings shrink it: token pooling (factor 2 halves the document vectors) and
int8 scalar quantization scored without re-scoring (``quantization_rescore: false``; Qdrant
then computes MaxSim on the int8 copy). ``quality`` builds one Edge index per setting and
collection with the library (BM25 + dense + multi-vector rescorer, vectors from the
embedding and token caches), searches every test query with ``search_branches`` (depth 100,
exact score completion) and fuses with equal weights and with the weights tuned on SciFact
train (benchmarks/results/multivector.json). ``latency`` times ``search()`` end to end (real
MiniLM query encoding, one forward pass shared by dense and multi-vector) for BM25+dense and
each setting, interleaved query by query. Writes ``benchmarks/results/multivector_rescorer.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    QUALITY_COLLECTIONS, RESULTS, add_dataset_arg, load_collection, load_embeddings, log, machine_info, machine_md,
    md_table, new_edge_retriever, percentiles, setup_logging, write_results,
)
from token_cache import load_tokens  # noqa: E402

import numpy as np  # noqa: E402

WORK = Path("/tmp/hr-mv-rescorer")
MV = {"kind": "multivector", "mode": "rescorer"}
#: Every setting spelled out (the branch's defaults are the last one).
SETTINGS: dict[str, dict[str, Any]] = {
    "float32": {"pool_factor": 1, "quantization": None},
    "pool 2": {"pool_factor": 2, "quantization": None},
    "int8": {"pool_factor": 1, "quantization": "int8", "quantization_rescore": False},
    "pool 2 + int8": {"pool_factor": 2, "quantization": "int8", "quantization_rescore": False},
}
EQUAL = {"bm25": 1 / 3, "dense": 1 / 3, "multivector": 1 / 3}


def build(path: Path, col: Any, ids: list[str], mats: list[np.ndarray] | None, dense: np.ndarray, mv: dict | None) -> Any:
    from hybrid_retriever import Document

    branches: list[dict] = [{"kind": "bm25"}, {"kind": "dense"}] + ([{**MV, **mv}] if mv is not None else [])
    r = new_edge_retriever(path, branches)
    pos = {d: i for i, d in enumerate(col.doc_ids)}
    vectors: dict[str, list] = {"dense": list(dense)}
    if mv is not None:
        vectors["multivector"] = mats
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
    from multivector import metrics  # the same nDCG@10 / Recall@100 as the GPU rows of multivector.md

    from hybrid_retriever.retriever import point_id

    tuned = json.loads((RESULTS / "multivector.json").read_text())["tuned"]["rescorer"]["weights"]
    out: dict[str, Any] = {"tuned_weights": tuned, "collections": {}}
    for name in args.names:
        col = load_collection(args.datasets, name)
        tok = load_tokens(name)
        emb = load_embeddings(name)
        ids = tok["doc_ids"]
        dense = emb.doc_vectors(ids)
        mats = [m.astype(np.float32) for m in tok["docs"]]
        qids = col.judged("test")
        texts = [col.queries[q] for q in qids]
        qrels = col.qrels["test"]
        back = {point_id(i): i for i in ids}
        rows: dict[str, Any] = {}
        for label, setting in SETTINGS.items():
            t0 = time.perf_counter()
            r = build(WORK / name / label.replace(" ", ""), col, ids, mats, dense, setting)
            ingest = time.perf_counter() - t0
            disk = r.store.disk_bytes() / 2**20
            results: list[dict] = []
            t0 = time.perf_counter()
            for s in range(0, len(texts), 64):
                results += r.search_branches(texts[s : s + 64])
            search = time.perf_counter() - t0
            r.close()
            shutil.rmtree(WORK / name / label.replace(" ", ""), ignore_errors=True)
            if label == "float32":
                rows["bm25+dense (0.5/0.5)"] = metrics(
                    dict(zip(qids, fused_run(results, {"bm25": 0.5, "dense": 0.5}, back))), qrels)
            alone = [[back[h.point_id] for h in per["multivector"].hits][:100] for per in results]
            rows[label] = {
                "multivector alone": metrics(dict(zip(qids, alone)), qrels),
                "equal weights": metrics(dict(zip(qids, fused_run(results, EQUAL, back))), qrels),
                "tuned weights": metrics(dict(zip(qids, fused_run(results, tuned, back))), qrels),
                "ingest_s": ingest, "disk_mib": disk, "search_s": search,
            }
            log.info("%s %s: %s", name, label, rows[label])
        out["collections"][name] = rows
    return out


def latency(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(2)
    col = load_collection(args.datasets, "scifact")
    tok = load_tokens("scifact")
    emb = load_embeddings("scifact")
    ids = tok["doc_ids"][: args.docs]
    dense = emb.doc_vectors(ids)
    mats = [m.astype(np.float32) for m in tok["docs"][: args.docs]]
    queries = [col.queries[q] for q in col.judged("test")][: args.queries]
    systems = {"bm25+dense": build(WORK / "lat" / "base", col, ids, None, dense, None)}
    for label, setting in SETTINGS.items():
        systems[label] = build(WORK / "lat" / label.replace(" ", ""), col, ids, mats, dense, setting)
    for r in systems.values():  # warm-up: models loaded, pages mapped
        for q in queries[:5]:
            r.search(q)
    times: dict[str, list[float]] = {k: [] for k in systems}
    for q in queries:  # interleaved, so load changes hit every system alike
        for k, r in systems.items():
            t0 = time.perf_counter()
            r.search(q, k=10)
            times[k].append((time.perf_counter() - t0) * 1000)
    base = np.array(times["bm25+dense"])
    out = {"docs": len(ids), "queries": len(queries), "systems": {}}
    for k, v in times.items():
        out["systems"][k] = {**percentiles(v), "median_ratio_vs_bm25_dense": float(np.median(np.array(v) / base))}
    for r in systems.values():
        r.close()
    return out


def render(res: dict[str, Any]) -> str:
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
            for label in SETTINGS:
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["quality", "latency", "render"])
    ap.add_argument("--names", nargs="+", default=QUALITY_COLLECTIONS)
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=200)
    add_dataset_arg(ap)
    args = ap.parse_args()
    setup_logging()
    path = RESULTS / "multivector_rescorer.json"
    res = json.loads(path.read_text()) if path.is_file() else {}
    if args.what == "quality":  # collections measured earlier are kept
        new = quality(args)
        new["collections"] = {**res.get("quality", {}).get("collections", {}), **new["collections"]}
        res["quality"] = new
        res["machine"] = machine_info()
    elif args.what == "latency":
        res["latency"] = latency(args)
        res["latency_machine"] = machine_info()
    write_results("multivector_rescorer", res, render(res))


if __name__ == "__main__":
    main()
