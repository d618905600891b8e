"""A LangChain RAG chain over a hybrid index, runnable offline.

    retriever | format docs | prompt | chat model | StrOutputParser

The chat model is LangChain's ``GenericFakeChatModel`` (a canned reply) so the example
needs no API key or network; swap in any chat model (``ChatOpenAI``, ``ChatOllama``, ...)
for real answers. Run it with::

    HF_HUB_OFFLINE=1 python examples/langchain_rag.py ["your question"]

It prints the prompt's context, the answer, and every retrieved document's per-branch
scores (BM25 and dense: raw score, normalised score, rank in the branch).
"""

from __future__ import annotations

import logging
import sys
import tempfile
from operator import itemgetter

from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from hybrid_retriever import RetrieverConfig
from hybrid_retriever_langchain import HybridVectorStore

CORPUS = [
    Document(
        "Qdrant is an open-source vector database written in Rust. It stores dense and sparse vectors "
        "and can run embedded through Qdrant Edge.",
        id="qdrant",
        metadata={"source": "qdrant.md", "topic": "databases"},
    ),
    Document(
        "BM25 scores a document by how often the query terms occur in it, weighted by how rare each term "
        "is in the collection, with a correction for document length.",
        id="bm25",
        metadata={"source": "bm25.md", "topic": "ranking"},
    ),
    Document(
        "Dense retrieval embeds queries and documents with a neural bi-encoder and ranks documents by "
        "the cosine similarity of their embeddings.",
        id="dense",
        metadata={"source": "dense.md", "topic": "ranking"},
    ),
    Document(
        "Hybrid search runs lexical and dense retrieval side by side and fuses their ranked lists, for "
        "example by normalised score interpolation or reciprocal rank fusion.",
        id="hybrid",
        metadata={"source": "hybrid.md", "topic": "ranking"},
    ),
    Document(
        "The Eiffel Tower is a wrought-iron lattice tower in Paris, completed in 1889.",
        id="eiffel",
        metadata={"source": "travel.md", "topic": "travel"},
    ),
]

PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "Answer the question using only the context. Cite sources in brackets.\n\nContext:\n{context}"),
        ("human", "{question}"),
    ]
)

CANNED_ANSWER = (
    "Hybrid search fuses a lexical ranking (BM25) with dense embedding similarity, so it finds exact "
    "terms and paraphrases alike [hybrid.md] [bm25.md]."
)


def format_docs(docs: list[Document]) -> str:
    """The retrieved documents as the prompt's context block."""
    return "\n\n".join(f"[{d.metadata['source']}] {d.page_content}" for d in docs)


def main(question: str = "How does hybrid search combine BM25 with dense retrieval?") -> None:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        config = RetrieverConfig.model_validate(
            {"store": {"kind": "edge", "path": f"{tmp}/index"}, "runtime": {"show_progress": False}}
        )
        store = HybridVectorStore.from_documents(CORPUS, config=config)
        retriever = store.as_retriever(search_kwargs={"k": 3})
        llm = GenericFakeChatModel(messages=iter([AIMessage(CANNED_ANSWER)]))

        # retriever -> format docs -> prompt -> chat model -> parser; the retrieved documents
        # are kept in the output beside the answer so their provenance can be shown.
        answer = (
            {"context": itemgetter("docs") | RunnableLambda(format_docs), "question": itemgetter("question")}
            | PROMPT
            | llm
            | StrOutputParser()
        )
        rag_chain = RunnablePassthrough.assign(docs=itemgetter("question") | retriever).assign(answer=answer)
        result = rag_chain.invoke({"question": question})

        print(f"Question: {question}")
        print("Context:")
        print(format_docs(result["docs"]))
        print(f"Answer: {result['answer']}")
        print("Retrieved documents (fused score; per branch raw / normalised / rank):")
        for doc in result["docs"]:
            prov = doc.metadata["hybrid"]
            print(f"  #{prov['rank']} {doc.id} [{doc.metadata['source']}] fused={prov['score']:.3f}")
            for name, b in prov["branches"].items():
                raw = "-" if b["raw"] is None else f"{b['raw']:.3f}"
                norm = "-" if b["normalized"] is None else f"{b['normalized']:.3f}"
                rank = "-" if b["rank"] is None else str(b["rank"])
                note = " (score completed)" if b["completed"] else ""
                print(f"      {name:<6} raw={raw} normalized={norm} rank={rank}{note}")
        store.close()


if __name__ == "__main__":
    main(*sys.argv[1:2])
