"""The rerank stage: the fused top candidates rescored by a cross-encoder before they go to an LLM.

- :mod:`.base` the one interface, :class:`RerankBackend` (score query-document pairs);
- :mod:`.cross_encoder` any Hugging Face cross-encoder through ``rerankers`` (batched over queries);
- :mod:`.ranker` any ready ``rerankers`` ranker object (FlashRank, ColBERT, T5, API rankers);
- :mod:`.order` the final order (reranker score, or interpolated with the fused score);
- :mod:`.stage` :class:`Reranker`, which the retriever runs after fusion (and PRF);
- :mod:`.training` ``train-reranker``: fine-tune a cross-encoder on judged queries.
"""

from hybrid_retriever.rerank.base import RerankBackend
from hybrid_retriever.rerank.order import RerankedOrder, rerank_order
from hybrid_retriever.rerank.stage import Reranker, RerankError, build_backend

__all__ = ["RerankBackend", "RerankError", "RerankedOrder", "Reranker", "build_backend", "rerank_order"]
