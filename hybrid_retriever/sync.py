"""Keeping an index in step with its source: removing what the source no longer holds.

``hybrid-retriever index SOURCE`` adds and updates what SOURCE holds; a file deleted from a
folder would otherwise stay searchable. After a run that read the whole source (not
stopped, no error), a *sync* removes every stored document whose source document was not
read: chunks of deleted files and rows no longer in a JSONL file. It is LangChain's
indexing API with ``cleanup="full"``: the index mirrors one source.

Which documents belong to a source
    The index records in its manifest (``"sources"``) the sources that filled it (a
    folder's or file's absolute path on the machine that ran ``index``; through a
    service, the client's path). A stored chunk belongs to the document it was cut from
    (its id without ``#<n>``); a file that could not be read counts as present, so its
    stored chunks stay.

The default (``sync=None``, "auto")
    Sync when this source is the only one the index records (or the index is new):
    re-running ``index DOCS --index X`` keeps X equal to DOCS, so a deleted file stops
    answering queries. When the index was also filled from other sources (or was built
    before sources were recorded), nothing is removed and a note says how many stored
    documents are not in this source: removing them would delete another source's
    documents, which a re-run of this one cannot bring back. ``sync=True`` (``--sync``)
    removes them anyway and makes this source the index's only one; ``sync=False``
    (``--no-sync``) never removes (to fill one index from several sources).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from hybrid_retriever.chunking import parent_id
from hybrid_retriever.types import Document

#: What an index built before sources were recorded (and not empty) counts as its source.
UNRECORDED = "(unrecorded)"


def source_key(path: str | Path) -> str:
    """How a source is recorded: its absolute, resolved path."""
    return str(Path(path).expanduser().resolve())


class SeenIds:
    """Passes documents (or chunks) through, recording the ids of the documents they came from."""

    def __init__(self) -> None:
        self.ids: set[str] = set()

    def __call__(self, docs: Iterable[Document]) -> Iterator[Document]:
        for d in docs:
            p = parent_id(d)
            if p is not None:
                self.ids.add(p)
            yield d


def stored_outside(stored: Iterable[Document], seen: set[str]) -> list[str]:
    """Ids of ``stored`` documents whose source document is not in ``seen``."""
    return [d.id for d in stored if d.id is not None and parent_id(d) not in seen]


@dataclass(frozen=True)
class SyncDecision:
    """Whether to remove the documents outside the source, the sources to record after, and a note when kept."""

    remove: bool
    sources: list[str]
    note: str | None = None


def decide(mode: bool | None, recorded: list[str], key: str, outside: int) -> SyncDecision:
    """What a complete run of source ``key`` does with the ``outside`` stored documents not in it.

    ``recorded``: the sources the index recorded before this run (see the module docs).
    """
    others = sorted(set(recorded) - {key})
    if mode is False:
        return SyncDecision(False, sorted(set(recorded) | {key}))
    if mode is True or not others:
        return SyncDecision(True, [key])
    note = None
    if outside:
        which = "sources not recorded (built before sources were)" if others == [UNRECORDED] else ", ".join(others)
        note = (
            f"{outside} stored documents are not in this source and were kept: the index was also filled from {which}. "
            "--sync removes them (the index then mirrors this source); --no-sync silences this note"
        )
    return SyncDecision(False, sorted(set(recorded) | {key}), note)
