"""Retrieval branches: one file per branch, all implementing :class:`Branch`."""

from __future__ import annotations

from typing import Any

from hybrid_retriever.branches.base import Branch, VectorSpec
from hybrid_retriever.branches.bm25 import BM25Branch
from hybrid_retriever.branches.dense import DenseBranch
from hybrid_retriever.branches.multivector import MultiVectorBranch
from hybrid_retriever.errors import ConfigError

#: Branch kind (the config's ``kind``) -> implementation.
BRANCH_TYPES: dict[str, type[Branch]] = {"bm25": BM25Branch, "dense": DenseBranch, "multivector": MultiVectorBranch}


def build_branch(config: Any) -> Branch:
    """The branch a branch config describes."""
    try:
        cls = BRANCH_TYPES[config.kind]
    except KeyError:
        raise ConfigError(f"unknown branch kind {config.kind!r}; known: {sorted(BRANCH_TYPES)}") from None
    return cls(config)  # type: ignore[call-arg]


__all__ = ["BRANCH_TYPES", "BM25Branch", "Branch", "DenseBranch", "MultiVectorBranch", "VectorSpec", "build_branch"]
