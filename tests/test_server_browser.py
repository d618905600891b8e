"""End to end: `hybrid-retriever serve` on loopback, the CLI searching through it, and the demo
page driven in headless Chromium (Debian's `chromium`, through Playwright's Python API).

Chromium is a system package (`apt-get install chromium`); without it these tests skip on a
developer machine and fail in CI (CI=true), so the browser test never silently goes missing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
from typer.testing import CliRunner

from hybrid_retriever import HybridRetriever, RetrieverConfig
from hybrid_retriever.cli import DEMO_QUERIES, app, demo_corpus_path
from hybrid_retriever.sources import read_jsonl

KEY = "browser-test-key"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _need(what: str, found: bool) -> None:
    if not found:
        message = f"{what} is missing (CI installs it: see .ci/run and the Makefile's browser-deps)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    _need("chromium", path is not None)
    return path  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as res:  # noqa: S310 (loopback)
        return json.loads(res.read())


def post_json(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", "X-API-Key": KEY}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as res:  # noqa: S310 (loopback)
        return json.loads(res.read())


@contextmanager
def serving(root: Path, args: list[str], key: str = KEY) -> Iterator[str]:
    """``hybrid-retriever serve ARGS`` on a free loopback port with API key ``key``: its URL once
    /ready answers; on exit SIGTERM, and a clean shutdown is checked (log in ``root/serve.log``)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = root / "serve.log"
    log = open(log_path, "w")
    env = {**os.environ, "HYBRID_RETRIEVER_API_KEY": key, "HF_HUB_OFFLINE": "1"}
    cli = Path(sys.executable).with_name("hybrid-retriever")
    proc = subprocess.Popen(
        [str(cli), "serve", *args, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"serve exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                if get_json(url + "/ready")["ready"]:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"serve was not ready in 180 s:\n{log_path.read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()  # SIGTERM: uvicorn shuts down gracefully and the app closes the index
        try:
            proc.wait(timeout=60)
        finally:
            log.close()
    # uvicorn shuts down, then re-raises the signal it caught: exit by SIGTERM, no traceback.
    text = log_path.read_text()
    assert proc.returncode in (0, -15) and "Traceback" not in text, text


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`hybrid-retriever serve` on 127.0.0.1 over an Edge index of the bundled demo corpus."""
    root = tmp_path_factory.mktemp("served")
    index = root / "index"
    cfg = RetrieverConfig.model_validate({"store": {"kind": "edge", "path": str(index)}, "runtime": {"show_progress": False}})
    with HybridRetriever(cfg) as r:
        r.add_documents(list(read_jsonl(demo_corpus_path())))
    with serving(root, ["--index", str(index)]) as url:
        yield {"url": url, "index": index, "log": root / "serve.log"}
    # Graceful shutdown released the Edge folder: it opens again, intact.
    with HybridRetriever.open(str(index)) as again:
        assert again.count() >= 200


def test_cli_searches_a_served_index_through_the_service(server: dict[str, Any]) -> None:
    runner = CliRunner()
    # The folder is held by the service, so opening it directly is refused, with the way out named.
    direct = runner.invoke(app, ["query", "who was Peruggia", "--index", str(server["index"])])
    assert direct.exit_code == 2 and "--server" in direct.output
    via = runner.invoke(
        app, ["query", DEMO_QUERIES[0].text, "--server", server["url"], "--json"], env={"HYBRID_RETRIEVER_API_KEY": KEY}
    )
    assert via.exit_code == 0, via.output
    hits = json.loads(via.output)
    assert hits[0]["id"] == DEMO_QUERIES[0].expected and set(hits[0]["provenance"]) == {"bm25", "dense"}
    refused = runner.invoke(app, ["query", "x", "--server", server["url"]], env={"HYBRID_RETRIEVER_API_KEY": "wrong"})
    assert refused.exit_code == 2 and "401" in refused.output and KEY not in refused.output


@contextmanager
def headless_page(**page_options: Any) -> Iterator[Any]:
    """A page in headless Chromium (Debian's, through Playwright), closed on exit."""
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("playwright (pip)", False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            yield browser.new_page(**page_options)
        finally:
            browser.close()


def test_demo_page_in_headless_chromium(server: dict[str, Any], tmp_path: Path) -> None:
    paraphrase = DEMO_QUERIES[1]  # "which amphibian can regenerate a missing leg": the dense branch finds it, BM25 does not
    shots = Path(os.environ.get("HR_SCREENSHOT_DIR", tmp_path))
    with headless_page(viewport={"width": 1400, "height": 900}) as page:
        page.goto(server["url"] + "/")
        # Before the key: /config is refused, the page says so and sends no fusion or weights of its own.
        page.wait_for_selector("body[data-config=missing]")
        assert "Enter the API key" in page.inner_text("#summary")
        with page.expect_request(lambda req: req.url.endswith("/search")) as sent:
            page.fill("#query", paraphrase.text)
            page.press("#query", "Enter")
        body = json.loads(sent.value.post_data or "{}")
        assert "fusion" not in body and "weights" not in body, body
        page.fill("#api-key", KEY)
        page.dispatch_event("#api-key", "change")
        page.wait_for_selector("body[data-config=loaded]")  # weights and fusion come from /config (needs the key)
        assert page.input_value("#weight-dense") == "0.5" and page.input_value("#method") == "adaptive"
        page.fill("#query", paraphrase.text)
        page.press("#query", "Enter")
        first = page.locator("#results-body tr").first
        first.wait_for()
        assert first.get_attribute("data-id") == paraphrase.expected
        dense = first.locator("td.branch-dense")
        bm25 = first.locator("td.branch-bm25")
        assert dense.get_attribute("data-rank") == "1" and float(dense.get_attribute("data-raw") or "nan") > 0.3
        assert bm25.get_attribute("data-rank") == ""  # BM25 did not return it: shown as –
        assert "#–" in bm25.inner_text() and "#1" in dense.inner_text()
        headers = page.locator("#results-head th").all_inner_texts()
        assert headers[:3] == ["#", "id", "fused"] and headers[3].startswith("bm25") and headers[4].startswith("dense")
        page.screenshot(path=str(shots / "demo-page.png"), full_page=True)

        # A rare name: BM25 ranks the Mona Lisa note first. Toggle BM25 off and the dense branch alone
        # decides: the page shows what the API answers for those weights.
        rare = DEMO_QUERIES[0]
        page.fill("#query", rare.text)
        page.press("#query", "Enter")
        page.wait_for_function(f"document.querySelector('#results-body tr')?.dataset.id === '{rare.expected}'")
        page.uncheck("#use-bm25")
        page.wait_for_function("document.querySelector('#results-head').innerText.includes('bm25 (w 0.00)')")
        dense_only = post_json(server["url"] + "/search", {"query": rare.text, "weights": {"bm25": 0, "dense": 1}})
        top = page.locator("#results-body tr").first.get_attribute("data-id")
        assert top == dense_only["hits"][0]["id"] != rare.expected
        assert "off" in (page.locator("#results-body tr td.branch-bm25").first.get_attribute("class") or "")
        page.check("#use-bm25")

        # One hit per source: each row names how many of its entries matched (the demo corpus has no
        # chunks, so each document is its own group of one).
        page.check("#group")
        page.wait_for_function("document.querySelector('#results-body tr .group') !== null")
        assert "1 of its chunks matched (ranks " in page.locator("#results-body tr .group").first.inner_text()
        assert page.inner_text("#summary").split()[1] == "sources"
        page.uncheck("#group")

        # Add a document from the page and find it.
        page.fill("#doc-id", "e2e-new")
        page.fill("#doc-text", "The zorblat is a fictional lantern fish that glows violet in deep water.")
        page.fill("#doc-meta", '{"topic": "biology"}')
        page.click("#add-form button")
        page.wait_for_function("document.querySelector('#add-result').innerText.includes('added e2e-new')")
        page.fill("#query", "zorblat violet glow")
        page.press("#query", "Enter")
        page.wait_for_function("document.querySelector('#results-body tr')?.dataset.id === 'e2e-new'")
        page.screenshot(path=str(shots / "demo-page-added.png"), full_page=True)
    assert (shots / "demo-page.png").stat().st_size > 10_000
