"""The bookkeeping of one ingestion: what was written, skipped or replaced, duplicates, batch sizes, stopping.

:meth:`HybridRetriever.add_documents <hybrid_retriever.retriever.HybridRetriever.add_documents>`
uses these helpers; callers see :class:`IngestReport`:

    >>> report = IngestReport()                                                  # doctest: +SKIP
    >>> retriever.add_documents(read_documents("docs/"), skip_unchanged=True, report=report)  # doctest: +SKIP
    >>> report.written, report.skipped, report.replaced                                     # doctest: +SKIP

Rules
-----
* **Content hash.** Every stored point carries a hash of its text, its metadata and the
  branches' settings (``payload["content_hash"]``). With ``skip_unchanged``, a document
  whose id is stored with the same hash is not encoded again.
* **Duplicate ids.** An id may appear once per call, wherever it is in the input: a
  second occurrence is an error naming both positions (1-based), whatever the batch
  size. A list is checked whole first, so nothing is written. A stream is written batch
  by batch as it is read, so the batches before the repeat are stored: the error
  (:class:`DuplicateIdError`) says how many and which (``written_ids``), and nothing from
  the repeat's batch on is written. Readers of files name lines instead
  (:mod:`hybrid_retriever.sources`).
* **Batches bounded by time** (``batch_seconds``; the CLI's ``index`` uses
  :data:`BATCH_SECONDS`). Batches grow or shrink so one takes about that long to encode:
  the progress bar moves every few seconds and a stop request (Ctrl-C in the CLI) is
  answered within seconds. Without it every batch holds ``batch_size`` documents.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable

from hybrid_retriever.errors import InvalidInputError
from hybrid_retriever.types import Document

#: Payload key of the content hash of a stored point.
PAYLOAD_HASH = "content_hash"
#: Target seconds of encoding per batch (see :class:`BatchSizer`).
BATCH_SECONDS = 2.0
#: Size of the first batch, which measures the encoding rate.
FIRST_BATCH = 8


#: Branch manifest entries that record a check, not a setting (the identity probe, models/probe.py):
#: they never change stored vectors, so they stay out of the content hash.
_NOT_SETTINGS = frozenset({"probe"})


def settings_key(branch_manifests: dict[str, Any]) -> str:
    """A short digest of the branches' settings (model, dimension, BM25 parameters, ...)."""
    return _digest({
        name: {k: v for k, v in m.items() if k not in _NOT_SETTINGS} if isinstance(m, dict) else m
        for name, m in branch_manifests.items()
    })


def content_hash(doc: Document, settings: str) -> str:
    """The hash stored with a document: its text, metadata and the branches' settings (``settings_key``)."""
    return _digest([settings, doc.text, doc.metadata])


def _digest(value: Any) -> str:
    data = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass
class IngestReport:
    """What one ``add_documents`` call did, filled in as it goes (so it is complete after an error too).

    ``written``: documents encoded and stored; ``replaced``: of those, how many replaced a
    stored document of the same id with other content (known only with ``skip_unchanged``);
    ``skipped``: documents already stored with identical content; ``stopped``: the call
    ended early at :meth:`request_stop`.
    """

    written: int = 0
    replaced: int = 0
    skipped: int = 0
    written_ids: list[str] = field(default_factory=list)
    stopped: bool = False
    _stop: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @property
    def new(self) -> int:
        """Documents written that were not stored before (known only with ``skip_unchanged``)."""
        return self.written - self.replaced

    def request_stop(self) -> None:
        """Ask the running call to stop after the current batch (safe from a signal handler or another thread)."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()


class DuplicateIdError(InvalidInputError):
    """An id appeared twice in one ``add_documents`` call; ``written_ids`` were stored before it was found."""

    def __init__(self, message: str, doc_id: str, positions: tuple[int, int], written_ids: list[str]) -> None:
        super().__init__(message)
        self.doc_id = doc_id
        self.positions = positions
        self.written_ids = written_ids


class IdTracker:
    """Remembers the position (1-based) of every id of one call, to find duplicates wherever they are."""

    def __init__(self) -> None:
        self._first: dict[str, int] = {}
        self.position = 0

    def check(self, docs: Iterable[Document], written_ids: list[str]) -> None:
        """Record the ids of ``docs`` (the next documents of the input); raise at a repeated one."""
        for doc in docs:
            self.position += 1
            if not isinstance(doc.id, str):
                continue  # no id, or not a string: document validation names that problem
            first = self._first.setdefault(doc.id, self.position)
            if first != self.position:
                raise DuplicateIdError(_duplicate_message(doc.id, first, self.position, written_ids), doc.id, (first, self.position), list(written_ids))


def _duplicate_message(doc_id: str, first: int, second: int, written_ids: list[str]) -> str:
    if written_ids:
        shown = ", ".join(repr(i) for i in written_ids[:3])
        if len(written_ids) > 3:
            shown += f", ..., {written_ids[-1]!r}"
        done = (
            f"{len(written_ids)} documents before it were written ({shown}; the full list is the error's "
            "written_ids) and nothing after it"
        )
    else:
        done = "nothing was written"
    return (
        f"duplicate document id {doc_id!r}: documents #{first} and #{second} of the input both have it; "
        f"ids must be unique within one add. {done}. Give each document its own id (or drop the repeat) and add "
        "again: with skip_unchanged (the CLI's default) the documents already written are skipped"
    )


class BatchSizer:
    """Batch sizes that keep one batch near ``seconds`` of encoding, between 1 and ``max_size``."""

    def __init__(self, max_size: int, seconds: float | None) -> None:
        self.max_size = max_size
        self.seconds = seconds
        self.size = max_size if not seconds else min(FIRST_BATCH, max_size)

    def record(self, n: int, elapsed: float) -> None:
        """Adjust the next size from a batch of ``n`` documents that took ``elapsed`` seconds."""
        if not self.seconds or n <= 0:
            return
        rate = n / max(elapsed, 1e-3)
        target = int(rate * self.seconds)
        # Grow at most 4x a step: a first tiny batch measures the rate poorly.
        self.size = max(1, min(self.max_size, target, max(self.size, 1) * 4))
