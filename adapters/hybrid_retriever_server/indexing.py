"""Indexing a source through the service: what ``hybrid-retriever index SOURCE --server URL`` calls.

``POST /index/documents`` takes whole documents (a folder's files as they are read) and
chunks them here, on the server: the server already holds the dense model whose tokenizer
sizes the chunks, so the client needs no model (loading one only to count tokens takes
seconds and hundreds of MB), chunk sizes are counted by the very model that embeds them,
and whole files are less to send than overlapping chunks. Unchanged chunks are skipped as
``index`` does locally (content hash), and a file's chunks past its new count are removed.

``POST /index/sync`` ends a complete run: it removes stored documents the source no longer
holds, by the rule of :mod:`hybrid_retriever.sync` (the source is recorded in the index).
"""

from __future__ import annotations

from typing import Literal, Optional

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from hybrid_retriever.chunking import Chunker, ChunkCounts, ModelWindow, stale_chunk_ids
from hybrid_retriever.errors import InvalidInputError
from hybrid_retriever.ingest import IngestReport
from hybrid_retriever.retriever import HybridRetriever
from hybrid_retriever.sync import UNRECORDED, decide, stored_outside
from hybrid_retriever.types import Document
from hybrid_retriever_server.models import DocumentIn

router = APIRouter(tags=["indexing"])


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Chunking(_Body):
    """How the server splits each document: ``size`` tokens of its dense model (``unit: tokens``) or characters."""

    size: Optional[int] = Field(default=None, ge=1, description="Most tokens/characters per chunk; None = the dense model's window.")
    overlap: int = Field(default=0, ge=0, description="Most tokens/characters neighbouring chunks share.")
    unit: Literal["tokens", "characters"] = "tokens"


class IndexDocuments(_Body):
    documents: list[DocumentIn] = Field(min_length=1)
    chunking: Optional[Chunking] = Field(default=None, description="Split documents into chunks; None = store them whole.")
    reindex: bool = Field(default=False, description="Encode every document again, even those stored unchanged.")
    source: Optional[str] = Field(default=None, description="The source these documents come from (recorded for /index/sync).")


class IndexedDocuments(BaseModel):
    ids: list[str] = Field(description="Ids stored or found unchanged (chunk ids '<id>#<n>' when chunked).")
    written: int
    replaced: int
    skipped: int
    stale_removed: int = Field(description="Chunks of these documents past their new number of chunks, removed.")
    count: int = Field(description="Entries in the index after the call.")


class SyncSource(_Body):
    source: str = Field(min_length=1, description="The source's name as the client records it (its absolute path).")
    ids: list[str] = Field(description="Every document id the source holds now (before chunking).")
    sync: Optional[bool] = Field(default=None, description="None: when the index holds only this source; true: always; false: never.")


class SyncedSource(BaseModel):
    removed: int
    note: Optional[str] = None
    count: int


def _retriever(request: Request) -> HybridRetriever:
    return request.app.state.retriever  # type: ignore[no-any-return]


def _chunker(r: HybridRetriever, c: Chunking) -> Chunker:
    from hybrid_retriever.branches import DenseBranch

    dense = next((b for b in r.branches.values() if isinstance(b, DenseBranch)), None)
    if c.unit == "characters" or dense is None:
        return Chunker(c.size, c.overlap)
    return Chunker(c.size, c.overlap, window=ModelWindow.of(dense.model))


@router.post("/index/documents", response_model=IndexedDocuments)
async def index_documents(body: IndexDocuments, request: Request) -> IndexedDocuments:
    """Chunk (when asked), skip unchanged and store a batch of whole documents, as ``hybrid-retriever index`` does."""
    r = _retriever(request)
    settings = request.app.state.settings
    if len(body.documents) > settings.max_batch:
        raise InvalidInputError(f"{len(body.documents)} documents in one request is over this server's limit of {settings.max_batch}")
    for d in body.documents:
        if len(d.text) > settings.max_text_chars:
            raise InvalidInputError(
                f"document {d.id!r} has {len(d.text)} characters, over this server's limit of {settings.max_text_chars} "
                "(HYBRID_RETRIEVER_MAX_TEXT_CHARS)"
            )
    docs = [Document(text=d.text, metadata=dict(d.metadata), id=d.id) for d in body.documents]

    def run() -> IndexedDocuments:
        report = IngestReport()
        was_empty = r.count() == 0
        counts = ChunkCounts()
        items = list(counts(_chunker(r, body.chunking).chunk(docs))) if body.chunking is not None else docs
        ids = r.add_documents(items, show_progress=False, skip_unchanged=not body.reindex, report=report)
        stale = stale_chunk_ids(counts.counts, r.get) if counts.counts else []
        if stale:
            r.delete(stale)
        if body.source is not None and r.sources is None:  # the first batch: what filled the index before it
            r.record_sources([body.source] if was_empty else [UNRECORDED, body.source])
        return IndexedDocuments(ids=ids, written=report.written, replaced=report.replaced, skipped=report.skipped,
                                stale_removed=len(stale), count=r.count())

    # A store failure after the write may have been applied is a 503 saying a retry is safe (see writes.py).
    return await request.app.state.writes.run("index", run)  # type: ignore[no-any-return]


@router.post("/index/sync", response_model=SyncedSource)
async def sync_source(body: SyncSource, request: Request) -> SyncedSource:
    """After a complete run of a source: remove stored documents it no longer holds (see hybrid_retriever.sync)."""
    r = _retriever(request)

    def run() -> SyncedSource:
        recorded = r.sources if r.sources is not None else ([UNRECORDED] if r.count() else [])
        outside = stored_outside(r.documents(), set(body.ids)) if body.sync is not False else []
        decision = decide(body.sync, recorded, body.source, len(outside))
        if decision.remove and outside:
            r.delete(outside)
        r.record_sources(decision.sources)
        return SyncedSource(removed=len(outside) if decision.remove else 0, note=decision.note, count=r.count())

    return await request.app.state.writes.run("sync", run)  # type: ignore[no-any-return]

