"""Any ready ``rerankers`` ranker object (FlashRank, ColBERT, T5, API rankers) as a backend."""

from __future__ import annotations

from typing import Any, Sequence

from hybrid_retriever.rerank.base import RerankBackend


class RankerBackend(RerankBackend):
    """Wraps an object with ``rerankers``' ``rank(query, docs, doc_ids)``; one call per query.

    Rankers that return ranks without scores (e.g. listwise LLM rankers) get the score
    ``-rank``; documents a ranker leaves out rank below every returned one.
    """

    def __init__(self, ranker: Any, name: str | None = None) -> None:
        if not callable(getattr(ranker, "rank", None)):
            from hybrid_retriever.errors import InvalidInputError

            raise InvalidInputError(
                f"reranker must be a rerankers ranker (with a rank(query, docs, doc_ids) method), got {type(ranker).__name__}"
            )
        self.ranker = ranker
        self.name = name or type(ranker).__name__

    def score(self, queries: Sequence[str], docs: Sequence[Sequence[str]]) -> list[list[float]]:
        out = []
        for q, ds in zip(queries, docs):
            if not ds:
                out.append([])
                continue
            ranked = self.ranker.rank(query=q, docs=list(ds), doc_ids=list(range(len(ds))))
            has_scores = bool(getattr(ranked, "has_scores", True))
            by_id: dict[int, float] = {}
            for r in ranked.results:
                value = r.score if has_scores and r.score is not None else -float(r.rank)
                by_id[int(r.document.doc_id)] = float(value)
            floor = min(by_id.values(), default=0.0) - 1.0
            out.append([by_id.get(i, floor) for i in range(len(ds))])
        return out
