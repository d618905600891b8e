"""Building (or reopening) the core :class:`HybridRetriever` the adapters wrap."""

from __future__ import annotations

import os
from typing import Any

from hybrid_retriever.config import DenseBranchConfig, RetrieverConfig
from hybrid_retriever.errors import InvalidInputError
from hybrid_retriever.retriever import HybridRetriever
from hybrid_retriever.stores.edge import MANIFEST_FILE


def make_core(
    retriever: HybridRetriever | None = None,
    config: RetrieverConfig | dict[str, Any] | None = None,
    path: str | os.PathLike[str] | None = None,
) -> HybridRetriever:
    """The core retriever from exactly one of: an instance, a configuration, or an Edge index path.

    ``path`` reopens the index there with the settings it was built with, or creates a
    new index there with the default configuration when the folder holds none.
    """
    given = [name for name, v in (("retriever", retriever), ("config", config), ("path", path)) if v is not None]
    if len(given) > 1:
        raise InvalidInputError(f"give only one of retriever, config or path; got {given}")
    if retriever is not None:
        if not isinstance(retriever, HybridRetriever):
            raise InvalidInputError(f"retriever must be a HybridRetriever, got {type(retriever).__name__}")
        return retriever
    if config is not None:
        cfg = config if isinstance(config, RetrieverConfig) else RetrieverConfig.validate_data(dict(config))
        return HybridRetriever(cfg)
    if path is not None:
        if os.path.isfile(os.path.join(os.fspath(path), MANIFEST_FILE)):
            return HybridRetriever.open(os.fspath(path))
        return HybridRetriever(RetrieverConfig.validate_data({"store": {"kind": "edge", "path": os.fspath(path)}}))
    return HybridRetriever(RetrieverConfig())


def dense_model(core: HybridRetriever) -> str | None:
    """The model name of the first dense branch, if there is one (for tracing metadata)."""
    for b in core.config.branches:
        if isinstance(b, DenseBranchConfig):
            return b.model
    return None
