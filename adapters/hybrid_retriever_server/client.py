"""A small client of the service (standard library only): search a served index from another process.

An Edge index is held by the process serving it, so ``hybrid-retriever query --server URL``
searches through the service with :func:`search`, and ``hybrid-retriever eval --server URL``
with :class:`ServiceClient` (the core's ``ServedIndex``), instead of opening the folder.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Sequence

from hybrid_retriever.errors import InvalidInputError, StoreUnavailableError
from hybrid_retriever.types import BranchScore, Document, Hit, HitGroup, RerankScore

#: The API key the client sends when none is passed.
API_KEY_ENV = "HYBRID_RETRIEVER_API_KEY"


def search(
    server: str,
    query: str,
    k: int | None = None,
    filter: dict[str, Any] | None = None,
    *,
    api_key: str | None = None,
    api_key_header: str = "X-API-Key",
    timeout: float = 60.0,
    group_by: str | None = None,
) -> list[Hit]:
    """``POST {server}/search``: the hits, with every branch's provenance, as the library's own :class:`Hit`
    (with ``group_by``, one per group, as :meth:`HybridRetriever.search` does)."""
    body: dict[str, Any] = {"query": query}
    if k is not None:
        body["k"] = k
    if filter is not None:
        body["filter"] = filter
    if group_by is not None:
        body["group_by"] = group_by
    answer = post_json(server.rstrip("/") + "/search", body, api_key=api_key, api_key_header=api_key_header, timeout=timeout)
    return [hit_from_json(h) for h in answer["hits"]]


class ServiceClient:
    """A running ``hybrid-retriever serve`` at ``url``: what ``eval --server`` searches through.

    The key is ``api_key`` or else ``$HYBRID_RETRIEVER_API_KEY``; it is sent in ``api_key_header``
    and never shown in errors.
    """

    def __init__(self, url: str, *, api_key: str | None = None, api_key_header: str = "X-API-Key", timeout: float = 300.0) -> None:
        self.url = url.rstrip("/")
        self._key, self._header, self._timeout = api_key, api_key_header, timeout

    def describe(self) -> dict[str, Any]:
        """The served configuration, whether it has a rerank stage, and its limits on k and queries per request."""
        answer = request_json(self.url + "/config", None, api_key=self._key, api_key_header=self._header, timeout=self._timeout)
        server = answer.get("server") or {}
        return {"config": answer.get("retriever") or {}, "rerank_available": bool(answer.get("rerank_available")),
                "max_k": int(server.get("max_k", 100)), "max_queries": int(server.get("max_queries", 64))}

    def limits(self) -> dict[str, int]:
        """The service's limits on one request: documents (``max_batch``), body bytes and characters per document."""
        answer = request_json(self.url + "/config", None, api_key=self._key, api_key_header=self._header, timeout=self._timeout)
        server = answer.get("server") or {}
        return {"max_batch": int(server.get("max_batch", 256)), "max_body_bytes": int(server.get("max_body_bytes", 4 << 20)),
                "max_text_chars": int(server.get("max_text_chars", 100_000))}

    def index_documents(
        self, documents: Sequence[Document], *, chunking: dict[str, Any] | None, reindex: bool = False, source: str | None = None
    ) -> dict[str, Any]:
        """``POST /index/documents``: the server chunks (``chunking``: size, overlap, unit), skips unchanged and stores
        whole documents; answers ``ids``, ``written``, ``replaced``, ``skipped``, ``stale_removed`` and ``count``."""
        body = {"documents": [{"id": d.id, "text": d.text, "metadata": d.metadata} for d in documents],
                "chunking": chunking, "reindex": reindex, "source": source}
        return post_json(self.url + "/index/documents", body, api_key=self._key, api_key_header=self._header, timeout=self._timeout)

    def sync_source(self, source: str, ids: Sequence[str], sync: bool | None) -> dict[str, Any]:
        """``POST /index/sync``: remove stored documents ``source`` (now holding ``ids``) no longer has; ``removed``, ``note``, ``count``."""
        body = {"source": source, "ids": list(ids), "sync": sync}
        return post_json(self.url + "/index/sync", body, api_key=self._key, api_key_header=self._header, timeout=self._timeout)

    def stored(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` the served index holds (``GET /documents/{id}`` each; a 404 means not stored)."""
        found = set()
        for i in ids:
            try:
                request_json(f"{self.url}/documents/{urllib.parse.quote(i, safe='')}", None, api_key=self._key,
                             api_key_header=self._header, timeout=self._timeout)
            except InvalidInputError as exc:
                if " answered 404:" in str(exc):
                    continue
                raise
            found.add(i)
        return found

    def search_batch(self, queries: Sequence[str], k: int, *, rerank: bool) -> list[list[Hit]]:
        """``POST /search/batch``: each query's ``k`` best hits, reranked when ``rerank``."""
        body = {"queries": list(queries), "k": k, "rerank": rerank}
        answer = post_json(self.url + "/search/batch", body, api_key=self._key, api_key_header=self._header, timeout=self._timeout)
        return [[hit_from_json(h) for h in hits] for hits in answer["results"]]


def post_json(
    url: str, body: dict[str, Any], *, api_key: str | None = None, api_key_header: str = "X-API-Key", timeout: float = 60.0
) -> dict[str, Any]:
    """POST ``body`` as JSON; the service's 4xx errors become :class:`InvalidInputError` with its message."""
    return request_json(url, body, api_key=api_key, api_key_header=api_key_header, timeout=timeout)


def request_json(
    url: str, body: dict[str, Any] | None, *, api_key: str | None = None, api_key_header: str = "X-API-Key", timeout: float = 60.0
) -> dict[str, Any]:
    """GET ``url`` (``body`` None) or POST ``body`` as JSON; 4xx errors become :class:`InvalidInputError`."""
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if key:
        headers[api_key_header] = key
    data = json.dumps(body).encode("utf-8") if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (the user's own server URL)
            return json.loads(response.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail")
        except ValueError:
            detail = exc.reason
        raise InvalidInputError(f"the server at {url} answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise StoreUnavailableError(f"no answer from the server at {url} ({exc}); is `hybrid-retriever serve` running there?") from None


def hit_from_json(h: dict[str, Any]) -> Hit:
    """A hit as the service returns it, back as a :class:`Hit`."""
    return Hit(
        id=h["id"],
        text=h["text"],
        metadata=h.get("metadata") or {},
        score=h["score"],
        rank=h["rank"],
        provenance={
            n: BranchScore(raw=s.get("raw"), normalized=s.get("normalized"), rank=s.get("rank"), completed=bool(s.get("completed")),
                           weight=s.get("weight"), flags=list(s.get("flags") or []), signals=dict(s.get("signals") or {}),
                           error=s.get("error"))
            for n, s in (h.get("provenance") or {}).items()
        },
        rerank=_rerank_from_json(h["rerank"]) if h.get("rerank") else None,
        group=HitGroup(**h["group"]) if h.get("group") else None,
    )


def _rerank_from_json(r: dict[str, Any]) -> RerankScore:
    return RerankScore(raw=r.get("raw"), normalized=r.get("normalized"), rank=r.get("rank"), fused_score=r["fused_score"],
                       fused_rank=r["fused_rank"], model=r.get("model"), error=r.get("error"))
