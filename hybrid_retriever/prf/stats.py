"""Collection statistics for PRF, read cheaply from Qdrant itself.

IDF of a token: Qdrant applies IDF to sparse vectors that carry ``Modifier.Idf`` at
search time and never exposes it. One exact search of the single-token query
``{t: 1}`` restricted to one document ``d`` that contains ``t`` scores
``idf(t) · w_d(t)``; the stored weight ``w_d(t)`` is known (the feedback documents'
vectors were just read), so ``idf(t) = score / w_d(t)`` — exactly the IDF Qdrant
uses, with no scan of the collection. Probes for many tokens go in one batch, and
values are cached until the collection's size changes.
"""

from __future__ import annotations

import threading
from typing import Mapping

from hybrid_retriever.stores.base import SearchRequest, Store
from hybrid_retriever.types import SparseVector


class IdfCache:
    """IDF per (sparse vector name, token id), probed from the store and cached."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._values: dict[tuple[str, int], float] = {}
        self._size: int | None = None
        self._lock = threading.Lock()
        #: Probe searches sent so far (for benchmarks and tests).
        self.probes = 0

    def refresh(self) -> None:
        """Forget cached values when the collection grew or shrank (IDF depends on its size)."""
        size = self.store.count()
        with self._lock:
            if size != self._size:
                self._values.clear()
                self._size = size

    def lookup(self, vector_name: str, probes: Mapping[int, tuple[str, float]]) -> dict[int, float]:
        """IDF of each token in ``probes`` (token -> (a point id holding it, its stored weight there))."""
        with self._lock:
            known = {t: self._values[(vector_name, t)] for t in probes if (vector_name, t) in self._values}
        todo = [(t, pid, w) for t, (pid, w) in probes.items() if t not in known and w > 0]
        if todo:
            requests = [
                SearchRequest(vector_name=vector_name, vector=SparseVector([t], [1.0]), limit=1, point_ids=[pid], exact=True)
                for t, pid, _ in todo
            ]
            answers = self.store.search_batch(requests)
            fresh = {t: (answer[0][1] / w if answer else 0.0) for (t, _, w), answer in zip(todo, answers)}
            with self._lock:
                self.probes += len(todo)
                self._values.update({(vector_name, t): v for t, v in fresh.items()})
            known.update(fresh)
        return known
