"""The plain Python API: build an index, search it with and without a filter, reopen it.

    HF_HUB_OFFLINE=1 python examples/python_api.py

Builds a BM25 + dense (all-MiniLM-L6-v2) index in a temporary folder, prints each
hit's fused score and every branch's raw score, normalised score and rank, then
closes the index and reopens it with ``HybridRetriever.open`` (which reads the
configuration the index was built with) to show the results are unchanged.
"""

from __future__ import annotations

import logging
import tempfile

from hybrid_retriever import Document, Hit, HybridRetriever, RetrieverConfig

DOCS = [
    Document("Qdrant is a vector database written in Rust.", {"topic": "databases", "year": 2021}, id="qdrant"),
    Document("PostgreSQL is a relational database with a rich SQL dialect.", {"topic": "databases", "year": 1996}, id="postgres"),
    Document("BM25 ranks documents by term frequency and inverse document frequency.", {"topic": "ranking", "year": 1994}, id="bm25"),
    Document("Sentence embeddings place paraphrases close together in vector space.", {"topic": "ranking", "year": 2019}, id="sbert"),
    Document("Reciprocal rank fusion merges ranked lists using only the ranks.", {"topic": "ranking", "year": 2009}, id="rrf"),
    Document("Sourdough bread rises slowly thanks to wild yeast.", {"topic": "cooking", "year": 2020}, id="bread"),
]


def show(title: str, hits: list[Hit]) -> None:
    """Print hits with their provenance, one line per branch."""
    print(f"== {title}")
    for hit in hits:
        print(f"  #{hit.rank} {hit.id:<9} fused={hit.score:.3f} topic={hit.metadata['topic']}")
        for name, s in hit.provenance.items():
            raw = "-" if s.raw is None else f"{s.raw:.3f}"
            norm = "-" if s.normalized is None else f"{s.normalized:.3f}"
            rank = "-" if s.rank is None else str(s.rank)
            print(f"      {name:<6} raw={raw} normalized={norm} rank={rank}{' (completed)' if s.completed else ''}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    query = "which database is implemented in Rust"
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/index"
        config = RetrieverConfig.model_validate(
            {
                "store": {"kind": "edge", "path": path},
                "branches": [{"kind": "bm25", "weight": 0.5}, {"kind": "dense", "weight": 0.5}],
                "fusion": {"method": "interpolation", "normalization": "minmax"},
                "runtime": {"k": 3, "show_progress": False},
            }
        )
        with HybridRetriever(config) as retriever:
            ids = retriever.add_documents(DOCS)
            print(f"indexed {len(ids)} documents; metadata fields: {retriever.metadata_fields}")
            before = retriever.search(query)
            show(f"search {query!r}", before)
            show("search 'ranking with fused lists' where topic == 'ranking' and year >= 2000",
                 retriever.search("ranking with fused lists", filter={"topic": "ranking", "year": {"gte": 2000}}))
            print("as JSON-ready dict:", before[0].as_dict()["provenance"])

        with HybridRetriever.open(path) as reopened:  # settings come from the index itself
            after = reopened.search(query)
            print(f"reopened: {reopened.count()} documents, branches {reopened.config.branch_names}")
            same = [h.id for h in after] == [h.id for h in before]
            print(f"reopened results identical: {same}")
            show(f"after reopen {query!r}", after)


if __name__ == "__main__":
    main()
