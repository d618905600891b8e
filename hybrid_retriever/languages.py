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
import re
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
#: Words a text needs before lingua names its language reliably: the smallest length at which
#: detection was right in at least 99.5% of random passages of every shared collection (English,
#: German, Chinese; benchmarks/results/language_detection.md). :func:`decide_language` waits for it.
WORDS_TO_DECIDE = 25

#: Documents a sample needs before the decision is final. Until then a language found is provisional:
#: checked again at every ingest, so a corpus whose first documents are all in one language can still
#: turn out mixed (50/50 mixtures added in random order, benchmarks/results/language_detection.md).
DOCUMENTS_TO_SETTLE = 20

#: Scripts written without spaces (Chinese, Japanese): each character counts as one word.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


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


def neutral_analyzer(tokenizer: str = "auto") -> Analyzer:
    """The analyzer used while (or when) no language is decided: no language's rules.

    Qdrant's word tokenizer (it keeps numbers and codes, which its multilingual tokenizer
    drops; a Chinese or Japanese corpus is decided after :data:`WORDS_TO_DECIDE`
    characters anyway), and nothing is stemmed or dropped as a stopword.
    """
    return Analyzer(language=None, tokenizer="word" if tokenizer == "auto" else tokenizer, stemmer=False, stopwords=False)


@dataclass
class LanguageDetection:
    """Outcome of detecting a corpus's language from a sample of its documents.

    ``counts`` are documents per language. From :func:`decide_language` (``words`` set:
    the words of the documents whose language was confirmed) shares are of those
    documents; from :func:`detect_language`, of all sampled documents.
    """

    language: str | None  # the majority language, None when nothing was recognised
    share: float  # fraction of the sampled (or confirmed) documents in that language
    sampled: int  # documents sampled
    counts: dict[str, int] = field(default_factory=dict)
    words: int | None = None

    @property
    def mixed(self) -> bool:
        return self.share < MIXED_BELOW

    @property
    def total(self) -> int:
        """What ``counts`` are shares of: the confirmed documents, or every sampled one."""
        return sum(self.counts.values()) if self.words is not None else self.sampled

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

    >>> corpus_languages(LanguageDetection("german", 0.5, 200, {"german": 100, "english": 91, "dutch": 9}))
    ['german', 'english']
    """
    if not detection.total:
        return []
    return [lang for lang, n in detection.counts.items() if n / detection.total >= min_share]


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
    """Majority language of up to ``sample`` documents spread evenly over ``texts``, one vote per document.

    However little text they hold: a growing index decides with :func:`decide_language` instead.
    """
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


def count_words(text: str) -> int:
    """Words in ``text`` as detection sees them: space-separated tokens holding a letter, and in
    Chinese or Japanese script each character (numbers and punctuation tell no language).

    >>> count_words("The cat sat on the mat, 3 times."), count_words("熊猫吃竹子。")
    (7, 5)
    """
    n = 0
    for token in text.split():
        cjk = len(_CJK.findall(token))
        n += cjk if cjk else any(c.isalpha() for c in token)
    return n


@lru_cache(maxsize=8192)
def _guess(text: str) -> str | None:
    """lingua's language for one text (cached: a growing index asks again about the texts it holds)."""
    lang = _detector().detect_language_of(text)
    return None if lang is None else _name(lang)


def decide_language(texts: Sequence[str], sample: int = SAMPLE_DOCS) -> LanguageDetection | None:
    """The corpus language once the texts hold enough words to tell it, else None (not yet).

    Short texts are often misnamed (a 5-word English sentence is called Dutch or Latin
    one time in five), so no single document decides. Up to ``sample`` documents, spread
    over ``texts``, are grouped by the language lingua guesses for each; a group holding
    :data:`WORDS_TO_DECIDE` words is named again from its pooled text (a group of
    misnamed English sentences is then named English), and its words count for that
    language. The decision waits while a group too small to be named holds at least
    :data:`PER_DOCUMENT_MIN_SHARE` of the words (it could be a language of its own),
    unless the sample is full (``sample`` documents): then the named groups decide, and
    with none the result says no language was recognised (``language`` None). Shares
    (and so "mixed") are of the documents in named groups, as in :func:`detect_language`.

    The outcome depends on the set of sampled texts, not their order: an index grown in
    small batches decides as one built in one go from the same documents.
    """
    nonempty = [t for t in texts if t and t.strip()]
    step = max(1, len(nonempty) // sample) if nonempty else 1
    picked = [t[:SAMPLE_CHARS] for t in nonempty[::step][:sample]]
    full = len(nonempty) >= sample
    groups: dict[str | None, list[str]] = {}
    for text in picked:
        if count_words(text):
            groups.setdefault(_guess(text), []).append(text)
    total = sum(count_words(t) for g in groups.values() for t in g)
    counts: Counter[str] = Counter()
    confirmed = 0
    waiting = False
    for members in groups.values():
        words = sum(count_words(t) for t in members)
        # Sorted, so the pooled text (and its language) does not depend on the order of ingest.
        lang = _guess("\n".join(sorted(members))[:SAMPLE_CHARS]) if words >= WORDS_TO_DECIDE else None
        if lang is not None:
            counts[lang] += len(members)
            confirmed += words
        elif words >= PER_DOCUMENT_MIN_SHARE * total:
            waiting = True
    if not full and (waiting or not counts):
        return None
    if not counts:
        return LanguageDetection(language=None, share=0.0, sampled=len(picked), words=0)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))  # ties by name: order-free
    return LanguageDetection(
        language=ranked[0][0], share=ranked[0][1] / sum(counts.values()), sampled=len(picked), counts=dict(ranked),
        words=confirmed,
    )


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
