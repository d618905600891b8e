"""Answers per source: one hit per source (grouping), and adjacent chunks merged into passages.

A chunked folder index often returns five chunks of one file for a query. **Grouping**
returns one hit per source instead, as Qdrant's grouped queries do (``query_points_groups``:
``group_by`` a payload field, ``limit`` groups): the fused list is searched deeper
(:func:`group_depth`), each hit is keyed by ``metadata[field]`` (``source`` by default; a hit
without the field is its own group, keyed by the document it was cut from), and each group is
represented by its best chunk, in the fused order. Every grouped hit carries a
:class:`HitGroup`: how many of the source's chunks matched within that depth, their ranks in
the ungrouped list and their ids. The grouped hit's ``rank`` is the group's rank.

**Passages** (for RAG; the idea of LlamaIndex's auto-merging retriever and LangChain's
parent-document retriever, from the chunk offsets alone): hits are taken best first while
their tokens fit a budget; chunks of one source whose numbers follow each other are then
joined into one passage in reading order (the overlap two chunks share appears once, the
whitespace the splitter trimmed between them becomes one newline). Passages are ordered by
their best hit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

from hybrid_retriever.chunking import parent_id
from hybrid_retriever.errors import InvalidInputError
from hybrid_retriever.types import Hit, HitGroup

#: The ungrouped list is this many times deeper than the groups asked for ...
GROUP_DEPTH_FACTOR = 10
#: ... and at least this deep.
GROUP_DEPTH_MIN = 50


def group_depth(k: int) -> int:
    """How many fused hits a grouped search of ``k`` groups looks at."""
    return max(k * GROUP_DEPTH_FACTOR, GROUP_DEPTH_MIN)


def group_key(hit: Any, field_name: str = "source") -> str:
    """The group of a hit (or document): ``metadata[field_name]``, else the document it was cut from."""
    value = hit.metadata.get(field_name)
    if value is None or isinstance(value, (dict, list)):
        return str(parent_id(hit))
    return str(value)


def group_hits(hits: Sequence[Hit], k: int, field_name: str = "source") -> list[Hit]:
    """The best hit of each of the first ``k`` groups of ``hits`` (fused order), each with its :class:`HitGroup`."""
    if not field_name or not isinstance(field_name, str):
        raise InvalidInputError(f"group_by must be a metadata field name, e.g. 'source'; got {field_name!r}")
    groups: dict[str, list[Hit]] = {}
    for h in hits:
        groups.setdefault(group_key(h, field_name), []).append(h)
    out = []
    for rank, (key, members) in enumerate(list(groups.items())[:k], start=1):
        best = members[0]
        group = HitGroup(field=field_name, key=key, matched=len(members), ranks=[m.rank for m in members],
                         ids=[m.id for m in members], depth=len(hits))
        out.append(replace(best, rank=rank, group=group))
    return out


def word_count(text: str) -> int:
    """Tokens as whitespace-separated words: the default count of a passage budget."""
    return len(text.split())


@dataclass
class Passage:
    """Adjacent chunks of one source joined in reading order.

    ``hits`` are the chunks in reading order; ``score`` and ``rank`` are the best hit's;
    ``char_start``/``char_end`` the span in the source document (None for a hit without offsets).
    """

    source: str
    text: str
    hits: list[Hit]
    score: float
    rank: int
    tokens: int
    char_start: int | None = None
    char_end: int | None = None
    ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "text": self.text, "ids": self.ids, "score": self.score, "rank": self.rank,
                "tokens": self.tokens, "char_start": self.char_start, "char_end": self.char_end}


def merge_passages(
    hits: Sequence[Hit], budget: int, count: Callable[[str], int] = word_count, field_name: str = "source"
) -> list[Passage]:
    """Passages from ``hits`` (fused order) whose chunks fit ``budget`` tokens in all (see the module docs).

    Hits are taken best first; a hit whose tokens would pass the budget is left out and the
    next ones are still tried (a shorter one may fit). ``count`` counts a text's tokens (the
    dense model's tokenizer, or words by default).
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise InvalidInputError(f"the passage budget must be a positive number of tokens, got {budget!r}")
    chosen: list[Hit] = []
    used = 0
    for h in hits:
        n = count(h.text)
        if used + n <= budget:
            chosen.append(h)
            used += n
    by_source: dict[str, list[Hit]] = {}
    for h in chosen:
        by_source.setdefault(group_key(h, field_name), []).append(h)
    passages: list[Passage] = []
    for key, members in by_source.items():
        members.sort(key=_reading_order)
        run: list[Hit] = []
        for h in members:
            if run and not _follows(run[-1], h):
                passages.append(_passage(key, run, count))
                run = []
            run.append(h)
        passages.append(_passage(key, run, count))
    passages.sort(key=lambda p: p.rank)
    return passages


def _reading_order(h: Hit) -> tuple[int, int]:
    n = h.metadata.get("chunk")
    start = h.metadata.get("char_start")
    return (n if isinstance(n, int) else -1, start if isinstance(start, int) else -1)


def _follows(a: Hit, b: Hit) -> bool:
    """Whether chunk ``b`` comes right after chunk ``a`` of the same document."""
    na, nb = a.metadata.get("chunk"), b.metadata.get("chunk")
    return isinstance(na, int) and isinstance(nb, int) and nb == na + 1 and parent_id(a) == parent_id(b)


def _passage(key: str, run: list[Hit], count: Callable[[str], int]) -> Passage:
    text = run[0].text
    end = run[0].metadata.get("char_end")
    for prev, h in zip(run, run[1:]):
        start = h.metadata.get("char_start")
        if isinstance(end, int) and isinstance(start, int):
            if start < end:  # overlap: the text both chunks hold appears once
                text += h.text[end - start:]
            else:  # the whitespace the splitter trimmed between them
                text += ("\n" if start > end else "") + h.text
        else:
            text += "\n" + h.text
        end = h.metadata.get("char_end")
    best = min(run, key=lambda h: h.rank)
    first_start = run[0].metadata.get("char_start")
    return Passage(source=key, text=text, hits=list(run), score=best.score, rank=best.rank, tokens=count(text),
                   char_start=first_start if isinstance(first_start, int) else None,
                   char_end=end if isinstance(end, int) else None, ids=[h.id for h in run])
