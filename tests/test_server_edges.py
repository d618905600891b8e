"""The HTTP service's edges, attacked for real: raw socket requests against `hybrid-retriever serve`
(uvicorn) on 127.0.0.1, over a real Edge index (issue 19, section 3 and the service side of section 2).

Each attack comes with its positive control in the same test (the same request made harmless
is served, so the refusal is the check's doing and the attack reaches the server): ambiguous
framing (Content-Length and Transfer-Encoding), bodies over the limit whatever the framing, a
body without the key (refused before it is read, the server's memory stays flat), weights whose
sum overflows, ids with control characters, Host headers of a DNS-rebinding page, and a write the
store fails after applying it (a tracker journal removed under the live shard).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hybrid_retriever import HybridRetriever, RetrieverConfig
from hybrid_retriever.cli import app as cli_app
from hybrid_retriever.errors import ConfigError, InvalidInputError
from hybrid_retriever.fusion import BranchList, interpolate, weighted_rrf
from hybrid_retriever_server.app import create_app
from hybrid_retriever_server.guard import host_name
from hybrid_retriever_server.settings import ServerSettings
from hybrid_retriever_server.writes import PROBE_ID

KEY = "edge-test-key"
MiB = 1024 * 1024
DEFAULT_LIMIT = ServerSettings().max_body_bytes  # 4 MiB: the servers below run with the default limits
#: Two BM25 branches: the index loads in seconds (no dense model) and has two weights to overflow.
# The language named: with `auto` a corpus this small is still undecided, and every write re-encodes it first.
BRANCHES = [{"kind": "bm25", "language": "english", "weight": 0.5},
            {"kind": "bm25", "name": "bm25b", "language": "english", "weight": 0.5}]
DOCS = [
    ("qdrant", "Qdrant is a vector database written in Rust that stores dense and sparse vectors."),
    ("bm25", "BM25 ranks documents by term frequency and inverse document frequency."),
    ("a b", "An id with a space in it is served through a percent-encoded URL."),
]


# ------------------------------------------------------------------------ serving


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_index(path: Path) -> None:
    cfg = RetrieverConfig.model_validate({"store": {"kind": "edge", "path": str(path)}, "branches": BRANCHES,
                                          "runtime": {"show_progress": False}})
    with HybridRetriever(cfg) as r:
        r.add_texts([t for _, t in DOCS], ids=[i for i, _ in DOCS])


@contextmanager
def serving(root: Path, env: dict[str, str]) -> Iterator[dict[str, Any]]:
    """``hybrid-retriever serve --index`` on a free loopback port (a subprocess, real uvicorn), once /ready answers."""
    index = root / "index"
    build_index(index)
    port = free_port()
    log_path = root / "serve.log"
    log = open(log_path, "w")
    cli = Path(sys.executable).with_name("hybrid-retriever")
    proc = subprocess.Popen(
        [str(cli), "serve", "--index", str(index), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"serve exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as res:  # noqa: S310 (loopback)
                    if json.loads(res.read())["ready"]:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"serve was not ready in 180 s:\n{log_path.read_text()}")
            time.sleep(0.3)
        yield {"port": port, "pid": proc.pid, "index": index, "log": log_path}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        finally:
            log.close()


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The default: no API key."""
    with serving(tmp_path_factory.mktemp("open"), {"HYBRID_RETRIEVER_API_KEY": ""}) as s:
        yield s


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serving(tmp_path_factory.mktemp("keyed"), {"HYBRID_RETRIEVER_API_KEY": KEY}) as s:
        yield s


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# ---------------------------------------------------------------------- raw HTTP


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


def read_response(sock: socket.socket) -> Response:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a response: {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return Response(int(lines[0].split()[1]), headers, body[:length])


def request_head(method: str, path: str, port: int, headers: dict[str, str] | None = None, host: str | None = "default") -> bytes:
    lines = [f"{method} {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {f'127.0.0.1:{port}' if host == 'default' else host}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def raw(port: int, data: bytes, timeout: float = 30) -> Response:
    """Send ``data`` as is on a fresh loopback connection and read the response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:  # refused early: the server answered and closed before taking the whole body
            pass
        return read_response(s)


def send_json(port: int, method: str, path: str, body: Any, headers: dict[str, str] | None = None, host: str | None = "default") -> Response:
    payload = json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json", "Content-Length": str(len(payload)), **(headers or {})}
    return raw(port, request_head(method, path, port, hdrs, host) + payload)


def stream_body(port: int, head: bytes, total: int) -> tuple[Response | None, int]:
    """Send ``head`` then up to ``total`` bytes of chunked body, 1 MiB per chunk, while reading the answer
    on another thread; stop when the server closes the connection. The answer and the bytes sent."""
    block = b"%x\r\n%s\r\n" % (MiB, b"x" * MiB)
    answer: list[Response] = []
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(head)
        reader = threading.Thread(target=lambda: answer.append(read_response(s)), daemon=True)
        reader.start()
        try:
            while sent < total:
                s.sendall(block)
                sent += MiB
            s.sendall(b"0\r\n\r\n")
        except OSError:  # the server closed the connection: the rest of the body was never read
            pass
        reader.join(60)
    return (answer[0] if answer else None), sent


def chunked(payload: bytes, size: int = 64 * 1024) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(payload[i : i + size]), payload[i : i + size]) for i in range(0, len(payload), size)]
    return b"".join(parts) + b"0\r\n\r\n"


def search_body(n_bytes: int) -> bytes:
    """A valid /search JSON body of about ``n_bytes`` (a long query: over the limit only by its size)."""
    return json.dumps({"query": "vectors " + "x" * max(0, n_bytes - 30), "k": 1}).encode()


# ------------------------------------------------------------------------ framing


def test_content_length_with_transfer_encoding_is_refused(open_server: dict[str, Any]) -> None:
    port = open_server["port"]
    # 6 MiB of documents, each within the route's own limits, so only the body limit stands in the way.
    docs = [{"id": f"smuggled-{n}", "text": "filler " * 14_200} for n in range(64)]
    big = json.dumps({"documents": docs}).encode()
    assert len(big) > 6 * MiB
    head = {"Content-Type": "application/json", "Content-Length": "10", "Transfer-Encoding": "chunked"}
    # The attack (answered 200 before and stored the documents: the limit trusted Content-Length,
    # the server read the chunked body).
    smuggled = raw(port, request_head("POST", "/documents", port, head) + chunked(big))
    assert smuggled.status == 400 and smuggled.json()["error"] == "bad_framing"
    assert smuggled.headers.get("connection") == "close"
    assert raw(port, request_head("GET", "/documents/smuggled-0", port)).status == 404
    # A small body framed both ways is refused too: the two headers disagree on where the body ends.
    small = json.dumps({"query": "vectors", "k": 1}).encode()
    assert raw(port, request_head("POST", "/search", port, head) + chunked(small)).status == 400
    # Controls: the same small body chunked alone is served (chunked framing itself is fine) ...
    ok = raw(port, request_head("POST", "/search", port, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}) + chunked(small))
    assert ok.status == 200 and ok.json()["hits"][0]["id"] == "qdrant"
    # ... and so is a body with Content-Length alone; conflicting Content-Length headers are refused.
    assert send_json(port, "POST", "/search", {"query": "vectors", "k": 1}).status == 200
    twice = request_head("POST", "/search", port, {"Content-Type": "application/json"})[:-2] + (
        f"Content-Length: {len(small)}\r\nContent-Length: 5\r\n\r\n").encode() + small
    assert raw(port, twice).status == 400


def test_bodies_over_the_limit_are_refused_whatever_the_framing(open_server: dict[str, Any]) -> None:
    port, pid = open_server["port"], open_server["pid"]
    big = search_body(6 * MiB)
    before = rss_bytes(pid)
    by_length = raw(port, request_head("POST", "/search", port, {"Content-Type": "application/json", "Content-Length": str(len(big))}) + big)
    assert by_length.status == 413 and by_length.json()["error"] == "too_large"
    by_chunks = raw(port, request_head("POST", "/search", port, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}) + chunked(big))
    assert by_chunks.status == 413 and by_chunks.json()["error"] == "too_large"
    # Counted as it arrived and dropped at the limit: the server holds at most the limit, never the body.
    assert rss_bytes(pid) - before < 3 * DEFAULT_LIMIT
    # Control: a body just under the limit, chunked, is read whole and reaches the route (its query is too long: 413 from the route).
    under = search_body(DEFAULT_LIMIT - 1024)
    res = raw(port, request_head("POST", "/search", port, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}) + chunked(under))
    assert res.status == 413 and "characters in a query" in res.json()["detail"]


# ----------------------------------------------------------------------------- key


def test_a_body_without_the_key_is_refused_before_it_is_read(keyed_server: dict[str, Any]) -> None:
    port, pid = keyed_server["port"], keyed_server["pid"]
    # Headers only, announcing 160 MiB: the 401 comes back although no byte of the body was sent.
    for framing in ({"Content-Length": str(160 * MiB)}, {"Transfer-Encoding": "chunked"}):
        res = raw(port, request_head("POST", "/documents", port, {"Content-Type": "application/json", **framing}), timeout=10)
        assert res.status == 401 and res.json()["error"] == "unauthorized" and res.headers["connection"] == "close"
    # Control: with the key, the same announced Content-Length is judged by size (413) ...
    res = raw(port, request_head("POST", "/documents", port, {"Content-Type": "application/json", "X-API-Key": KEY,
                                                              "Content-Length": str(160 * MiB)}), timeout=10)
    assert res.status == 413
    # ... and a small announced body is waited for: the server reads bodies that come with the key.
    with socket.create_connection(("127.0.0.1", port), timeout=1.5) as s:
        s.sendall(request_head("POST", "/search", port, {"Content-Type": "application/json", "X-API-Key": KEY, "Content-Length": "40"}))
        with pytest.raises(socket.timeout):
            s.recv(1)

    # The attack of issue 19: 160 MiB streamed chunked without the key, with and without a misleading
    # Content-Length (before: read whole, then 401; server RSS +660 MiB). Now the server answers at once,
    # closes the connection and never reads the body: its memory stays flat.
    for framing, status in (({"Content-Length": "10", "Transfer-Encoding": "chunked"}, 400), ({"Transfer-Encoding": "chunked"}, 401)):
        before = rss_bytes(pid)
        answer, sent = stream_body(port, request_head("POST", "/documents", port, {"Content-Type": "application/json", **framing}), 160 * MiB)
        grown = rss_bytes(pid) - before
        assert answer is not None and answer.status == status, framing
        assert sent < 40 * MiB, f"the server took {sent} bytes of an unauthenticated body"
        assert grown < 16 * MiB, f"the server grew by {grown} bytes"
    # The service is unharmed and the key still works.
    assert send_json(port, "POST", "/search", {"query": "vectors", "k": 1}, {"X-API-Key": KEY}).status == 200
    assert send_json(port, "POST", "/search", {"query": "vectors", "k": 1}).status == 401


# ----------------------------------------------------------------- weights and ids


def test_weights_whose_sum_overflows_are_a_400(open_server: dict[str, Any]) -> None:
    port = open_server["port"]
    res = send_json(port, "POST", "/search", {"query": "vectors", "weights": {"bm25": 1e308, "bm25b": 1e308}})
    assert res.status == 400 and res.json()["error"] == "invalid_input" and "largest float" in res.json()["detail"]
    # Control: huge weights whose sum is finite fuse as usual (the ratio is what counts).
    ok = send_json(port, "POST", "/search", {"query": "vectors", "weights": {"bm25": 1e307, "bm25b": 1e307}})
    assert ok.status == 200 and ok.json()["hits"][0]["score"] > 0 and ok.json()["weights"] == {"bm25": 0.5, "bm25b": 0.5}


def test_weights_are_checked_by_the_library_itself(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="largest float"):
        RetrieverConfig.validate_data({"branches": [{"kind": "bm25", "weight": 1e308}, {"kind": "dense", "weight": 1e308}]})
    build_index(tmp_path / "i")
    with HybridRetriever.open(str(tmp_path / "i")) as r:
        with pytest.raises(ConfigError, match="largest float"):
            r.with_fusion(weights={"bm25": 1e308, "bm25b": 1e308})
    lists = {"a": BranchList(["x"], [1.0]), "b": BranchList(["x"], [1.0])}
    for fuse in (interpolate, weighted_rrf):
        with pytest.raises(ValueError, match="largest float"):
            fuse(lists, {"a": 1e308, "b": 1e308})
        with pytest.raises(ValueError, match="finite"):
            fuse(lists, {"a": float("inf"), "b": 1.0})
    cfg, source = tmp_path / "c.yaml", tmp_path / "docs.jsonl"
    cfg.write_text("branches:\n  - {kind: bm25, weight: 1.0e+308}\n  - {kind: bm25, name: b2, weight: 1.0e+308}\n")
    source.write_text(json.dumps({"id": "d", "text": "a document"}) + "\n")
    result = CliRunner().invoke(cli_app, ["index", str(source), "--index", str(tmp_path / "j"), "--config", str(cfg)])
    assert result.exit_code == 2 and "largest float" in result.output


CONTROL_IDS = ["a\nb", "a\rb", "tab\there", "nul\x00", "esc\x1b[31m", "del\x7f", "c1\x85", "ls\u2028"]


def test_ids_with_control_characters_are_refused_on_every_route(open_server: dict[str, Any]) -> None:
    port = open_server["port"]
    for bad in CONTROL_IDS:
        added = send_json(port, "POST", "/documents", {"documents": [{"id": bad, "text": "some text"}]})
        assert added.status == 400 and added.json()["error"] == "invalid_input" and "control character" in added.json()["detail"], bad
        deleted = send_json(port, "DELETE", "/documents", {"ids": [bad]})
        assert deleted.status == 400 and "control character" in deleted.json()["detail"]
    # GET with a newline in the path (percent-encoded, as a browser sends it): the library's 400, not a bare 404.
    got = raw(port, request_head("GET", "/documents/a%0Ab", port))
    assert got.status == 400 and "control character" in got.json()["detail"]
    # Controls: ids with a space, unicode or a '#' are served on every route.
    for good, path in (("a b", "/documents/a%20b"), ("naïve/文档#1", "/documents/na%C3%AFve/%E6%96%87%E6%A1%A3%231")):
        assert send_json(port, "POST", "/documents", {"documents": [{"id": good, "text": "kept text"}]}).status == 200
        res = raw(port, request_head("GET", path, port))
        assert res.status == 200 and res.json()["id"] == good
    assert send_json(port, "DELETE", "/documents", {"ids": ["naïve/文档#1"]}).json()["deleted"] == 1


def test_ids_with_control_characters_are_refused_by_the_library_langchain_and_the_cli(tmp_path: Path) -> None:
    from hybrid_retriever_langchain import HybridVectorStore

    build_index(tmp_path / "i")
    with HybridRetriever.open(str(tmp_path / "i")) as r:
        before = r.count()
        store = HybridVectorStore(r)
        for call in (lambda: r.add_texts(["t"], ids=["a\nb"]), lambda: r.get(["a\nb"]), lambda: r.delete(["x\x00"]),
                     lambda: store.add_texts(["t"], ids=["a\rb"]), lambda: store.get_by_ids(["a\tb"]), lambda: store.delete(["a\nb"])):
            with pytest.raises(InvalidInputError, match="control character"):
                call()
        assert r.count() == before
    source = tmp_path / "docs.jsonl"
    source.write_text(json.dumps({"id": "line\nbreak", "text": "a document"}) + "\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("branches:\n  - {kind: bm25}\n")
    result = CliRunner().invoke(cli_app, ["index", str(source), "--index", str(tmp_path / "j"), "--config", str(cfg)])
    assert result.exit_code == 2 and "control character" in result.output


# ---------------------------------------------------------------------------- Host


def test_without_a_key_only_loopback_hosts_are_served(open_server: dict[str, Any]) -> None:
    port = open_server["port"]
    # The DNS-rebinding page: its own name, resolved to 127.0.0.1 (before: served, data included).
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.nip.io:{port}", f"localhost.evil.example:{port}"):
        for method, path, body in (("GET", "/config", None), ("POST", "/search", {"query": "vectors"})):
            res = raw(port, request_head(method, path, port, host=host)) if body is None else send_json(port, method, path, body, host=host)
            assert res.status == 400 and res.json()["error"] == "invalid_host", (host, path)
            assert "HYBRID_RETRIEVER_ALLOWED_HOSTS" in res.json()["detail"]
    # Controls: loopback names (with or without a port, any case, a trailing dot) and no Host at all (HTTP/1.0).
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST.", f"[::1]:{port}", "127.0.0.2"):
        assert raw(port, request_head("GET", "/config", port, host=host)).status == 200, host
    assert send_json(port, "POST", "/search", {"query": "vectors"}, host=f"localhost:{port}").status == 200
    res = raw(port, b"GET /health HTTP/1.0\r\n\r\n")
    assert res.status == 200


def test_allowed_hosts_and_the_key_decide_which_hosts_are_served(keyed_server: dict[str, Any], tmp_path: Path) -> None:
    # With a key and no allowed_hosts, any Host is served: a page cannot know the key.
    port = keyed_server["port"]
    assert raw(port, request_head("GET", "/config", port, {"X-API-Key": KEY}, host="retriever.example")).status == 200
    build_index(tmp_path / "i")
    with HybridRetriever.open(str(tmp_path / "i")) as r:
        settings = ServerSettings.from_env({"HYBRID_RETRIEVER_ALLOWED_HOSTS": "retriever.example, Search.Example:8000"})
        assert settings.allowed_hosts == ["retriever.example", "Search.Example:8000"]
        # (TestClient's connection "arrives at" testserver, its base URL's host; the Host header is set per request.)
        with TestClient(create_app(r, settings)) as client:
            for host, status in (("retriever.example", 200), ("search.example:9", 200), ("localhost", 200),
                                 ("evil.example", 400), ("testserver", 200)):
                assert client.get("/config", headers={"Host": host}).status_code == status, host
        with TestClient(create_app(r, ServerSettings(allowed_hosts=["*"]))) as client:
            assert client.get("/config", headers={"Host": "anything.example"}).status_code == 200
        # An explicit list applies with a key too.
        with TestClient(create_app(r, ServerSettings(api_key=KEY, allowed_hosts=["retriever.example"]))) as client:
            assert client.get("/config", headers={"X-API-Key": KEY, "Host": "evil.example"}).status_code == 400
            assert client.get("/config", headers={"X-API-Key": KEY, "Host": "retriever.example"}).status_code == 200
    assert [host_name(h) for h in ("[::1]:80", "LocalHost.:80", "a.b", "::1", "[fe80::1]", "127.0.0.1:80@evil.example")] == [
        "::1", "localhost", "a.b", "::1", "fe80::1", ""]


# ---------------------------------------------------------------- uncertain writes


def test_a_write_the_store_fails_after_applying_it_is_a_503_and_ready_turns_false(open_server: dict[str, Any]) -> None:
    port, index = open_server["port"], open_server["index"]
    doc = {"documents": [{"id": "late", "text": "written while the store cannot flush"}]}
    # Remove the tracker journals under the live shard (what a second open did in issue 19): the next
    # update is applied, then the flush fails with a raw Qdrant Edge exception (before: a plain 500).
    journals = sorted(index.glob("shard/segments/*/**/tracker_journal.dat"))
    assert journals
    saved = {p: p.read_bytes() for p in journals}
    for p in journals:
        p.unlink()
    try:
        res = send_json(port, "POST", "/documents", doc)
        assert res.status == 503 and res.json()["error"] == "write_outcome_unknown"
        assert "may have been applied" in res.json()["detail"] and "same ids is safe" in res.json()["detail"]
        assert int(res.headers["retry-after"]) > 0 and "Traceback" not in res.body.decode()
        # It was applied (the service could not know): the document is there.
        assert raw(port, request_head("GET", "/documents/late", port)).status == 200
        ready = raw(port, request_head("GET", "/ready", port))
        assert ready.status == 503 and ready.json()["ready"] is False and "cannot write" in ready.json()["detail"]
        deleted = send_json(port, "DELETE", "/documents", {"ids": ["late"]})
        assert deleted.status == 503 and deleted.json()["error"] == "write_outcome_unknown"
        # Bad input is still a plain 400: refused before anything was written.
        assert send_json(port, "POST", "/documents", {"documents": [{"id": "x\ny", "text": "t"}]}).status == 400
        assert raw(port, request_head("GET", "/ready", port)).status == 503  # the probe write fails too
    finally:
        for p, data in saved.items():
            p.write_bytes(data)
    # The journals are back: /ready's probe (a delete of an id no document has) passes, and writes succeed.
    ready = raw(port, request_head("GET", "/ready", port))
    assert ready.status == 200 and ready.json()["ready"] is True
    again = send_json(port, "POST", "/documents", doc)  # retrying with the same ids is safe
    assert again.status == 200 and again.json()["ids"] == ["late"]
    assert send_json(port, "DELETE", "/documents", {"ids": ["late", PROBE_ID]}).json()["deleted"] == 1
    assert "Traceback" in open_server["log"].read_text()  # the store's error went to the server log, not to the client
