"""A growing index whose BM25 language is not decided yet: learn it again, re-encode BM25.

With ``bm25.language: auto`` a new index decides its language only once its documents hold
enough text (:func:`hybrid_retriever.languages.decide_language`). Until then the BM25 branch
is pending: it analyses with a language-neutral analyzer. At every later ingest the branch
learns its analyzer and avg_len again from every stored text and the new ones
(:meth:`BM25Branch.fit`), the stored documents' BM25 vectors are re-encoded from their
stored texts (BM25 only: the other branches' vectors are kept as they are), and the manifest
records the outcome. So an index grown in small batches ends up exactly as one built in one
go from the same documents, and a pending index is small (fewer than
:data:`~hybrid_retriever.languages.SAMPLE_DOCS` documents), so this stays cheap.

Order of writes: the re-encoded points first, the manifest last. A process killed in
between leaves the manifest pending, so the next ingest does it again.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Mapping, Sequence

from hybrid_retriever.branches.base import Branch
from hybrid_retriever.branches.bm25 import BM25Branch
from hybrid_retriever.ids import point_id
from hybrid_retriever.ingest import PAYLOAD_HASH, content_hash, settings_key
from hybrid_retriever.stores.base import PAYLOAD_ID, PAYLOAD_METADATA, PAYLOAD_TEXT, Store, StoredPoint
from hybrid_retriever.types import Document

log = logging.getLogger(__name__)

#: Points read and rewritten per store call.
_PAGE = 256


def pending_branches(branches: Mapping[str, Branch]) -> list[BM25Branch]:
    """The BM25 branches whose language is not decided yet."""
    return [b for b in branches.values() if isinstance(b, BM25Branch) and b.language_pending]


def refit_pending(
    branches: Mapping[str, Branch], store: Store, manifest: dict[str, Any], new_docs: Sequence[Document]
) -> dict[str, Any] | None:
    """Before ``new_docs`` are written: learn each pending BM25 branch again and re-encode what is stored.

    Returns the new manifest (already written to the store), or None when nothing changed.
    The decision sees the stored texts, less those ``new_docs`` replace (same id), plus
    the new texts. ``new_docs`` are not validated yet (the ingest checks each batch before
    writing it): what is not a text is left out here. On an error the branches go back to
    what ``manifest`` records.
    """
    pending = pending_branches(branches)
    new = [d for d in new_docs if isinstance(getattr(d, "text", None), str)]
    if not pending or not new:
        return None
    stored = _stored_points(store)
    replaced = {point_id(d.id) for d in new if isinstance(d.id, str) and d.id}
    texts = [p.payload.get(PAYLOAD_TEXT) or "" for p in stored if p.point_id not in replaced] + [d.text for d in new]
    before = {b.name: b.manifest() for b in pending}
    try:
        for b in pending:
            b.fit(texts)
        changed = [b for b in pending if b.manifest() != before[b.name]]
        if not changed:
            return None
        updated = copy.deepcopy(manifest)
        updated["branches"].update({b.name: b.manifest() for b in changed})
        _reencode(store, stored, changed, settings_key(updated["branches"]))
        store.write_manifest(updated)
    except BaseException:
        for b in pending:
            b.reset(before[b.name])
        raise
    for b in changed:
        log.info("BM25 branch %r: %d stored documents re-encoded; %s", b.name, len(stored), b.describe())
    return updated


def _stored_points(store: Store) -> list[StoredPoint]:
    """Every stored point (payload only), page by page."""
    points: list[StoredPoint] = []
    offset: str | None = None
    while True:
        page, offset = store.scroll(_PAGE, offset)
        points.extend(page)
        if offset is None:
            return points


def _reencode(store: Store, stored: Sequence[StoredPoint], branches: Sequence[BM25Branch], settings: str) -> None:
    """Rewrite the stored points with these branches' vectors encoded again (the others kept) and a new content hash."""
    for start in range(0, len(stored), _PAGE):
        page = store.retrieve([p.point_id for p in stored[start : start + _PAGE]], with_vectors=True)
        texts = [p.payload.get(PAYLOAD_TEXT) or "" for p in page]
        for b in branches:
            for p, vectors in zip(page, b.stored_vectors(b.encode_documents(texts))):
                p.vectors.update(vectors)
        for p, text in zip(page, texts):
            # The hash that lets skip_unchanged recognise the document under the new settings.
            doc = Document(text=text, metadata=p.payload.get(PAYLOAD_METADATA) or {}, id=p.payload.get(PAYLOAD_ID))
            p.payload[PAYLOAD_HASH] = content_hash(doc, settings)
        store.upsert(page)
