"""The qdrant-client store against real sockets on 127.0.0.1 that are not a healthy Qdrant:
a closed port, a server that accepts and never answers, HTTP servers answering like a web
server, a proxy or an auth gate. Plus the API key as a secret and qdrant-client's local mode
under concurrent writes and searches.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from hybrid_retriever import Document, HybridRetriever, RetrieverConfig
from hybrid_retriever.config import QdrantStoreConfig
from hybrid_retriever.errors import ConfigError, StoreUnavailableError
from hybrid_retriever.stores import QdrantStore, StoredPoint

pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version")


def closed_port() -> int:
    """A loopback port nobody listens on: bound, then closed."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class StallingServer:
    """Accepts TCP connections on 127.0.0.1 and never answers; records how long each client stayed."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[float] = []  # seconds from accept until the client hung up
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        t0 = time.monotonic()
        conn.settimeout(0.05)
        while not self._stop.is_set():
            try:
                if conn.recv(65536) == b"":
                    break
            except socket.timeout:
                continue
            except OSError:
                break
        self.held.append(time.monotonic() - t0)
        conn.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


class FixedAnswer(http.server.BaseHTTPRequestHandler):
    """Answers every request with the server's ``status`` and ``body``; counts requests other than
    qdrant-client's version probe (``GET /``, sent from a background thread)."""

    def _answer(self) -> None:
        if self.path != "/":
            self.server.requests += 1  # type: ignore[attr-defined]
        if self.command in ("POST", "PUT"):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = self.server.body  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Type", "application/json" if body.startswith(b"{") else "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answering() -> Iterator:
    servers = []

    def start(status: int, body: bytes) -> http.server.ThreadingHTTPServer:
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FixedAnswer)
        srv.status, srv.body, srv.requests = status, body, 0  # type: ignore[attr-defined]
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def stalling() -> Iterator[StallingServer]:
    srv = StallingServer()
    yield srv
    srv.close()


def store_at(port: int, **cfg: object) -> QdrantStore:
    return QdrantStore(QdrantStoreConfig(url=f"http://127.0.0.1:{port}", **cfg))


def points(ids: list[str]) -> list[StoredPoint]:
    return [StoredPoint(point_id=f"00000000-0000-0000-0000-00000000000{i}", vectors={}, payload={"doc_id": d}) for i, d in enumerate(ids)]


# ------------------------------------------------------------------ unreachable


def test_closed_port_reads_retry_then_fail_clearly():
    port = closed_port()
    store = store_at(port, timeout=5, retries=2, retry_backoff_s=0.05)
    with pytest.raises(StoreUnavailableError, match=rf"Qdrant at http://127.0.0.1:{port} did not answer \(collection_exists: "
                       r"ConnectError.*; 3 attempts in .* s \(timeout 5 s\)\)\. Check that the server is running"):
        store.exists()
    with pytest.raises(StoreUnavailableError, match="did not answer"):
        HybridRetriever(RetrieverConfig.validate_data({"store": {"kind": "qdrant", "url": f"http://127.0.0.1:{port}", "retries": 0}}))


def test_closed_port_write_says_nothing_was_written():
    store = store_at(closed_port(), timeout=5)
    with pytest.raises(StoreUnavailableError, match=r"Nothing was written: the upsert of 2 document\(s\) \('a', 'b'\) never reached"):
        store.upsert(points(["a", "b"]))


def test_grpc_errors_name_the_grpc_port():
    rest, grpc_port = closed_port(), closed_port()
    store = store_at(rest, prefer_grpc=True, grpc_port=grpc_port, timeout=3, retries=0)
    with pytest.raises(StoreUnavailableError, match=rf"Qdrant at 127\.0\.0\.1:{grpc_port} \(gRPC; REST url http://127\.0\.0\.1:{rest}\)"
                       r".*store\.grpc_port"):
        store.exists()


def test_stalled_server_times_out_within_a_sub_second_timeout(stalling):
    store = store_at(stalling.port, timeout=0.3, retries=2, retry_backoff_s=0.05)
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=r"collection_exists: ReadTimeout.*1 attempt in 0\.\d+ s \(timeout 0\.3 s\)"):
        store.exists()
    took = time.monotonic() - t0
    deadline = time.monotonic() + 5
    while not stalling.held and time.monotonic() < deadline:
        time.sleep(0.02)
    # qdrant-client alone rounds 0.3 s up to 1 s; the client hung up well before that.
    assert len(stalling.held) == 1 and stalling.held[0] < 0.9 and took < 0.9


def test_stalled_write_says_it_may_or_may_not_be_applied(stalling):
    store = store_at(stalling.port, timeout=0.3, retries=2)
    with pytest.raises(StoreUnavailableError, match=r"did not confirm the upsert of 3 document\(s\) \('x', 'y', 'z'\): it may or may "
                       r"not have been applied\. Repeating the same call is safe"):
        store.upsert(points(["x", "y", "z"]))
    time.sleep(0.2)
    assert len(stalling.held) == 1  # writes are never retried


# --------------------------------------------------------- something else answers


@pytest.mark.parametrize(
    ("status", "body"),
    [(404, b"<html><body>Not Found</body></html>"), (200, b"<html><body>Welcome to nginx!</body></html>"), (405, b"")],
)
def test_a_server_that_is_not_qdrant_is_named(answering, status, body):
    srv = answering(status, body)
    store = store_at(srv.server_address[1], retries=2)
    with pytest.raises(StoreUnavailableError, match=r"is not a Qdrant API .*Check store\.url: it should name Qdrant's REST port"):
        store.exists()
    assert srv.requests == 1  # a wrong server is not retried


def test_a_refused_api_key_is_named(answering):
    srv = answering(401, b'{"status": {"error": "Must provide an API key"}}')
    with pytest.raises(StoreUnavailableError, match=r"refused the API key.*QDRANT_API_KEY"):
        store_at(srv.server_address[1]).exists()


def test_an_overloaded_proxy_is_retried(answering):
    srv = answering(503, b"Service Unavailable")
    with pytest.raises(StoreUnavailableError, match=r"HTTP 503.*3 attempts"):
        store_at(srv.server_address[1], retries=2, retry_backoff_s=0.01).exists()
    assert srv.requests == 3


def test_qdrants_own_errors_pass_through(answering):
    """A 404 with Qdrant's JSON body is Qdrant's answer (e.g. no such collection), not a wrong server."""
    from qdrant_client.http.exceptions import UnexpectedResponse

    srv = answering(404, b'{"status": {"error": "Not found: Collection `x` doesn\'t exist!"}, "time": 0.0}')
    with pytest.raises(UnexpectedResponse):
        store_at(srv.server_address[1]).exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:6333", r"needs the scheme http:// or https://, e.g. http://localhost:6333"),
        ("http://", r"names no host"),
        ("http://127.0.0.1:99999", r"is malformed \(Port out of range"),
        ("grpc://127.0.0.1:6334", r"needs the scheme http:// or https://"),
        ("127.0.0.1", r"e.g. http://127.0.0.1"),
    ],
)
def test_malformed_urls_are_config_errors(url, message):
    with pytest.raises(ConfigError, match=message):
        RetrieverConfig.validate_data({"store": {"kind": "qdrant", "url": url}})


# ------------------------------------------------------------------------ API key


def test_api_key_is_a_secret_never_written_out(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("QDRANT_API_KEY", raising=False)
    cfg = RetrieverConfig.validate_data({"store": {"kind": "qdrant", "url": "http://127.0.0.1:6333", "api_key": "s3cr3t-key"}})
    assert cfg.store.resolved_api_key() == "s3cr3t-key"
    cfg.save(tmp_path / "c.yaml")
    cfg.save(tmp_path / "c.json")
    for text in (repr(cfg), str(cfg), repr(cfg.store), cfg.to_yaml(), cfg.to_json(),
                 (tmp_path / "c.yaml").read_text(), (tmp_path / "c.json").read_text()):
        assert "s3cr3t-key" not in text
    # Reloaded, the key comes from the environment again, and the rest round-trips unchanged.
    monkeypatch.setenv("QDRANT_API_KEY", "from-env")
    for path in ("c.yaml", "c.json"):
        back = RetrieverConfig.from_file(tmp_path / path)
        assert back.store.api_key is None and back.store.resolved_api_key() == "from-env"
        assert back.model_dump(mode="json") == cfg.model_dump(mode="json")
    # Copies made in Python (tuning, with_weights) keep the key given in code.
    assert cfg.with_weights({"bm25": 0.3}).store.resolved_api_key() == "s3cr3t-key"
    assert "s3cr3t-key" not in repr(cfg.model_dump())
    plain = RetrieverConfig.validate_data({"store": {"kind": "qdrant", "url": "http://127.0.0.1:6333"}})
    assert RetrieverConfig.from_yaml(plain.to_yaml()) == plain
    named = RetrieverConfig.validate_data({"store": {"kind": "qdrant", "url": "http://h:6333", "api_key_env": "MY_KEY"}})
    monkeypatch.setenv("MY_KEY", "mine")
    assert named.store.resolved_api_key() == "mine"


def test_api_key_is_sent(answering, monkeypatch):
    seen: list[str | None] = []

    class Recording(FixedAnswer):
        def _answer(self) -> None:
            if self.path != "/":
                seen.append(self.headers.get("api-key"))
            super()._answer()

        do_GET = do_POST = do_PUT = do_DELETE = _answer

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recording)
    srv.status, srv.body, srv.requests = 200, b'{"result": {"exists": false}, "status": "ok", "time": 0}', 0  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("QDRANT_API_KEY", "env-key")
        # https is what qdrant-client assumes with a key; allow http to this loopback test server.
        assert store_at(srv.server_address[1]).exists() is False
        assert seen == ["env-key"]
    finally:
        srv.shutdown()
        srv.server_close()


# ---------------------------------------------------------------- local mode threads


def test_local_mode_survives_one_writer_and_four_searchers():
    cfg = RetrieverConfig.validate_data(
        {
            "store": {"kind": "qdrant", "location": ":memory:", "collection": "threads"},
            "branches": [{"kind": "bm25"}],
            "runtime": {"show_progress": False},
        }
    )
    words = ["qdrant", "vector", "search", "fusion", "ranking", "dense", "sparse", "query"]
    docs = [Document(text=f"{words[i % 8]} {words[(i * 3) % 8]} document {i}", id=f"d{i}") for i in range(600)]
    errors: list[BaseException] = []
    with HybridRetriever(cfg) as r:
        r.add_documents(docs[:20])
        stop = threading.Event()

        def write() -> None:
            try:
                for i in range(20, 600, 3):
                    r.add_documents(docs[i : i + 3])
                    r.delete([f"d{i}"])
            except BaseException as exc:  # noqa: BLE001 - recorded for the assertion below
                errors.append(exc)
            finally:
                stop.set()

        def search(q: str) -> None:
            try:
                while not stop.is_set():
                    r.search(q, k=5)
                    r.count()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=write)] + [threading.Thread(target=search, args=(w,)) for w in words[:4]]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        assert r.count() == 600 - len(range(20, 600, 3))
