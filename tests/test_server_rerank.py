"""The rerank stage through the HTTP service: a tiny random cross-encoder built by the test
(tests/rerank_fixtures.py); the reference order is the model's own logits computed directly
with transformers, one pair at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from hybrid_retriever import HybridRetriever
from hybrid_retriever_server import create_app
from hybrid_retriever_server.cli import _config, open_retriever
from rerank_fixtures import TINY_MAX_LENGTH, build_tiny_cross_encoder, direct_logits
from tests.conftest import SMALL_CORPUS

DOCS = [{"id": i, "text": t, "metadata": m} for i, t, m in SMALL_CORPUS]
QUERIES = ["vector database for embeddings", "how are documents ranked by terms"]
DEPTH = 6


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce-server") / "model")


def rerank_section(model: Path, **kw: Any) -> dict[str, Any]:
    return {"enabled": True, "model": str(model), "max_length": TINY_MAX_LENGTH, "depth": DEPTH, **kw}


@pytest.fixture(params=["edge", "memory"])
def reranking(request: pytest.FixtureRequest, make_retriever: Callable[..., HybridRetriever], tiny_model: Path) -> Iterator[tuple[TestClient, HybridRetriever]]:
    r = make_retriever(request.param, rerank=rerank_section(tiny_model))
    with TestClient(create_app(r)) as client:
        assert client.post("/documents", json={"documents": DOCS}).status_code == 200
        yield client, r


def post(client: TestClient, path: str, body: dict[str, Any], status: int = 200) -> Any:
    res = client.post(path, json=body)
    assert res.status_code == status, res.text
    return res.json()


def test_search_reranks_by_default_in_the_models_order(reranking: tuple[TestClient, HybridRetriever], tiny_model: Path) -> None:
    client, r = reranking
    assert r.reranker is not None and r.reranker.loaded  # loaded at start-up, before the first request
    for q in QUERIES:
        fused = post(client, "/search", {"query": q, "k": DEPTH, "rerank": False})
        assert fused["reranked"] is False and all(h["rerank"] is None for h in fused["hits"])
        # rerank: false is the fused order, exactly what the library returns without its rerank stage.
        assert [h["id"] for h in fused["hits"]] == [h.id for h in r.search_batch([q], k=DEPTH, rerank=False)[0]]
        body = post(client, "/search", {"query": q, "k": 4})
        assert body["reranked"] is True
        texts = [h["text"] for h in fused["hits"]]
        logits = direct_logits(tiny_model, q, texts)
        by_model = sorted(range(len(texts)), key=lambda i: -logits[i])
        assert [h["id"] for h in body["hits"]] == [fused["hits"][i]["id"] for i in by_model][:4]
        for rank, h in enumerate(body["hits"], start=1):
            i = next(j for j, f in enumerate(fused["hits"]) if f["id"] == h["id"])
            rr = h["rerank"]
            assert rr["raw"] == pytest.approx(logits[i], abs=1e-4) and rr["rank"] == rank and h["rank"] == rank
            assert (rr["fused_rank"], rr["fused_score"]) == (fused["hits"][i]["rank"], pytest.approx(fused["hits"][i]["score"]))
            assert 0.0 <= rr["normalized"] <= 1.0 and rr["model"] == str(tiny_model) and rr["error"] is None
            # Each branch's provenance is kept beside the reranker's.
            for name, score in fused["hits"][i]["provenance"].items():
                assert h["provenance"][name] == {**score, "raw": pytest.approx(score["raw"]), "normalized": pytest.approx(score["normalized"]),
                                                 "signals": pytest.approx(score["signals"])}
        assert body["hits"][0]["rerank"]["normalized"] == 1.0
        assert post(client, "/search", {"query": q, "k": 4, "rerank": True})["hits"] == body["hits"]


def test_batch_search_reranks_like_single_searches(reranking: tuple[TestClient, HybridRetriever]) -> None:
    client, _ = reranking
    batch = post(client, "/search/batch", {"queries": QUERIES, "k": 3})
    assert batch["reranked"] is True
    for q, hits in zip(QUERIES, batch["results"]):
        single = post(client, "/search", {"query": q, "k": 3})["hits"]
        assert [h["id"] for h in hits] == [h["id"] for h in single]
        assert [h["rerank"]["raw"] for h in hits] == pytest.approx([h["rerank"]["raw"] for h in single], abs=1e-4)
    plain = post(client, "/search/batch", {"queries": QUERIES, "k": 3, "rerank": False})
    assert plain["reranked"] is False and all(h["rerank"] is None for hits in plain["results"] for h in hits)


def test_per_request_fusion_is_reranked_too(reranking: tuple[TestClient, HybridRetriever], tiny_model: Path) -> None:
    client, _ = reranking
    over = {"weights": {"bm25": 1, "dense": 0}, "fusion": {"method": "rrf"}}
    fused = post(client, "/search", {"query": QUERIES[1], "k": DEPTH, "rerank": False, **over})["hits"]
    hits = post(client, "/search", {"query": QUERIES[1], "k": DEPTH, **over})["hits"]
    logits = direct_logits(tiny_model, QUERIES[1], [h["text"] for h in fused])
    assert [h["id"] for h in hits] == [fused[i]["id"] for i in sorted(range(len(fused)), key=lambda i: -logits[i])]


def test_config_reports_the_rerank_stage(reranking: tuple[TestClient, HybridRetriever], tiny_model: Path) -> None:
    client, _ = reranking
    cfg = client.get("/config").json()
    assert cfg["rerank_available"] is True
    assert cfg["rerank"] == {"model": str(tiny_model), "depth": DEPTH, "order": "reranker", "weight": 1.0, "timeout": None,
                             "on_error": "fused", "loaded": True}
    assert cfg["retriever"]["rerank"]["enabled"] is True


def test_rerank_true_without_a_rerank_stage_is_a_clear_400(make_retriever: Callable[..., HybridRetriever]) -> None:
    r = make_retriever("edge")
    r.add_texts(["Qdrant stores vectors."], ids=["q"])
    with TestClient(create_app(r)) as client:
        res = client.post("/search", json={"query": "vectors", "rerank": True})
        assert res.status_code == 400 and res.json()["error"] == "invalid_input" and "no rerank stage" in res.json()["detail"]
        assert client.post("/search/batch", json={"queries": ["vectors"], "rerank": True}).status_code == 400
        ok = client.post("/search", json={"query": "vectors", "rerank": False}).json()
        assert ok["reranked"] is False and ok["hits"][0]["id"] == "q"
        cfg = client.get("/config").json()
        assert cfg["rerank_available"] is False and cfg["rerank"] is None


def test_serve_config_with_a_rerank_section(tmp_path: Path, tiny_model: Path) -> None:
    """What `serve --index PATH --config FILE` opens: the config file's rerank stage, used by /search."""
    cfg_file = tmp_path / "served.yaml"
    cfg_file.write_text(
        "branches:\n  - kind: bm25\n"
        f"rerank:\n  enabled: true\n  model: {tiny_model}\n  max_length: {TINY_MAX_LENGTH}\n  depth: {DEPTH}\n"
        "runtime:\n  show_progress: false\n",
        encoding="utf-8",
    )
    config = _config(tmp_path / "index", None, None, cfg_file)
    with TestClient(create_app(lambda: open_retriever(config, use_index_settings=False))) as client:
        assert client.post("/documents", json={"documents": DOCS}).status_code == 200
        fused = post(client, "/search", {"query": QUERIES[1], "k": DEPTH, "rerank": False})["hits"]
        hits = post(client, "/search", {"query": QUERIES[1], "k": DEPTH})["hits"]
        assert client.get("/config").json()["rerank_available"] is True
    logits = direct_logits(tiny_model, QUERIES[1], [h["text"] for h in fused])
    assert [h["id"] for h in hits] == [fused[i]["id"] for i in sorted(range(len(fused)), key=lambda i: -logits[i])]
    assert all(h["rerank"]["raw"] is not None for h in hits)
