"""A small client of the service (standard library only): search a served index from another process.

An Edge index is held by the process serving it, so ``hybrid-retriever query --server URL``
searches through the service with :func:`search` instead of opening the folder.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from hybrid_retriever.errors import InvalidInputError, StoreUnavailableError
from hybrid_retriever.types import BranchScore, Hit

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
) -> list[Hit]:
    """``POST {server}/search``: the hits, with every branch's provenance, as the library's own :class:`Hit`."""
    body: dict[str, Any] = {"query": query}
    if k is not None:
        body["k"] = k
    if filter is not None:
        body["filter"] = filter
    answer = post_json(server.rstrip("/") + "/search", body, api_key=api_key, api_key_header=api_key_header, timeout=timeout)
    return [hit_from_json(h) for h in answer["hits"]]


def post_json(
    url: str, body: dict[str, Any], *, api_key: str | None = None, api_key_header: str = "X-API-Key", timeout: float = 60.0
) -> dict[str, Any]:
    """POST ``body`` as JSON; the service's 4xx errors become :class:`InvalidInputError` with its message."""
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if key:
        headers[api_key_header] = key
    request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST")
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
            n: BranchScore(raw=s.get("raw"), normalized=s.get("normalized"), rank=s.get("rank"), completed=bool(s.get("completed")))
            for n, s in (h.get("provenance") or {}).items()
        },
    )
