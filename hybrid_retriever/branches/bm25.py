"""BM25 as Qdrant defines it: sparse vectors whose IDF Qdrant applies at search time.

Documents are embedded with ``qdrant_edge.Bm25.embed_document`` (saturated term
frequency with length normalisation against ``avg_len``), queries with
``embed_query`` (weight 1 per unique token), and the collection's sparse vector
carries ``Modifier.Idf``. So a server-side BM25 and this branch share token ids and
scores. ``avg_len`` is baked into document vectors, so it is measured on the corpus
at first ingest (Qdrant's default of 256 fits few corpora) and recorded.

A mixed-language corpus (``language: auto`` finding no language in 80% of the sample,
or ``language_per_document: true``) is analysed per document: each document in its
own detected language, with that language's avg_len, and each query in its own.
Stemmed tokens of different languages hash to different ids, so one sparse vector
holds them all and a query matches the documents of its language.

With ``language: auto`` the language is decided only once the documents hold enough
words to tell it (:func:`~hybrid_retriever.languages.decide_language`; before, a
language-neutral analyzer), and the decision is final once the sample also holds
:data:`~hybrid_retriever.languages.DOCUMENTS_TO_SETTLE` documents. Until then the branch
is *pending*: :meth:`fit` runs again on every ingest (the retriever passes it the stored
texts and the new ones, and re-encodes the stored BM25 vectors), so a pending index is
always analysed as one built in one go from the same documents.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import qdrant_edge as qe

from hybrid_retriever.branches.base import Branch, VectorSpec
from hybrid_retriever.config import BM25BranchConfig
from hybrid_retriever.errors import ConfigError
from hybrid_retriever.languages import (
    DOCUMENTS_TO_SETTLE,
    STEMMERS,
    Analyzer,
    LanguageDetection,
    WORDS_TO_DECIDE,
    analyzer_for,
    corpus_languages,
    decide_language,
    detect_each,
    neutral_analyzer,
)
from hybrid_retriever.types import SparseVector, Vector

log = logging.getLogger(__name__)

#: avg_len used only to count tokens (b = 0 makes the weight independent of it).
_COUNT_K = 1.0
#: k1 of a new index when the configuration leaves it unset: the best of a k1 / b grid on the dev
#: splits (scifact train, nfcorpus dev; benchmarks/results/multilingual.md). Indexes built before
#: it was the default were built with Qdrant's 1.2, which they record.
DEFAULT_K1 = 0.9
#: k1 of indexes built when the library's default was Qdrant's (repair tries it for them).
PREVIOUS_DEFAULT_K1 = 1.2


class BM25Branch(Branch):
    """Sparse BM25 branch backed by Qdrant's own tokeniser and BM25 definition.

    With ``language: auto`` the analyzer is chosen from the corpus's detected language
    (:mod:`hybrid_retriever.languages`) once the documents hold enough text, and
    recorded in the index manifest, so a reopened index analyses queries exactly as its
    documents were.
    """

    def __init__(self, config: BM25BranchConfig) -> None:
        self.config = config
        self.name = config.branch_name
        self.avg_len: float | None = config.avg_len
        #: Term-frequency saturation: configured, else the one the index records, else :data:`DEFAULT_K1`.
        self.k1: float = config.k1 if config.k1 is not None else DEFAULT_K1
        self.detection: LanguageDetection | None = None
        self.analyzer: Analyzer | None = None
        self._model: qe.Bm25 | None = None
        self._counter: qe.Bm25 | None = None
        #: Per-document analysis: each corpus language's analyzer (the majority first), and its avg_len.
        self.per_language: dict[str, Analyzer] = {}
        self.avg_lens: dict[str, float] = {}
        self._models: dict[str, qe.Bm25] = {}
        self._counters: dict[str, qe.Bm25] = {}
        self._warned_empty = False
        #: language auto, not decided for good: the neutral analyzer (no language found yet) or a provisional
        #: language's, and fit() runs again at every ingest.
        self._pending = False
        if config.language.lower() != "auto":
            self._set_analyzer(analyzer_for(config.language, config.stemmer, config.stopwords, config.tokenizer))

    # -- the analyzer -------------------------------------------------------------------

    def _set_analyzer(self, analyzer: Analyzer) -> None:
        self.analyzer = analyzer
        self._model = None
        # Counting model: with b = 0 and k = 1, a document weight is 2·tf/(tf+1),
        # which inverts exactly to the term frequency in Qdrant's own tokenisation.
        self._counter = qe.Bm25(self._qdrant_config(k=_COUNT_K, b=0.0, avg_len=1.0))

    def _set_languages(self, analyzers: dict[str, Analyzer]) -> None:
        """Per-document analysis over these languages (the majority first); fewer than two: off."""
        self.per_language = dict(analyzers) if len(analyzers) > 1 else {}
        # A configured avg_len is one length scale for every language; else each is measured at first ingest.
        self.avg_lens = dict.fromkeys(self.per_language, self.config.avg_len) if self.config.avg_len is not None else {}
        self._models = {}
        self._counters = {
            lang: qe.Bm25(self._qdrant_config(k=_COUNT_K, b=0.0, avg_len=1.0, analyzer=a))
            for lang, a in self.per_language.items()
        }

    @property
    def languages(self) -> list[str]:
        """The languages documents are analysed in: several with per-document analysis, else one."""
        if self.per_language:
            return list(self.per_language)
        return [self.analyzer.language] if self.analyzer and self.analyzer.language else []

    def languages_of(self, texts: Sequence[str]) -> list[str | None]:
        """The language each text is analysed in; None for every text without per-document analysis."""
        if not self.per_language:
            return [None] * len(texts)
        return list(detect_each(texts, list(self.per_language)))

    @property
    def language_pending(self) -> bool:
        """``language: auto`` not decided for good yet: the analyzer is learned again at every ingest."""
        return self._pending

    def choose_analyzer(self, texts: Sequence[str]) -> None:
        """``language: auto``: decide the corpus language from ``texts`` and take its analyzer.

        With too little text to decide, the branch is pending with the language-neutral
        analyzer; with a language found in fewer than ``DOCUMENTS_TO_SETTLE`` documents,
        pending with that language's analyzer (provisional); with a full sample and no
        language recognised, the neutral analyzer is the decision.
        """
        if self.analyzer is not None and not self._pending:
            return
        c = self.config
        det = decide_language(texts)
        self._set_languages({})
        if det is None:
            self._pending = True
            self.detection = None
            self._set_analyzer(neutral_analyzer(c.tokenizer))
            log.info("BM25 branch %r: %s", self.name, self.describe())
            return
        self._pending = det.sampled < DOCUMENTS_TO_SETTLE
        self.detection = det
        if det.language is None:
            self._set_analyzer(neutral_analyzer(c.tokenizer))
            log.warning(
                "BM25 branch %r: no language recognised in %d sampled documents; using the language-neutral analyzer "
                "(no stemmer, no stopwords). Set bm25.language to the corpus language to choose one.", self.name, det.sampled,
            )
            return
        lang = det.language
        # An explicit ``true`` asks for the option where the detected language has it.
        analyzer = analyzer_for(
            lang,
            None if c.stemmer else c.stemmer,
            None if c.stopwords else c.stopwords,
            c.tokenizer,
        )
        self._set_analyzer(analyzer)
        per_document = c.language_per_document if c.language_per_document is not None else det.mixed
        if per_document:
            langs = [lang for lang in corpus_languages(det) if lang != analyzer.language]
            self._set_languages({analyzer.language: analyzer, **{
                lang: analyzer_for(lang, None if c.stemmer else c.stemmer, None if c.stopwords else c.stopwords, c.tokenizer)
                for lang in langs
            }})
        log.info("BM25 branch %r: %s", self.name, self.describe())
        if det.mixed and not self.per_language:
            log.warning(
                "BM25 branch %r: the corpus looks mixed-language (%s of %d sampled documents); analysing all of it as "
                "%s, the majority, because bm25.language_per_document is false. Words of the other languages are "
                "still matched as plain tokens, without their stemming or stopwords; leave language_per_document "
                "unset (analyse each document in its own language) for the best BM25.",
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
            return "analyzer not chosen yet (language auto: decided once the documents hold enough text)"
        neutral = f"language-neutral analyzer ({a.tokenizer} tokenizer, no stemmer, no stopwords)"
        if self._pending and self.detection is None:
            return (f"language not decided yet: {neutral} until the documents hold enough text to tell the language "
                    f"({WORDS_TO_DECIDE} words in it), then BM25 is re-encoded with that language's analyzer")
        return self._describe_decided(a, neutral) + (
            f"; provisional: decided again at every ingest until the index holds {DOCUMENTS_TO_SETTLE} documents"
            if self._pending else "")

    def _describe_decided(self, a: Analyzer, neutral: str) -> str:
        if a.language is None:
            d = self.detection
            return neutral + (f" (no language recognised in {d.sampled} sampled documents)" if d is not None else "")
        parts = [f"language {a.language}", f"{a.tokenizer} tokenizer"]
        parts.append("Snowball stemmer" if a.stemmer else "no stemmer")
        parts.append("stopwords" if a.stopwords else "no stopwords")
        line = ", ".join(parts)
        if self.per_language:
            line = "each document and query in its own language: " + "; ".join(
                _describe_analyzer(a) + (f", avg_len {self.avg_lens[lang]:.1f}" if lang in self.avg_lens else "")
                for lang, a in self.per_language.items()
            )
        if self.detection is not None:
            d = self.detection
            line += f" (detected in {d.share:.0%} of {d.sampled} sampled documents"
            line += f", {d.words} words" if d.words else ""
            line += "; mixed-language corpus" if d.mixed else ""
            line += ")"
        else:
            line += " (configured)"
        if a.language is not None and a.language not in STEMMERS and a.stemmer is False and self.config.stemmer is None:
            line += f"; Qdrant has no stemmer for {a.language}: plain {a.tokenizer} tokens"
        return line

    # -- Qdrant's BM25 configuration --------------------------------------------

    def _qdrant_config(self, k: float, b: float, avg_len: float, analyzer: Analyzer | None = None) -> qe.Bm25Config:
        c = self.config
        a = analyzer or self.analyzer
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

    def _bm25(self, language: str | None = None) -> qe.Bm25:
        if language is not None and self.per_language:
            model = self._models.get(language)
            if model is None:
                avg_len = self.avg_lens.get(language)
                if avg_len is None:
                    raise RuntimeError(f"BM25 avg_len of {language} is unknown: fit() or restore() must run first")
                model = qe.Bm25(self._qdrant_config(self.k1, self.config.b, avg_len, self.per_language[language]))
                self._models[language] = model
            return model
        model = self._model  # read once: a pending branch's fit() may reset it from another thread
        if model is None:
            if self.avg_len is None:
                raise RuntimeError("BM25 avg_len is unknown: fit() or restore() must run first")
            model = self._model = qe.Bm25(self._qdrant_config(k=self.k1, b=self.config.b, avg_len=self.avg_len))
        return model

    # -- Branch interface -----------------------------------------------------------

    @property
    def vector_spec(self) -> VectorSpec:
        return VectorSpec(name=self.name, kind="sparse", idf=True)

    def _counter_for(self, text: str, language: str | None) -> qe.Bm25:
        """The counting model for ``text``: its language's with per-document analysis (detected when not given)."""
        if language is None and self.per_language:
            language = self.languages_of([text])[0]
        counter = self._counters.get(language) if language is not None else None
        counter = counter or self._counter
        if counter is None:
            raise RuntimeError("BM25 analyzer is not chosen: fit() or restore() must run first (language auto)")
        return counter

    def token_count(self, text: str, language: str | None = None) -> int:
        """Number of tokens Qdrant's tokeniser keeps from ``text`` (after stopwords, stemming).

        ``language``: with per-document analysis, the language to analyse it in (None: detected).
        """
        weights = self._counter_for(text, language).embed_document(text).values
        return int(round(sum(w * _COUNT_K / (_COUNT_K + 1.0 - w) for w in weights)))

    def term_frequencies(self, text: str, language: str | None = None) -> dict[int, int]:
        """Token id -> how often it occurs in ``text``, in Qdrant's tokenisation (the ids of stored vectors)."""
        v = self._counter_for(text, language).embed_document(text)
        return {int(i): int(round(w * _COUNT_K / (_COUNT_K + 1.0 - w))) for i, w in zip(v.indices, v.values)}

    def fit(self, texts: Sequence[str]) -> None:
        """The analyzer (language auto) and avg_len from ``texts``: at first ingest, and while pending
        at every ingest (then ``texts`` are the stored texts and the new ones, and both are learned anew)."""
        if not texts:
            return
        again = self._pending and self.config.avg_len is None  # measured again, on every text so far
        self.choose_analyzer(texts)
        if self.avg_len is not None and not again:
            return
        if self.per_language:
            # Each language's documents have their own length scale (Chinese tokens are characters).
            by_language: dict[str, list[int]] = {lang: [] for lang in self.per_language}
            for text, lang in zip(texts, self.languages_of(texts)):
                by_language[lang].append(self.token_count(text, lang))  # type: ignore[index]
            overall = max(sum(map(sum, by_language.values())) / len(texts), 1.0)
            self.avg_lens = {lang: max(sum(n) / len(n), 1.0) if n else overall for lang, n in by_language.items()}
            self._models = {}
            self.avg_len = self.avg_lens[self.languages[0]]
            log.info(
                "BM25 branch %r: measured avg_len per language over %d documents: %s", self.name, len(texts),
                ", ".join(f"{lang} {v:.1f} ({len(by_language[lang])} documents)" for lang, v in self.avg_lens.items()),
            )
            return
        total = sum(self.token_count(t) for t in texts)
        self.avg_len = max(total / len(texts), 1.0)
        self._model = None
        log.info("BM25 branch %r: measured avg_len %.1f tokens over %d documents", self.name, self.avg_len, len(texts))

    def set_avg_lens(self, avg_lens: dict[str, float]) -> None:
        """Per-document analysis: each language's avg_len (recovered from stored vectors by repair).

        A language without documents in ``avg_lens`` takes the majority's.
        """
        majority = self.languages[0]
        base = avg_lens.get(majority) or next(iter(avg_lens.values()))
        self.avg_lens = {lang: float(avg_lens.get(lang, base)) for lang in self.per_language}
        self.avg_len = self.avg_lens[majority]
        self._models = {}
        self._model = None

    def set_k1(self, k1: float) -> None:
        """Take ``k1`` (an existing index's) when the configuration leaves it unset; a configured one stays."""
        if self.config.k1 is None and k1 != self.k1:
            self.k1 = float(k1)
            self._model = None
            self._models = {}

    def reset(self, stored: dict[str, Any]) -> None:
        """Back to the state a manifest entry records, dropping what was learned since (a failed re-encode)."""
        self.analyzer = None
        self.detection = None
        self._pending = False
        self._counter = None
        self.avg_len = self.config.avg_len
        self._model = None
        self._set_languages({})
        self.restore(stored)

    def restore(self, stored: dict[str, Any]) -> None:
        if stored.get("k1") is not None:
            self.set_k1(stored["k1"])
        if self.avg_len is None and stored.get("avg_len"):
            self.avg_len = float(stored["avg_len"])
            self._model = None
        auto = self.config.language.lower() == "auto"
        if self.analyzer is None and auto and stored.get("language_pending"):
            self._pending = True  # decided again at the next ingest
        if self.analyzer is None and auto and stored.get("language") is None and (
                stored.get("language_pending") or stored.get("language_detection")):
            # Too little text to tell the language when it was written, or decided with no language recognised.
            c = self.config
            self._set_analyzer(neutral_analyzer(c.tokenizer if c.tokenizer != "auto" else stored.get("tokenizer", "auto")))
            if stored.get("language_detection"):
                self.detection = LanguageDetection(**{k: v for k, v in stored["language_detection"].items() if k != "mixed"})
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
        per_language = stored.get("per_document_languages")
        if (per_language and not self.per_language and self.config.language.lower() == "auto"
                and self.config.language_per_document is not False):
            # The majority language first, as at first ingest: it takes the texts detection cannot place.
            order = sorted(per_language, key=lambda lang: lang != stored.get("language"))
            self._set_languages({
                lang: Analyzer(language=lang, tokenizer=per_language[lang]["tokenizer"],
                               stemmer=bool(per_language[lang]["stemmer"]), stopwords=bool(per_language[lang]["stopwords"]))
                for lang in order
            })
            self.avg_lens = {lang: float(v["avg_len"]) for lang, v in per_language.items() if v.get("avg_len")}

    def encode_documents(self, texts: Sequence[str]) -> list[Vector]:
        return [_to_sparse(self._bm25(lang).embed_document(t)) for t, lang in zip(texts, self.languages_of(texts))]

    def encode_queries(self, texts: Sequence[str]) -> list[Vector]:
        out = [_to_sparse(self._bm25(lang).embed_query(t), lang) for t, lang in zip(texts, self.languages_of(texts))]
        if not self._warned_empty:
            empty = next((t for t, v in zip(texts, out) if not v.indices), None)
            if empty is not None:
                self._warned_empty = True  # once per branch: a log line per query would drown the log
                log.warning(
                    "BM25 branch %r: the query %r has no BM25 tokens under the %s analyzer (every word is a stopword, "
                    "or its script is not tokenised); BM25 cannot match it, so it is flagged in the hits' provenance "
                    "and the other branches rank it. If queries are in another language than the corpus, set "
                    "bm25.language (and tokenizer: multilingual for Chinese, Japanese, Korean, Thai). Logged once.",
                    self.name, empty[:80], "/".join(self.languages) or "?",
                )
        return out

    def manifest(self) -> dict[str, Any]:
        c = self.config
        a = self.analyzer
        return {
            "kind": "bm25",
            "k1": self.k1,
            "b": c.b,
            "avg_len": self.avg_len,
            "language": a.language if a else c.language.lower(),
            "tokenizer": a.tokenizer if a else c.tokenizer,
            "stemmer": a.stemmer if a else c.stemmer,
            "stopwords": a.stopwords if a else c.stopwords,
            "language_detection": self.detection.as_dict() if self.detection else None,
            # Only while pending: the analyzer above may still change at the next ingest (an index written
            # before the key existed was decided at its first ingest).
            **({"language_pending": True} if self._pending else {}),
            **({"per_document_languages": {
                lang: {"tokenizer": x.tokenizer, "stemmer": x.stemmer, "stopwords": x.stopwords, "avg_len": self.avg_lens.get(lang)}
                for lang, x in self.per_language.items()
            }} if self.per_language else {}),
            "lowercase": c.lowercase,
            "ascii_folding": c.ascii_folding,
            "min_token_len": c.min_token_len,
            "max_token_len": c.max_token_len,
        }


def _to_sparse(v: qe.SparseVector, language: str | None = None) -> SparseVector:
    return SparseVector(indices=list(v.indices), values=list(v.values), language=language)


def _describe_analyzer(a: Analyzer) -> str:
    return f"{a.language} ({a.tokenizer} tokenizer, {'stemmer' if a.stemmer else 'no stemmer'}, {'stopwords' if a.stopwords else 'no stopwords'})"
