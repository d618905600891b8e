"""Pseudo-queries cut from the corpus, for tuning without judgements (``tune --synthetic``).

Each pseudo-query is a span of words cut out of one sentence of a sampled
document, with some words dropped at random; that document counts as its one
relevant document. The spans come from the body (a document's first line is taken
as its title when there is more text after it), and dropping words keeps the query
from being a verbatim copy, which would favour exact term matching (BM25) more
than real queries do. It is a proxy: ``benchmarks/results/tuning.md`` measures how
close weights tuned on pseudo-queries come to weights tuned on real judgements.

    >>> from hybrid_retriever import Document
    >>> docs = [Document("A title\\nQdrant stores dense and sparse vectors for hybrid search.", id="a")]
    >>> q, qrels = pseudo_queries(docs, n=1, seed=0, drop=0.0)
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


def _sentences(text: str) -> list[str]:
    lines = text.split("\n", 1)
    body = lines[1] if len(lines) == 2 and lines[1].strip() else text
    return [s.strip() for s in _SENTENCE.split(body) if s.strip()]


def pseudo_queries(
    documents: Iterable[Document],
    n: int = 500,
    *,
    seed: int = 0,
    min_words: int = 5,
    max_words: int = 12,
    drop: float = 0.25,
    prefix: str = "syn-",
) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """``n`` pseudo-queries and their qrels (each query's source document, grade 1).

    A document is sampled (without replacement), then one of its sentences with at
    least ``min_words`` words, then a span of ``min_words``..``max_words`` words of it;
    each word is dropped with probability ``drop`` (at least ``min_words`` - 2 words
    stay). Deterministic for a given ``seed``.
    """
    if n <= 0:
        raise InvalidInputError("the number of pseudo-queries must be positive")
    if not 0.0 <= drop < 1.0:
        raise InvalidInputError("drop must be in [0, 1)")
    if min_words < 1 or max_words < min_words:
        raise InvalidInputError("need 1 <= min_words <= max_words")
    docs: Sequence[Document] = [d for d in documents if d.id is not None and d.text.strip()]
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
