"""The process the crash test kills: ingests a corpus batch by batch, reporting each written batch.

    python tests/crash_child.py INDEX CORPUS_JSONL BATCH_SIZE [--step] [--optimize-after N]

Protocol on stdout (one line each, flushed before the next step starts):
``ready`` once the retriever is built, ``written <n>`` after each batch's ``add_documents``
returned (``n`` = documents written so far), ``optimize-start`` / ``optimize-done`` around
:meth:`HybridRetriever.optimize`, and ``done`` at the end. With ``--step`` it waits for a
line on stdin after each ``written`` (so the parent can kill it exactly between batches).
Uses a BM25-only configuration: no model to load, so a child starts in about a second.
"""

from __future__ import annotations

import argparse
import json
import sys

from hybrid_retriever import Document, HybridRetriever, RetrieverConfig


def crash_config(index: str) -> RetrieverConfig:
    """The configuration children and the checking parent share."""
    return RetrieverConfig.model_validate(
        {
            "store": {"kind": "edge", "path": index, "optimize_after_add": 0},
            "branches": [{"kind": "bm25"}],
            "runtime": {"show_progress": False},
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("index")
    ap.add_argument("corpus")
    ap.add_argument("batch_size", type=int)
    ap.add_argument("--step", action="store_true")
    ap.add_argument("--optimize-after", type=int, default=0, help="optimize after this many batches (0 = only at the end)")
    args = ap.parse_args()
    with open(args.corpus, encoding="utf-8") as f:
        docs = [Document(text=row["text"], id=row["id"]) for row in map(json.loads, f)]

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    with HybridRetriever(crash_config(args.index)) as r:
        say("ready")
        written = 0
        for n, start in enumerate(range(0, len(docs), args.batch_size), start=1):
            written += len(r.add_documents(docs[start : start + args.batch_size]))
            say(f"written {written}")
            if args.step:
                sys.stdin.readline()
            if n == args.optimize_after:
                say("optimize-start")
                r.optimize()
                say("optimize-done")
        say("optimize-start")
        r.optimize()
        say("optimize-done")
    say("done")


if __name__ == "__main__":
    main()
