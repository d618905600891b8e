"""Multi-vector branch benchmark: quality of the three modes, pooling, MUVERA, fusion; latency and size.

    python -m benchmarks multivector                       # the report: results/multivector.{json,md}
    python -m benchmarks multivector --parts pooling full   # other parts, see below

Parts (``--parts``, default ``report``):

- ``device`` (needs CUDA: the 2-core CPU is too slow to encode the collections): MiniLM token vectors in the
  library's ``tokens`` format (sentence-transformers tokenisation, padding and punctuation dropped from documents,
  L2-normalised), exact MaxSim of every query against every document, the MUVERA FDE top-1000 and the top-100 per
  pool factor 2/3/4, into ``<cache>/mvdev_out/<name>.npz`` (or ``--device-out``). ``--device-in`` holds ``minilm/``
  (weights stored as float16 to fit the transfer limit) and ``data/<name>/{corpus,queries}.jsonl.gz``; the
  library's pooling and MUVERA modules are loaded by path (the device machine may lack its other dependencies).
- ``report``: those scores, the dense embedding cache and BM25 from an Edge index built here (the library's BM25
  branch), evaluated with the arithmetic Qdrant performs (tests/test_multivector_branch.py checks Qdrant's MaxSim
  against it): ``full`` = exact MaxSim over the whole collection (an HNSW graph can only lose recall against it);
  ``rescorer`` = MaxSim of the union of the BM25 and dense top-100; ``muvera`` = MaxSim of the exact FDE top-300
  (Qdrant's HNSW on the FDE is approximate). Weights are tuned on SciFact's train qrels only and applied unchanged
  to every collection's test split. The latency parts' files go into its latency and targets sections.
- ``tokens``, ``pooling``, ``rescorer``, ``rescorer-latency``, ``full``: through the library on the CPU
  (``multivector_library.py``; results ``multivector_pooling``, ``multivector_rescorer``, ``multivector_full``).
- ``synthetic``, ``e2e``, ``micro``: latency, ingest, size and memory (``multivector_latency.py``).
"""

from __future__ import annotations

import argparse
import functools
import gzip
import itertools
import json
import string
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import (QUALITY_COLLECTIONS, Question, cache, doc_text, index_collection, load_collection,
    load_embeddings, log, machine_info, machine_md, md_table, metrics, read_results, write_results)
from benchmarks.questions import multivector_latency, multivector_library
from benchmarks.questions.multivector_latency import dev_out, late_interaction
from benchmarks.questions.multivector_library import EQUAL

DEPTH = 100
MUVERA_CANDIDATES = 300
DIM = 384
MODES = ("full", "rescorer", "muvera")
#: The ``synthetic`` part's files the report shows (``--label`` names them), with their section titles.
SYNTHETIC = {
    "synthetic_50k.json": "Synthetic 50,000 documents × 64 tokens × 128 dims — device machine (16 CPU cores of an H100 host; Qdrant Edge is CPU-only)",
    "synthetic_5k_full.json": "Synthetic 5,000 documents × 64 × 128 with the `full` mode's HNSW (m 16, ef_construct 100) — device machine",
    "synthetic_scifact_local.json": "SciFact size: 5,183 documents × 230 tokens × 384 dims (MiniLM's mean token count) — this 2-core machine, shared with other jobs",
}

# ------------------------------------------------------------------------------ device (GPU)


def read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def encode(model: Any, texts: list[str], skip: Any, bs: int = 128) -> tuple[list[Any], int]:
    """Token vectors of ``texts`` (longest first, in batches) without the ``skip`` ids; how many were truncated."""
    import torch

    tok = model.tokenizer
    out: list[Any] = [None] * len(texts)
    order = np.argsort([-len(t) for t in texts], kind="stable")
    truncated = 0
    with torch.inference_mode():
        for s in range(0, len(texts), bs):
            idx = order[s : s + bs]
            batch = [texts[i].strip() for i in idx]
            lengths = tok(batch, truncation=False, padding=False, return_length=True, verbose=False)["length"]
            truncated += sum(1 for n in lengths if n > model.max_seq_length)
            f = tok(batch, padding=True, truncation="longest_first", max_length=model.max_seq_length, return_tensors="pt")
            f = {k: v.cuda() for k, v in f.items()}
            h = model[0].auto_model(**f).last_hidden_state.float()
            for r, i in enumerate(idx):
                keep = f["attention_mask"][r].bool()
                if skip is not None:
                    k2 = keep & ~torch.isin(f["input_ids"][r], skip)
                    keep = k2 if bool(k2.any()) else keep
                out[i] = torch.nn.functional.normalize(h[r][keep], dim=-1)
    return out, truncated


def padded(mats: list[Any]) -> tuple[Any, Any]:
    """Token matrices as one zero-padded float16 tensor on the GPU and its mask."""
    import torch

    n, L, d = len(mats), max(len(m) for m in mats), mats[0].shape[1]
    x = torch.zeros((n, L, d), device="cuda", dtype=torch.float16)
    mask = torch.zeros((n, L), device="cuda", dtype=torch.bool)
    for i, m in enumerate(mats):
        x[i, : len(m)] = m.half()
        mask[i, : len(m)] = True
    return x, mask


def maxsim_all(q: Any, docs: Any, mask: Any, chunk: int = 1024) -> Any:
    """Exact MaxSim of one query against every padded document (float16 products, float32 sums)."""
    import torch

    out = []
    for s in range(0, len(docs), chunk):
        sim = torch.einsum("qd,nld->nql", q.half(), docs[s : s + chunk]).float()
        sim = sim.masked_fill(~mask[s : s + chunk, None, :], float("-inf"))
        out.append(sim.max(-1).values.sum(-1))
    return torch.cat(out)


def run_device(args: argparse.Namespace) -> None:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("the multivector device part needs CUDA: run it on the device machine (python -m benchmarks "
                         "multivector --parts device --device-in IN_DIR)")
    if args.device_in is None:
        raise SystemExit("--parts device needs --device-in IN_DIR (minilm/ and data/<name>/{corpus,queries}.jsonl.gz)")
    muvera, pooling = late_interaction("muvera"), late_interaction("pooling")
    inp, out = args.device_in, args.device_out or cache("mvdev_out")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(inp / "minilm"), device="cuda").float().eval()
    tok = model.tokenizer
    skip = torch.tensor(sorted({tok.convert_tokens_to_ids(c) for c in string.punctuation} - {tok.unk_token_id}), device="cuda")
    meta: dict = {}
    for cdir in sorted((inp / "data").iterdir()):
        name = cdir.name
        if args.collections and name not in args.collections:
            continue
        t0 = time.time()
        docs, qs = read_jsonl_gz(cdir / "corpus.jsonl.gz"), read_jsonl_gz(cdir / "queries.jsonl.gz")
        dmats, truncated = encode(model, [doc_text(r) for r in docs], skip)
        qmats, _ = encode(model, [q["text"] for q in qs], None)
        t_enc = time.time() - t0
        D, M = padded(dmats)
        full = torch.stack([maxsim_all(q, D, M) for q in qmats])  # (queries, documents)
        t_exact = time.time() - t0 - t_enc
        fde = muvera.FDEEncoder(muvera.FDEParams(dimension=dmats[0].shape[1], k_sim=4, dim_proj=16, repetitions=20, seed=42))
        dn = [m.cpu().numpy() for m in dmats]
        qn = [m.cpu().numpy() for m in qmats]
        t1 = time.time()
        F = torch.tensor(np.stack([fde.document(x) for x in dn]), device="cuda")
        t_fde_docs = time.time() - t1
        G = torch.tensor(np.stack([fde.query(x) for x in qn]), device="cuda")
        res = {
            "full": full.cpu().numpy().astype(np.float16),
            "fde_top": (G @ F.T).topk(min(1000, len(dn)), dim=1).indices.cpu().numpy().astype(np.int32),
            "tokens": np.array([len(x) for x in dn], dtype=np.int32),
            "query_tokens": np.array([len(x) for x in qn], dtype=np.int32),
        }
        pool_s = {}
        for pf in (2, 3, 4):
            t1 = time.time()
            pooled = [torch.tensor(pooling.pool_tokens(x, pf, 1), device="cuda") for x in dn]
            pool_s[pf] = time.time() - t1
            P, PM = padded(pooled)
            top = torch.stack([maxsim_all(q, P, PM) for q in qmats]).topk(min(100, len(dn)), dim=1)
            res[f"pool{pf}_ids"] = top.indices.cpu().numpy().astype(np.int32)
            res[f"pool{pf}_scores"] = top.values.cpu().numpy().astype(np.float32)
            res[f"pool{pf}_tokens"] = np.array([len(x) for x in pooled], dtype=np.int32)
            del P, PM, top
        np.savez_compressed(out / f"{name}.npz", **res)
        meta[name] = {
            "docs": len(docs), "queries": len(qs), "truncated": truncated, "encode_s": t_enc, "exact_s": t_exact,
            "fde_docs_s": t_fde_docs, "pool_s": pool_s, "doc_ids": [str(r["_id"]) for r in docs],
            "query_ids": [str(q["_id"]) for q in qs], "fde_size": fde.size, "gpu": torch.cuda.get_device_name(0),
        }
        log.info("%s %s", name, {k: v for k, v in meta[name].items() if not k.endswith("_ids")})
        del D, M, full, F, G
        torch.cuda.empty_cache()
    (out / f"meta_{'_'.join(sorted(meta))}.json").write_text(json.dumps(meta))


# ----------------------------------------------------------------------------- report (CPU)


def bm25_scores(col: Any, qids: list[str]) -> list[dict[str, float]]:
    """BM25 scores of every matching document per query, from Qdrant (the library's BM25 branch)."""
    from hybrid_retriever.retriever import point_id

    r, docs = index_collection(col, cache("mv-bench-bm25") / col.name, {"branches": [{"kind": "bm25"}]}, vectors=None)
    back = {point_id(d.id): d.id for d in docs}
    out = []
    for s in range(0, len(qids), 64):
        res = r.search_branches([col.queries[q] for q in qids[s : s + 64]], depth=len(docs), complete=False)
        out.extend({back[h.point_id]: h.score for h in x["bm25"].hits} for x in res)
    r.close()
    return out


def top(scores: np.ndarray, ids: list[str], k: int) -> list[tuple[str, float]]:
    idx = np.argsort(-scores, kind="stable")[:k]
    return [(ids[i], float(scores[i])) for i in idx]


@dataclass
class Query:
    """One query's exact scores in every branch (BM25 sparse dict; dense and MaxSim over all docs)."""

    bm25: dict[str, float]
    dense: np.ndarray
    mv: np.ndarray
    fde_top: np.ndarray
    doc_ids: list[str]
    pos: dict[str, int]

    def lists(self, mode: str) -> dict[str, list[tuple[str, float]]]:
        """The branches' ranked lists, the multi-vector one as ``mode`` makes it (none for ``bm25+dense``)."""
        b = sorted(self.bm25.items(), key=lambda x: -x[1])[:DEPTH]
        d = top(self.dense, self.doc_ids, DEPTH)
        out = {"bm25": b, "dense": d}
        if mode == "full":
            out["multivector"] = top(self.mv, self.doc_ids, DEPTH)
        elif mode == "rescorer":
            union = {i for i, _ in b} | {i for i, _ in d}
            out["multivector"] = sorted(((i, float(self.mv[self.pos[i]])) for i in union), key=lambda x: -x[1])
        elif mode == "muvera":
            cand = self.fde_top[:MUVERA_CANDIDATES]
            out["multivector"] = sorted(((self.doc_ids[i], float(self.mv[i])) for i in cand), key=lambda x: -x[1])[:DEPTH]
        return out

    def exact(self, branch: str, doc: str) -> float:
        if branch == "bm25":
            return self.bm25.get(doc, 0.0)
        return float((self.dense if branch == "dense" else self.mv)[self.pos[doc]])


def fuse(q: Query, lists: dict[str, list[tuple[str, float]]], weights: dict[str, float]) -> list[str]:
    from hybrid_retriever.fusion import BranchList, interpolate

    union = {i for lst in lists.values() for i, _ in lst}
    bl = {}
    for n, lst in lists.items():
        own = {i for i, _ in lst}
        bl[n] = BranchList([i for i, _ in lst], [s for _, s in lst], extra={i: q.exact(n, i) for i in union - own})
    return [f.id for f in interpolate(bl, weights, normalization="minmax")][:DEPTH]


def simplex(step: float = 0.1) -> list[dict[str, float]]:
    n = int(round(1 / step))
    return [
        {"bm25": a / n, "dense": b / n, "multivector": (n - a - b) / n}
        for a, b in itertools.product(range(n + 1), repeat=2)
        if a + b <= n
    ]


@functools.cache
def load_collection_runs(name: str, datasets: Path) -> tuple[Any, dict[str, Query], dict[str, np.ndarray], dict[str, int]]:
    """The collection, its judged queries' exact scores (:class:`Query`), the device part's arrays and each query's row in them."""
    splits = ("test", "train") if name == "scifact" else ("test",)
    col = load_collection(datasets, name, splits)
    f = dev_out(f"{name}.npz")
    if not f.is_file():
        raise SystemExit(f"no {f}: run the device part first (python -m benchmarks multivector --parts device, on CUDA)")
    npz = dict(np.load(f))
    qi = {q: i for i, q in enumerate(col.queries)}
    assert npz["full"].shape == (len(qi), len(col.doc_ids)), (name, npz["full"].shape)
    emb = load_embeddings(name)
    assert emb.doc_ids == col.doc_ids
    wanted = list(dict.fromkeys(q for s in splits for q in col.judged(s)))
    pos = {d: i for i, d in enumerate(col.doc_ids)}
    queries = {
        q: Query(bm, emb.docs @ qv, npz["full"][qi[q]].astype(np.float32), npz["fde_top"][qi[q]], col.doc_ids, pos)
        for q, bm, qv in zip(wanted, bm25_scores(col, wanted), emb.query_vectors(wanted))
    }
    return col, queries, npz, qi


def evaluate(name: str, tuned: dict[str, dict[str, float]], datasets: Path) -> dict[str, Any]:
    col, queries, npz, qi = load_collection_runs(name, datasets)
    qrels = col.qrels["test"]
    test = col.judged("test")
    lists = {m: {q: queries[q].lists(m) for q in test} for m in (*MODES, "bm25+dense")}

    def fused(mode: str, weights: dict[str, float]) -> dict[str, float]:
        return metrics({q: fuse(queries[q], lists[mode][q], weights) for q in test}, qrels)

    rows = {b: metrics({q: [i for i, _ in lists["full"][q][b]] for q in test}, qrels) for b in ("bm25", "dense")}
    for m in MODES:
        rows[f"multivector alone ({m})"] = metrics({q: [i for i, _ in lists[m][q]["multivector"]][:DEPTH] for q in test}, qrels)
    rows["bm25+dense (0.5/0.5)"] = fused("bm25+dense", {"bm25": 0.5, "dense": 0.5})
    for m in MODES:
        rows[f"bm25+dense+multivector ({m}, equal weights)"] = fused(m, EQUAL)
        rows[f"bm25+dense+multivector ({m}, tuned on scifact train)"] = fused(m, tuned[m])
    rows["bm25+dense (tuned on scifact train)"] = fused("bm25+dense", tuned["bm25+dense"])
    # Pool factors: the multi-vector branch alone (full mode), quality against bytes per document.
    pools = {"1": {**rows["multivector alone (full)"], "mean_tokens": float(npz["tokens"].mean())}}
    for pf in (2, 3, 4):
        run = {q: [col.doc_ids[i] for i in npz[f"pool{pf}_ids"][qi[q]]] for q in test}
        pools[str(pf)] = {**metrics(run, qrels), "mean_tokens": float(npz[f"pool{pf}_tokens"].mean())}
    for p in pools.values():
        p["bytes_per_doc_fp32"] = p["mean_tokens"] * DIM * 4
        p["bytes_per_doc_fp16"] = p["mean_tokens"] * DIM * 2
        p["bytes_per_doc_fp16_int8"] = p["mean_tokens"] * DIM * 3
        p["ndcg_change_vs_pf1"] = p["ndcg@10"] / pools["1"]["ndcg@10"] - 1
    # MUVERA: FDE candidates against exact MaxSim over the whole collection.
    fde: dict[str, Any] = {}
    exact_top = {q: {i for i, _ in lists["full"][q]["multivector"]} for q in test}
    for c in (100, 300, 1000):
        run = {q: [col.doc_ids[i] for i in sorted(queries[q].fde_top[:c], key=lambda i: -queries[q].mv[i])[:DEPTH]] for q in test}
        m = metrics(run, qrels)
        fde[str(c)] = {**m, "recall_ratio_vs_exact": m["recall@100"] / rows["multivector alone (full)"]["recall@100"],
                       "overlap_with_exact_top100": float(np.mean([len(set(run[q]) & exact_top[q]) / DEPTH for q in test]))}
    return {"docs": len(col.doc_ids), "queries": len(test), "rows": rows, "pooling": pools, "muvera": fde}


def tune(datasets: Path) -> dict[str, Any]:
    """Weights maximising nDCG@10 on SciFact train qrels: the simplex (step 0.1) for three branches, 0.1-0.9 for two."""
    col, queries, _, _ = load_collection_runs("scifact", datasets)
    qrels, train = col.qrels["train"], col.judged("train")
    grids = {m: simplex(0.1) for m in MODES}
    grids["bm25+dense"] = [{"bm25": a / 10, "dense": 1 - a / 10} for a in range(1, 10)]
    best: dict[str, Any] = {}
    for m, grid in grids.items():
        lists = {q: queries[q].lists(m) for q in train}
        scored = [(metrics({q: fuse(queries[q], lists[q], w) for q in train}, qrels)["ndcg@10"], w) for w in grid]
        score, w = max(scored, key=lambda x: x[0])
        best[m] = {"weights": w, "train_ndcg@10": score}
    return best


def run_report(args: argparse.Namespace) -> None:
    res: dict[str, Any] = {"machine": machine_info()}
    res["tuned"] = tune(args.datasets)
    tuned = {k: v["weights"] for k, v in res["tuned"].items()}
    res["collections"] = {name: evaluate(name, tuned, args.datasets) for name in args.collections}
    for fname, key in [*((f, f) for f in SYNTHETIC), ("e2e_local.json", "e2e_local"), ("sharing_micro.json", "sharing_micro")]:
        if dev_out(fname).is_file():  # the latency parts' files
            res.setdefault("latency", {})[key] = json.loads(dev_out(fname).read_text())
    write_results("multivector", res, render(res))


def render(res: dict[str, Any]) -> str:
    out = ["# Multi-vector branch (late interaction) — quality, size, latency\n"]
    out.append(
        "Model: all-MiniLM-L6-v2 token embeddings (format `tokens`, 384-d, "
        "document length 256), the only late-interaction-capable model available offline here — a "
        "sentence-embedding model, not a trained ColBERT, so absolute multi-vector quality is far below "
        "ColBERTv2's. Depth 100 per branch; interpolation with min-max and exact score completion.\n\n"
        "How each row is computed: token embeddings and exact MaxSim come from the `device` part on the "
        "device machine's GPU (MiniLM weights carried as float16, computed in float32 with float16 document "
        "vectors), BM25 from Qdrant Edge with the library's BM25 branch, dense from the MiniLM embedding cache. "
        "`multivector alone (full)` is exact MaxSim over the whole collection (what an HNSW search approximates); "
        "`(rescorer)` is MaxSim re-ranking of the union of the BM25 and dense top-100 (a list of up "
        "to 200 candidates, metrics read its top 100); `(muvera)` is MaxSim re-ranking of the exact FDE top-300. Fusion is the library's "
        "`hybrid_retriever.fusion.interpolate`; tests check that Qdrant's MaxSim equals this arithmetic.\n"
    )
    out.append("\n## Weights tuned on SciFact train qrels (never a test split)\n")
    out.append(md_table(["setting", "bm25", "dense", "multivector", "train nDCG@10"], [
        [k, v["weights"].get("bm25"), v["weights"].get("dense"), v["weights"].get("multivector"), v["train_ndcg@10"]]
        for k, v in res["tuned"].items()
    ]))
    for name, c in res["collections"].items():
        out.append(f"\n## {name} ({c['docs']:,} docs, {c['queries']} test queries)\n")
        out.append(md_table(["run", "nDCG@10", "Recall@100"], [[k, v["ndcg@10"], v["recall@100"]] for k, v in c["rows"].items()]))
        out.append("\nToken pooling (multi-vector alone, exact search; plain cluster means — the library now "
                   "re-normalises them, see [multivector_pooling.md](multivector_pooling.md)):\n\n")
        out.append(md_table(
            ["pool factor", "nDCG@10", "Δ nDCG@10 vs 1", "Recall@100", "vectors/doc", "bytes/doc fp32", "bytes/doc fp16", "fp16 + int8"],
            [[pf, p["ndcg@10"], f"{100 * p['ndcg_change_vs_pf1']:+.1f}%", p["recall@100"], p["mean_tokens"], int(p["bytes_per_doc_fp32"]),
              int(p["bytes_per_doc_fp16"]), int(p["bytes_per_doc_fp16_int8"])] for pf, p in c["pooling"].items()],
        ))
        out.append("\nMUVERA (FDE 5,120-d: k_sim 4, dim_proj 16, 20 repetitions) candidates re-ranked by exact MaxSim:\n\n")
        out.append(md_table(
            ["FDE candidates", "nDCG@10", "Recall@100", "Recall@100 / exact full", "overlap with exact top-100"],
            [[cnum, f["ndcg@10"], f["recall@100"], f["recall_ratio_vs_exact"], f["overlap_with_exact_top100"]] for cnum, f in c["muvera"].items()],
        ))
    out.append(
        "\n## Measured through the library on this machine (CPU)\n\n"
        "- [multivector_rescorer.md](multivector_rescorer.md): the rescorer mode end to end on Qdrant Edge for the four "
        "collections — float32, pool factor 2, int8 MaxSim, and both (the branch's default storage) — with latency.\n"
        "- [multivector_pooling.md](multivector_pooling.md): pool factors 1-4 with the library's unit-length centroids "
        "against plain means, exact search.\n"
        "- [multivector_full.md](multivector_full.md): mode `full` (HNSW over MaxSim) against an exact scan on real "
        "collections.\n"
    )
    out.append(latency_section(res.get("latency", {})))
    out.append(targets_section(res))
    out.append("\n## Machine\n\n" + machine_md(res["machine"]))
    return "".join(out)


def latency_section(lat: dict[str, Any]) -> str:
    out = ["\n## Latency, ingest, size, memory\n"]
    for fname, title in SYNTHETIC.items():
        if fname in lat:
            out.append(f"\n### {title}\n\n")
            out.append(md_table(
                ["mode", "p50 ms", "p95 ms", "upsert s", "optimize s", "disk MiB", "peak RSS MiB", "overlap@100 vs exact"],
                [[r["mode"], r["p50_ms"], r["p95_ms"], r["upsert_s"], r["optimize_s"], r["disk_mb"], r["peak_rss_mb"], r.get("overlap_at_100_vs_exact")]
                 for r in lat[fname]["results"]],
            ))
    d = lat.get("e2e_local")
    if d:
        out.append(f"\n### End to end on this machine: real MiniLM query encoding, SciFact first {d['docs']:,} documents, depth 100\n\n")
        out.append(md_table(["retriever", "p50 ms", "p95 ms"], [[k, v["p50"], v["p95"]] for k, v in d["search_ms"].items()]))
        out.append("\nShared forward pass (dense + multivector on one MiniLM pass), BM25+dense+multivector ingest:\n\n")
        out.append(md_table(["share_backbone", "docs/s ingest (BM25 + dense + multivector)"], [
            [k.split("_")[1], v["docs_per_s"]] for k, v in d.items() if k.startswith("share_")
        ]))
    d = lat.get("sharing_micro")
    if d:
        out.append(
            f"\nShared forward pass measured side by side in one process ({d['docs']} SciFact documents, "
            f"{d['queries']} queries one at a time; medians of 3 alternating rounds; dense + multivector encoders only):\n\n"
        )
        out.append(md_table(["", "documents/s (both branches)", "ms per query (both branches)"], [
            ["one shared MiniLM pass", d["shared"]["docs_per_s"], d["shared"]["query_ms"]],
            ["two separate passes", d["separate"]["docs_per_s"], d["separate"]["query_ms"]],
        ]))
    return "".join(out)


def targets_section(res: dict[str, Any]) -> str:
    """The issue's three targets, checked against the numbers above."""
    lat = res.get("latency", {})
    rows = []
    lat_cpu = read_results("multivector_rescorer").get("latency")
    if lat_cpu:
        s = lat_cpu["systems"]
        default = s["pool 2 + int8"]["median_ratio_vs_bm25_dense"]
        rows.append([
            "rescorer adds ≤ 30% to fused latency (depth 100)",
            f"end to end, 2-core machine, default storage (pool 2 + int8): +{100 * (default - 1):.0f}% "
            f"({s['bm25+dense']['p50']:.1f} → {s['pool 2 + int8']['p50']:.1f} ms p50); float32 without pooling: "
            f"+{100 * (s['float32']['median_ratio_vs_bm25_dense'] - 1):.0f}% ([multivector_rescorer.md](multivector_rescorer.md))",
            "met" if default <= 1.3 else "not met",
        ])
    syn = lat.get("synthetic_50k.json")
    if syn:
        r = {x["mode"]: x for x in syn["results"]}
        a, b = r["baseline"]["p50_ms"], r["rescorer"]["p50_ms"]
        rows.append(["", f"Qdrant only, float32, 50K × 64 × 128 (device CPU): {a:.2f} → {b:.2f} ms p50 (+{b - a:.1f} ms)", ""])
    pool_file = read_results("multivector_pooling")
    if pool_file:  # the library's pooling (unit-length centroids), measured on the CPU
        pf2 = {n: c["2/unit"]["ndcg@10"] / c["1/unit"]["ndcg@10"] - 1 for n, c in pool_file["collections"].items()}
        where = "exact search, unit-length centroids ([multivector_pooling.md](multivector_pooling.md))"
    else:
        pf2 = {n: c["pooling"]["2"]["ndcg_change_vs_pf1"] for n, c in res["collections"].items()}
        where = "exact search, plain means"
    rows.append([
        "pool factor 2 loses ≤ 1% relative nDCG@10",
        ", ".join(f"{n} {100 * v:+.1f}%" for n, v in pf2.items()) + f" ({where})",
        "met" if all(v >= -0.01 for v in pf2.values()) else
        "met on " + ", ".join(n for n, v in pf2.items() if v >= -0.01) + "; not on " + ", ".join(n for n, v in pf2.items() if v < -0.01),
    ])
    ratios = {n: c["muvera"]["300"]["recall_ratio_vs_exact"] for n, c in res["collections"].items()}
    speed = []
    for key, label in (("synthetic_scifact_local.json", "SciFact size"), ("synthetic_5k_full.json", "5K × 64 × 128"), ("synthetic_50k.json", "50K × 64 × 128")):
        r = {x["mode"]: x for x in lat.get(key, {}).get("results", [])}
        if "exact" in r and "muvera" in r:
            speed.append(f"{label} {r['exact']['p50_ms'] / r['muvera']['p50_ms']:.0f}×")
    rows.append([
        "FDE candidates ≥ 90% of exact full-search Recall@100 at ≥ 5× lower latency",
        "Recall@100 ratio (300 candidates): " + ", ".join(f"{n} {v:.2f}" for n, v in ratios.items()) + "; speed-up vs exact: " + ", ".join(speed),
        "met" if all(v >= 0.9 for v in ratios.values()) else "not met",
    ])
    return "\n## Targets\n\n" + md_table(["target", "measured", "verdict"], rows)


# ------------------------------------------------------------------------------------ CLI

PARTS = {
    "report": run_report,
    "device": run_device,
    "tokens": lambda args: multivector_library.build_tokens(args.datasets, args.collections),
    "pooling": multivector_library.run_pooling,
    "rescorer": multivector_library.run_rescorer,
    "rescorer-latency": multivector_library.run_rescorer,
    "full": multivector_library.run_full,
    "synthetic": multivector_latency.run_synthetic,
    "e2e": multivector_latency.run_e2e,
    "micro": multivector_latency.run_micro,
}


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--parts", nargs="+", default=["report"], choices=list(PARTS), help="what to run (module docstring)")
    ap.add_argument("--collections", nargs="+", default=QUALITY_COLLECTIONS, help="collections (default: the four of quality; results/multivector_full.md ran cisi cranfield)")
    ap.add_argument("--docs", type=int, default=None, help="documents (rescorer-latency 1000, e2e 5183, synthetic 50000, micro 64 at most)")
    ap.add_argument("--queries", type=int, default=None, help="queries (rescorer-latency 200, e2e 100, synthetic 53)")
    ap.add_argument("--share-docs", type=int, default=256, help="e2e: documents ingested with and without the shared pass")
    ap.add_argument("--tokens", type=int, default=64, help="synthetic: tokens per document")
    ap.add_argument("--dim", type=int, default=128, help="synthetic: dimension")
    ap.add_argument("--candidates", type=int, default=300, help="synthetic: MUVERA candidates")
    ap.add_argument("--hnsw-m", type=int, default=16)
    ap.add_argument("--hnsw-ef", type=int, default=100)
    ap.add_argument("--modes", default="baseline,rescorer,rescorer_fp16_int8,exact,muvera", help="synthetic: modes")
    ap.add_argument("--label", default="50k", help="synthetic: results file mvdev_out/synthetic_LABEL.json")
    ap.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--device-in", type=Path, default=None, help="device: minilm/ and data/<name>/*.jsonl.gz")
    ap.add_argument("--device-out", type=Path, default=None, help="device: where the .npz go (default the cache's mvdev_out)")


def run(args: argparse.Namespace) -> None:
    for part in args.parts:
        args.part = part
        PARTS[part](args)


QUESTION = Question(
    "multivector", "the multi-vector branch: quality of its modes, pooling, MUVERA, rescorer storage, mode full; latency",
    add_arguments, run,
    {"multivector": render, "multivector_pooling": multivector_library.render_pooling,
     "multivector_rescorer": multivector_library.render_rescorer, "multivector_full": multivector_library.render_full},
    smoke=["--parts", "tokens", "pooling", "full", "rescorer-latency", "synthetic", "e2e", "micro", "--collections", "scifact",
           "--docs", "8", "--queries", "5", "--share-docs", "4", "--dim", "16", "--tokens", "8", "--modes", "baseline,rescorer,exact"],
)
