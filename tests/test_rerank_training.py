"""train-reranker: fine-tunes the tiny cross-encoder on a handful of judged queries, saves a model that reranks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrid_retriever.evaluation.rerank_training import TRAINING_FILE, TrainingSettings, train_reranker
from rerank_fixtures import build_tiny_cross_encoder, direct_logits

QUERIES = {
    "q1": "which database stores vectors",
    "q2": "how does BM25 rank documents",
    "q3": "late interaction token embeddings",
    "q4": "fusing ranked lists by rank",
}
QRELS = {"q1": {"qdrant": 1}, "q2": {"bm25": 1}, "q3": {"colbert": 1}, "q4": {"rrf": 2}}


@pytest.fixture
def trained(tmp_path: Path, make_retriever, small_docs):
    base = build_tiny_cross_encoder(tmp_path / "base")
    r = make_retriever()
    r.add_documents(small_docs)
    settings = TrainingSettings(base_model=str(base), epochs=2, batch_size=4, num_negatives=2, mine_depth=6,
                                relative_margin=None, max_length=64, save_steps=2, seed=3)
    result = train_reranker(r, QUERIES, QRELS, tmp_path / "model", settings, progress=False)
    return r, base, result, settings


def test_training_saves_a_safetensors_model_that_reranks(trained, tmp_path: Path) -> None:
    r, base, result, _ = trained
    out = Path(result.model_dir)
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    # Every positive plus num_negatives mined negatives per (query, positive).
    assert result.n_positives == 4 and result.n_pairs == 4 * (1 + 2)
    assert result.steps == 2 * 3  # 2 epochs of 12 pairs in batches of 4
    assert json.loads((out / TRAINING_FILE).read_text())["settings"]["seed"] == 3
    # The weights moved away from the base model's.
    docs = [d.text for d in r.get(["qdrant", "bm25", "cats"])]
    assert direct_logits(out, QUERIES["q1"], docs) != pytest.approx(direct_logits(base, QUERIES["q1"], docs))
    # rerank.model loads the folder and orders by its logits.
    r.config.rerank.model = str(out)
    from hybrid_retriever.rerank import Reranker

    stage = Reranker(r.config.rerank.model_copy(update={"enabled": True, "max_length": 64}))
    assert stage.score([QUERIES["q1"]], [docs])[0] == pytest.approx(direct_logits(out, QUERIES["q1"], docs, 64), abs=1e-4)


def test_training_resumes_from_its_checkpoint(trained, tmp_path: Path) -> None:
    r, _, first, settings = trained
    ckpts = sorted((Path(first.model_dir) / "checkpoints").glob("checkpoint-*"))
    assert ckpts, "checkpoints are written"
    again = train_reranker(r, QUERIES, QRELS, first.model_dir, settings, progress=False)
    assert again.resumed_from is not None and again.resumed_from.endswith(ckpts[-1].name)
    assert again.steps == first.steps
