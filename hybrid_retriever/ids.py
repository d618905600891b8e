"""Point ids: the Qdrant id stored for a user's document id.

A Qdrant point id must be an unsigned integer or a UUID, while users name documents with
any string; the point id is a UUID5 of the user's id, so it is the same on every run and
machine and the user's id is kept in the payload.

>>> point_id("doc-1") == point_id("doc-1") and len(point_id("doc-1")) == 36
True
"""

from __future__ import annotations

import uuid

#: Namespace of point ids: point id = uuid5(NAMESPACE, user id).
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://pypi.org/project/hybrid-retriever/")


def point_id(doc_id: str) -> str:
    """The Qdrant point id stored for a user document id (stable across runs and machines)."""
    return str(uuid.uuid5(ID_NAMESPACE, doc_id))
