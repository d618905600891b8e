"""The one interface of the rerank stage: a backend that scores query-document pairs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence


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
