"""Embedded Qdrant: a Qdrant Edge shard on local disk (the default store).

Layout of the index folder: ``shard/`` (Qdrant Edge's own files) and
``manifest.json`` (what built the index). Qdrant Edge searches segments by brute
force until they are optimised, so :meth:`optimize` runs after bulk ingest.

A killed process: every upsert is one write-ahead-log record, so a batch is stored whole
or not at all and every batch written before stays (tests/test_crash.py kills ingests at
random points). The shard is created before the manifest is written and no document is
written before the manifest, so a kill in between leaves an empty shard without a
manifest, which the next :meth:`create` replaces. Documents without a manifest (it was
deleted or damaged) are refused with the way out: ``hybrid-retriever repair``. The shard's
WAL lock keeps a folder to one process at a time, but refuses a second opener only after
that opener changed the live shard; so the library's own folder lock
(:mod:`hybrid_retriever.stores.folder_lock`) is taken first, and a refused open
(:class:`IndexLockedError`) reads and changes nothing.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Literal, Sequence, TypeVar

import numpy as np
import qdrant_edge as qe

from hybrid_retriever.branches.base import VectorSpec
from hybrid_retriever.errors import IndexCorruptError, IndexLockedError, IndexPathError, InvalidInputError
from hybrid_retriever.stores.base import Ranked, RelevanceFeedback, ScoredIds, SearchRequest, Store, StoredPoint
from hybrid_retriever.stores.filters import FilterSpec, to_edge_filter
from hybrid_retriever.stores.folder_lock import FolderLock
from hybrid_retriever.stores.manifest import DOCUMENTS_KEY, validate_manifest
from hybrid_retriever.types import SparseVector, Vector

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

MANIFEST_FILE = "manifest.json"
SHARD_DIR = "shard"

def _damaged(path: Path, exc: Exception) -> IndexCorruptError:
    return IndexCorruptError(
        f"the index data at {path / SHARD_DIR} is damaged ({str(exc)[:200]}); run `hybrid-retriever repair --index "
        f"{path}` to see which documents can still be read, then re-index the source or restore the folder from a backup"
    )


def _reads_store(method: F) -> F:
    """Qdrant Edge reports an unreadable store file as a bare ``Exception``: make it the library's error."""

    @functools.wraps(method)
    def wrapper(self: "EdgeStore", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            if type(exc) is Exception and str(exc).startswith("Service runtime error"):
                raise _damaged(self.path, exc) from None
            raise

    return wrapper  # type: ignore[return-value]


#: What a refused second opener can do instead (the end of IndexLockedError's message).
SHARING = (
    ", or share the index: serve it over HTTP with `hybrid-retriever serve` and send queries there "
    "(hybrid-retriever query --server URL), or keep the documents in a Qdrant server (store kind 'qdrant'), "
    "which many processes can use at once"
)

#: Most point ids :class:`EdgeStore` keeps in its id memo (about 200 bytes each).
_ID_MEMO_SIZE = 1_000_000

_DISTANCES = {"Cosine": qe.Distance.Cosine, "Dot": qe.Distance.Dot, "Euclid": qe.Distance.Euclid}


class EdgeStore(Store):
    """A Qdrant Edge shard in folder ``path``. Writes are serialised; searches run concurrently."""

    def __init__(self, path: str | os.PathLike[str], *, check: bool = True) -> None:
        """Open the index in folder ``path`` if it holds one (the folder is created on first write).

        ``check`` (the default) refuses a folder whose files are inconsistent with
        :class:`IndexCorruptError`; :mod:`hybrid_retriever.repair` opens with it off.
        """
        self.path = Path(path).expanduser()
        self.location = str(self.path)
        if self.path.exists() and not self.path.is_dir():
            raise IndexPathError(f"index path {self.path} is a file; give a folder path (it is created if missing)")
        self._shard: qe.EdgeShard | None = None
        #: A shard left by an index creation that was interrupted before its manifest was
        #: written holds no documents (none are written before the manifest): :meth:`create`
        #: replaces it. ``_leftover_error`` says why such a shard would not even load.
        self._leftover = False
        self._leftover_error: str | None = None
        self._write_lock = threading.Lock()
        #: Point ids seen in answers. Edge returns ``uuid.UUID`` objects and parses text ids through
        #: ``uuid.UUID`` again (~2-4 µs per id each way), so answers name points by the UUID's integer
        #: (:meth:`search_ranked`'s keys: hashed and compared in C, ordered as the text ids are) and
        #: these memos map a key to Edge's own id object and to its text (made for the hits returned
        #: only), and text back to the object (benchmarks/results/hotpath.md).
        self._key_native: dict[Any, Any] = {}
        self._key_text: dict[Any, str] = {}
        self._text_native: dict[str, Any] = {}
        self._lock: FolderLock | None = None
        #: How many documents the manifest says the shard holds (least, most); None = not recorded.
        self._documents: tuple[int, int] | None = None
        self._manifest: dict[str, Any] | None = None  # the last one written, rewritten with each new count
        if self.path.is_dir():
            # Before anything reads the shard: a second opener must change nothing.
            self._lock = FolderLock.acquire(self.path, "index", SHARING)
        try:
            self._open(check)
        except BaseException:
            self.close()
            raise

    def _open(self, check: bool) -> None:
        shard_dir, manifest_file = self.path / SHARD_DIR, self.path / MANIFEST_FILE
        if not shard_dir.is_dir():
            if check and manifest_file.is_file():
                raise IndexCorruptError(
                    f"{manifest_file} is there but the index data ({shard_dir}) is missing, so the documents are gone; "
                    f"move or delete {manifest_file} (or the whole folder) to build a new index at {self.path}"
                )
            return
        try:
            shard = load_shard(self.path)
        except IndexCorruptError as exc:
            if not check or manifest_file.is_file():
                raise
            self._leftover_error = str(exc)
            return
        if not check:
            self._shard = shard
            return
        if not manifest_file.is_file():
            n = int(shard.count(qe.CountRequest(exact=True)))
            shard.close()
            if n:
                raise _missing_manifest(self.path, n)
            self._leftover = True
            return
        self._shard = shard
        manifest = self.read_manifest()
        self._documents = _recorded_documents(manifest)
        if self._documents is not None:
            n = self.count()
            least, most = self._documents
            if not least <= n <= most:
                raise IndexCorruptError(
                    f"the index at {self.path} should hold {least if least == most else f'{least} to {most}'} documents "
                    f"(its {MANIFEST_FILE} records them), but its store files give {n}: they are damaged or were "
                    f"replaced. Run `hybrid-retriever repair --index {self.path}` to check the shard and keep what is "
                    "readable, then re-index the source, or restore the folder from a backup"
                )
            self._documents = (n, n)

    # -- lifecycle ------------------------------------------------------------------

    def exists(self) -> bool:
        return self._shard is not None

    def create(self, specs: Sequence[VectorSpec], manifest: dict[str, Any]) -> None:
        dense: dict[str, qe.EdgeVectorParams] = {}
        sparse: dict[str, qe.EdgeSparseVectorParams] = {}
        for s in specs:
            if s.kind == "sparse":
                sparse[s.name] = qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf if s.idf else None)
            else:
                dense[s.name] = qe.EdgeVectorParams(
                    size=s.size,
                    distance=_DISTANCES[s.distance],
                    multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim) if s.kind == "multi" else None,
                    hnsw_config=_hnsw(s),
                    datatype=qe.VectorStorageDatatype.Float16 if s.datatype == "float16" else None,
                    quantization_config=qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99, always_ram=True)
                    if s.quantization == "int8"
                    else None,
                )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise IndexPathError(f"cannot create index folder {self.path}: {exc}") from None
        if self._lock is None:
            self._lock = FolderLock.acquire(self.path, "index", SHARING)
        self._clear_leftover()
        try:
            self._shard = qe.EdgeShard.create(
                str(self.path / SHARD_DIR), qe.EdgeConfig(vectors=dense or None, sparse_vectors=sparse or None)
            )
        except Exception as exc:
            raise IndexPathError(f"cannot create the index at {self.path}: {exc}") from None
        # The shard first, then the manifest: a crash in between leaves a shard with no
        # documents and no manifest, which the next create replaces (see __init__).
        self.write_manifest(manifest)

    def _clear_leftover(self) -> None:
        """Make way for a new shard where an interrupted creation left one (it holds no documents)."""
        shard_dir = self.path / SHARD_DIR
        if self._leftover:
            shard = load_shard(self.path)  # locked while checked: nobody writes to it meanwhile
            n = int(shard.count(qe.CountRequest(exact=True)))
            shard.close()
            if n:
                raise _missing_manifest(self.path, n)
            log.warning("replacing the empty shard an interrupted index creation left at %s", shard_dir)
            shutil.rmtree(shard_dir)
            self._leftover = False
        elif self._leftover_error is not None:
            # It would not load, so it was not checked for documents: set it aside, never delete it.
            aside = self.path / f"{SHARD_DIR}.interrupted-{time.strftime('%Y%m%d-%H%M%S')}"
            log.warning("moving aside %s, which does not load (%s), to %s", shard_dir, self._leftover_error, aside)
            os.replace(shard_dir, aside)
            self._leftover_error = None

    def read_manifest(self) -> dict[str, Any] | None:
        f = self.path / MANIFEST_FILE
        if self._shard is None or not f.is_file():
            return None
        manifest = read_manifest_file(f)
        self._manifest = dict(manifest)
        return manifest

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        manifest = dict(manifest)
        if self._documents is None and self._shard is not None:
            n = self.count()
            self._documents = (n, n)
        if self._documents is not None:
            manifest[DOCUMENTS_KEY] = list(self._documents)  # the store's own count wins over a caller's stale copy
        self._manifest = manifest
        self._write_manifest_file(manifest)

    def _write_manifest_file(self, manifest: dict[str, Any]) -> None:
        # Write, fsync, then rename: neither a crash nor a power cut leaves a half-written manifest.
        tmp = self.path / (MANIFEST_FILE + ".tmp")
        # A leftover (or planted) tmp file, a symlink included, is removed rather than written through:
        # a folder someone sent must not make this process overwrite a file outside it.
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with open(fd, "w", encoding="utf-8") as out:
            out.write(json.dumps(manifest, indent=2, sort_keys=True))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path / MANIFEST_FILE)
        _fsync_dir(self.path)

    def close(self) -> None:
        try:
            if self._shard is not None:
                with self._write_lock:
                    self._shard.flush()
                    self._shard.close()
                    self._shard = None
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    @property
    def shard(self) -> qe.EdgeShard:
        if self._shard is None:
            raise InvalidInputError(f"the index at {self.path} is empty or closed; add documents first")
        return self._shard

    # -- writes ---------------------------------------------------------------------

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        edge_points = [
            qe.Point(id=p.point_id, vector={k: _to_edge_vector(v) for k, v in p.vectors.items()}, payload=p.payload)
            for p in points
        ]
        with self._write_lock:
            self._counted(0, len(edge_points), lambda: self.shard.update(qe.UpdateOperation.upsert_points(edge_points)))

    def delete(self, point_ids: Sequence[str]) -> None:
        with self._write_lock:
            self._counted(len(point_ids), 0, lambda: self.shard.update(qe.UpdateOperation.delete_points(list(point_ids))))

    def _counted(self, fewer: int, more: int, write: Callable[[], Any]) -> None:
        """Run ``write`` with the manifest's document count bracketing it: [n - fewer, n + more] while it runs, exact after."""
        if self._manifest is None:  # no manifest yet (none is written before it): nothing to keep in step
            write()
            self.shard.flush()
            return
        n = self.count()
        self._documents = (max(n - fewer, 0), n + more)
        self._write_manifest_file({**self._manifest, DOCUMENTS_KEY: list(self._documents)})
        write()
        self.shard.flush()
        n = self.count()
        self._documents = (n, n)
        self._write_manifest_file({**self._manifest, DOCUMENTS_KEY: [n, n]})
        self._manifest[DOCUMENTS_KEY] = [n, n]

    def optimize(self) -> None:
        with self._write_lock:
            self.shard.optimize()

    # -- reads ----------------------------------------------------------------------

    @_reads_store
    def retrieve(self, point_ids: Sequence[str], with_vectors: Sequence[str] | bool = False) -> list[StoredPoint]:
        if not point_ids:
            return []
        wv = list(with_vectors) if not isinstance(with_vectors, bool) else with_vectors
        records = self.shard.retrieve(self._natives(point_ids), with_payload=True, with_vector=wv)
        return [_to_point(r) for r in records]

    @_reads_store
    def count(self, filter: FilterSpec | None = None) -> int:
        if self._shard is None:
            return 0
        return int(self.shard.count(qe.CountRequest(exact=True, filter=to_edge_filter(filter))))

    def _request(self, r: SearchRequest) -> qe.QueryRequest:
        ids = self._natives(r.point_ids) if r.point_ids is not None else None
        return qe.QueryRequest(
            limit=r.limit,
            query=_query(r),
            prefetches=[_prefetch(p) for p in r.prefetch] if r.prefetch else None,
            filter=to_edge_filter(r.filter, ids),
            params=_params(r),
            with_payload=False,
        )

    @_reads_store
    def search_batch(self, requests: Sequence[SearchRequest]) -> list[ScoredIds]:
        return [list(zip(self.key_texts(a.keys), a.scores)) for a in self.search_ranked(requests)]

    @_reads_store
    def search_ranked(self, requests: Sequence[SearchRequest]) -> list[Ranked]:
        if not requests:
            return []
        answers = self.shard.query_batch(qe.QueryBatchRequest([self._request(r) for r in requests]))
        return [self._ranked(answer) for answer in answers]

    def _ranked(self, answer: Sequence[Any]) -> Ranked:
        """An Edge answer with its ids as keys: a UUID's integer (the text of any other id, which this
        library never writes); each key's Edge id object is remembered for the requests that follow."""
        natives = [p.id for p in answer]
        try:
            keys = [i.int for i in natives]
        except AttributeError:
            keys = [i.int if isinstance(i, uuid.UUID) else self._remember_text(i) for i in natives]
        memo = self._key_native
        if len(memo) >= _ID_MEMO_SIZE:
            self._forget_ids()
        # New ids only: replacing every entry would keep a fresh object per id alive in a long-lived dict
        # at each search (churn the garbage collector's older generations pay for).
        for at in [at for at, k in enumerate(keys) if k not in memo]:
            memo[keys[at]] = natives[at]
        return Ranked(keys, [p.score for p in answer])

    def key_texts(self, keys: Sequence[Any]) -> list[str]:
        text = self._key_text
        return [text.get(k) or self._key_to_text(k) for k in keys]

    def _key_to_text(self, key: Any) -> str:
        if isinstance(key, str):
            return key
        native = self._key_native.get(key) or uuid.UUID(int=key)
        t = str(native)
        self._key_text[key] = t
        self._text_native[t] = native
        return t

    def _remember_text(self, native: Any) -> str:
        """The text of an id that is not a UUID (an integer id), remembered as its own key."""
        t = str(native)
        self._text_native[t] = native
        return t

    def _natives(self, ids: Sequence[Any]) -> list[Any]:
        """Point ids as Edge takes them: text through the memo (else as given), keys to Edge's id objects."""
        by_text, by_key = self._text_native, self._key_native
        return [by_text.get(i, i) if isinstance(i, str) else (by_key.get(i) or uuid.UUID(int=i)) for i in ids]

    def _forget_ids(self) -> None:
        """Bound the id memos (cleared past :data:`_ID_MEMO_SIZE` ids)."""
        self._key_native.clear()
        self._key_text.clear()
        self._text_native.clear()

    @_reads_store
    def fused_search(
        self,
        requests: Sequence[SearchRequest],
        method: Literal["rrf", "dbsf"],
        limit: int,
        rrf_k: int = 2,
        weights: Sequence[float] | None = None,
    ) -> ScoredIds:
        prefetches = [
            qe.Prefetch(
                limit=r.limit,
                query=qe.Query.Nearest(_to_edge_vector(r.vector), using=r.vector_name),
                filter=to_edge_filter(r.filter),
            )
            for r in requests
        ]
        fusion = qe.Fusion.Rrf(k=rrf_k, weights=list(weights) if weights else None) if method == "rrf" else qe.Fusion.Dbsf()
        ranked = self._ranked(self.shard.query(qe.QueryRequest(limit=limit, prefetches=prefetches, query=fusion, with_payload=False)))
        return list(zip(self.key_texts(ranked.keys), ranked.scores))

    @_reads_store
    def scroll(
        self, limit: int, offset: str | None = None, filter: FilterSpec | None = None
    ) -> tuple[list[StoredPoint], str | None]:
        if self._shard is None:
            return [], None
        records, next_offset = self.shard.scroll(
            qe.ScrollRequest(offset=offset, limit=limit, filter=to_edge_filter(filter), with_payload=True)
        )
        return [_to_point(r) for r in records], (str(next_offset) if next_offset is not None else None)

    def disk_bytes(self) -> int:
        """Bytes the index folder takes on disk."""
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())


def _recorded_documents(manifest: dict[str, Any] | None) -> tuple[int, int] | None:
    """The manifest's [least, most] document count (validated with the manifest), or None if it records none."""
    value = (manifest or {}).get(DOCUMENTS_KEY)
    return (int(value[0]), int(value[1])) if isinstance(value, list) and len(value) == 2 else None


def load_shard(path: Path) -> qe.EdgeShard:
    """Open the Edge shard of the index folder ``path``; a held lock or unreadable files are the library's errors."""
    shard_dir = path / SHARD_DIR
    try:
        return qe.EdgeShard.load(str(shard_dir))
    except Exception as exc:
        if "WouldBlock" in str(exc) or "lock" in str(exc).lower():
            raise IndexLockedError(
                f"the index at {path} is already open in another program (it holds the lock on {shard_dir / 'wal'}); "
                f"an Edge index is used by one process at a time. Close the other one first{SHARING}"
            ) from None
        raise IndexCorruptError(
            f"cannot open the index data at {shard_dir}: {exc}; if the folder was copied while in use, copy it again "
            "from a closed index"
        ) from None


def _missing_manifest(path: Path, n: int) -> IndexCorruptError:
    return IndexCorruptError(
        f"the index at {path} holds {n} documents but its {MANIFEST_FILE} is missing (an interrupted or damaged "
        f"index); rebuild the manifest with `hybrid-retriever repair --index {path} [--config FILE]` (the "
        "configuration it was built with); nothing is deleted"
    )


def read_manifest_file(f: Path) -> dict[str, Any]:
    """The manifest in file ``f``, parsed and its structure checked (:class:`IndexCorruptError` if not sound)."""
    fix = (
        f"The documents are untouched: rebuild the manifest with `hybrid-retriever repair --index {f.parent} "
        "--config FILE` (the configuration the index was built with), or restore it from a backup"
    )
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexCorruptError(f"the index manifest {f} is not valid JSON ({exc}). {fix}") from None
    except RecursionError:
        raise IndexCorruptError(f"the index manifest {f} is nested too deeply to be a manifest. {fix}") from None
    except OSError as exc:
        raise IndexPathError(f"cannot read the index manifest {f}: {exc}") from None
    return validate_manifest(data, str(f), fix)


def _fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _hnsw(s: VectorSpec) -> qe.HnswIndexConfig | None:
    if not s.indexed:
        return qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10000)
    if s.hnsw_m is None and s.hnsw_ef_construct is None:
        return None
    return qe.HnswIndexConfig(m=s.hnsw_m or 16, ef_construct=s.hnsw_ef_construct or 100, full_scan_threshold=10000)


def _params(r: SearchRequest) -> qe.SearchParams | None:
    quant = None
    if r.rescore is not None:
        quant = qe.QuantizationSearchParams(rescore=r.rescore, oversampling=r.oversampling if r.rescore else None)
    if not r.exact and quant is None:
        return None
    return qe.SearchParams(exact=r.exact, quantization=quant)


def _query(r: SearchRequest) -> qe.Query:
    if r.feedback is not None:
        return qe.Query.FeedbackNaive(_feedback(r.vector, r.feedback), using=r.vector_name)
    return qe.Query.Nearest(_to_edge_vector(r.vector), using=r.vector_name)


def _feedback(target: Vector, fb: RelevanceFeedback) -> qe.FeedbackNaiveQuery:
    items = [qe.FeedbackItem(_to_edge_vector(v), float(s)) for v, s in zip(fb.vectors, fb.scores)]
    return qe.FeedbackNaiveQuery(_to_edge_vector(target), items, qe.NaiveFeedbackStrategy(fb.a, fb.b, fb.c))


def _prefetch(r: SearchRequest) -> qe.Prefetch:
    return qe.Prefetch(
        limit=r.limit,
        query=_query(r),
        prefetches=[_prefetch(p) for p in r.prefetch] if r.prefetch else None,
        params=_params(r),
        filter=to_edge_filter(r.filter, r.point_ids),
    )


def _to_edge_vector(v: Vector) -> Any:
    if isinstance(v, SparseVector):
        return qe.SparseVector(indices=v.indices, values=v.values)
    return np.asarray(v, dtype=np.float32).tolist()


def _from_edge_vector(v: Any) -> Vector:
    if isinstance(v, qe.SparseVector):
        return SparseVector(indices=list(v.indices), values=list(v.values))
    return np.asarray(v, dtype=np.float32)


def _to_point(r: Any) -> StoredPoint:
    vectors = {k: _from_edge_vector(v) for k, v in (r.vector or {}).items()} if isinstance(r.vector, dict) else {}
    return StoredPoint(point_id=str(r.id), vectors=vectors, payload=dict(r.payload or {}))
