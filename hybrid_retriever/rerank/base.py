"""The one interface of the rerank stage: a backend that scores query-document pairs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np

from hybrid_retriever.errors import ConfigError


class RerankBackend(ABC):
    """Scores each query's candidate documents; a higher score means more relevant.

    ``score`` takes many queries at once so a backend can batch every query's pairs
    together (a cross-encoder does); scores of one query need only be comparable with
    each other. Implementations must be safe to call from several threads at once.
    """

    #: What the provenance names as the model (a Hugging Face id, a folder, a class name).
    name: str = "reranker"

    @abstractmethod
    def score(self, queries: Sequence[str], docs: Sequence[Sequence[str]]) -> list[list[float]]:
        """One list of scores per query, in the order of that query's ``docs``."""

    def close(self) -> None:
        """Release what the backend holds (a model on a GPU); it is not used afterwards."""


def logits_to_scores(logits: np.ndarray) -> list[float]:
    """One relevance score per row of a cross-encoder's logits: the single logit, or positive minus negative for two labels."""
    a = np.asarray(logits, dtype=np.float32)
    if a.ndim == 1:
        return a.tolist()
    if a.shape[1] == 1:
        return a[:, 0].tolist()
    if a.shape[1] == 2:
        return (a[:, 1] - a[:, 0]).tolist()
    raise ConfigError(f"the reranker outputs {a.shape[1]} labels per pair; a cross-encoder needs 1 (a relevance logit) or 2")


def per_query(flat: Sequence[float], docs: Sequence[Sequence[str]]) -> list[list[float]]:
    """``flat`` (every query's pair scores, query after query) cut into one list per query."""
    out, pos = [], 0
    for ds in docs:
        out.append(list(flat[pos : pos + len(ds)]))
        pos += len(ds)
    return out
