"""The store interface: where branch vectors live and are searched (Qdrant, embedded or remote)."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from hybrid_retriever.branches.base import VectorSpec
from hybrid_retriever.stores.filters import FilterSpec
from hybrid_retriever.types import Vector

#: Payload keys of every stored point (the LangChain/Qdrant convention for the last two).
PAYLOAD_ID = "doc_id"
PAYLOAD_TEXT = "page_content"
PAYLOAD_METADATA = "metadata"


@dataclass
class StoredPoint:
    """One Qdrant point: its id, one vector per branch, and the payload."""

    point_id: str
    vectors: dict[str, Vector] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class RelevanceFeedback:
    """Qdrant's relevance-feedback query (Qdrant 1.17+, naive strategy); the request's vector is its target.

    Qdrant scores a point ``x`` as ``a·sim(target, x) + Σ_pairs (s_pos − s_neg)^b · c ·
    (sim(pos, x) − sim(neg, x))``. Which pairs depends on the engine: Qdrant Edge 0.9 and
    qdrant-client's local mode take every pair with ``s_pos > s_neg``; the Qdrant server
    source pairs best with worst, second with second-worst (at most 3 pairs). With two
    feedback vectors both give the same single pair.
    """

    vectors: list[Vector]
    scores: list[float]
    a: float
    b: float
    c: float


@dataclass
class SearchRequest:
    """Nearest-neighbour search of one named vector.

    ``point_ids`` restricts the search to those points (score completion); ``exact``
    bypasses the approximate index; ``prefetch`` makes it a re-scoring of the
    prefetched candidates (one Qdrant request); ``feedback`` turns it into Qdrant's
    relevance-feedback query around ``vector``.
    """

    vector_name: str
    vector: Vector
    limit: int
    filter: FilterSpec | None = None
    #: Point ids as text, or as the keys :meth:`Store.search_ranked` returned (the store tells them apart).
    point_ids: Sequence[Any] | None = None
    exact: bool = False
    #: Searches whose candidates this request re-scores (Qdrant prefetches); None = search all points.
    prefetch: list["SearchRequest"] | None = None
    #: Quantized vectors: None leaves Qdrant's default; True re-scores the best
    #: ``limit × oversampling`` with the original vectors; False scores with the quantized copy only.
    rescore: bool | None = None
    oversampling: float | None = None
    #: Score by Qdrant's relevance-feedback formula instead of plain similarity to ``vector``.
    feedback: RelevanceFeedback | None = None


#: A search answer: (point id, score) pairs, best first.
ScoredIds = list[tuple[str, float]]


@dataclass
class Ranked:
    """A search answer in the store's own id form (:meth:`Store.search_ranked`): parallel lists, best first.

    ``keys`` name points as the store finds cheapest (Qdrant Edge: a UUID's 128-bit integer, where its
    text costs microseconds per id each way); they are hashable, compare as the text ids do, are
    taken back wherever the store takes point ids, and :meth:`Store.key_texts` gives their text.
    """

    keys: list[Any]
    scores: list[float]


class Store(abc.ABC):
    """A Qdrant collection (or Edge shard) holding one point per document."""

    #: Human-readable location, used in messages.
    location: str

    @abc.abstractmethod
    def exists(self) -> bool:
        """Whether the collection has been created."""

    @abc.abstractmethod
    def create(self, specs: Sequence[VectorSpec], manifest: dict[str, Any]) -> None:
        """Create the collection with one vector per spec and record ``manifest``."""

    @abc.abstractmethod
    def read_manifest(self) -> dict[str, Any] | None:
        """What built the index, or ``None`` when there is no index yet."""

    @abc.abstractmethod
    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Replace the recorded manifest."""

    @abc.abstractmethod
    def upsert(self, points: Sequence[StoredPoint]) -> None:
        """Insert or replace points (same id = replaced)."""

    @abc.abstractmethod
    def delete(self, point_ids: Sequence[str]) -> None:
        """Delete points; unknown ids are ignored."""

    @abc.abstractmethod
    def retrieve(self, point_ids: Sequence[str], with_vectors: Sequence[str] | bool = False) -> list[StoredPoint]:
        """The stored points among ``point_ids`` (missing ones are skipped), in no set order."""

    @abc.abstractmethod
    def count(self, filter: FilterSpec | None = None) -> int:
        """Exact number of stored points (matching ``filter``)."""

    @abc.abstractmethod
    def search_batch(self, requests: Sequence[SearchRequest]) -> list[ScoredIds]:
        """Answer several searches at once, in order."""

    def search_ranked(self, requests: Sequence[SearchRequest]) -> list[Ranked]:
        """:meth:`search_batch` with the ids as keys (:class:`Ranked`); by default the keys are the text ids."""
        return [Ranked([i for i, _ in answer], [s for _, s in answer]) for answer in self.search_batch(requests)]

    def key_texts(self, keys: Sequence[Any]) -> list[str]:
        """The text point ids of keys from :meth:`search_ranked`."""
        return list(keys)

    @abc.abstractmethod
    def fused_search(
        self,
        requests: Sequence[SearchRequest],
        method: Literal["rrf", "dbsf"],
        limit: int,
        rrf_k: int = 2,
        weights: Sequence[float] | None = None,
    ) -> ScoredIds:
        """One request that fuses the branch searches inside Qdrant (prefetches + fusion)."""

    @abc.abstractmethod
    def scroll(
        self, limit: int, offset: str | None = None, filter: FilterSpec | None = None
    ) -> tuple[list[StoredPoint], str | None]:
        """A page of points (payload only) and the offset of the next page (``None`` at the end)."""

    @abc.abstractmethod
    def optimize(self) -> None:
        """Build indexes after bulk writes (a no-op where the server does it on its own)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release files and connections."""
