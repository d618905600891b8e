"""Writes whose outcome is unknown, and whether the store can write (what /ready reports).

A write (``POST`` or ``DELETE /documents``) that the library refuses as bad input
(:class:`InvalidInputError`, :class:`FilterError`, :class:`ConfigError`,
:class:`IndexMismatchError`) was refused before anything was stored: a plain 400. Any other
failure may have happened after the store took the write (Qdrant Edge applies an update, then
its flush fails; a Qdrant server times out after applying it): the service cannot know, so it
answers 503 ``write_outcome_unknown`` saying the write may have been applied and that sending
the same request again is safe (an add replaces documents by id, a delete ignores ids that are
gone), with ``Retry-After``.

Such a failure also marks the store as unable to write: ``/ready`` answers 503 until a later
write succeeds or its probe passes. The probe is a real write that changes nothing: deleting
:data:`PROBE_ID`, an id no document has (the store applies and flushes it like any delete).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from hybrid_retriever.errors import ConfigError, FilterError, IndexMismatchError, InvalidInputError
from hybrid_retriever.retriever import HybridRetriever

log = logging.getLogger("hybrid_retriever_server")

T = TypeVar("T")

#: Errors raised before anything is written: the write did not happen, so a plain 400 says so.
REFUSED_BEFORE_WRITING = (InvalidInputError, FilterError, ConfigError, IndexMismatchError)
#: The id /ready deletes to check that the store can write again (no document is expected to have it).
PROBE_ID = "hybrid-retriever-ready-probe-5d0c6a1e"
#: Seconds a client is asked to wait before sending the same write again.
RETRY_AFTER_S = 5


class WriteOutcomeUnknown(Exception):
    """The store failed during a write that may have been applied; answered as 503 by :func:`outcome_unknown_response`."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def outcome_unknown_response(exc: WriteOutcomeUnknown) -> JSONResponse:
    detail = (
        f"the store failed during this {exc.what}, after it may have been applied (in part or in full); the service cannot "
        "tell which. Sending the same request again with the same ids is safe: an add replaces documents by id and a "
        "delete ignores ids that are gone. The server log has the store's error."
    )
    return JSONResponse({"error": "write_outcome_unknown", "detail": detail}, status_code=503,
                        headers={"Retry-After": str(RETRY_AFTER_S)})


class WriteHealth:
    """Whether the store took the last write; shared by the write endpoints and /ready."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.failure: str | None = None  # the last failed write's error, while the store is not known to write again

    async def run(self, what: str, write: Callable[[], T]) -> T:
        """``write()`` on a worker thread; a failure other than refused input is a :class:`WriteOutcomeUnknown`."""
        try:
            result = await run_in_threadpool(write)
        except REFUSED_BEFORE_WRITING:
            raise
        except Exception as exc:
            log.error("%s failed and may have been applied; the store is marked not ready", what, exc_info=exc)
            with self._lock:
                self.failure = f"{type(exc).__name__}: {exc}"
            raise WriteOutcomeUnknown(what) from exc
        self._recovered()
        return result

    async def probe(self, retriever: HybridRetriever) -> bool:
        """After a failed write: whether the store writes again (a delete of :data:`PROBE_ID`); True when no write failed."""
        if self.failure is None:
            return True
        try:
            await run_in_threadpool(retriever.delete, [PROBE_ID])
        except Exception as exc:
            log.warning("the store still cannot write: %s: %s", type(exc).__name__, exc)
            return False
        self._recovered()
        return True

    def _recovered(self) -> None:
        with self._lock:
            if self.failure is not None:
                log.info("the store writes again (the last failure was %s)", self.failure)
            self.failure = None


__all__ = ["PROBE_ID", "WriteHealth", "WriteOutcomeUnknown", "outcome_unknown_response"]
