"""The request guard: an ASGI middleware that checks every HTTP request before any route reads a byte of it.

It sits around the whole app, so every route, today's and future ones, gets the same checks,
in this order, each answered with a JSON error and ``Connection: close`` (the server then
drops the connection instead of reading an unread body):

1. **Host** (DNS rebinding): without an API key, a browser page on another site can resolve its
   own name to 127.0.0.1 and call the service from the user's browser. Unless
   ``allowed_hosts`` says otherwise, only loopback names (``localhost``, ``127.0.0.1``,
   ``[::1]``) and the address the connection arrived at are accepted (400 ``invalid_host``).
   With an API key and no ``allowed_hosts``, any Host is served (the page does not know the key).
2. **Framing**: a request with both ``Content-Length`` and ``Transfer-Encoding``, several
   ``Content-Length`` headers or a malformed one is refused (400 ``bad_framing``): the two
   headers disagree on where the body ends (request smuggling, and a way around the limit).
3. **API key**: a request that carries a body (``Content-Length`` above 0 or any
   ``Transfer-Encoding``) without the right key is refused (401) before the body is read, so an
   unauthenticated client cannot make the server read megabytes. Routes still check the key
   themselves (that is what the OpenAPI docs show) for requests without a body.
4. **Size**: ``Content-Length`` over ``max_body_bytes`` is refused at once (413); every body is
   then read here, counting the bytes actually received whatever the framing, and refused (413)
   as soon as it passes the limit. The route gets the counted body (at most ``max_body_bytes``
   is ever held per request).
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Iterable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hybrid_retriever_server.settings import ServerSettings

#: Host names that always mean this machine (IP literals are checked with ``ipaddress``).
LOOPBACK_NAMES = frozenset({"localhost"})


def host_name(value: str) -> str:
    """The name in a Host header, without the port and brackets, lower case, no trailing dot:
    ``"[::1]:8000"`` -> ``"::1"``, ``"LocalHost.:80"`` -> ``"localhost"``."""
    v = value.strip().lower()
    if v.startswith("["):
        end = v.find("]")
        return v[1:end] if end > 0 else v
    if v.count(":") == 1:  # name:port (an IPv6 literal without brackets has several colons)
        v, port = v.split(":", 1)
        if not port.isdigit():
            return ""  # not a host[:port] at all (e.g. "127.0.0.1:80@evil.example"): matches nothing
    return v.rstrip(".")


def is_loopback(name: str) -> bool:
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def key_matches(given: str | None, settings: ServerSettings) -> bool:
    """Whether ``given`` is the server's key, compared in constant time (True when the server has none)."""
    if settings.api_key is None:
        return True
    return hmac.compare_digest((given or "").encode(), settings.api_key.get_secret_value().encode())


def missing_key_detail(settings: ServerSettings) -> str:
    return f"missing or wrong API key: send it in the {settings.api_key_header} header"


class RequestGuard:
    """Host, framing, API key and body size, checked before the app reads the body (see the module docs)."""

    def __init__(self, app: ASGIApp, settings: ServerSettings) -> None:
        self.app, self.settings = app, settings
        self.max_bytes = settings.max_body_bytes
        self.allowed = {host_name(h) for h in settings.allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k.lower(), v) for k, v in scope.get("headers") or []]
        refusal = self._host(scope, headers) or self._framing_key_and_length(headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        # Read the body here, counting what actually arrives (chunked or not), at most max_bytes.
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await _refuse(413, "too_large", self._too_large())(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replay = iter(messages)

        async def replayed() -> Message:
            return next(replay, None) or await receive()

        await self.app(scope, replayed, send)

    def _host(self, scope: Scope, headers: list[tuple[bytes, bytes]]) -> JSONResponse | None:
        if "*" in self.allowed or (not self.allowed and self.settings.api_key is not None):
            return None
        hosts = _values(headers, b"host")
        if not hosts:
            return None  # HTTP/1.0 without Host: not a browser, so not a rebinding page
        if len(hosts) > 1:
            return _refuse(400, "invalid_host", "several Host headers; send one")
        name = host_name(hosts[0].decode("latin-1"))
        server = scope.get("server")
        bound = str(server[0]).lower() if server else None  # the address this connection arrived at
        if is_loopback(name) or name == bound or name in self.allowed:
            return None
        return _refuse(400, "invalid_host", f"Host {name!r} is not served: without an API key this service answers only to "
                       "localhost, 127.0.0.1, [::1] and the address it listens on (DNS rebinding protection); "
                       "name the host in HYBRID_RETRIEVER_ALLOWED_HOSTS, or set HYBRID_RETRIEVER_API_KEY")

    def _framing_key_and_length(self, headers: list[tuple[bytes, bytes]]) -> JSONResponse | None:
        lengths = _values(headers, b"content-length")
        encodings = _values(headers, b"transfer-encoding")
        if lengths and encodings:
            return _refuse(400, "bad_framing", "the request has both Content-Length and Transfer-Encoding; send one of them")
        if len(lengths) > 1:
            return _refuse(400, "bad_framing", "the request has several Content-Length headers; send one")
        if lengths and not lengths[0].strip().isdigit():
            return _refuse(400, "bad_framing", "Content-Length must be a non-negative integer")
        length = int(lengths[0]) if lengths else 0
        if (length > 0 or encodings) and not key_matches(_first(headers, self.settings.api_key_header), self.settings):
            return _refuse(401, "unauthorized", missing_key_detail(self.settings))
        if length > self.max_bytes:
            return _refuse(413, "too_large", self._too_large())
        return None

    def _too_large(self) -> str:
        return f"the request body is over the limit of {self.max_bytes} bytes; send smaller batches"


def _values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for k, v in headers if k == name]


def _first(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    found = _values(headers, name.lower().encode("latin-1"))
    return found[0].decode("latin-1") if found else None


def _refuse(status: int, code: str, detail: str) -> JSONResponse:
    # Connection: close, so the server drops the connection rather than read or skip an unread body.
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers={"Connection": "close"})


__all__ = ["RequestGuard", "host_name", "is_loopback", "key_matches"]
