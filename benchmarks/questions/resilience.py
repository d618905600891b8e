"""Resilience: what a per-branch timeout costs, and how long a call takes when a branch stalls.

    python -m benchmarks resilience                 # ~5 min on 2 shared cores
    python -m benchmarks resilience --docs 1000 --queries 300

Systems, interleaved query by query (``harness.interleaved``) on the first ``--docs`` SciFact documents: the fast
path (no limits, one batched Qdrant request: the reference); limits set but nothing failing (each branch's search
is its own request on the thread pool: the price of being able to stop waiting for one); the dense branch's
request stalled under ``branch_timeout_s`` or ``deadline_s`` = T (the call must return after about T with BM25's
results). Results up to 2026-12 also ran ``before``, the retriever class at the merge base, which the write path's
move to ``index_writer.py`` retired. Then the remote store: time until ``StoreUnavailableError`` against a closed
loopback port and a loopback server that never answers. Writes ``results/resilience.{json,md}``.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import socket
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmarks.harness import (Collection, Question, free_port, index_collection, interleaved, load_collection,
    load_embeddings, machine_info, machine_md, md_table, percentiles, with_cached_queries, write_results)

from hybrid_retriever import HybridRetriever, RetrieverConfig
from hybrid_retriever.errors import BranchFailureError, StoreUnavailableError
from hybrid_retriever.stores import SearchRequest

TIMEOUTS_S = [0.05, 0.1, 0.25]
STORE_TIMEOUTS_S = [0.1, 0.25, 0.5, 1.0]


class StalledBranch:
    """Forwards to a real store, except that a search on ``vector`` blocks until the call that
    sent it has returned (``release``), like a Qdrant request that never answers in time."""

    def __init__(self, store: Any, vector: str) -> None:
        self._store, self._vector = store, vector
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def search_ranked(self, requests: Sequence[SearchRequest]) -> Any:  # what a search asks the store
        if any(r.vector_name == self._vector for r in requests):
            self.release.wait(30)
        return self._store.search_ranked(requests)


def with_runtime(r: HybridRetriever, **runtime: Any) -> HybridRetriever:
    """A shallow copy of ``r`` (same store, branches, pool) with other runtime settings."""
    rc = copy.copy(r)
    data = r.config.model_dump()
    data["runtime"].update(runtime)
    rc.config = RetrieverConfig.validate_data(data)
    return rc


def stalled(r: HybridRetriever, outcomes: dict[str, int], **runtime: Any) -> Any:
    """A search whose dense request stalls; ``outcomes`` counts calls answered by BM25 alone and
    calls where BM25 missed the limit too (``BranchFailureError``: every branch failed)."""
    rc = with_runtime(r, **runtime)
    proxy = StalledBranch(r.store, "dense")
    rc.store = proxy  # type: ignore[assignment]

    def search(q: str) -> Any:
        proxy.release.clear()
        try:
            hits = rc.search(q)
        except BranchFailureError:
            outcomes["every branch missed the limit"] += 1
            return None
        finally:
            proxy.release.set()  # free the blocked worker only after the call has returned
        assert hits and hits[0].provenance["dense"].error, "the stalled branch was not left out"
        outcomes["answered by bm25 alone"] += 1
        return hits

    return search


# ------------------------------------------------------------------------------ remote store


def stalling_server() -> tuple[socket.socket, int]:
    """A loopback socket that accepts connections (the kernel's backlog does) and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1024)
    return s, s.getsockname()[1]


def read_once(url: str, timeout: float, retries: int) -> float:
    """ms until one read through the library's store fails against ``url``."""
    from hybrid_retriever.config import QdrantStoreConfig
    from hybrid_retriever.stores import QdrantStore

    store = QdrantStore(QdrantStoreConfig(url=url, timeout=timeout, retries=retries, retry_backoff_s=0.05))
    t0 = time.perf_counter()
    try:
        store.count()
    except StoreUnavailableError:
        return (time.perf_counter() - t0) * 1000
    finally:
        store.close()
    raise AssertionError("a read against a dead server succeeded")


def raw_read_once(url: str, timeout: float) -> float:
    """The same read through qdrant-client alone (how the store behaved before this work)."""
    from qdrant_client import QdrantClient

    client = QdrantClient(url=url, timeout=timeout)  # type: ignore[arg-type]  # it rounds up to whole seconds
    t0 = time.perf_counter()
    try:
        client.count("hybrid_retriever")
    except Exception:
        return (time.perf_counter() - t0) * 1000
    finally:
        client.close()
    raise AssertionError("a read against a dead server succeeded")


def remote_errors(repeats: int) -> dict[str, dict[str, float]]:
    """Time to a clear error per case, the cases interleaved round by round."""
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    sock, port = stalling_server()
    stalled_url = f"http://127.0.0.1:{port}"
    cases: dict[str, Any] = {}
    for t in STORE_TIMEOUTS_S:
        cases[f"closed port, timeout {t:g} s, retries 2"] = partial(read_once, dead, t, 2)
        cases[f"stalled server, timeout {t:g} s, retries 2"] = partial(read_once, stalled_url, t, 2)
    for t in STORE_TIMEOUTS_S[:2]:
        cases[f"stalled server, qdrant-client alone (before), timeout {t:g} s"] = partial(raw_read_once, stalled_url, t)
    ms: dict[str, list[float]] = {c: [] for c in cases}
    try:
        for _ in range(repeats):
            for c, run in cases.items():
                ms[c].append(run())
    finally:
        sock.close()
    return {c: {**percentiles(v), "max": max(v)} for c, v in ms.items()}


# ------------------------------------------------------------------------------------- main


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=20, help="remote-store error timings per setting")


def run(args: argparse.Namespace) -> None:
    import logging
    import warnings

    logging.getLogger("hybrid_retriever").setLevel(logging.ERROR)  # one warning per stalled call otherwise
    warnings.filterwarnings("ignore", message="Failed to obtain server version")

    col = load_collection(args.datasets, "scifact", splits=("test",))
    emb = load_embeddings("scifact")  # in corpus order (the cache question checks it)
    docs = Collection(col.name, col.doc_ids[: args.docs], col.texts[: args.docs], col.queries, col.qrels)
    qids = col.judged("test")[: args.queries]
    queries = [col.queries[q] for q in qids]

    # The index goes to a private temporary folder (benchmarks/.cache may be a link to a shared cache).
    workdir = Path(tempfile.mkdtemp(prefix="hr-resilience-"))
    r, _ = index_collection(docs, workdir / "edge", {"branches": [{"kind": "bm25"}, {"kind": "dense"}]})
    # Dense query vectors from the cache: a search measures the search path only.
    qvec = dict(zip(queries, emb.query_vectors(qids)))
    r.branches["dense"].encode_queries = lambda texts: [qvec[t] for t in texts]
    rc, _ = with_cached_queries(r, queries)

    ref, healthy = "fast path (no limits)", "limits, healthy (branch_timeout_s=1)"
    systems: dict[str, Any] = {ref: rc.search, healthy: with_runtime(rc, branch_timeout_s=1.0).search}
    limits = {f"{kind}={t:g}": (kind, t) for t in TIMEOUTS_S for kind in ("branch_timeout_s", "deadline_s")}
    outcomes = {key: {"answered by bm25 alone": 0, "every branch missed the limit": 0} for key in limits}
    for key, (kind, t) in limits.items():
        systems[f"dense stalled, {key}"] = stalled(rc, outcomes[key], **{kind: t})
    keep: dict[str, list[float]] = {}
    stats = interleaved(systems, queries, warmup=10, desc="resilience", keep=keep)

    ratios = {healthy: {"median_per_query_ratio": float(np.median(np.asarray(keep[healthy]) / np.asarray(keep[ref]))),
                        "p50_ratio": stats[healthy]["p50"] / stats[ref]["p50"]}}
    stall = {}
    for key, (_, t) in limits.items():
        s, limit_ms = stats[f"dense stalled, {key}"], t * 1000
        stall[key] = {
            "limit_ms": limit_ms, "p50_ms": s["p50"], "p95_ms": s["p95"], "max_ms": max(keep[f"dense stalled, {key}"]),
            "p50_over_limit_ms": s["p50"] - limit_ms, "p95_over_limit_ms": s["p95"] - limit_ms,
            "p95_ratio_to_limit": s["p95"] / limit_ms, **outcomes[key],
        }

    # Remote store: time to a clear error.
    remote = remote_errors(args.repeats)

    info = machine_info()
    data = {
        "machine": info,
        "setup": {"docs": len(docs.doc_ids), "queries": len(queries), "store": "edge (optimised)", "branches": ["bm25", "dense"],
                  "dense query vectors": "pre-encoded (cache)"},
        "latency_ms": stats,
        "ratios_to_fast_path": ratios,
        "stalled_branch": stall,
        "remote_time_to_error_ms": remote,
    }
    write_results("resilience", data, render(data))
    r.close()
    shutil.rmtree(workdir, ignore_errors=True)


def render(data: dict[str, Any]) -> str:
    stats, stall, remote = data["latency_ms"], data["stalled_branch"], data["remote_time_to_error_ms"]
    before = data["setup"].get("before_commit")  # results before the `before` system was retired
    ratios = data["fast_path_ratios_to_before"] if before else data["ratios_to_fast_path"]
    return "".join([
        "# Resilience: per-branch timeouts, deadlines and a remote store that is down or slow\n",
        machine_md(data["machine"]),
        f"\nSciFact, first {data['setup']['docs']} documents (MiniLM vectors from the cache), Qdrant Edge (optimised), bm25 + dense, "
        f"k = 10, depth 100, score completion on; {data['setup']['queries']} test queries, dense query vectors pre-encoded. "
        "Systems run interleaved, query by query in random order. "
        + (f"`before` is `hybrid_retriever/retriever.py` at the merge base `{before[:8]}` loaded side by side on the same index.\n"
           if before else "The fast path is the reference.\n"),
        "\n## Search latency (ms per query)\n\n",
        md_table(["system", "p50", "p95", "mean"], [[n, s["p50"], s["p95"], s["mean"]] for n, s in stats.items()]),
        f"\n## Cost of the resilience code when nothing fails (ratios to {'`before`' if before else 'the fast path'})\n\n",
        md_table(["system", "median per-query ratio", "p50 ratio"],
                 [[n, v["median_per_query_ratio"], v["p50_ratio"]] for n, v in ratios.items()]),
        "\n## One branch stalled: latency against the limit\n\n"
        "The dense branch's Qdrant request blocks until the call has returned; the call answers with BM25's "
        "results (checked on every call: the dense provenance names the timeout), or, when BM25 missed the limit "
        "as well, raises `BranchFailureError` (counted, warm-up calls included; on an overloaded machine a 50 ms limit can be too short "
        "for a healthy branch too).\n\n",
        md_table(["limit", "limit ms", "p50 ms", "p95 ms", "max ms", "p95 - limit (ms)", "p95 / limit",
                  "answered by bm25", "bm25 late too (error)"],
                 [[k, v["limit_ms"], v["p50_ms"], v["p95_ms"], v["max_ms"], v["p95_over_limit_ms"], v["p95_ratio_to_limit"],
                   v["answered by bm25 alone"], v["every branch missed the limit"]]
                  for k, v in stall.items()]),
        "\n## Remote Qdrant down or stalled: time until `StoreUnavailableError` (ms, one read, "
        f"{next(iter(remote.values()))['n']} repeats)\n\n"
        "Closed port: connection refused at once, so the two retries (backoff 0.05 s, 0.1 s) fit in the timeout. "
        "Stalled server (accepts, never answers): the first attempt uses the whole timeout, no retry fits. "
        "Before this work qdrant-client rounded every timeout up to whole seconds (0.1 s became 1 s).\n\n",
        md_table(["case", "p50", "p95", "max"], [[k, v["p50"], v["p95"], v["max"]] for k, v in remote.items()]),
    ])


QUESTION = Question("resilience", "what a per-branch timeout costs, and how long a call takes when a branch or a remote store stalls",
                    add_arguments, run, {"resilience": render}, smoke=["--docs", "40", "--queries", "3", "--repeats", "1"])
