"""Corpus language detection and the BM25 analyzer that fits each language.

Detection runs offline with ``lingua-language-detector`` (its models ship in the
wheel) on a sample of documents, in lingua's low-accuracy mode over the languages
listed here: about 90 MB and a few milliseconds per document, and per document as
accurate as needed for a corpus-level majority vote (on the xquad-r corpora the vote
is right for German, Chinese and English, benchmarks/results/multilingual.md).

The analyzer table says what Qdrant's BM25 tokeniser offers per language: a Snowball
stemmer, a stopword list, and whether words need Qdrant's multilingual tokenizer
(scripts written without spaces: Chinese, Japanese, Korean, Thai).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Sequence

from hybrid_retriever.errors import ConfigError

log = logging.getLogger(__name__)

#: Qdrant's Snowball stemmers (``qdrant_edge.SnowballLanguage``).
STEMMERS = frozenset(
    "arabic armenian danish dutch english finnish french german greek hungarian italian norwegian portuguese "
    "romanian russian spanish swedish tamil turkish".split()
)
#: Qdrant's stopword lists (``qdrant_edge.Language``).
STOPWORDS = frozenset(
    "arabic azerbaijani basque bengali catalan chinese danish dutch english finnish french german greek hebrew "
    "hinglish hungarian indonesian italian japanese kazakh nepali norwegian portuguese romanian russian slovene "
    "spanish swedish tajik turkish".split()
)
#: Languages written without spaces between words: Qdrant's multilingual tokenizer segments them.
SEGMENTED = frozenset({"chinese", "japanese", "korean", "thai"})
#: Languages detection can report. Beyond Qdrant's stemmer/stopword languages, a few common ones that
#: get plain word tokens (so a Polish corpus is called Polish, not mistaken for its neighbour).
#: lingua has no model for Nepali, Tajik or Hinglish (they can still be named explicitly).
DETECTABLE = sorted(
    (STEMMERS | STOPWORDS | SEGMENTED | {"polish", "czech", "ukrainian", "vietnamese", "hindi", "persian"})
    - {"hinglish", "nepali", "tajik"}
)
#: Every language name ``bm25.language`` accepts.
KNOWN = sorted(set(DETECTABLE) | STEMMERS | STOPWORDS)
#: lingua's name for a language where it differs from Qdrant's.
_LINGUA_NAMES = {"norwegian": "BOKMAL"}

#: Share of the sample the majority language must reach; below it the corpus is called mixed.
MIXED_BELOW = 0.8
#: Documents sampled and characters read from each.
SAMPLE_DOCS = 200
SAMPLE_CHARS = 1000
#: Per-document analysis (``bm25.language_per_document``) gives a language its own analyzer when it
#: has at least this share of the sample; rarer ones are analysed with the majority language's.
PER_DOCUMENT_MIN_SHARE = 0.05


@dataclass(frozen=True)
class Analyzer:
    """How BM25 splits and normalises text for one language (``language`` None: no language rules)."""

    language: str | None
    tokenizer: str  # "word" or "multilingual"
    stemmer: bool
    stopwords: bool


def analyzer_for(language: str, stemmer: bool | None = None, stopwords: bool | None = None, tokenizer: str = "auto") -> Analyzer:
    """The analyzer for ``language``; ``None`` options mean "what the language offers".

    Asking for a stemmer or stopword list the language does not have is a
    :class:`ConfigError` that names the fix.
    """
    lang = language.lower()
    if lang not in KNOWN:
        raise ConfigError(f"BM25 language {language!r} is unknown; use 'auto' (detect it from the corpus) or one of {KNOWN}")
    for option, wanted, table in (("stemmer", stemmer, STEMMERS), ("stopwords", stopwords, STOPWORDS)):
        if wanted and lang not in table:
            raise ConfigError(
                f"Qdrant has no {option} for BM25 language {language!r} (it has them for {sorted(table)}); "
                f"set bm25.{option} to null (use it when the language has one) or false"
            )
    tok = tokenizer if tokenizer != "auto" else ("multilingual" if lang in SEGMENTED else "word")
    return Analyzer(
        language=lang,
        tokenizer=tok,
        stemmer=lang in STEMMERS if stemmer is None else stemmer,
        stopwords=lang in STOPWORDS if stopwords is None else stopwords,
    )


@dataclass
class LanguageDetection:
    """Outcome of detecting a corpus's language from a sample of its documents."""

    language: str | None  # the majority language, None when nothing was recognised
    share: float  # fraction of sampled documents in that language
    sampled: int
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def mixed(self) -> bool:
        return self.share < MIXED_BELOW

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mixed": self.mixed}


@lru_cache(maxsize=1)
def _detector() -> Any:
    try:
        from lingua import Language, LanguageDetectorBuilder
    except ImportError:  # pragma: no cover - lingua is a core dependency
        raise ConfigError(
            "bm25.language 'auto' needs the lingua-language-detector package: pip install lingua-language-detector, "
            "or name the language (e.g. bm25.language: german)"
        ) from None
    langs = [getattr(Language, _LINGUA_NAMES.get(n, n.upper())) for n in DETECTABLE]
    return LanguageDetectorBuilder.from_languages(*langs).with_low_accuracy_mode().build()


def _name(lang: Any) -> str:
    name = lang.name.lower()
    return {"bokmal": "norwegian"}.get(name, name)


def corpus_languages(detection: LanguageDetection, min_share: float = PER_DOCUMENT_MIN_SHARE) -> list[str]:
    """The languages of a detection that reach ``min_share`` of its sample, the majority first.

    >>> corpus_languages(LanguageDetection("german", 0.5, 200, {"german": 100, "english": 90, "dutch": 10}))
    ['german', 'english']
    """
    if not detection.sampled:
        return []
    return [lang for lang, n in detection.counts.items() if n / detection.sampled >= min_share]


@lru_cache(maxsize=8)
def _detector_among(languages: frozenset[str]) -> Any:
    from lingua import Language, LanguageDetectorBuilder

    langs = [getattr(Language, _LINGUA_NAMES.get(n, n.upper())) for n in sorted(languages)]
    return LanguageDetectorBuilder.from_languages(*langs).with_low_accuracy_mode().build()


def detect_each(texts: Sequence[str], languages: Sequence[str]) -> list[str]:
    """Each text's language among ``languages`` (a corpus's, the majority first).

    A detector that knows only these languages decides, so a text is never put in a
    language the corpus does not have; a text it cannot place (empty, digits only)
    gets the first (majority) language. Deterministic: the same text and languages
    always give the same answer, so a document is analysed the same way at every
    ingest and when an index is repaired.
    """
    if len(languages) < 2:
        return [languages[0] if languages else "english"] * len(texts)
    detector = _detector_among(frozenset(languages))
    out = []
    for text in texts:
        lang = detector.detect_language_of(text[:SAMPLE_CHARS]) if text and text.strip() else None
        out.append(languages[0] if lang is None else _name(lang))
    return out


def detect_language(texts: Sequence[str], sample: int = SAMPLE_DOCS) -> LanguageDetection:
    """Majority language of up to ``sample`` documents spread evenly over ``texts``."""
    nonempty = [t for t in texts if t and t.strip()]
    step = max(1, len(nonempty) // sample) if nonempty else 1
    picked = nonempty[::step][:sample]
    detector = _detector()
    counts: Counter[str] = Counter()
    for text in picked:
        lang = detector.detect_language_of(text[:SAMPLE_CHARS])
        if lang is not None:
            counts[_name(lang)] += 1
    if not counts:
        return LanguageDetection(language=None, share=0.0, sampled=len(picked))
    best, n = counts.most_common(1)[0]
    return LanguageDetection(language=best, share=n / len(picked), sampled=len(picked), counts=dict(counts.most_common()))


#: Model-card entries meaning "many languages" rather than a list.
_ANY = {"multilingual", "any", "*"}


def language_name(code: str) -> str | None:
    """A language's name as used here (``german``) from an ISO 639-1/639-3 code or a name; None if unknown."""
    c = code.strip().lower()
    if c in KNOWN:
        return c
    from lingua import Language

    for lang in Language.all():
        if c in (lang.iso_code_639_1.name.lower(), lang.iso_code_639_3.name.lower()):
            return _name(lang)
    return None


def model_languages(languages: Sequence[str] | None) -> frozenset[str] | None:
    """The language names a model covers from its declared codes; None when it covers any (or is unknown).

    Cards of multilingual models often say ``multilingual`` *and* list their languages
    (``[multilingual, ar, de, ...]``): the list is what they were trained on, so it is used;
    ``multilingual`` alone (or ``any``) means any language.

    >>> sorted(model_languages(["multilingual", "de", "zh"])), model_languages(["multilingual"])
    (['chinese', 'german'], None)
    """
    if not languages:
        return None
    listed = [x for x in languages if x.strip().lower() not in _ANY]
    if not listed:
        return None
    names = {language_name(x) for x in listed}
    return frozenset(n for n in names if n) or None


def detect_query_language(text: str) -> str | None:
    """Language of one short text (a query), or None when lingua recognises none."""
    lang = _detector().detect_language_of(text)
    return None if lang is None else _name(lang)
