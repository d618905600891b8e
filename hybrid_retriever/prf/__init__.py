"""Pseudo-relevance feedback (PRF): rewrite queries from their top documents and search again.

* :mod:`~hybrid_retriever.prf.dense` — Vector-PRF (Rocchio, Average) for dense branches;
* :mod:`~hybrid_retriever.prf.sparse` — RM3 and sparse Rocchio for BM25;
* :mod:`~hybrid_retriever.prf.guard` — the drift guard (skip or damp unreliable feedback);
* :mod:`~hybrid_retriever.prf.pipeline` — placement of fusion around PRF and the second stage
  (and ``dense_method: qdrant_feedback``: Qdrant's own relevance-feedback query);
* :mod:`~hybrid_retriever.prf.stats` — IDF read from Qdrant for IDF-aware term selection.

Turn it on with ``RetrieverConfig(prf={"enabled": True})``; see ``docs/prf.md``.
"""

from hybrid_retriever.prf.pipeline import PRFInfo, PRFOutput, PRFPipeline, register_rewriter

__all__ = ["PRFInfo", "PRFOutput", "PRFPipeline", "register_rewriter"]
