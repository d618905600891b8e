"""The OpenAPI docs work offline: /docs (Swagger UI) loads every asset from the app; no ReDoc (its bundle
fetches a logo from its CDN)."""

from __future__ import annotations

import re
from typing import Callable

from fastapi.testclient import TestClient

from hybrid_retriever import HybridRetriever
from hybrid_retriever_server import ServerSettings, create_app

#: Where an HTML page loads something from: src="..." and href="...", and Swagger UI's url: '...'.
ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|\burl\s*:\s*["']([^"']+)["']""")


def test_docs_page_loads_nothing_from_outside(make_retriever: Callable[..., HybridRetriever]) -> None:
    r = make_retriever("edge")
    with TestClient(create_app(r, ServerSettings(api_key="docs-key", demo_page=False))) as client:
        assert client.get("/redoc").status_code == 404
        res = client.get("/docs")  # no key needed: the docs are public, as the OpenAPI schema is
        assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
        html = res.text
        assert not re.search(r"https?://", html), re.findall(r"https?://[^\s\"'<>]+", html)
        assert "fonts.googleapis" not in html
        urls = {a or b for a, b in ASSET.findall(html)}
        scripts = [u for u in urls if u.endswith(".js")]
        assert scripts and any(u.endswith(".css") for u in urls), urls
        for url in urls:
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > (100_000 if url.endswith(".js") else 100), url
        assert "/openapi.json" in urls
        assert client.get("/openapi.json").json()["paths"]


def test_swagger_ui_reads_openapi_3_1(make_retriever: Callable[..., HybridRetriever]) -> None:
    """FastAPI writes OpenAPI 3.1, which Swagger UI renders from version 5 on (its OAS 3.1 plugin)."""
    r = make_retriever("edge")
    with TestClient(create_app(r)) as client:
        assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
        bundle = client.get("/docs-assets/swagger-ui-bundle.js").text
    assert "isOAS31" in bundle


def test_search_schemas_carry_examples_that_work_on_the_first_click(make_retriever: Callable[..., HybridRetriever]) -> None:
    """/docs "Try it out" starts from the schema's example: it must be a valid request (no additionalProp1 weights)."""
    r = make_retriever("edge")
    r.add_texts(["The axolotl regrows a missing leg.", "Vincenzo Peruggia stole the Mona Lisa."], ids=["a", "b"])
    with TestClient(create_app(r)) as client:
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
        for name, path in (("SearchBody", "/search"), ("SearchBatchBody", "/search/batch")):
            (example,) = schemas[name]["examples"]
            res = client.post(path, json=example)
            assert res.status_code == 200, (name, res.text)
        weights = schemas["SearchBody"]["properties"]["weights"]["examples"][0]
        assert set(weights) == set(r.config.branch_names)  # the default branches' names, not additionalProp1
        body = {**schemas["SearchBody"]["examples"][0], "weights": weights,
                "fusion": schemas["SearchBody"]["properties"]["fusion"]["examples"][1]}
        assert client.post("/search", json=body).status_code == 200
