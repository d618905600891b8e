"""hybrid-retriever: hybrid search for RAG on Qdrant with per-branch provenance.

    >>> from hybrid_retriever import HybridRetriever, RetrieverConfig   # doctest: +SKIP
    >>> r = HybridRetriever(RetrieverConfig())                          # index in ./hybrid-index
    >>> r.add_texts(["Qdrant is a vector database."], ids=["q"])
    >>> r.search("vector store")[0].provenance                        # every branch's score
"""

from hybrid_retriever.version import __version__

from typing import TYPE_CHECKING

from hybrid_retriever.lazy import lazy_exports

#: Public name -> the module defining it. Imported on first use (PEP 562): ``import hybrid_retriever``
#: alone (as the CLI's ``--help`` does) costs no pydantic models, numpy or Qdrant client.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        ("BM25BranchConfig", "DenseBranchConfig", "EdgeStoreConfig", "FusionConfig", "QdrantStoreConfig",
         "RetrieverConfig", "RuntimeConfig"),
        "hybrid_retriever.config",
    ),
    **dict.fromkeys(
        ("BranchFailureError", "ConfigError", "FilterError", "HybridRetrieverError", "IndexCorruptError",
         "IndexLockedError", "IndexMismatchError", "IndexPathError", "InvalidInputError", "StoreUnavailableError"),
        "hybrid_retriever.errors",
    ),
    "HybridRetriever": "hybrid_retriever.retriever",
    "point_id": "hybrid_retriever.retriever",
    **dict.fromkeys(("BranchResult", "BranchScore", "Document", "Hit", "HitGroup"), "hybrid_retriever.types"),
}

if TYPE_CHECKING:
    from hybrid_retriever.config import (
        BM25BranchConfig,
        DenseBranchConfig,
        EdgeStoreConfig,
        FusionConfig,
        QdrantStoreConfig,
        RetrieverConfig,
        RuntimeConfig,
    )
    from hybrid_retriever.errors import (
        BranchFailureError,
        ConfigError,
        FilterError,
        HybridRetrieverError,
        IndexCorruptError,
        IndexLockedError,
        IndexMismatchError,
        IndexPathError,
        InvalidInputError,
        StoreUnavailableError,
    )
    from hybrid_retriever.retriever import HybridRetriever, point_id
    from hybrid_retriever.types import BranchResult, BranchScore, Document, Hit, HitGroup


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


__all__ = [
    "BM25BranchConfig",
    "BranchFailureError",
    "BranchResult",
    "BranchScore",
    "ConfigError",
    "DenseBranchConfig",
    "Document",
    "EdgeStoreConfig",
    "FilterError",
    "FusionConfig",
    "Hit",
    "HitGroup",
    "HybridRetriever",
    "HybridRetrieverError",
    "IndexCorruptError",
    "IndexLockedError",
    "IndexMismatchError",
    "IndexPathError",
    "InvalidInputError",
    "QdrantStoreConfig",
    "RetrieverConfig",
    "RuntimeConfig",
    "StoreUnavailableError",
    "__version__",
    "point_id",
]
