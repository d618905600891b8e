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
from hybrid_retriever.languages import STEMMERS, Analyzer, LanguageDetection, analyzer_for, detect_language
from hybrid_retriever.types import SparseVector, Vector

log = logging.getLogger(__name__)

#: avg_len used only to count tokens (b = 0 makes the weight independent of it).
_COUNT_K = 1.0


class BM25Branch(Branch):
    """Sparse BM25 branch backed by Qdrant's own tokeniser and BM25 definition.

    With ``language: auto`` the analyzer is chosen at first ingest from the corpus's
    detected language (:mod:`hybrid_retriever.languages`) and recorded in the index
    manifest, so a reopened index analyses queries exactly as its documents were.
    """

    def __init__(self, config: BM25BranchConfig) -> None:
        self.config = config
        self.name = config.branch_name
        self.avg_len: float | None = config.avg_len
        self.detection: LanguageDetection | None = None
        self.analyzer: Analyzer | None = None
        self._model: qe.Bm25 | None = None
        self._counter: qe.Bm25 | None = None
        self._warned_empty = False
        if config.language.lower() != "auto":
            self._set_analyzer(analyzer_for(config.language, config.stemmer, config.stopwords, config.tokenizer))

    # -- the analyzer -------------------------------------------------------------------

    def _set_analyzer(self, analyzer: Analyzer) -> None:
        self.analyzer = analyzer
        self._model = None
        # Counting model: with b = 0 and k = 1, a document weight is 2·tf/(tf+1),
        # which inverts exactly to the term frequency in Qdrant's own tokenisation.
        self._counter = qe.Bm25(self._qdrant_config(k=_COUNT_K, b=0.0, avg_len=1.0))

    def choose_analyzer(self, texts: Sequence[str]) -> None:
        """``language: auto``: detect the corpus language from ``texts`` and take its analyzer."""
        if self.analyzer is not None:
            return
        c = self.config
        det = detect_language(texts)
        self.detection = det
        lang = det.language or "english"
        # An explicit ``true`` asks for the option where the detected language has it.
        analyzer = analyzer_for(
            lang,
            None if c.stemmer else c.stemmer,
            None if c.stopwords else c.stopwords,
            c.tokenizer,
        )
        self._set_analyzer(analyzer)
        log.info("BM25 branch %r: %s", self.name, self.describe())
        if det.language is None:
            log.warning(
                "BM25 branch %r: no language recognised in %d sampled documents; using English rules. "
                "Set bm25.language to the corpus language to choose another.", self.name, det.sampled,
            )
        elif det.mixed:
            log.warning(
                "BM25 branch %r: the corpus looks mixed-language (%s of %d sampled documents); analysing all of it as "
                "%s, the majority. Words of the other languages are still matched as plain tokens, without their "
                "stemming or stopwords; split the corpus per language into separate indexes for the best BM25, or "
                "set bm25.language explicitly.",
                self.name, ", ".join(f"{k} {v}" for k, v in det.counts.items()), det.sampled, lang,
            )

    @property
    def content_language(self) -> str | None:
        """The corpus language: detected (language auto) or configured; None before the first ingest."""
        if self.detection is not None and self.detection.language:
            return self.detection.language
        return self.analyzer.language if self.analyzer else None

    def describe(self) -> str:
        """One line saying which analyzer BM25 uses and why (for logs and the CLI's summary)."""
        a = self.analyzer
        if a is None:
            return "analyzer not chosen yet (language auto: detected at first ingest)"
        parts = [f"language {a.language}", f"{a.tokenizer} tokenizer"]
        parts.append("Snowball stemmer" if a.stemmer else "no stemmer")
        parts.append("stopwords" if a.stopwords else "no stopwords")
        line = ", ".join(parts)
        if self.detection is not None:
            d = self.detection
            line += f" (detected in {d.share:.0%} of {d.sampled} sampled documents"
            line += "; mixed-language corpus" if d.mixed else ""
            line += ")"
        else:
            line += " (configured)"
        if a.language not in STEMMERS and a.stemmer is False and self.config.stemmer is None:
            line += f"; Qdrant has no stemmer for {a.language}: plain {a.tokenizer} tokens"
        return line

    # -- Qdrant's BM25 configuration --------------------------------------------

    def _qdrant_config(self, k: float, b: float, avg_len: float) -> qe.Bm25Config:
        c = self.config
        a = self.analyzer
        if a is None:
            raise RuntimeError("BM25 analyzer is not chosen: fit() or restore() must run first (language auto)")
        try:
            stemmer = qe.SnowballParams(getattr(qe.SnowballLanguage, a.language.capitalize())) if a.stemmer else qe.DisabledStemmer()
            stopwords = (
                qe.StopwordsSet(languages={getattr(qe.Language, a.language.capitalize())})
                if a.stopwords
                else qe.StopwordsSet(custom=set())
            )
            return qe.Bm25Config(
                k=k,
                b=b,
                avg_len=avg_len,
                tokenizer=qe.TokenizerType.Multilingual if a.tokenizer == "multilingual" else qe.TokenizerType.Word,
                # Qdrant's language name only sets defaults for stemmer/stopwords, both given here.
                language=None,
                lowercase=c.lowercase,
                ascii_folding=c.ascii_folding,
                stemmer=stemmer,
                stopwords=stopwords,
                min_token_len=c.min_token_len,
                max_token_len=c.max_token_len,
            )
        except (AttributeError, ValueError) as exc:
            raise ConfigError(
                f"BM25 language {a.language!r} is not supported by Qdrant's tokeniser ({exc}); "
                "use e.g. 'english', 'german', 'chinese', or set bm25.stemmer and bm25.stopwords to false"
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
        if self._counter is None:
            raise RuntimeError("BM25 analyzer is not chosen: fit() or restore() must run first (language auto)")
        weights = self._counter.embed_document(text).values
        return int(round(sum(w * _COUNT_K / (_COUNT_K + 1.0 - w) for w in weights)))

    def term_frequencies(self, text: str) -> dict[int, int]:
        """Token id -> how often it occurs in ``text``, in Qdrant's tokenisation (the ids of stored vectors)."""
        v = self._counter.embed_document(text)
        return {int(i): int(round(w * _COUNT_K / (_COUNT_K + 1.0 - w))) for i, w in zip(v.indices, v.values)}

    def fit(self, texts: Sequence[str]) -> None:
        if texts:
            self.choose_analyzer(texts)
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
        if self.analyzer is None and stored.get("language"):
            # ``language: auto`` reopens with the language the index was built with. Settings the
            # configuration gives explicitly stay its own, so a change is reported as a mismatch.
            # Indexes from before the analyzer was recorded in full used word tokens.
            c = self.config
            self._set_analyzer(
                Analyzer(
                    language=stored["language"],
                    tokenizer=c.tokenizer if c.tokenizer != "auto" else stored.get("tokenizer", "word"),
                    stemmer=False if c.stemmer is False else bool(stored.get("stemmer")),
                    stopwords=False if c.stopwords is False else bool(stored.get("stopwords")),
                )
            )
            if stored.get("language_detection"):
                self.detection = LanguageDetection(**{k: v for k, v in stored["language_detection"].items() if k != "mixed"})

    def encode_documents(self, texts: Sequence[str]) -> list[Vector]:
        model = self._bm25()
        return [_to_sparse(model.embed_document(t)) for t in texts]

    def encode_queries(self, texts: Sequence[str]) -> list[Vector]:
        model = self._bm25()
        out = [_to_sparse(model.embed_query(t)) for t in texts]
        if not self._warned_empty:
            empty = next((t for t, v in zip(texts, out) if not v.indices), None)
            if empty is not None:
                self._warned_empty = True  # once per branch: a log line per query would drown the log
                log.warning(
                    "BM25 branch %r: the query %r has no BM25 tokens under the %s analyzer (every word is a stopword, "
                    "or its script is not tokenised); BM25 cannot match it, so it is flagged in the hits' provenance "
                    "and the other branches rank it. If queries are in another language than the corpus, set "
                    "bm25.language (and tokenizer: multilingual for Chinese, Japanese, Korean, Thai). Logged once.",
                    self.name, empty[:80], self.analyzer.language if self.analyzer else "?",
                )
        return out

    def manifest(self) -> dict[str, Any]:
        c = self.config
        a = self.analyzer
        return {
            "kind": "bm25",
            "k1": c.k1,
            "b": c.b,
            "avg_len": self.avg_len,
            "language": a.language if a else c.language.lower(),
            "tokenizer": a.tokenizer if a else c.tokenizer,
            "stemmer": a.stemmer if a else c.stemmer,
            "stopwords": a.stopwords if a else c.stopwords,
            "language_detection": self.detection.as_dict() if self.detection else None,
            "lowercase": c.lowercase,
            "ascii_folding": c.ascii_folding,
            "min_token_len": c.min_token_len,
            "max_token_len": c.max_token_len,
        }


def _to_sparse(v: qe.SparseVector) -> SparseVector:
    return SparseVector(indices=list(v.indices), values=list(v.values))
