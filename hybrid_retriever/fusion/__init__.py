"""Pure fusion functions over per-branch ranked lists: no I/O, no Qdrant, no models."""

from hybrid_retriever.fusion.adaptive import (
    DEFAULT_CLARITY_WEIGHT,
    DEFAULT_FOREIGN_WEIGHT,
    DEFAULT_FRAGMENTATION_WEIGHT,
    DEFAULT_SPARSE_CLARITY_OFFSET,
    DEFAULT_SUPPORT_WEIGHT,
    AdaptiveWeights,
    BranchSignals,
    adaptive,
    adaptive_weights,
    branch_signals,
    clarity,
    query_facts,
    support,
)
from hybrid_retriever.fusion.interpolate import COMPLETED, interpolate
from hybrid_retriever.fusion.normalize import NORMALIZERS, Normalizer, fit_normalizer
from hybrid_retriever.fusion.results import ADAPTIVE_OPTIONS, adaptive_options, fuse_results, served_weights
from hybrid_retriever.fusion.rrf import weighted_rrf
from hybrid_retriever.fusion.types import BranchList, FusedItem

__all__ = [
    "ADAPTIVE_OPTIONS",
    "DEFAULT_CLARITY_WEIGHT",
    "DEFAULT_FOREIGN_WEIGHT",
    "DEFAULT_FRAGMENTATION_WEIGHT",
    "DEFAULT_SPARSE_CLARITY_OFFSET",
    "DEFAULT_SUPPORT_WEIGHT",
    "AdaptiveWeights",
    "BranchList",
    "BranchSignals",
    "COMPLETED",
    "FusedItem",
    "NORMALIZERS",
    "Normalizer",
    "adaptive",
    "adaptive_options",
    "adaptive_weights",
    "branch_signals",
    "clarity",
    "fit_normalizer",
    "fuse_results",
    "interpolate",
    "query_facts",
    "served_weights",
    "support",
    "weighted_rrf",
]
