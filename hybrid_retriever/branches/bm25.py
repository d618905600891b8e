"""BM25 as Qdrant defines it: sparse vectors whose IDF Qdrant applies at search time.

Documents are embedded with ``qdrant_edge.Bm25.embed_document`` (saturated term
frequency with length normalisation against ``avg_len``), queries with
``embed_query`` (weight 1 per unique token), and the collection's sparse vector
carries ``Modifier.Idf``. So a server-side BM25 and this branch share token ids and
scores. ``avg_len`` is baked into document vectors, so it is measured on the corpus
at first ingest (Qdrant's default of 256 fits few corpora) and recorded.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import qdrant_edge as qe

from hybrid_retriever.branches.base import Branch, VectorSpec
from hybrid_retriever.config import BM25BranchConfig
from hybrid_retriever.errors import ConfigError
from hybrid_retriever.types import SparseVector, Vector

log = logging.getLogger(__name__)

#: avg_len used only to count tokens (b = 0 makes the weight independent of it).
_COUNT_K = 1.0


class BM25Branch(Branch):
    """Sparse BM25 branch backed by Qdrant's own tokeniser and BM25 definition."""

    def __init__(self, config: BM25BranchConfig) -> None:
        self.config = config
        self.name = config.branch_name
        self.avg_len: float | None = config.avg_len
        self._model: qe.Bm25 | None = None
        # Counting model: with b = 0 and k = 1, a document weight is 2·tf/(tf+1),
        # which inverts exactly to the term frequency in Qdrant's own tokenisation.
        self._counter = qe.Bm25(self._qdrant_config(k=_COUNT_K, b=0.0, avg_len=1.0))

    # -- Qdrant's BM25 configuration --------------------------------------------

    def _qdrant_config(self, k: float, b: float, avg_len: float) -> qe.Bm25Config:
        c = self.config
        language = c.language.lower()
        try:
            stemmer = qe.SnowballParams(getattr(qe.SnowballLanguage, language.capitalize())) if c.stemmer else qe.DisabledStemmer()
            stopwords = (
                qe.StopwordsSet(languages={getattr(qe.Language, language.capitalize())})
                if c.stopwords
                else qe.StopwordsSet(custom=set())
            )
            return qe.Bm25Config(
                k=k,
                b=b,
                avg_len=avg_len,
                language=language,
                lowercase=c.lowercase,
                ascii_folding=c.ascii_folding,
                stemmer=stemmer,
                stopwords=stopwords,
                min_token_len=c.min_token_len,
                max_token_len=c.max_token_len,
            )
        except (AttributeError, ValueError) as exc:
            raise ConfigError(
                f"BM25 language {c.language!r} is not supported by Qdrant's tokeniser ({exc}); "
                "use e.g. 'english', 'german', 'french', or set stemmer/stopwords to false"
            ) from None

    def _bm25(self) -> qe.Bm25:
        if self._model is None:
            if self.avg_len is None:
                raise RuntimeError("BM25 avg_len is unknown: fit() or restore() must run first")
            self._model = qe.Bm25(self._qdrant_config(k=self.config.k1, b=self.config.b, avg_len=self.avg_len))
        return self._model

    # -- Branch interface -----------------------------------------------------------

    @property
    def vector_spec(self) -> VectorSpec:
        return VectorSpec(name=self.name, kind="sparse", idf=True)

    def token_count(self, text: str) -> int:
        """Number of tokens Qdrant's tokeniser keeps from ``text`` (after stopwords, stemming)."""
        weights = self._counter.embed_document(text).values
        return int(round(sum(w * _COUNT_K / (_COUNT_K + 1.0 - w) for w in weights)))

    def term_frequencies(self, text: str) -> dict[int, int]:
        """Token id -> how often it occurs in ``text``, in Qdrant's tokenisation (the ids of stored vectors)."""
        v = self._counter.embed_document(text)
        return {int(i): int(round(w * _COUNT_K / (_COUNT_K + 1.0 - w))) for i, w in zip(v.indices, v.values)}

    def fit(self, texts: Sequence[str]) -> None:
        if self.avg_len is not None or not texts:
            return
        total = sum(self.token_count(t) for t in texts)
        self.avg_len = max(total / len(texts), 1.0)
        self._model = None
        log.info("BM25 branch %r: measured avg_len %.1f tokens over %d documents", self.name, self.avg_len, len(texts))

    def restore(self, stored: dict[str, Any]) -> None:
        if self.avg_len is None and stored.get("avg_len"):
            self.avg_len = float(stored["avg_len"])
            self._model = None

    def encode_documents(self, texts: Sequence[str]) -> list[Vector]:
        model = self._bm25()
        return [_to_sparse(model.embed_document(t)) for t in texts]

    def encode_queries(self, texts: Sequence[str]) -> list[Vector]:
        model = self._bm25()
        return [_to_sparse(model.embed_query(t)) for t in texts]

    def manifest(self) -> dict[str, Any]:
        c = self.config
        return {
            "kind": "bm25",
            "k1": c.k1,
            "b": c.b,
            "avg_len": self.avg_len,
            "language": c.language.lower(),
            "stemmer": c.stemmer,
            "stopwords": c.stopwords,
            "lowercase": c.lowercase,
            "ascii_folding": c.ascii_folding,
            "min_token_len": c.min_token_len,
            "max_token_len": c.max_token_len,
        }


def _to_sparse(v: qe.SparseVector) -> SparseVector:
    return SparseVector(indices=list(v.indices), values=list(v.values))
