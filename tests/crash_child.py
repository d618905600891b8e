"""The process the crash test kills: ingests a corpus batch by batch, reporting each written batch.

    python tests/crash_child.py INDEX CORPUS_JSONL SCRATCH_JSONL BATCH_SIZE [--step]

Protocol on stdout (one line each, flushed before the next step starts): ``ready`` once
the retriever is built; ``written <n>`` after each corpus batch's ``add_documents``
returned (``n`` = documents written so far); then the scratch documents are added
(``scratch-written``) and deleted again (``scratch-deleted``), so that the following
:meth:`HybridRetriever.optimize` (``optimize-start`` / ``optimize-done``) has real work to
do: below Qdrant's indexing threshold only deleted points make it rewrite a segment.
``done`` at the end. With ``--step`` the child waits for a line on stdin after each
``written`` (so the parent can kill it exactly between batches). BM25-only: no model to
load, so a child starts in about a second.
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
            # The corpus is random words, so the language is named rather than detected (repair re-detects from a sample).
            "branches": [{"kind": "bm25", "language": "english"}],
            "runtime": {"show_progress": False},
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("index")
    ap.add_argument("corpus")
    ap.add_argument("scratch")
    ap.add_argument("batch_size", type=int)
    ap.add_argument("--step", action="store_true")
    args = ap.parse_args()
    docs, scratch = read(args.corpus), read(args.scratch)

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    with HybridRetriever(crash_config(args.index)) as r:
        say("ready")
        written = 0
        for start in range(0, len(docs), args.batch_size):
            written += len(r.add_documents(docs[start : start + args.batch_size]))
            say(f"written {written}")
            if args.step:
                sys.stdin.readline()
        r.add_documents(scratch, batch_size=args.batch_size)
        say("scratch-written")
        r.delete([d.id for d in scratch if d.id is not None])
        say("scratch-deleted")
        say("optimize-start")
        r.optimize()
        say("optimize-done")
    say("done")


def read(path: str) -> list[Document]:
    with open(path, encoding="utf-8") as f:
        return [Document(text=row["text"], id=row["id"]) for row in map(json.loads, f)]


if __name__ == "__main__":
    main()
