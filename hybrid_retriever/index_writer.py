"""The write path of an index: documents in, encoded by every branch, stored in batches.

:class:`~hybrid_retriever.retriever.HybridRetriever`'s ``add_texts``, ``add_documents``,
``delete``, ``optimize`` and ``record_sources`` delegate here. What one call does:

1. **Check the input.** A list is checked whole before anything is written (ids once per call,
   see :mod:`hybrid_retriever.ingest`; text and metadata, see :mod:`hybrid_retriever.payload`);
   a stream is checked batch by batch as it is read.
2. **Fit a new index.** The first write of a new index reads up to :data:`FIT_SAMPLE` documents
   to learn corpus statistics (BM25's avg_len and language), then creates the index with its
   manifest (:mod:`hybrid_retriever.stores.manifest`, including each model's identity probe).
   An index whose BM25 language is not decided yet learns it again
   (:mod:`hybrid_retriever.language_refit`).
3. **Write in batches.** Each batch is encoded by every branch at once (on the retriever's worker
   threads), less the documents stored unchanged with ``skip_unchanged``; new metadata fields are
   recorded in the manifest before the points, so a filter never rejects a stored field.
   Batches are sized by time with ``batch_seconds`` (:class:`~hybrid_retriever.ingest.BatchSizer`).
4. **Report.** An :class:`~hybrid_retriever.ingest.IngestReport` counts what was written, replaced
   and skipped; an error part-way says what earlier batches stored. Large adds end with
   :meth:`IndexWriter.optimize` (``store.optimize_after_add``).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from concurrent.futures import Executor, Future
from dataclasses import replace
from typing import Any, Iterable, Iterator, Mapping, Sequence

from tqdm.auto import tqdm

from hybrid_retriever.branches.base import Branch
from hybrid_retriever.config import RetrieverConfig
from hybrid_retriever.errors import InvalidInputError
from hybrid_retriever.ids import point_id
from hybrid_retriever.index_manifest import IndexManifest
from hybrid_retriever.ingest import PAYLOAD_HASH, BatchSizer, IdTracker, IngestReport, content_hash, settings_key
from hybrid_retriever.language_refit import pending_branches, refit_pending
from hybrid_retriever.models.resolve import model_reference
from hybrid_retriever.payload import as_list, check_id, check_text, storable_metadata, validate_ids
from hybrid_retriever.stores.base import PAYLOAD_ID, PAYLOAD_METADATA, PAYLOAD_TEXT, Store, StoredPoint
from hybrid_retriever.stores.manifest import build_manifest
from hybrid_retriever.types import Document, Vector

log = logging.getLogger(__name__)

#: Documents read before the first write of a new index to measure corpus statistics.
FIT_SAMPLE = 10_000


class IndexWriter:
    """Writes to one index: its store, branches and manifest, encoding on ``pool``.

    One write at a time (``lock``); searches run alongside. The retriever's configuration is
    passed to each call, so a view with other fusion settings writes as its parent does.
    """

    def __init__(self, store: Store, branches: Mapping[str, Branch], pool: Executor, manifest: IndexManifest) -> None:
        self.store = store
        self.branches = branches
        self.pool = pool
        self.manifest = manifest
        self.lock = threading.Lock()
        self._unoptimized = 0  # documents written since the last optimize

    def add_documents(
        self,
        config: RetrieverConfig,
        documents: Iterable[Document],
        *,
        batch_size: int | None = None,
        show_progress: bool | None = None,
        vectors: dict[str, Sequence[Vector]] | None = None,
        skip_unchanged: bool = False,
        report: IngestReport | None = None,
        total: int | None = None,
        batch_seconds: float | None = None,
    ) -> list[str]:
        """:meth:`HybridRetriever.add_documents <hybrid_retriever.retriever.HybridRetriever.add_documents>`."""
        report = report if report is not None else IngestReport()
        written_before = report.written
        batch_size = batch_size or config.runtime.ingest_batch_size
        show = config.runtime.show_progress if show_progress is None else show_progress
        if vectors is not None:
            unknown = set(vectors) - set(self.branches)
            if unknown:
                raise InvalidInputError(f"vectors given for unknown branch(es) {sorted(unknown)}; branches: {sorted(self.branches)}")
            if not isinstance(documents, Sequence):
                raise InvalidInputError("precomputed vectors need documents as a list, in the same order")
        ids_seen = IdTracker()
        checked = 0  # leading documents whose ids were checked before the batches
        if isinstance(documents, Sequence):
            total = checked = len(documents)
            ids_seen.check(documents, [])  # a list is checked whole: a repeated id writes nothing
            validate_documents(documents)
        stream: Iterator[Document] = iter(documents)
        added: list[str] = []
        with self.lock:
            self.manifest.verify()
            if self.manifest.data is None:
                head = list(itertools.islice(stream, FIT_SAMPLE))
                if not head:
                    raise InvalidInputError("no documents to index: the corpus is empty")
                if not checked:
                    ids_seen.check(head, [])
                    checked = len(head)
                validate_documents(head)
                for b in self.branches.values():
                    b.fit([d.text for d in head])
                stream = itertools.chain(head, stream)
            elif pending_branches(self.branches):
                # BM25's language is not decided for good: learn it again with these texts too (language_refit.py).
                # Only read here: the batches below are checked and written as always.
                head = list(itertools.islice(stream, FIT_SAMPLE))
                self.manifest.data = refit_pending(self.branches, self.store, self.manifest.data, head) or self.manifest.data
                stream = itertools.chain(head, stream)
            data = self.manifest.data
            settings = settings_key(data["branches"] if data is not None else self.manifest.branch_manifests())
            # An ETA needs a total: for a stream the caller counts it first (the CLI does, cheaply).
            bar = tqdm(total=total, desc="indexing", unit="doc", disable=not show, mininterval=1.0, smoothing=0.1)
            sizer = BatchSizer(batch_size, batch_seconds)
            try:
                offset = 0
                while not report.stop_requested:
                    batch = list(itertools.islice(stream, sizer.size))
                    if not batch:
                        break
                    ids_seen.check(batch[max(checked - offset, 0) :], report.written_ids)
                    validate_documents(batch)
                    # Documents without an id get a random one; the caller's objects stay untouched.
                    batch = [d if d.id is not None else replace(d, id=uuid.uuid4().hex) for d in batch]
                    given = {n: list(v[offset : offset + len(batch)]) for n, v in (vectors or {}).items()}
                    t0 = time.perf_counter()
                    encoded = self._write_batch(config, batch, given, settings=settings, skip_unchanged=skip_unchanged, report=report)
                    if encoded:
                        sizer.record(encoded, time.perf_counter() - t0)
                    added.extend(d.id for d in batch if d.id is not None)
                    offset += len(batch)
                    bar.update(len(batch))
                    if report.skipped:
                        bar.set_postfix_str(f"{report.skipped} unchanged", refresh=False)
                report.stopped = report.stop_requested
            except InvalidInputError as exc:
                if type(exc) is InvalidInputError and report.written > written_before:
                    raise InvalidInputError(f"{exc}. {written_note(report)}") from exc
                raise
            finally:
                bar.close()
                if report.written > written_before:
                    self._after_add(report.written - written_before, getattr(config.store, "optimize_after_add", 0))
        if vectors is not None and total is not None and any(len(v) != total for v in vectors.values()):
            log.warning("precomputed vector lists differ in length from the documents")
        return added

    def _write_batch(
        self,
        config: RetrieverConfig,
        batch: list[Document],
        given: dict[str, list[Vector]],
        *,
        settings: str = "",
        skip_unchanged: bool = False,
        report: IngestReport | None = None,
    ) -> int:
        """Encode and store ``batch`` (less the unchanged documents with ``skip_unchanged``); returns how many were encoded."""
        hashes = [content_hash(d, settings) for d in batch]
        if skip_unchanged and self.manifest.data is not None:
            stored = {p.point_id: p.payload.get(PAYLOAD_HASH) for p in self.store.retrieve([point_id(d.id) for d in batch])}  # type: ignore[arg-type]
            keep = [i for i, d in enumerate(batch) if stored.get(point_id(d.id)) != hashes[i]]  # type: ignore[arg-type]
            if report is not None:
                report.skipped += len(batch) - len(keep)
                report.replaced += sum(1 for i in keep if point_id(batch[i].id) in stored)  # type: ignore[arg-type]
            batch, hashes = [batch[i] for i in keep], [hashes[i] for i in keep]
            given = {n: [v[i] for i in keep] for n, v in given.items()}
            if not batch:
                return 0
        texts = [d.text for d in batch]
        futures: dict[str, Future[list[Vector]]] = {
            name: self.pool.submit(branch.encode_documents, texts)
            for name, branch in self.branches.items()
            if name not in given
        }
        encoded = {name: f.result() for name, f in futures.items()}
        encoded.update(given)
        for name, vecs in encoded.items():
            if len(vecs) != len(batch):
                raise InvalidInputError(f"branch {name!r} produced {len(vecs)} vectors for {len(batch)} documents")
        if self.manifest.data is None:
            self._create_index(config)
        manifest: dict[str, Any] = self.manifest.data  # type: ignore[assignment]
        # A branch may store more than one named vector per document (e.g. a multi-vector and its FDE).
        stored_vectors = {name: self.branches[name].stored_vectors(encoded[name]) for name in self.branches}
        points = [
            StoredPoint(
                point_id=point_id(d.id),  # type: ignore[arg-type]
                vectors={k: v for name in self.branches for k, v in stored_vectors[name][i].items()},
                payload={
                    PAYLOAD_ID: d.id,
                    PAYLOAD_TEXT: d.text,
                    PAYLOAD_METADATA: storable_metadata(d.metadata),
                    PAYLOAD_HASH: hashes[i],
                },
            )
            for i, d in enumerate(batch)
        ]
        known = list(manifest["metadata_fields"])
        new_fields = {k for d in batch for k in d.metadata} - set(known)
        if new_fields:
            # Record fields before the points, so a filter never rejects a stored field.
            manifest["metadata_fields"] = sorted(set(known) | new_fields)
            self.store.write_manifest(manifest)
        try:
            self.store.upsert(points)
        except BaseException:
            if new_fields:  # the points were refused: a filter on their new fields must stay an error
                manifest["metadata_fields"] = known
                self.store.write_manifest(manifest)
            raise
        if report is not None:
            report.written += len(batch)
            report.written_ids.extend(d.id for d in batch)  # type: ignore[misc]
        return len(batch)

    def _create_index(self, config: RetrieverConfig) -> None:
        """Create the collection with the manifest of what builds it (the store's part left out: it is where, not what)."""
        dumped = config.model_dump(mode="json", exclude={"store"})
        for b in dumped["branches"]:
            if b.get("model"):
                b["model"] = model_reference(b["model"])  # never a path relative to this process's folder
        branches = self.manifest.branch_manifests()
        for name, b in self.branches.items():
            recorded = b.identity_probe()  # the model's own vector for a fixed text (see models/probe.py)
            if recorded is not None:
                branches[name]["probe"] = recorded
        manifest = build_manifest(branches, dumped, metadata_fields=[])
        specs = [s for b in self.branches.values() for s in b.vector_specs]
        self.store.create(specs, manifest)
        self.manifest.data = manifest

    def _after_add(self, n: int, threshold: int) -> None:
        self._unoptimized += n
        if threshold and self._unoptimized >= threshold:
            self.optimize()

    def optimize(self) -> None:
        """Build Qdrant's indexes now (HNSW, sparse)."""
        t0 = time.perf_counter()
        self.store.optimize()
        self._unoptimized = 0
        log.info("optimized %s in %.1f s", self.store.location, time.perf_counter() - t0)

    def delete(self, ids: Sequence[str]) -> None:
        """Delete documents by id; unknown ids are ignored."""
        ids = validate_ids(ids)
        if ids and self.manifest.data is not None:
            with self.lock:
                self.store.delete([point_id(i) for i in ids])

    def record_sources(self, sources: list[str]) -> None:
        """Record the sources that filled the index in its manifest (an index with no documents records nothing)."""
        with self.lock:
            data = self.manifest.data
            if data is not None and data.get("sources") != sources:
                data["sources"] = list(sources)
                self.store.write_manifest(data)


def documents_from_texts(
    texts: Iterable[str], metadatas: Iterable[dict[str, Any]] | None, ids: Iterable[str] | None
) -> list[Document]:
    """``add_texts``' arguments as documents: three lists of one length (metadata and ids optional)."""
    text_list = as_list(texts, "texts", "add_texts([text, ...])")
    metas = as_list(metadatas, "metadatas", "metadatas=[{...}, ...]") if metadatas is not None else [{} for _ in text_list]
    id_list = as_list(ids, "ids", "ids=['a', ...]") if ids is not None else [None] * len(text_list)
    if not (len(text_list) == len(metas) == len(id_list)):
        raise InvalidInputError(
            f"texts ({len(text_list)}), metadatas ({len(metas)}) and ids ({len(id_list)}) must have the same length"
        )
    for n, m in enumerate(metas):
        if m is not None and not isinstance(m, dict):
            raise InvalidInputError(f"metadatas[{n}] is a {type(m).__name__}; each item must be a dict (or None)")
    return [Document(text=t, metadata=dict(m or {}), id=i) for t, m, i in zip(text_list, metas, id_list)]


def validate_documents(docs: Sequence[Document]) -> None:
    """Every document storable as given: a non-empty text, a valid id once per batch, storable metadata."""
    seen: set[str] = set()
    for n, d in enumerate(docs):
        if not isinstance(d, Document):
            raise InvalidInputError(f"item {n} is a {type(d).__name__}, not a Document")
        if not isinstance(d.text, str):
            raise InvalidInputError(f"document #{n} has a {type(d.text).__name__} as text; give a string")
        if not d.text.strip():
            raise InvalidInputError(
                f"document {d.id if d.id is not None else '#' + str(n)} has empty text; drop it or give it content"
            )
        if d.id is not None:
            if not isinstance(d.id, str) or not d.id:
                raise InvalidInputError(f"document #{n} has id {d.id!r}; ids must be non-empty strings")
            check_id(d.id, f"document #{n}'s id")
            if d.id in seen:
                raise InvalidInputError(f"duplicate document id {d.id!r} in one batch; ids must be unique")
            seen.add(d.id)
        name = repr(d.id) if d.id is not None else f"#{n}"
        check_text(d.text, f"the text of document {name}")
        storable_metadata(d.metadata, f"document {name} metadata")


def written_note(report: IngestReport) -> str:
    """What an ingestion stopped by an error had already stored (so nothing is silently half-done)."""
    ids = report.written_ids
    shown = ", ".join(repr(i) for i in ids[:3]) + (f", ..., {ids[-1]!r}" if len(ids) > 3 else "")
    return (
        f"{report.written} documents before it were written ({shown}) and nothing after it; fix the input and add "
        "again with skip_unchanged to skip the ones already written"
    )
