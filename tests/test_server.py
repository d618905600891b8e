"""The HTTP service in-process (TestClient / httpx over ASGI) on Edge and on qdrant-client's :memory: mode."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from hybrid_retriever import HybridRetriever, RetrieverConfig
from hybrid_retriever_server import ServerSettings, create_app
from tests.conftest import SMALL_CORPUS

KEY = "k3y-for-tests-only"
AUTH = {"X-API-Key": KEY}
DOCS = [{"id": i, "text": t, "metadata": m} for i, t, m in SMALL_CORPUS]


@pytest.fixture(params=["edge", "memory"])
def served(request: pytest.FixtureRequest, make_retriever: Callable[..., HybridRetriever]) -> Iterator[tuple[TestClient, HybridRetriever]]:
    """A client of the service over a retriever holding the small corpus, with an API key."""
    r = make_retriever(request.param)
    with TestClient(create_app(r, ServerSettings(api_key=KEY))) as client:
        assert client.post("/documents", json={"documents": DOCS}, headers=AUTH).status_code == 200
        yield client, r


def post(client: TestClient, path: str, body: dict[str, Any], status: int = 200) -> Any:
    res = client.post(path, json=body, headers=AUTH)
    assert res.status_code == status, res.text
    return res.json()


# ------------------------------------------------------------------------- documents


def test_documents_are_added_idempotently_read_and_deleted(served: tuple[TestClient, HybridRetriever]) -> None:
    client, r = served
    assert r.count() == len(DOCS)
    # Posting the same ids again replaces, never duplicates.
    again = post(client, "/documents", {"documents": [{"id": "cats", "text": "Cats purr.", "metadata": {"topic": "pets"}}]})
    assert again == {"ids": ["cats"], "count": len(DOCS)}
    assert client.get("/documents/cats", headers=AUTH).json() == {"id": "cats", "text": "Cats purr.", "metadata": {"topic": "pets"}}
    gone = client.request("DELETE", "/documents", json={"ids": ["cats", "no-such-id"]}, headers=AUTH).json()
    assert gone == {"deleted": 1, "count": len(DOCS) - 1}
    missing = client.get("/documents/cats", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    # Ids may be paths (a folder source's ids are): they are read back through the URL as they are.
    post(client, "/documents", {"documents": [{"id": "notes/2024/a b.md", "text": "A note in a folder."}]})
    assert client.get("/documents/notes/2024/a%20b.md", headers=AUTH).json()["id"] == "notes/2024/a b.md"


# ---------------------------------------------------------------------------- search


def test_search_returns_what_the_library_returns_with_provenance(served: tuple[TestClient, HybridRetriever]) -> None:
    client, r = served
    body = post(client, "/search", {"query": "which database stores vectors", "k": 3})
    direct = r.search("which database stores vectors", k=3)
    assert [h["id"] for h in body["hits"]] == [h.id for h in direct] and body["hits"][0]["id"] == "qdrant"
    for got, want in zip(body["hits"], direct):
        assert got["score"] == pytest.approx(want.score)
        for name, score in want.provenance.items():
            assert got["provenance"][name] == {
                "raw": pytest.approx(score.raw), "normalized": pytest.approx(score.normalized),
                "rank": score.rank, "completed": score.completed, "weight": pytest.approx(score.weight),
                "flags": score.flags, "signals": pytest.approx(score.signals), "error": score.error,
            }
            assert got["provenance"][name]["weight"] is not None  # adaptive fusion (the default) says what it used
    assert body["branches"] == ["bm25", "dense"] and body["weights"] == {"bm25": 0.5, "dense": 0.5}


def test_batch_search_equals_single_searches(served: tuple[TestClient, HybridRetriever]) -> None:
    client, _ = served
    queries = ["late interaction over tokens", "a tower in Paris"]
    batch = post(client, "/search/batch", {"queries": queries, "k": 2})["results"]
    singles = [post(client, "/search", {"query": q, "k": 2})["hits"] for q in queries]
    assert [[h["id"] for h in hits] for hits in batch] == [[h["id"] for h in hits] for hits in singles]
    assert batch[0][0]["id"] == "colbert" and batch[1][0]["id"] == "paris"


def test_filter_restricts_hits(served: tuple[TestClient, HybridRetriever]) -> None:
    client, _ = served
    hits = post(client, "/search", {"query": "ranking documents", "k": 8, "filter": {"topic": "ir"}})["hits"]
    assert {h["id"] for h in hits} == {"bm25", "colbert", "rrf"}


def test_weight_override_zero_leaves_one_branch_deciding(served: tuple[TestClient, HybridRetriever]) -> None:
    client, _ = served
    body = post(
        client,
        "/search",
        {"query": "documents ranked by term frequency", "k": 5, "weights": {"bm25": 1, "dense": 0},
         "fusion": {"method": "interpolation", "normalization": "minmax", "completed": "raw"}},
    )
    assert body["weights"] == {"bm25": 1.0, "dense": 0.0}
    hits = body["hits"]
    # Min-max interpolation with the dense weight 0: the fused score is BM25's normalised score,
    # (raw - min) / (max - min) over BM25's own list, and the order is BM25's own.
    returned = [h for h in hits if h["provenance"]["bm25"]["rank"] is not None]
    raws = [h["provenance"]["bm25"]["raw"] for h in returned]
    for h in returned:
        expected = (h["provenance"]["bm25"]["raw"] - min(raws)) / (max(raws) - min(raws)) if len(raws) > 1 else 1.0
        assert h["score"] == pytest.approx(expected, abs=1e-6)
    assert [h["provenance"]["bm25"]["rank"] for h in returned] == sorted(h["provenance"]["bm25"]["rank"] for h in returned)
    assert hits[0]["id"] == "bm25"


def test_rrf_override_matches_the_hand_computed_sum(served: tuple[TestClient, HybridRetriever]) -> None:
    client, r = served
    body = post(client, "/search", {"query": "semantic search embeddings", "k": 5, "fusion": {"method": "rrf", "rrf_k": 10}})
    assert body["fusion"]["method"] == "rrf" and body["fusion"]["rrf_k"] == 10
    for h in body["hits"]:
        ranks = [p["rank"] for p in h["provenance"].values()]
        assert h["score"] == pytest.approx(sum(0.5 / (10 + k) for k in ranks if k is not None))
    # The server's own configuration is untouched by a request's override.
    assert post(client, "/search", {"query": "semantic search embeddings"})["fusion"]["method"] == r.config.fusion.method


# ------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "path, body, status, code",
    [
        ("/search", {"query": "   "}, 400, "invalid_input"),
        ("/search", {"query": "x", "filter": {"colour": "red"}}, 400, "invalid_input"),
        ("/search", {"query": "x", "weights": {"sparse": 1}}, 400, "invalid_input"),
        ("/search", {"query": "x", "weights": {"bm25": 0, "dense": 0}}, 400, "invalid_input"),
        ("/search", {"query": "x", "weights": {"bm25": -1}}, 400, "invalid_input"),
        ("/search", {"query": "x", "rerank": True}, 400, "invalid_input"),
        ("/search", {"query": "x", "k": 0}, 422, "invalid_request"),
        ("/search", {"query": "x", "fusion": {"method": "borda"}}, 422, "invalid_request"),
        ("/search", {"qurey": "x"}, 422, "invalid_request"),
        ("/search/batch", {"queries": []}, 422, "invalid_request"),
        ("/documents", {"documents": [{"id": "", "text": "t"}]}, 422, "invalid_request"),
        ("/documents", {"documents": [{"id": "a", "text": "  "}]}, 400, "invalid_input"),
        ("/documents", {"documents": [{"id": "a", "text": "t"}, {"id": "a", "text": "u"}]}, 400, "invalid_input"),
    ],
)
def test_bad_input_gets_a_clear_json_error(served: tuple[TestClient, HybridRetriever], path: str, body: dict, status: int, code: str) -> None:
    client, r = served
    before = r.count()
    res = client.post(path, json=body, headers=AUTH)
    assert res.status_code == status, res.text
    assert res.json()["error"] == code and res.json()["detail"]
    assert "Traceback" not in res.text
    assert r.count() == before  # nothing stored is lost or added


def test_malformed_json_is_a_422(served: tuple[TestClient, HybridRetriever]) -> None:
    client, _ = served
    res = client.post("/search", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"})
    assert res.status_code == 422 and res.json()["error"] == "invalid_request"


def test_unexpected_errors_are_500_without_a_stack_trace(make_retriever: Callable[..., HybridRetriever]) -> None:
    r = make_retriever("memory")
    r.add_texts(["a text"], ids=["a"])
    with TestClient(create_app(r), raise_server_exceptions=False) as client:
        r.store.client.delete_collection(r.store.collection)  # the collection is dropped under the service
        searched = client.post("/search", json={"query": "text"})
        res = client.get("/documents/a")
    # Every branch's search failed: the library says so (runtime.on_branch_error), as a 503 without internals.
    assert searched.status_code == 503 and searched.json()["error"] == "branch_failure"
    assert "Traceback" not in searched.text
    assert res.status_code == 500
    assert res.json() == {"error": "internal", "detail": "internal server error; the server log has the details"}


# ---------------------------------------------------------------------- auth, limits


def test_api_key_is_required_compared_and_never_echoed(served: tuple[TestClient, HybridRetriever], caplog: pytest.LogCaptureFixture) -> None:
    client, _ = served
    caplog.set_level(logging.DEBUG)
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY + "x"}, {"X-API-Key": KEY[:-1]}):
        res = client.post("/search", json={"query": "vectors"}, headers=headers)
        assert res.status_code == 401 and res.json()["error"] == "unauthorized"
        assert KEY not in res.text
    for path in ("/config", "/documents/qdrant"):
        assert client.get(path).status_code == 401
    # Probes and the page stay open (a container healthcheck needs no key).
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json()["ready"] is True
    assert client.get("/").status_code == 200
    config = client.get("/config", headers=AUTH)
    assert config.status_code == 200 and config.json()["server"]["auth"] is True
    assert KEY not in config.text and KEY not in caplog.text


def test_config_hides_the_qdrant_api_key(make_retriever: Callable[..., HybridRetriever]) -> None:
    r = make_retriever("memory")
    secret = "qdrant-cloud-secret"
    r.config = RetrieverConfig.validate_data({**r.config.model_dump(), "store": {**r.config.store.model_dump(), "api_key": secret}})
    with TestClient(create_app(r)) as client:
        res = client.get("/config")
    assert res.status_code == 200 and secret not in res.text
    assert res.json()["retriever"]["store"]["api_key"] == "(set)"


def test_passwords_in_a_qdrant_url_are_hidden() -> None:
    from hybrid_retriever_server.app import _without_password

    assert _without_password("https://admin:pa55@qdrant.example:6333/x") == "https://admin:***@qdrant.example:6333/x"
    assert _without_password("http://qdrant:6333") == "http://qdrant:6333"


def test_limits_on_body_batch_query_and_k(make_retriever: Callable[..., HybridRetriever]) -> None:
    r = make_retriever("edge")
    r.add_texts(["Qdrant stores vectors."], ids=["q"])
    limits = ServerSettings(max_body_bytes=2000, max_batch=2, max_queries=2, max_query_chars=50, max_k=5)
    with TestClient(create_app(r, limits)) as client:
        def status(path: str, body: dict[str, Any]) -> tuple[int, str]:
            res = client.post(path, json=body)
            return res.status_code, res.json()["error"] if res.status_code != 200 else "ok"

        assert status("/documents", {"documents": [{"id": "big", "text": "x" * 3000}]}) == (413, "too_large")
        docs = [{"id": str(i), "text": "t"} for i in range(3)]
        assert status("/documents", {"documents": docs}) == (413, "too_large")
        assert status("/documents", {"documents": docs[:2]}) == (200, "ok")
        assert status("/search", {"query": "v" * 51}) == (413, "too_large")
        assert status("/search/batch", {"queries": ["a", "b", "c"]}) == (413, "too_large")
        assert status("/search", {"query": "vectors", "k": 6}) == (400, "invalid_input")
        assert status("/search", {"query": "vectors", "k": 5}) == (200, "ok")
        # A body without Content-Length (streamed) is counted as it arrives.
        chunks = iter([b'{"query": "', b"v" * 2500, b'"}'])
        res = client.post("/search", content=chunks, headers={"Content-Type": "application/json"})
        assert res.status_code == 413
    assert r.count() == 3  # the refused batches stored nothing


def test_cors_is_off_by_default_and_configurable(make_retriever: Callable[..., HybridRetriever]) -> None:
    r = make_retriever("edge")
    preflight = {"Origin": "http://app.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "X-API-Key"}
    with TestClient(create_app(r)) as client:
        assert "access-control-allow-origin" not in client.options("/search", headers=preflight).headers
    with TestClient(create_app(r, ServerSettings(cors_origins=["http://app.example"]))) as client:
        res = client.options("/search", headers=preflight)
        assert res.headers["access-control-allow-origin"] == "http://app.example"
        assert "x-api-key" in res.headers["access-control-allow-headers"].lower()


def test_settings_from_environment() -> None:
    env = {"HYBRID_RETRIEVER_API_KEY": "abc", "HYBRID_RETRIEVER_MAX_K": "7", "HYBRID_RETRIEVER_CORS_ORIGINS": "http://a, http://b"}
    s = ServerSettings.from_env(env)
    assert s.api_key is not None and s.api_key.get_secret_value() == "abc" and s.max_k == 7
    assert s.cors_origins == ["http://a", "http://b"]
    assert "abc" not in repr(s) and "abc" not in str(s.public())


# ------------------------------------------------------------------ lifecycle, concurrency


def test_app_opens_the_index_once_and_closes_it_at_shutdown(tmp_path: Any, dense_branch: Any) -> None:
    from hybrid_retriever.branches import build_branch

    cfg = RetrieverConfig.model_validate({"store": {"kind": "edge", "path": str(tmp_path / "idx")}, "runtime": {"show_progress": False}})
    opened: list[HybridRetriever] = []

    def open_index() -> HybridRetriever:
        r = HybridRetriever(cfg, branches=[dense_branch if c.kind == "dense" else build_branch(c) for c in cfg.branches])
        opened.append(r)
        return r

    with TestClient(create_app(open_index)) as client:
        post_docs = client.post("/documents", json={"documents": DOCS[:3]})
        assert post_docs.status_code == 200
        assert client.get("/ready").json()["documents"] == 3
    assert len(opened) == 1
    # Shut down: the Edge folder is released and reopens with what the service wrote.
    with HybridRetriever.open(str(tmp_path / "idx")) as again:
        assert again.count() == 3


async def test_concurrent_requests_all_succeed(make_retriever: Callable[..., HybridRetriever]) -> None:
    r = make_retriever("edge")
    r.add_texts([t for _, t, _ in SMALL_CORPUS], [m for _, _, m in SMALL_CORPUS], [i for i, _, _ in SMALL_CORPUS])
    app = create_app(r)
    queries = ["vector database", "reciprocal rank fusion", "a tower in Paris", "cats sleeping"] * 6
    expected = {q: r.search(q, k=3)[0].id for q in set(queries)}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answers = await asyncio.gather(*(client.post("/search", json={"query": q, "k": 3}) for q in queries))
    assert all(a.status_code == 200 for a in answers)
    assert [a.json()["hits"][0]["id"] for a in answers] == [expected[q] for q in queries]


def test_openapi_documents_every_endpoint(served: tuple[TestClient, HybridRetriever]) -> None:
    client, _ = served
    spec = client.get("/openapi.json").json()
    assert {"/documents", "/documents/{doc_id}", "/search", "/search/batch", "/health", "/ready", "/config"} <= set(spec["paths"])
    assert "X-API-Key" in str(spec["components"]["securitySchemes"])
    assert client.get("/docs").status_code == 200
