"""Stores: one interface, two real Qdrant back-ends (embedded Edge, remote qdrant-client)."""

from __future__ import annotations

from typing import Any

from hybrid_retriever.stores.base import SearchRequest, Store, StoredPoint
from hybrid_retriever.stores.edge import EdgeStore
from hybrid_retriever.stores.filters import FilterSpec, parse_filter
from hybrid_retriever.stores.qdrant import QdrantStore


def build_store(config: Any) -> Store:
    """The store a store config describes."""
    if config.kind == "edge":
        return EdgeStore(config.path)
    return QdrantStore(config)


__all__ = ["EdgeStore", "FilterSpec", "QdrantStore", "SearchRequest", "Store", "StoredPoint", "build_store", "parse_filter"]
