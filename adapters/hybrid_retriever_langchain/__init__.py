"""LangChain integration of hybrid-retriever: a retriever and a vector store over a hybrid index.

Example::

    from hybrid_retriever_langchain import HybridVectorStore

    store = HybridVectorStore.from_texts(["Qdrant stores vectors."], ids=["q"], path="./idx")
    retriever = store.as_retriever(search_kwargs={"k": 4})
    retriever.invoke("vector database")[0].metadata["hybrid"]["branches"]

Search results are LangChain ``Document`` objects with ``id`` set. The retriever adds the
per-branch provenance under ``metadata["hybrid"]``; the vector store's own searches return
the stored documents unchanged unless built with ``provenance_key="hybrid"``; see
:mod:`hybrid_retriever_langchain.documents`.
"""

try:
    import langchain_core  # noqa: F401
except ImportError as exc:  # the adapter is an extra: say which one
    raise ImportError(
        "hybrid_retriever_langchain needs langchain-core, which is not installed: "
        'pip install "hybrid-retriever[langchain]"'
    ) from exc

from hybrid_retriever_langchain.compressor import HybridRerankCompressor
from hybrid_retriever_langchain.documents import DEFAULT_PROVENANCE_KEY, hit_to_document, provenance
from hybrid_retriever_langchain.embeddings import DenseBranchEmbeddings
from hybrid_retriever_langchain.retriever import HybridSearchRetriever
from hybrid_retriever_langchain.vectorstore import HybridVectorStore

__all__ = [
    "DEFAULT_PROVENANCE_KEY",
    "DenseBranchEmbeddings",
    "HybridRerankCompressor",
    "HybridSearchRetriever",
    "HybridVectorStore",
    "hit_to_document",
    "provenance",
]
