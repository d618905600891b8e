"""The benchmarks' caches: MiniLM embeddings (through the library's own DenseBranch) and multi-vector tokens.

    python -m benchmarks cache embeddings                      # the default collections
    python -m benchmarks cache embeddings --collections scifact xquad-r/en   # some collections
    python -m benchmarks cache tokens --collections cisi cranfield           # the multi-vector branch's tokens

Caches live under ``benchmarks/.cache/`` (``HYBRID_RETRIEVER_BENCH_CACHE`` points another checkout at one
copy). ``embeddings``: for each collection it writes ``minilm/<name>/`` (``/`` in a name becomes ``__``):
``docs.npy`` (float32, L2-normalised, row i = ``doc_ids.json[i]``), ``doc_ids.json``,
``queries.npy``, ``query_ids.json`` (every query in ``queries.jsonl``). Document text is
``title + "\\n" + text`` when there is a title, else ``text`` (the rule of the benchmarks).

Existing caches are kept, not recomputed: a few random rows are re-encoded through
``DenseBranch.encode_documents`` / ``encode_queries`` and must match to 1e-5 (``--verify N``
rows each; ``--force`` recomputes). So the cache equals what the library would store.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from benchmarks.harness import Question, cache_dir, dense_branch, load_collection, log

DEFAULT = ["scifact", "nfcorpus-preprocessed", "cranfield", "cisi", "xquad-r/en"]
TOLERANCE = 1e-5


def encode(branch: Any, texts: list[str], kind: str, chunk: int = 256) -> np.ndarray:
    """Encode through the library's branch in chunks (so tqdm can show progress)."""
    fn = branch.encode_documents if kind == "docs" else branch.encode_queries
    out = []
    for i in tqdm(range(0, len(texts), chunk), desc=f"  {kind}", unit="chunk", leave=False):
        out.extend(fn(texts[i : i + chunk]))
    return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)


def verify(branch: Any, name: str, texts: dict[str, str], queries: dict[str, str], rows: int, seed: int = 0) -> dict:
    """Re-encode ``rows`` random documents and queries through the library; compare with the cache."""
    d = cache_dir(name)
    doc_ids = json.loads((d / "doc_ids.json").read_text())
    query_ids = json.loads((d / "query_ids.json").read_text())
    docs = np.load(d / "docs.npy", mmap_mode="r")
    qv = np.load(d / "queries.npy", mmap_mode="r")
    problems = []
    if docs.shape[0] != len(doc_ids) or list(doc_ids) != list(texts):
        problems.append("doc_ids.json does not match the corpus order")
    if qv.shape[0] != len(query_ids) or list(query_ids) != list(queries):
        problems.append("query_ids.json does not match queries.jsonl")
    rng = np.random.default_rng(seed)
    di = sorted(rng.choice(len(doc_ids), size=min(rows, len(doc_ids)), replace=False).tolist())
    qi = sorted(rng.choice(len(query_ids), size=min(rows, len(query_ids)), replace=False).tolist())
    got_d = np.asarray(branch.encode_documents([texts[doc_ids[i]] for i in di]), dtype=np.float32)
    got_q = np.asarray(branch.encode_queries([queries[query_ids[i]] for i in qi]), dtype=np.float32)
    err_d = float(np.abs(got_d - docs[di]).max())
    err_q = float(np.abs(got_q - qv[qi]).max())
    norms = np.linalg.norm(np.asarray(docs[: min(1000, len(docs))]), axis=1)
    if err_d > TOLERANCE or err_q > TOLERANCE:
        problems.append(f"re-encoded rows differ from the cache: docs {err_d:.2e}, queries {err_q:.2e} > {TOLERANCE}")
    if np.abs(norms - 1).max() > 1e-4:
        problems.append("cached document vectors are not L2-normalised")
    return {"rows": len(di), "max_abs_err_docs": err_d, "max_abs_err_queries": err_q, "problems": problems}


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("kind", nargs="?", default="embeddings", choices=["embeddings", "tokens"])
    ap.add_argument("--collections", nargs="+", default=DEFAULT)
    ap.add_argument("--verify", type=int, default=8, help="rows of each kind re-encoded to check an existing cache")
    ap.add_argument("--force", action="store_true", help="recompute even when a cache exists")


def run(args: argparse.Namespace) -> None:
    if args.kind == "tokens":
        from benchmarks.questions.multivector_library import build_tokens

        return build_tokens(args.datasets, args.collections)
    branch = dense_branch()
    report = {}
    for name in args.collections:
        col = load_collection(args.datasets, name, splits=())
        texts = dict(zip(col.doc_ids, col.texts))
        d = cache_dir(name)
        if (d / "docs.npy").is_file() and not args.force:
            check = verify(branch, name, texts, col.queries, args.verify)
            report[name] = {"status": "kept", **check}
            log.info(
                "%s: cache kept (%d rows checked; max |diff| docs %.1e, queries %.1e)%s",
                name, check["rows"], check["max_abs_err_docs"], check["max_abs_err_queries"],
                "" if not check["problems"] else " PROBLEMS: " + "; ".join(check["problems"]),
            )
            continue
        d.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        qv = encode(branch, list(col.queries.values()), "queries")
        np.save(d / "queries.npy", qv)
        (d / "query_ids.json").write_text(json.dumps(list(col.queries)))
        dv = encode(branch, col.texts, "docs")
        (d / "doc_ids.json").write_text(json.dumps(col.doc_ids))
        np.save(d / "docs.npy", dv)  # written last: its presence marks a finished cache
        secs = time.perf_counter() - t0
        report[name] = {"status": "computed", "docs": len(col.texts), "seconds": secs, "docs_per_s": len(col.texts) / secs}
        log.info("%s: %d docs encoded in %.0f s (%.1f docs/s)", name, len(col.texts), secs, len(col.texts) / secs)
    log.info("%s", json.dumps(report, indent=2))
    if any(r.get("problems") for r in report.values()):
        raise SystemExit("some caches do not match the library's encoding; rerun with --force for those")



QUESTION = Question("cache", "build or check the caches the other questions read (embeddings, tokens); writes no results",
                    add_arguments, run, {}, smoke=["--collections", "scifact", "--verify", "2"])
