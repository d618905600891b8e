"""The benchmarks' caches: MiniLM embeddings (through the library's own DenseBranch) and multi-vector tokens.

    python -m benchmarks cache embeddings                      # the default collections
    python -m benchmarks cache embeddings --collections scifact xquad-r/en   # some collections
    python -m benchmarks cache tokens --collections cisi cranfield           # the multi-vector branch's tokens

Caches live under ``benchmarks/.cache/`` (``HYBRID_RETRIEVER_BENCH_CACHE`` points another checkout at one
copy). ``embeddings``: for each collection ``minilm/<name>/`` (``/`` in a name becomes ``__``), written by
:func:`benchmarks.harness.write_embeddings` (the one path that encodes a cache, the smoke slices' too).

Existing caches are kept, not recomputed: a few random rows are re-encoded through
``DenseBranch.encode_documents`` / ``encode_queries`` and must match to 1e-5 (``--verify N``
rows each; ``--force`` recomputes). So the cache equals what the library would store.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from benchmarks.harness import Collection, Question, cache_dir, dense_branch, load_collection, log, read_embeddings, write_embeddings

DEFAULT = ["scifact", "nfcorpus-preprocessed", "cranfield", "cisi", "xquad-r/en"]
TOLERANCE = 1e-5


def verify(col: Collection, rows: int, seed: int = 0) -> dict:
    """Re-encode ``rows`` random documents and queries through the library; compare with the cache."""
    emb = read_embeddings(cache_dir(col.name))
    problems = []
    if emb.docs.shape[0] != len(emb.doc_ids) or emb.doc_ids != col.doc_ids:
        problems.append("doc_ids.json does not match the corpus order")
    if emb.queries.shape[0] != len(emb.query_ids) or emb.query_ids != list(col.queries):
        problems.append("query_ids.json does not match queries.jsonl")
    rng = np.random.default_rng(seed)
    di = sorted(rng.choice(len(emb.doc_ids), size=min(rows, len(emb.doc_ids)), replace=False).tolist())
    qi = sorted(rng.choice(len(emb.query_ids), size=min(rows, len(emb.query_ids)), replace=False).tolist())
    texts = dict(zip(col.doc_ids, col.texts))
    branch = dense_branch()
    got_d = np.asarray(branch.encode_documents([texts[emb.doc_ids[i]] for i in di]), dtype=np.float32)
    got_q = np.asarray(branch.encode_queries([col.queries[emb.query_ids[i]] for i in qi]), dtype=np.float32)
    err_d = float(np.abs(got_d - emb.docs[di]).max())
    err_q = float(np.abs(got_q - emb.queries[qi]).max())
    if err_d > TOLERANCE or err_q > TOLERANCE:
        problems.append(f"re-encoded rows differ from the cache: docs {err_d:.2e}, queries {err_q:.2e} > {TOLERANCE}")
    if np.abs(np.linalg.norm(emb.docs[:1000], axis=1) - 1).max() > 1e-4:
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
    report = {}
    for name in args.collections:
        col = load_collection(args.datasets, name, splits=())
        if (cache_dir(name) / "docs.npy").is_file() and not args.force:
            check = verify(col, args.verify)
            report[name] = {"status": "kept", **check}
            log.info(
                "%s: cache kept (%d rows checked; max |diff| docs %.1e, queries %.1e)%s",
                name, check["rows"], check["max_abs_err_docs"], check["max_abs_err_queries"],
                "" if not check["problems"] else " PROBLEMS: " + "; ".join(check["problems"]),
            )
            continue
        t0 = time.perf_counter()
        write_embeddings(col, cache_dir(name))
        secs = time.perf_counter() - t0
        report[name] = {"status": "computed", "docs": len(col.texts), "seconds": secs, "docs_per_s": len(col.texts) / secs}
        log.info("%s: %d docs encoded in %.0f s (%.1f docs/s)", name, len(col.texts), secs, len(col.texts) / secs)
    log.info("%s", json.dumps(report, indent=2))
    if any(r.get("problems") for r in report.values()):
        raise SystemExit("some caches do not match the library's encoding; rerun with --force for those")


QUESTION = Question("cache", "build or check the caches the other questions read (embeddings, tokens); writes no results",
                    add_arguments, run, {}, smoke=["--collections", "scifact", "--verify", "2"])
