"""The rerank stage: the fused top candidates rescored by a cross-encoder before they go to an LLM.

- :mod:`.base` the one interface, :class:`RerankBackend` (score query-document pairs);
- :mod:`.cross_encoder` any Hugging Face cross-encoder through ``rerankers`` (batched over queries);
- :mod:`.onnx_cross_encoder` the same model exported to ONNX Runtime (cached, checked against torch);
- :mod:`.depth` adaptive depth: fewer candidates for queries whose branches agree;
- :mod:`.ranker` any ready ``rerankers`` ranker object (FlashRank, ColBERT, T5, API rankers);
- :mod:`.order` the final order (reranker score, or interpolated with the fused score);
- :mod:`.stage` :class:`Reranker`, which the retriever runs after fusion (and PRF).

Training a cross-encoder on judged queries (``train-reranker``) searches an index and
evaluates, so it lives above the retriever, in :mod:`hybrid_retriever.evaluation.rerank_training`.
"""

from typing import TYPE_CHECKING

from hybrid_retriever.lazy import lazy_exports

#: Public name -> defining module, imported on first use (PEP 562): importing the package loads no model code.
_EXPORTS: dict[str, str] = {
    "RerankBackend": "hybrid_retriever.rerank.base",
    "RerankedOrder": "hybrid_retriever.rerank.order",
    "rerank_order": "hybrid_retriever.rerank.order",
    "Reranker": "hybrid_retriever.rerank.stage",
    "RerankError": "hybrid_retriever.rerank.stage",
    "build_backend": "hybrid_retriever.rerank.stage",
}

if TYPE_CHECKING:
    from hybrid_retriever.rerank.base import RerankBackend
    from hybrid_retriever.rerank.order import RerankedOrder, rerank_order
    from hybrid_retriever.rerank.stage import Reranker, RerankError, build_backend


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


__all__ = ["RerankBackend", "RerankError", "RerankedOrder", "Reranker", "build_backend", "rerank_order"]
