"""The branch interface: how a retrieval signal turns text into a Qdrant vector.

A branch owns one named vector in every stored point. It encodes documents at
ingest and queries at search time; the store does the searching. New branches
(late interaction, learned sparse, ...) are one new file implementing this class.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Literal, Sequence

from hybrid_retriever.types import Vector

VectorKind = Literal["dense", "sparse", "multi"]


@dataclass(frozen=True)
class VectorSpec:
    """What the store must create for a branch's vector.

    ``size`` is the dimension (dense and multi); ``distance`` is Qdrant's distance
    name ("Cosine", "Dot", ...); ``idf`` turns on Qdrant's IDF modifier (sparse);
    ``indexed`` False stores a multi-vector without an HNSW graph (rescoring only).
    """

    name: str
    kind: VectorKind
    size: int = 0
    distance: str = "Cosine"
    idf: bool = False
    indexed: bool = True
    #: Storage type of the vector's numbers: "float32" or "float16".
    datatype: str = "float32"
    #: Qdrant quantization of the vector ("int8" scalar), or None.
    quantization: str | None = None
    #: HNSW links per node and build beam when ``indexed`` (None = Qdrant's defaults).
    hnsw_m: int | None = None
    hnsw_ef_construct: int | None = None


@dataclass(frozen=True)
class FirstStage:
    """A first-stage search on another vector a branch owns; its candidates are re-scored
    with the branch's own vector in the same Qdrant request (e.g. MUVERA FDE -> MaxSim)."""

    vector_name: str
    vector: Vector
    limit: int


class Branch(abc.ABC):
    """One retrieval branch. Implementations must be safe to call from several threads."""

    #: Unique name, also the name of the Qdrant vector the branch owns.
    name: str

    @property
    @abc.abstractmethod
    def vector_spec(self) -> VectorSpec:
        """The Qdrant vector this branch stores and searches."""

    @abc.abstractmethod
    def encode_documents(self, texts: Sequence[str]) -> list[Vector]:
        """Vectors of documents, one per text, in order."""

    @abc.abstractmethod
    def encode_queries(self, texts: Sequence[str]) -> list[Vector]:
        """Vectors of queries, one per text, in order."""

    @abc.abstractmethod
    def manifest(self) -> dict[str, Any]:
        """Settings that define the stored vectors; reopening with different ones is an error."""

    def declared_manifest(self) -> dict[str, Any]:
        """The part of :meth:`manifest` known without loading a model; checked before any model loads.

        Defaults to the whole manifest, for branches that load nothing.
        """
        return self.manifest()

    def fit(self, texts: Sequence[str]) -> None:
        """Learn corpus statistics before the first ingest (e.g. BM25's average length).

        Called once, on the first batch written to an empty index; no-op by default.
        """

    def restore(self, stored: dict[str, Any]) -> None:
        """Take statistics learned at first ingest back from a stored manifest; no-op by default."""

    def identity_probe(self) -> dict[str, Any] | None:
        """What a new index records so later encoders can be checked against the model itself (see
        :mod:`hybrid_retriever.models.probe`); None (the default) for a branch that records nothing."""
        return None

    def check_probe(self, recorded: Any) -> None:
        """Before the first encoding of a reopened index: the encoder in use reproduces ``recorded``
        (what :meth:`identity_probe` gave at creation, or None for an older index); no-op by default."""

    # -- optional hooks (defaults keep a branch to one vector searched directly) ------

    #: True for a branch that only re-scores the other branches' candidates (its request
    #: carries their searches as prefetches) instead of searching on its own.
    rescores_others: bool = False

    @property
    def vector_specs(self) -> list[VectorSpec]:
        """Every Qdrant vector the branch owns; the first is :attr:`vector_spec`, the one it scores with."""
        return [self.vector_spec]

    def stored_vectors(self, vectors: Sequence[Vector]) -> list[dict[str, Vector]]:
        """The named vectors stored per document, from :meth:`encode_documents`' output (or precomputed vectors)."""
        return [{self.name: v} for v in vectors]

    def first_stage(self, vector: Vector) -> FirstStage | None:
        """A first-stage search whose candidates this branch re-scores; None = search its vector directly."""
        return None

    def search_options(self) -> dict[str, Any]:
        """Extra :class:`~hybrid_retriever.stores.base.SearchRequest` fields for this branch's searches."""
        return {}

    def attach(self, branches: dict[str, "Branch"]) -> None:
        """Called once by the retriever with every branch (e.g. to share a model); no-op by default."""
