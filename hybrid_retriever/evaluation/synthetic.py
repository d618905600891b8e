"""Pseudo-queries cut from the corpus, for tuning without judgements (``tune --synthetic``).

Each pseudo-query is a span of words cut out of one sentence of a sampled
document, that document being its one relevant document. The spans come from the
body (a document's first line is taken as its title when there is more text after
it). By default the rarer half of the span's words is dropped: a verbatim span is
found by exact term matching (BM25) far more easily than a real query finds its
answer, and its rare words are what make it so. Other settings (random word drop)
were compared on dev splits (scifact train, nfcorpus dev) and did no better.

It remains a proxy with a known lean towards term matching:
``benchmarks/results/tuning.md`` measures how close configurations tuned on
pseudo-queries come to ones tuned on real judgements.

    >>> from hybrid_retriever import Document
    >>> docs = [Document("A title\\nQdrant stores dense and sparse vectors for hybrid search.", id="a")]
    >>> q, qrels = pseudo_queries(docs, n=1, seed=0, drop_rare=0.0)
    >>> qrels == {"syn-0": {"a": 1}} and q["syn-0"] in docs[0].text
    True
"""

from __future__ import annotations

import random
import re
from typing import Iterable, Sequence

from hybrid_retriever.errors import InvalidInputError
from hybrid_retriever.types import Document

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_TOKEN = re.compile(r"\w+")


def _df(word: str, df: dict[str, int]) -> int:
    toks = _TOKEN.findall(word.lower())
    return min((df.get(t, 0) for t in toks), default=1 << 30)


def _sentences(text: str) -> list[str]:
    lines = text.split("\n", 1)
    body = lines[1] if len(lines) == 2 and lines[1].strip() else text
    return [s.strip() for s in _SENTENCE.split(body) if s.strip()]


def pseudo_queries(
    documents: Iterable[Document],
    n: int = 500,
    *,
    seed: int = 0,
    min_words: int = 6,
    max_words: int = 14,
    drop: float = 0.0,
    drop_rare: float = 0.5,
    prefix: str = "syn-",
) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """``n`` pseudo-queries and their qrels (each query's source document, grade 1).

    A document is sampled (without replacement), then one of its sentences with at
    least ``min_words`` words, then a span of ``min_words``..``max_words`` words of it;
    each word is dropped with probability ``drop`` (at least ``min_words`` - 2 words
    stay). ``drop_rare`` first removes that share of the span's rarest words (by
    document frequency over ``documents``): the rare words that make a verbatim span
    trivially findable by term matching. Deterministic for a given ``seed``.
    """
    if n <= 0:
        raise InvalidInputError("the number of pseudo-queries must be positive")
    if not 0.0 <= drop < 1.0:
        raise InvalidInputError("drop must be in [0, 1)")
    if min_words < 1 or max_words < min_words:
        raise InvalidInputError("need 1 <= min_words <= max_words")
    docs: Sequence[Document] = [d for d in documents if d.id is not None and d.text.strip()]
    df: dict[str, int] = {}
    if drop_rare > 0:
        for d in docs:
            for t in set(_TOKEN.findall(d.text.lower())):
                df[t] = df.get(t, 0) + 1
    rng = random.Random(seed)
    order = list(range(len(docs)))
    rng.shuffle(order)
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for i in order:
        if len(queries) >= n:
            break
        doc = docs[i]
        sents = [s.split() for s in _sentences(doc.text)]
        sents = [s for s in sents if len(s) >= min_words]
        if not sents:
            continue
        words = rng.choice(sents)
        length = rng.randint(min_words, min(max_words, len(words)))
        start = rng.randint(0, len(words) - length)
        span = words[start : start + length]
        if drop_rare > 0:
            n_rare = int(round(drop_rare * len(span)))
            rarity = sorted(range(len(span)), key=lambda j: (_df(span[j], df), j))
            rare = set(rarity[:n_rare])
            span = [w for j, w in enumerate(span) if j not in rare]
        keep_min = max(1, min_words - 2)
        kept = [w for w in span if rng.random() >= drop]
        if len(kept) < keep_min:
            kept = span[:keep_min]
        text = " ".join(kept)
        if not re.search(r"\w", text):
            continue
        qid = f"{prefix}{len(queries)}"
        queries[qid] = text
        qrels[qid] = {str(doc.id): 1}
    if not queries:
        raise InvalidInputError(f"no document has a sentence of {min_words}+ words to cut a pseudo-query from")
    return queries, qrels
