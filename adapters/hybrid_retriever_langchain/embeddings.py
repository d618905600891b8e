"""The dense branch of a hybrid index as a LangChain ``Embeddings`` object."""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

from hybrid_retriever.branches.dense import DenseBranch
from hybrid_retriever.retriever import HybridRetriever


class DenseBranchEmbeddings(Embeddings):
    """Embeds with exactly the encoder, prompts and normalisation a dense branch indexes with.

    It reuses the branch's already-loaded model, so LangChain components that need an
    ``Embeddings`` (MMR, semantic chunking, embedding caches) agree with the index.
    The hybrid store itself never calls it: ranking always uses every branch.
    """

    def __init__(self, branch: DenseBranch) -> None:
        self.branch = branch

    @classmethod
    def from_retriever(cls, retriever: HybridRetriever) -> "DenseBranchEmbeddings | None":
        """The first dense branch of ``retriever``, or ``None`` when it has none."""
        for branch in retriever.branches.values():
            if isinstance(branch, DenseBranch):
                return cls(branch)
        return None

    @property
    def model_name(self) -> str:
        """The sentence-transformers model id or path of the branch."""
        return self.branch.config.model

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Document embeddings (the branch's document prompt, L2-normalised)."""
        return [v.tolist() for v in self.branch.encode_documents(list(texts))]  # type: ignore[union-attr]

    def embed_query(self, text: str) -> list[float]:
        """A query embedding (the branch's query prompt, L2-normalised)."""
        return self.branch.encode_queries([text])[0].tolist()  # type: ignore[union-attr]
