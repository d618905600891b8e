"""The CLI with a rerank stage: --explain and --json show the reranker's view; train-reranker writes a model."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from conftest import SMALL_CORPUS
from eval_fixtures import write_beir
from hybrid_retriever import Document
from hybrid_retriever.cli import app
from rerank_fixtures import TINY_MAX_LENGTH, build_tiny_cross_encoder, direct_logits

runner = CliRunner()


def run(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def reranked_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("rerank-cli")
    model = build_tiny_cross_encoder(root / "model")
    docs = [Document(text=t, id=i) for i, t, _ in SMALL_CORPUS]
    queries = {"q1": "vector database", "q2": "ranking documents by terms", "q3": "token embeddings"}
    qrels = {"q1": {"qdrant": 1}, "q2": {"bm25": 1}, "q3": {"colbert": 1}}
    beir = write_beir(root / "beir", docs, queries, qrels, {"train": list(queries)})
    cfg = {"branches": [{"kind": "bm25"}], "runtime": {"show_progress": False},
           "rerank": {"enabled": True, "model": str(model), "depth": 5, "max_length": TINY_MAX_LENGTH}}
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    result = run("index", beir, "--index", root / "index", "--config", root / "cfg.yaml", "--no-progress")
    assert result.exit_code == 0, result.output
    return root, model


def test_query_json_and_explain_show_the_reranker(reranked_index: tuple[Path, Path]) -> None:
    root, model = reranked_index
    q = "vector database"
    # The index does not switch its rerank stage on for a later query: the caller's --config does.
    plain = run("query", q, "--index", root / "index", "--k", 3, "--json")
    assert plain.exit_code == 0, plain.output
    assert all(h.get("rerank") is None for h in json.loads(plain.stdout))
    result = run("query", q, "--index", root / "index", "--config", root / "cfg.yaml", "--k", 3, "--json")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    raws = [h["rerank"]["raw"] for h in hits]
    assert raws == sorted(raws, reverse=True) and hits[0]["score"] == raws[0]
    texts = [h["text"] for h in hits]
    assert raws == pytest.approx(direct_logits(model, q, texts), abs=1e-4)
    assert all(h["rerank"]["fused_rank"] >= 1 and h["provenance"]["bm25"] for h in hits)
    explained = run("query", q, "--index", root / "index", "--config", root / "cfg.yaml", "--k", 3, "--explain")
    assert explained.exit_code == 0, explained.output
    assert "rerank" in explained.stdout and "fused#" in explained.stdout and "depth 5, order reranker" in explained.stdout


def test_train_reranker_command(reranked_index: tuple[Path, Path]) -> None:
    root, model = reranked_index
    out = root / "trained"
    result = run("train-reranker", root / "beir", "--index", root / "index", "--base-model", model, "--out", out,
                 "--negatives", 1, "--mine-depth", 4, "--batch-size", 2, "--max-length", 64, "--holdout", 0, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "No queries were held out" in result.stdout
    m = re.search(r"Trained on 3 queries \((\d+) labelled pairs, (\d+) steps", result.stdout)
    assert m, result.stdout
    # Each of the 3 judged pairs plus at most one negative (the relative margin may drop some), batches of 2.
    pairs = int(m.group(1))
    assert 3 < pairs <= 6 and int(m.group(2)) == (pairs + 1) // 2
    assert (out / "model.safetensors").is_file()
    bad = run("train-reranker", root / "beir", "--index", root / "index", "--split", "nope", "--out", out)
    assert bad.exit_code == 2


def test_train_reranker_refuses_to_write_a_config_that_does_not_beat_fused(reranked_index: tuple[Path, Path]) -> None:
    """BM25 already ranks each held-out query's answer first; a random tiny cross-encoder cannot do better."""
    root, model = reranked_index
    docs = [Document(text=t, id=i) for i, t, _ in SMALL_CORPUS]
    queries = {"a": "vector database for dense vectors", "b": "ranking documents by term frequency",
               "c": "token embeddings of a document", "d": "fusion of ranked lists of documents",
               "e": "dense embeddings for semantic search", "f": "documents scored by late interaction"}
    qrels = {"a": {"qdrant": 1}, "b": {"bm25": 1}, "c": {"colbert": 1}, "d": {"rrf": 1}, "e": {"sbert": 1},
             "f": {"colbert": 1}}
    beir = write_beir(root / "beir6", docs, queries, qrels, {"train": list(queries)})
    out = root / "refused"
    result = run("train-reranker", beir, "--index", root / "index", "--base-model", model, "--out", out,
                 "--negatives", 1, "--mine-depth", 4, "--batch-size", 2, "--max-length", 64, "--learning-rate", 1e-7,
                 "--rerank-depths", "3,5", "--no-progress")
    assert result.exit_code == 3, result.output
    assert "Trained on 4 queries" in result.stdout and "depth 3: weight 0," in result.stdout
    assert "No rerank configuration written" in result.stderr and "fused" in result.stderr
    assert (out / "model.safetensors").is_file() and not (root / "refused.yaml").exists()
