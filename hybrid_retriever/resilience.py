"""Per-branch timeouts and a per-call deadline for searches.

A search call fans out to its branches (encode, then search Qdrant). With
``runtime.branch_timeout_s`` or ``runtime.deadline_s`` set, each branch's work runs on
the retriever's thread pool and is waited for until its limit; a branch that raises or
is not done in time is left out of that call (``on_branch_error: degrade``) or fails it
(``raise``). Python threads cannot be killed: a timed-out encoder or store call runs
on in its worker until it returns, and its answer is dropped. Without limits the
retriever keeps its fast path (one batched Qdrant request, no extra thread hand-offs).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import Any, Generic, Mapping, TypeVar

from hybrid_retriever.config import RuntimeConfig
from hybrid_retriever.errors import BranchFailureError, StoreUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class CallBudget:
    """The time limits of one search call, as ``time.monotonic()`` instants (None = no limit)."""

    start: float
    branch_timeout_s: float | None = None
    deadline_s: float | None = None

    @classmethod
    def begin(cls, runtime: RuntimeConfig) -> "CallBudget":
        return cls(time.monotonic(), runtime.branch_timeout_s, runtime.deadline_s)

    @property
    def limited(self) -> bool:
        """Whether any limit applies (otherwise the caller may take its fast path)."""
        return self.branch_timeout_s is not None or self.deadline_s is not None

    @property
    def call_end(self) -> float | None:
        return None if self.deadline_s is None else self.start + self.deadline_s

    @property
    def branch_end(self) -> float | None:
        """When every branch must be done: its timeout (encode and search together), capped by the deadline."""
        ends = [e for e in (self.call_end, None if self.branch_timeout_s is None else self.start + self.branch_timeout_s) if e]
        return min(ends) if ends else None

    def late(self, end: float | None) -> str:
        """Why a branch missed ``end``: which limit it hit and when."""
        if self.branch_timeout_s is not None and end == self.start + self.branch_timeout_s:
            return f"timed out after branch_timeout_s={self.branch_timeout_s:g} s"
        return f"missed the call's deadline_s={self.deadline_s:g} s"


@dataclass
class Outcome(Generic[T]):
    """How one piece of pool work ended: its value, its exception, or still running (``late``)."""

    value: T | None = None
    error: BaseException | None = None
    late: bool = False


def wait_until(futures: Mapping[str, Future[T]], end: float | None) -> dict[str, Outcome[T]]:
    """Wait for every future until ``end`` (a ``time.monotonic()`` instant; None = as long as it takes)."""
    wait(list(futures.values()), timeout=None if end is None else max(0.0, end - time.monotonic()))
    out: dict[str, Outcome[T]] = {}
    for name, f in futures.items():
        if not f.done():
            f.cancel()  # not started yet: never runs; running: runs on, its answer is dropped
            out[name] = Outcome(late=True)
        elif f.exception() is not None:
            out[name] = Outcome(error=f.exception())
        else:
            out[name] = Outcome(value=f.result())
    return out


def describe(exc: BaseException) -> str:
    """One line naming an exception (the reason recorded in provenance and warnings)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class BranchFailures:
    """The branches that failed in one call and why (in the order they failed)."""

    on_error: str
    reasons: dict[str, str] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)

    def add(self, branch: str, stage: str, reason: str, exc: BaseException | None = None) -> None:
        """Record ``branch`` as failed at ``stage``; raises at once under ``on_branch_error: raise``."""
        if branch in self.reasons:
            return
        message = f"{stage}: {reason}"
        self.reasons[branch] = message
        if exc is not None:
            self.errors[branch] = exc
        if self.on_error == "raise":
            raise BranchFailureError(
                f"branch {branch!r} failed ({message}); set runtime.on_branch_error to 'degrade' to search on "
                "without it, or fix the branch (its model, the store's url/timeout, runtime.branch_timeout_s)"
            ) from exc
        log.warning("branch %r left out of this search (%s); the other branches' weights are renormalised", branch, message)

    def raise_if_all(self, branches: Any) -> None:
        """Every branch failed: nothing is left to fuse, so the call fails (never an empty success)."""
        names = list(branches)
        if not names or any(n not in self.reasons for n in names):
            return
        summary = "; ".join(f"{n!r}: {self.reasons[n]}" for n in names)
        first = next(iter(self.errors.values()), None)
        if self.errors and len(self.errors) == len(names) and all(isinstance(e, StoreUnavailableError) for e in self.errors.values()):
            raise StoreUnavailableError(f"every branch's search failed because the store is unavailable ({summary})") from first
        raise BranchFailureError(
            f"every branch failed, so there is nothing to return ({summary}); fix the failing branches or "
            "raise runtime.branch_timeout_s / runtime.deadline_s"
        ) from first
