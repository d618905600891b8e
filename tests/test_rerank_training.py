"""train-reranker: fine-tunes a tiny cross-encoder, mines negatives from the index's own vectors, and chooses
(or refuses) a rerank configuration on held-out queries."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hybrid_retriever import Document, HybridRetriever, RetrieverConfig
from hybrid_retriever.evaluation.rerank_training import (
    TRAINING_FILE,
    TrainingSettings,
    mine_negatives,
    split_holdout,
    train_reranker,
)
from hybrid_retriever.ids import point_id
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
                                relative_margin=None, max_length=64, save_steps=2, seed=3, holdout=0)
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


def test_mining_reads_document_vectors_from_the_index_and_encodes_no_document(make_retriever, small_docs,
                                                                                  monkeypatch) -> None:
    r = make_retriever()
    r.add_documents(small_docs)
    dense = r.branches["dense"]
    encoded: list[str] = []
    original = dense._encode

    def counting(texts, prompt_name):
        encoded.extend(texts)
        return original(texts, prompt_name)

    monkeypatch.setattr(dense, "_encode", counting)
    pairs = [("q1", QUERIES["q1"], "qdrant", r.get(["qdrant"])[0].text),
             ("q2", QUERIES["q2"], "bm25", r.get(["bm25"])[0].text)]
    settings = TrainingSettings(num_negatives=2, mine_depth=6, relative_margin=None)
    data, pool = mine_negatives(r, pairs, settings)
    # Only the two query texts were encoded (by the search and by mining); no document.
    assert set(encoded) == {QUERIES["q1"], QUERIES["q2"]}
    rows = list(zip(data["query"], data["document"], data["label"]))
    assert [lab for _, _, lab in rows].count(1.0) == 2 and len(rows) == 2 * (1 + 2)
    positives = {QUERIES["q1"]: pairs[0][3], QUERIES["q2"]: pairs[1][3]}
    assert all(doc != positives[q] for q, doc, lab in rows if lab == 0.0)
    # The negatives are the pool documents nearest the query by the vectors stored in the index (cosine).
    hits = [h for q in (QUERIES["q1"], QUERIES["q2"]) for h in r.search_batch([q], k=6, rerank=False)[0]]
    text_of = {point_id(h.id): h.text for h in hits}
    stored = {text_of[p.point_id]: np.asarray(p.vectors["dense"]) for p in r.store.retrieve(list(text_of), with_vectors=["dense"])}
    assert pool == len(stored)
    qv = np.asarray(dense.encode_queries([QUERIES["q1"]])[0])
    by_cosine = sorted((t for t in stored if t != positives[QUERIES["q1"]]),
                       key=lambda t: -float(qv @ stored[t]) / float(np.linalg.norm(stored[t])))
    assert [doc for q, doc, lab in rows if q == QUERIES["q1"] and lab == 0.0] == by_cosine[:2]


def test_holdout_split_is_seeded_and_checked() -> None:
    ids = [f"q{i}" for i in range(10)]
    train, held = split_holdout(ids, 0.2, seed=1)
    assert len(held) == 2 and sorted(train + held) == sorted(ids) and split_holdout(ids, 0.2, seed=1) == (train, held)
    assert len(split_holdout(ids, 3)[1]) == 3 and split_holdout(ids, 0) == (ids, [])
    with pytest.raises(Exception, match="leaves none to train on"):
        split_holdout(ids, 10)


def test_a_reranker_that_cannot_help_is_saved_but_no_configuration_is_chosen(tmp_path: Path, make_retriever,
                                                                               small_docs) -> None:
    """The fused MiniLM+BM25 order already ranks the small corpus well; a barely trained random model does not."""
    base = build_tiny_cross_encoder(tmp_path / "base", seed=5)
    r = make_retriever()
    r.add_documents(small_docs)
    queries = {**QUERIES, "q5": "python programming language", "q6": "tower in paris", "q7": "cats sleeping",
               "q8": "sentence embeddings for search"}
    qrels = {**QRELS, "q5": {"python": 1}, "q6": {"paris": 1}, "q7": {"cats": 1}, "q8": {"sbert": 1}}
    settings = TrainingSettings(base_model=str(base), epochs=1, batch_size=4, num_negatives=1, mine_depth=4,
                                relative_margin=None, max_length=64, learning_rate=1e-6, holdout=4, depths=(3, 5))
    result = train_reranker(r, queries, qrels, tmp_path / "model", settings, progress=False)
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert len(result.heldout) == 4 and result.n_queries == 4  # the other four trained
    choice = result.choice
    assert choice is not None and not choice.accepted
    assert "fused" in choice.reason and f"{choice.fused_score:.4f}" in choice.reason
    assert [row["depth"] for row in choice.per_depth] == [3, 5]
    with pytest.raises(Exception, match="no rerank configuration"):
        choice.apply(r.config, str(tmp_path / "model"), 64)
    assert json.loads((tmp_path / "model" / TRAINING_FILE).read_text())["choice"]["accepted"] is False


TOPICS = ["apple", "river", "castle", "violin", "comet", "glacier", "harbor", "meadow", "pepper", "tunnel",
          "falcon", "lantern", "orchid", "canyon", "marble", "saddle"]


def marker_collection() -> tuple[list[Document], dict[str, str], dict[str, dict[str, int]]]:
    """Per topic, three short documents that repeat its word (BM25 puts them first) and one relevant document
    that names it once beside a marker the others lack: the fused order is wrong the same way for every topic,
    and a cross-encoder can learn the marker on some topics and use it on others."""
    docs, queries, qrels = [], {}, {}
    for t in TOPICS:
        docs += [Document(text=f"{t} {t} {t} list {n}", id=f"{t}-{n}") for n in range(3)]
        docs.append(Document(text=f"zebra certified reference answer about the {t}", id=f"{t}-gold"))
        queries[t] = f"{t}"
        qrels[t] = {f"{t}-gold": 1}
    return docs, queries, qrels


def test_a_reranker_that_helps_gets_a_configuration_that_beats_fused_on_held_out_queries(tmp_path: Path) -> None:
    docs, queries, qrels = marker_collection()
    cfg = RetrieverConfig.validate_data({"store": {"kind": "edge", "path": str(tmp_path / "index")},
                                         "branches": [{"kind": "bm25"}], "runtime": {"show_progress": False}})
    base = build_tiny_cross_encoder(tmp_path / "base", seed=1)
    settings = TrainingSettings(base_model=str(base), epochs=15, batch_size=8, num_negatives=3, mine_depth=4,
                                relative_margin=None, max_length=32, learning_rate=1e-3, holdout=4, depths=(4,),
                                seed=0)
    with HybridRetriever(cfg) as r:
        r.add_documents(docs)
        fused = r.search_batch([queries[t] for t in TOPICS], k=4, rerank=False)
        assert all(hs[-1].id.endswith("-gold") for hs in fused)  # the first stage ranks every answer last
        result = train_reranker(r, queries, qrels, tmp_path / "model", settings, progress=False)
        choice = result.choice
        assert choice is not None and choice.accepted, choice.reason if choice else None
        assert choice.weight > 0.5 and choice.heldout_score > choice.fused_score
        tuned = choice.apply(r.config, str(tmp_path / "model"), 32)
        tuned.save(tmp_path / "rerank.yaml", header=choice.header())
    # The written configuration loads and reranks the held-out queries' answers to the top.
    again = RetrieverConfig.from_file(tmp_path / "rerank.yaml")
    assert again.rerank.enabled and again.rerank.depth == 4 and again.rerank.weight == choice.weight
    with HybridRetriever.open(str(tmp_path / "index"), rerank=again.rerank.model_dump()) as r:
        top = r.search_batch([queries[t] for t in result.heldout], k=1)
    assert all(hs[0].id.endswith("-gold") for hs in top)
