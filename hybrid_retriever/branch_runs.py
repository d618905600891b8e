"""One branch's answer to one query inside a search, before fusion (internal to the retriever).

A :class:`BranchRun` holds the store's keys for the points (:meth:`Store.search_ranked
<hybrid_retriever.stores.base.Store.search_ranked>`: on Qdrant Edge a UUID's integer, not its
text) in parallel lists, so a search fuses and ranks without a per-candidate object or a text id;
only the hits it returns get text ids, documents and provenance (benchmarks/results/hotpath.md).
:meth:`HybridRetriever.search_branches <hybrid_retriever.retriever.HybridRetriever.search_branches>`
turns runs into the public :class:`~hybrid_retriever.types.BranchResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from hybrid_retriever.types import BranchResult, ScoredId


@dataclass
class BranchRun:
    """``keys``/``scores``: the branch's ranked list, best first; ``completed``: exact scores of other
    candidates (key -> raw score); ``ranks``: each entry's rank when not its position + 1."""

    keys: list[Any]
    scores: list[float]
    completed: dict[Any, float] = field(default_factory=dict)
    encode_ms: float = 0.0
    search_ms: float = 0.0
    error: str | None = None
    query_vector: Any = None
    signals: dict[str, float] = field(default_factory=dict)
    ranks: list[int] | None = None

    @classmethod
    def of(cls, result: BranchResult) -> "BranchRun":
        """The run of a public result (text ids are keys too)."""
        return cls(
            keys=[h.point_id for h in result.hits], scores=[h.score for h in result.hits], completed=result.completed,
            encode_ms=result.encode_ms, search_ms=result.search_ms, error=result.error,
            query_vector=result.query_vector, signals=result.signals, ranks=[h.rank for h in result.hits],
        )

    def rank(self, at: int) -> int:
        """The rank of the entry at position ``at``."""
        return self.ranks[at] if self.ranks is not None else at + 1

    def result(self, branch: str, texts: Callable[[Sequence[Any]], list[str]]) -> BranchResult:
        """The public result, keys turned into text point ids by ``texts`` (the store's ``key_texts``)."""
        n = len(self.keys)
        ids = texts([*self.keys, *self.completed])
        return BranchResult(
            branch=branch,
            hits=[ScoredId(i, s, self.rank(at)) for at, (i, s) in enumerate(zip(ids[:n], self.scores))],
            completed=dict(zip(ids[n:], self.completed.values())),
            encode_ms=self.encode_ms, search_ms=self.search_ms, error=self.error,
            query_vector=self.query_vector, signals=self.signals,
        )
