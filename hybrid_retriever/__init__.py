"""hybrid-retriever: hybrid search for RAG on Qdrant with per-branch provenance.

    >>> from hybrid_retriever import HybridRetriever, RetrieverConfig   # doctest: +SKIP
    >>> r = HybridRetriever(RetrieverConfig())                          # index in ./hybrid-index
    >>> r.add_texts(["Qdrant is a vector database."], ids=["q"])
    >>> r.search("vector store")[0].provenance                        # every branch's score
"""

from hybrid_retriever.version import __version__

from hybrid_retriever.config import (  # noqa: E402
    BM25BranchConfig,
    DenseBranchConfig,
    EdgeStoreConfig,
    FusionConfig,
    QdrantStoreConfig,
    RetrieverConfig,
    RuntimeConfig,
)
from hybrid_retriever.errors import (  # noqa: E402
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
from hybrid_retriever.retriever import HybridRetriever, point_id  # noqa: E402
from hybrid_retriever.types import BranchResult, BranchScore, Document, Hit, HitGroup  # noqa: E402

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
