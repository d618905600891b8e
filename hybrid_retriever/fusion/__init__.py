"""Pure fusion functions over per-branch ranked lists: no I/O, no Qdrant, no models."""

from hybrid_retriever.fusion.interpolate import interpolate
from hybrid_retriever.fusion.normalize import NORMALIZERS, Normalizer, fit_normalizer
from hybrid_retriever.fusion.rrf import weighted_rrf
from hybrid_retriever.fusion.types import BranchList, FusedItem

__all__ = ["BranchList", "FusedItem", "NORMALIZERS", "Normalizer", "fit_normalizer", "interpolate", "weighted_rrf"]
