"""Stores: one interface, two real Qdrant back-ends (embedded Edge, remote qdrant-client)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hybrid_retriever.stores.base import SearchRequest, Store, StoredPoint
from hybrid_retriever.stores.edge import EdgeStore
from hybrid_retriever.stores.filters import FilterSpec, parse_filter

if TYPE_CHECKING:
    from hybrid_retriever.stores.qdrant import QdrantStore


def build_store(config: Any) -> Store:
    """The store a store config describes."""
    if config.kind == "edge":
        return EdgeStore(config.path)
    from hybrid_retriever.stores.qdrant import QdrantStore

    return QdrantStore(config)


def __getattr__(name: str) -> Any:
    # qdrant-client takes ~1 s to import: only a remote store (or a caller naming it) loads it.
    if name == "QdrantStore":
        from hybrid_retriever.stores.qdrant import QdrantStore

        return QdrantStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["EdgeStore", "FilterSpec", "QdrantStore", "SearchRequest", "Store", "StoredPoint", "build_store", "parse_filter"]
