"""End to end: `hybrid-retriever serve --config` with a rerank stage on loopback, `eval --server`
against it (metrics equal to a local `eval` of the same index and config), and the demo page's
rerank toggle in headless Chromium.

The collection is a tiny BEIR folder written here from the bundled demo corpus; the reranker a
tiny random cross-encoder (tests/rerank_fixtures.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest
from typer.testing import CliRunner

from hybrid_retriever.cli import DEMO_QUERIES, app, demo_corpus_path
from rerank_fixtures import TINY_MAX_LENGTH, build_tiny_cross_encoder
from tests.test_server_browser import headless_page, serving

KEY = "eval-test-key"
METRICS = "ndcg@10,recall@20,mrr@10,map@20,precision@5,judged@10"


def write_collection(root: Path) -> Path:
    """A BEIR folder: every fourth demo document plus the demo queries' answers; queries are the demo's
    queries (their expected document relevant, grade 2) and documents' titles (that document, grade 1)."""
    rows = [json.loads(line) for line in demo_corpus_path().read_text(encoding="utf-8").splitlines() if line.strip()]
    expected = {q.expected for q in DEMO_QUERIES}
    docs = [r for i, r in enumerate(rows) if i % 4 == 0 or r["id"] in expected]
    queries = {f"demo{i}": q.text for i, q in enumerate(DEMO_QUERIES)}
    qrels = {f"demo{i}": {q.expected: 2} for i, q in enumerate(DEMO_QUERIES)}
    for r in docs[::3]:
        queries[f"title-{r['id']}"] = r["title"]
        qrels[f"title-{r['id']}"] = {r["id"]: 1}
    (root / "qrels").mkdir(parents=True)
    with open(root / "corpus.jsonl", "w", encoding="utf-8") as f:
        for r in docs:
            f.write(json.dumps({"_id": r["id"], "title": r["title"], "text": r["text"]}) + "\n")
    with open(root / "queries.jsonl", "w", encoding="utf-8") as f:
        for q, t in queries.items():
            f.write(json.dumps({"_id": q, "text": t}) + "\n")
    with open(root / "qrels" / "test.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, rel in qrels.items():
            for d, g in rel.items():
                f.write(f"{q}\t{d}\t{g}\n")
    return root


def invoke(*args: Any, env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    return result


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A local `eval` (which builds the index), then `serve --index --config` on 127.0.0.1 over that index."""
    root = tmp_path_factory.mktemp("served-eval")
    beir = write_collection(root / "beir")
    model = build_tiny_cross_encoder(root / "reranker")
    cfg = root / "served.yaml"
    cfg.write_text(
        f"rerank:\n  enabled: true\n  model: {model}\n  max_length: {TINY_MAX_LENGTH}\n  depth: 10\n"
        "runtime:\n  show_progress: false\n",
        encoding="utf-8",
    )
    index = root / "index"
    local = invoke("eval", beir, "--index", index, "--config", cfg, "--metrics", METRICS, "--out", root / "local",
                   "--no-plots", "--no-progress")
    assert local.exit_code == 0, local.output
    with serving(root, ["--index", str(index), "--config", str(cfg)], key=KEY) as url:
        yield {"url": url, "root": root, "beir": beir, "index": index, "local": root / "local"}


def test_eval_through_the_service_equals_a_local_eval(served: dict[str, Any]) -> None:
    out = served["root"] / "via-server"
    # The index is held by the service: a local eval is refused, with the way out named.
    direct = invoke("eval", served["beir"], "--index", served["index"], "--metrics", METRICS, "--no-progress")
    assert direct.exit_code == 2 and "--server" in direct.output
    via = invoke("eval", served["beir"], "--server", served["url"], "--api-key", KEY, "--metrics", METRICS,
                 "--batch-size", 4, "--out", out, "--no-progress")
    assert via.exit_code == 0, via.output
    local = json.loads((served["local"] / "eval.json").read_text())
    remote = json.loads((out / "eval.json").read_text())
    assert remote["schema"] == local["schema"] and remote["metrics"] == local["metrics"]
    assert remote["n_queries"] == local["n_queries"] == len(remote["per_query"]["qids"])
    assert set(remote["systems"]) == {"fused", "reranked"}  # the service has a rerank stage: both orders scored
    for system in ("fused", "reranked"):
        got, want = remote["systems"][system]["metrics"], local["systems"][system]["metrics"]
        assert got == pytest.approx(want, abs=1e-12), system
        for metric, values in local["per_query"][system].items():
            assert remote["per_query"][system][metric] == pytest.approx(values, abs=1e-6), (system, metric)
    assert remote["systems"]["reranked"]["metrics"] != remote["systems"]["fused"]["metrics"]  # the reranker did reorder
    assert remote["config"]["rerank"]["enabled"] is True and remote["data"]["server"] == served["url"]
    # The same report: the metrics table printed and written, one row per system.
    md = (out / "eval.md").read_text()
    assert md in via.output and "| fused |" in md and "| reranked (depth 10) |" in md and (out / "metric_vs_depth.png").is_file()


def test_eval_through_the_service_needs_the_key_and_refuses_local_only_options(served: dict[str, Any]) -> None:
    refused = invoke("eval", served["beir"], "--server", served["url"], "--no-progress", env={"HYBRID_RETRIEVER_API_KEY": "wrong"})
    assert refused.exit_code == 2 and "401" in refused.output and KEY not in refused.output
    env_key = invoke("eval", served["beir"], "--server", served["url"], "--metrics", "ndcg@10", "--no-progress",
                     env={"HYBRID_RETRIEVER_API_KEY": KEY})
    assert env_key.exit_code == 0 and "| fused |" in env_key.output
    deep = invoke("eval", served["beir"], "--server", served["url"], "--api-key", KEY, "--metrics", "recall@1000", "--no-progress")
    assert deep.exit_code == 2 and "HYBRID_RETRIEVER_MAX_K" in deep.output
    both = invoke("eval", served["beir"], "--server", served["url"], "--index", served["index"], "--no-progress")
    assert both.exit_code == 2 and "--index PATH" in both.output
    config = invoke("eval", served["beir"], "--server", served["url"], "--config", served["root"] / "served.yaml")
    assert config.exit_code == 2 and "own configuration" in config.output


def test_query_through_the_service_shows_the_rerank_stage(served: dict[str, Any]) -> None:
    via = invoke("query", DEMO_QUERIES[0].text, "--server", served["url"], "--api-key", KEY, "--json")
    assert via.exit_code == 0, via.output
    hits = json.loads(via.output)
    assert [h["rerank"]["rank"] for h in hits] == sorted(h["rerank"]["rank"] for h in hits)
    assert all(h["rerank"]["fused_rank"] >= 1 for h in hits)


def test_demo_page_rerank_toggle_in_headless_chromium(served: dict[str, Any], tmp_path: Path) -> None:
    shots = Path(os.environ.get("HR_SCREENSHOT_DIR", tmp_path))
    with headless_page(viewport={"width": 1400, "height": 900}) as page:
        page.goto(served["url"] + "/")
        page.fill("#api-key", KEY)
        page.dispatch_event("#api-key", "change")
        page.wait_for_selector("body[data-config=loaded]")
        assert page.is_enabled("#rerank") and page.is_checked("#rerank")  # on by default where the server reranks
        assert "top 10" in page.inner_text("#rerank-note")
        page.fill("#query", DEMO_QUERIES[1].text)
        page.press("#query", "Enter")
        page.wait_for_function("document.querySelector('#results-head').innerText.includes('rerank')")
        rows = page.locator("#results-body tr")
        rows.first.wait_for()
        ranks = [rows.nth(i).locator("td.rerank").get_attribute("data-rank") for i in range(min(rows.count(), 10))]
        assert ranks == [str(i) for i in range(1, len(ranks) + 1)]  # order "reranker": the page shows the model's order
        api = json.loads(invoke("query", DEMO_QUERIES[1].text, "--server", served["url"], "--api-key", KEY, "--json",
                                "--k", 10).output)
        assert [rows.nth(i).get_attribute("data-id") for i in range(len(api))] == [h["id"] for h in api]
        page.screenshot(path=str(shots / "demo-page-rerank.png"), full_page=True)
        page.uncheck("#rerank")  # the fused order, without the rerank column
        page.wait_for_function("!document.querySelector('#results-head').innerText.includes('rerank')")
        assert page.locator("#results-body td.rerank").count() == 0


def test_openapi_docs_render_offline_in_headless_chromium(served: dict[str, Any]) -> None:
    """/docs renders with every request outside the service refused (as on a machine offline)."""
    outside: list[str] = []

    def only_the_service(route: Any) -> None:
        if route.request.url.startswith(served["url"]):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with headless_page() as page:
        page.route("**/*", only_the_service)
        page.goto(served["url"] + "/docs")
        page.wait_for_selector(".opblock-summary-path[data-path='/search/batch']", timeout=30_000)
        assert page.locator(".opblock").count() >= 8
    assert outside == []


class InProcessService:
    """The core's ServedIndex over the real app in-process (TestClient), as ServiceClient is over HTTP."""

    def __init__(self, client: Any) -> None:
        self.url, self.client, self.requests = "http://testserver", client, []

    def describe(self) -> dict[str, Any]:
        cfg = self.client.get("/config").json()
        return {"config": cfg["retriever"], "rerank_available": cfg["rerank_available"],
                "max_k": cfg["server"]["max_k"], "max_queries": cfg["server"]["max_queries"]}

    def search_batch(self, queries: Any, k: int, *, rerank: bool) -> list[list[Any]]:
        from hybrid_retriever_server.client import hit_from_json

        self.requests.append(len(queries))
        res = self.client.post("/search/batch", json={"queries": list(queries), "k": k, "rerank": rerank})
        assert res.status_code == 200, res.text
        return [[hit_from_json(h) for h in hits] for hits in res.json()["results"]]


def test_evaluate_served_equals_evaluate_on_a_server_without_rerank(make_retriever: Any) -> None:
    """On qdrant-client's :memory: store: the served fused ranking scores as the local evaluation's
    fused system; batches respect the server's max_queries; no rerank stage, no reranked system."""
    from fastapi.testclient import TestClient

    from hybrid_retriever.errors import InvalidInputError
    from hybrid_retriever.evaluation.datasets import JudgedQueries
    from hybrid_retriever.evaluation.runner import evaluate
    from hybrid_retriever.evaluation.served import evaluate_served
    from hybrid_retriever_server import ServerSettings, create_app
    from tests.conftest import SMALL_CORPUS

    r = make_retriever("memory")
    r.add_texts([t for _, t, _ in SMALL_CORPUS], [m for _, _, m in SMALL_CORPUS], [i for i, _, _ in SMALL_CORPUS])
    queries = {"q1": "vector database in Rust", "q2": "ranking with term frequency", "q3": "a tower in France",
               "q4": "pets that sleep", "q5": "fusing ranked lists"}
    qrels = {"q1": {"qdrant": 2}, "q2": {"bm25": 1, "rrf": 1}, "q3": {"paris": 1}, "q4": {"cats": 1, "python": 0},
             "q5": {"rrf": 2, "colbert": 1}}
    judged = JudgedQueries(queries=queries, qrels=qrels, name="small")
    metrics = "ndcg@5,recall@8,mrr@3,map@8,precision@2"
    local = evaluate(r, judged, metrics, progress=False)
    with TestClient(create_app(r, ServerSettings(max_queries=2, max_k=8))) as client:
        service = InProcessService(client)
        served = evaluate_served(service, judged, metrics, batch_size=5, progress=False)
        assert service.requests == [2, 2, 1]  # --batch-size capped at the server's max_queries
        with pytest.raises(InvalidInputError, match="HYBRID_RETRIEVER_MAX_K"):
            evaluate_served(service, judged, "ndcg@10", progress=False)
    assert set(served.systems) == {"fused"} and served.significance == []
    assert served.systems["fused"].mean == pytest.approx(local.systems["fused"].mean, abs=1e-12)
    for m, values in local.systems["fused"].per_query.items():
        assert served.systems["fused"].per_query[m] == pytest.approx(values, abs=1e-12)
    assert served.as_dict()["schema"] == local.as_dict()["schema"] and served.qids == local.qids
