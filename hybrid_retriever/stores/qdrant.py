"""Remote Qdrant (server, cluster, cloud) through ``qdrant-client``.

The manifest lives in the collection's own metadata, so any client reopening the
collection sees what built it. ``QdrantClient(":memory:")`` serves the same API
in-process and is what the tests use.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence, TypeVar
from urllib.parse import urlsplit

import httpx
import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as m
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from hybrid_retriever.branches.base import VectorSpec
from hybrid_retriever.config import QdrantStoreConfig
from hybrid_retriever.errors import ConfigError, StoreUnavailableError
from hybrid_retriever.stores.base import PAYLOAD_ID, RelevanceFeedback, ScoredIds, SearchRequest, Store, StoredPoint
from hybrid_retriever.stores.filters import FilterSpec, to_client_filter
from hybrid_retriever.stores.folder_lock import FolderLock
from hybrid_retriever.stores.manifest import validate_manifest
from hybrid_retriever.types import SparseVector, Vector

log = logging.getLogger(__name__)

MANIFEST_KEY = "hybrid_retriever"

T = TypeVar("T")

_DISTANCES = {"Cosine": m.Distance.COSINE, "Dot": m.Distance.DOT, "Euclid": m.Distance.EUCLID}


class QdrantStore(Store):
    """One Qdrant collection reached with ``qdrant-client``.

    Reads (search, retrieve, count, scroll, collection info) are idempotent: one that
    fails to connect or times out is retried (``retries``, backoff ``retry_backoff_s``
    doubling), and all attempts together stay within ``timeout`` seconds; then a
    :class:`StoreUnavailableError` says what failed. Writes are tried once, and their
    error says whether anything may have been written. qdrant-client's local mode
    (``:memory:`` / ``path``) is not thread-safe, so calls to it are serialised here.
    """

    def __init__(self, config: QdrantStoreConfig, client: QdrantClient | None = None) -> None:
        self.config = config
        self.collection = config.collection
        self.location = _describe_location(config)
        self._folder_lock: FolderLock | None = None
        if client is None and config.path:
            # qdrant-client's local mode reads the whole folder before its own lock refuses a second
            # opener: take the library's folder lock first, so a refused open reads nothing.
            try:
                Path(config.path).expanduser().mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot create the Qdrant local folder {config.path}: {exc}; check store.path") from None
            self._folder_lock = FolderLock.acquire(
                Path(config.path).expanduser(), "Qdrant local-mode folder", ", or run a Qdrant server (store.url) for several processes"
            )
        if client is None:
            try:
                client = QdrantClient(
                    url=config.url,
                    location=config.location,
                    path=config.path,
                    api_key=config.resolved_api_key(),
                    prefer_grpc=config.prefer_grpc,
                    grpc_port=config.grpc_port,
                    # qdrant-client rounds this up to whole seconds; _limit_time below sets the real one.
                    timeout=max(1, math.ceil(config.timeout)),
                )
            except (ValueError, TypeError) as exc:
                self._release_folder()
                raise ConfigError(f"cannot reach a Qdrant store at {self.location}: {exc}; check store.url") from exc
            except BaseException:
                self._release_folder()
                raise
        self.client = client
        self._is_local = self.client._client.__class__.__name__.startswith("QdrantLocal")
        # qdrant-client's local mode raises under concurrent writes and searches: one call at a time.
        self._local_lock = threading.RLock() if self._is_local else None
        # Cluster settings for every write and search (None: Qdrant's defaults; the local mode has no shards).
        # The local mode accepts the shard key and consistency and ignores them (it has one shard).
        self._shard_key = config.shard_key or None
        rc = config.read_consistency
        self._read_consistency: Any = m.ReadConsistencyType(rc) if isinstance(rc, str) else rc
        self._ordering = m.WriteOrdering(config.write_ordering) if config.write_ordering else None
        self._budget = threading.local()  # .end: when the running operation must be done (monotonic)
        if not self._is_local:
            if config.prefer_grpc:
                # gRPC calls take this as their deadline (qdrant-client keeps it as whole seconds). It is
                # per attempt, not what is left of the operation: a retry after a fast failure (refused
                # connection) may still take up to `timeout` itself.
                self.client._client._timeout = config.timeout
            else:
                self.client.http.client.add_middleware(self._limit_time)

    def _limit_time(self, request: httpx.Request, call_next: Callable[[httpx.Request], httpx.Response]) -> httpx.Response:
        """REST middleware: each request may take what is left of its operation's time (sub-second too)."""
        end = getattr(self._budget, "end", None)
        left = self.config.timeout if end is None else max(0.001, end - time.monotonic())
        request.extensions["timeout"] = httpx.Timeout(left).as_dict()
        return call_next(request)

    @contextlib.contextmanager
    def _attempt(self, end: float) -> Iterator[None]:
        self._budget.end = end
        try:
            if self._local_lock is None:
                yield
            else:
                with self._local_lock:
                    yield
        finally:
            self._budget.end = None

    def _read(self, what: str, call: Callable[[], T]) -> T:
        """Run an idempotent read, retrying transport failures with backoff within ``timeout``."""
        cfg = self.config
        start = time.monotonic()
        end = start + cfg.timeout
        attempt = 0
        while True:
            attempt += 1
            try:
                with self._attempt(end):
                    return call()
            except Exception as exc:  # qdrant-client raises httpx, grpc and its own types
                kind = _failure_kind(exc)
                if kind is None:
                    raise
                wait_s = cfg.retry_backoff_s * 2 ** (attempt - 1)
                if kind != "transport" or attempt > cfg.retries or time.monotonic() + wait_s >= end:
                    raise self._unavailable(what, exc, kind, attempt, time.monotonic() - start) from exc
                log.debug("Qdrant at %s: %s failed (%s); retry %d in %.2f s", self.location, what, _short(exc), attempt, wait_s)
                time.sleep(wait_s)

    def _write(self, what: str, call: Callable[[], Any], doc_ids: Sequence[str] = ()) -> None:
        """Run a write once; on failure say whether any of it may have been applied."""
        start = time.monotonic()
        try:
            with self._attempt(start + self.config.timeout):
                call()
        except Exception as exc:
            kind = _failure_kind(exc)
            if kind is None:
                raise
            error = self._unavailable(what, exc, kind, 1, time.monotonic() - start)
            shown = ", ".join(repr(i) for i in list(doc_ids)[:5]) + (", ..." if len(doc_ids) > 5 else "")
            subject = f"{what} of {len(doc_ids)} document(s) ({shown})" if doc_ids else what
            if _never_sent(exc):
                outcome = f"Nothing was written: the {subject} never reached the server."
            else:
                outcome = (
                    f"The server did not confirm the {subject}: it may or may not have been applied. "
                    "Repeating the same call is safe (the same ids replace the same points)."
                )
            raise StoreUnavailableError(f"{error} {outcome}") from exc

    def _unavailable(self, what: str, exc: BaseException, kind: str, attempts: int, took: float) -> StoreUnavailableError:
        where = f"Qdrant at {self.location}"
        if kind == "not_qdrant":
            return StoreUnavailableError(
                f"the server at {self.location} is not a Qdrant API ({what}: {_short(exc)}). Check store.url: it "
                "should name Qdrant's REST port (usually http://HOST:6333, plus any path prefix a proxy adds)"
            )
        if kind == "auth":
            return StoreUnavailableError(
                f"{where} refused the API key ({what}: {_short(exc)}). Set store.api_key, or the environment "
                f"variable {self.config.api_key_env or 'named by store.api_key_env'}, to a valid key"
            )
        tried = f"{attempts} attempt{'s' if attempts > 1 else ''} in {took:.2f} s (timeout {self.config.timeout:g} s)"
        return StoreUnavailableError(
            f"{where} did not answer ({what}: {_short(exc)}; {tried}). Check that the server is running "
            "(e.g. `docker compose up -d qdrant`) and reachable, and that store.url"
            f"{', store.grpc_port' if self.config.prefer_grpc else ''}, api_key and timeout are right"
        )

    # -- lifecycle ------------------------------------------------------------------

    def exists(self) -> bool:
        return bool(self._read("collection_exists", lambda: self.client.collection_exists(self.collection)))

    def create(self, specs: Sequence[VectorSpec], manifest: dict[str, Any]) -> None:
        dense: dict[str, m.VectorParams] = {}
        sparse: dict[str, m.SparseVectorParams] = {}
        for s in specs:
            if s.kind == "sparse":
                sparse[s.name] = m.SparseVectorParams(modifier=m.Modifier.IDF if s.idf else None)
            else:
                dense[s.name] = m.VectorParams(
                    size=s.size,
                    distance=_DISTANCES[s.distance],
                    multivector_config=m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM)
                    if s.kind == "multi"
                    else None,
                    hnsw_config=_hnsw(s),
                    datatype=m.Datatype.FLOAT16 if s.datatype == "float16" else None,
                    quantization_config=m.ScalarQuantization(
                        scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8, quantile=0.99, always_ram=True)
                    )
                    if s.quantization == "int8"
                    else None,
                )
        cfg = self.config
        self._write(
            "create_collection",
            lambda: self.client.create_collection(
                self.collection,
                vectors_config=dense or {},
                sparse_vectors_config=sparse or None,
                metadata={MANIFEST_KEY: manifest},
                # Distributed mode; None leaves Qdrant's defaults (the local mode ignores these).
                shard_number=cfg.shard_number,
                replication_factor=cfg.replication_factor,
                write_consistency_factor=cfg.write_consistency_factor,
                sharding_method=m.ShardingMethod.CUSTOM if cfg.shard_key else None,
            ),
        )
        if cfg.shard_key and not self._is_local:  # the local mode has no shards
            self._write(
                "create_shard_key",
                lambda: self.client.create_shard_key(self.collection, cfg.shard_key, shards_number=cfg.shard_number),
            )

    def read_manifest(self) -> dict[str, Any] | None:
        if not self.exists():
            return None
        metadata = self._read("get_collection", lambda: self.client.get_collection(self.collection)).config.metadata or {}
        if metadata.get(MANIFEST_KEY) is None:
            return None
        fix = "The points are untouched: restore that metadata from a backup, or index into a new collection"
        return validate_manifest(metadata[MANIFEST_KEY], f"stored in collection {self.collection!r} (metadata key {MANIFEST_KEY!r})", fix)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self._write("update_collection", lambda: self.client.update_collection(self.collection, metadata={MANIFEST_KEY: manifest}))

    def close(self) -> None:
        try:
            if self._local_lock is None:
                self.client.close()
                return
            with self._local_lock:
                self.client.close()
        finally:
            self._release_folder()

    def _release_folder(self) -> None:
        if self._folder_lock is not None:
            self._folder_lock.release()
            self._folder_lock = None

    # -- writes ---------------------------------------------------------------------

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        structs = [
            m.PointStruct(id=p.point_id, vector={k: _to_client_vector(v) for k, v in p.vectors.items()}, payload=p.payload)
            for p in points
        ]
        doc_ids = [str(p.payload.get(PAYLOAD_ID, p.point_id)) for p in points]
        self._write(
            "upsert",
            lambda: self.client.upsert(self.collection, points=structs, wait=True, ordering=self._ordering,
                                       shard_key_selector=self._shard_key),
            doc_ids,
        )

    def delete(self, point_ids: Sequence[str]) -> None:
        selector = m.PointIdsList(points=list(point_ids))
        self._write(
            "delete",
            lambda: self.client.delete(self.collection, points_selector=selector, wait=True, ordering=self._ordering,
                                       shard_key_selector=self._shard_key),
        )

    def optimize(self) -> None:
        # A Qdrant server builds its indexes in the background on its own.
        return None

    # -- reads ----------------------------------------------------------------------

    def retrieve(self, point_ids: Sequence[str], with_vectors: Sequence[str] | bool = False) -> list[StoredPoint]:
        if not point_ids:
            return []
        wv: Any = list(with_vectors) if not isinstance(with_vectors, bool) else with_vectors
        records = self._read(
            "retrieve",
            lambda: self.client.retrieve(
                self.collection, ids=list(point_ids), with_payload=True, with_vectors=wv,
                consistency=self._read_consistency, shard_key_selector=self._shard_key,
            ),
        )
        return [_to_point(r) for r in records]

    def count(self, filter: FilterSpec | None = None) -> int:
        if not self.exists():
            return 0
        flt = to_client_filter(filter)
        return int(
            self._read(
                "count",
                lambda: self.client.count(self.collection, count_filter=flt, exact=True, shard_key_selector=self._shard_key),
            ).count
        )

    def _request(self, r: SearchRequest) -> m.QueryRequest:
        return m.QueryRequest(
            query=_query(r),
            using=r.vector_name,
            prefetch=[_prefetch(p) for p in r.prefetch] if r.prefetch else None,
            filter=to_client_filter(r.filter, r.point_ids),
            limit=r.limit,
            params=_params(r),
            with_payload=False,
            shard_key=self._shard_key,
        )

    def search_batch(self, requests: Sequence[SearchRequest]) -> list[ScoredIds]:
        if not requests:
            return []
        batch = [self._request(r) for r in requests]
        answers = self._read(
            "query_batch_points",
            lambda: self.client.query_batch_points(self.collection, requests=batch, consistency=self._read_consistency),
        )
        return [[(str(p.id), float(p.score)) for p in a.points] for a in answers]

    def fused_search(
        self,
        requests: Sequence[SearchRequest],
        method: Literal["rrf", "dbsf"],
        limit: int,
        rrf_k: int = 2,
        weights: Sequence[float] | None = None,
    ) -> ScoredIds:
        prefetch = [
            m.Prefetch(query=_to_client_query(r.vector), using=r.vector_name, filter=to_client_filter(r.filter), limit=r.limit)
            for r in requests
        ]
        if method == "rrf":
            query: Any = m.RrfQuery(rrf=m.Rrf(k=rrf_k, weights=list(weights) if weights else None))
        else:
            query = m.FusionQuery(fusion=m.Fusion.DBSF)
        answer = self._read(
            "query_points",
            lambda: self.client.query_points(self.collection, prefetch=prefetch, query=query, limit=limit, with_payload=False,
                                             consistency=self._read_consistency, shard_key_selector=self._shard_key),
        )
        return [(str(p.id), float(p.score)) for p in answer.points]

    def scroll(
        self, limit: int, offset: str | None = None, filter: FilterSpec | None = None
    ) -> tuple[list[StoredPoint], str | None]:
        if not self.exists():
            return [], None
        flt = to_client_filter(filter)
        records, next_offset = self._read(
            "scroll",
            lambda: self.client.scroll(
                self.collection, scroll_filter=flt, limit=limit, offset=offset, with_payload=True,
                consistency=self._read_consistency, shard_key_selector=self._shard_key,
            ),
        )
        return [_to_point(r) for r in records], (str(next_offset) if next_offset is not None else None)


def _hnsw(s: VectorSpec) -> m.HnswConfigDiff | None:
    if not s.indexed:
        return m.HnswConfigDiff(m=0)
    if s.hnsw_m is None and s.hnsw_ef_construct is None:
        return None
    return m.HnswConfigDiff(m=s.hnsw_m, ef_construct=s.hnsw_ef_construct)


def _params(r: SearchRequest) -> m.SearchParams | None:
    quant = None
    if r.rescore is not None:
        quant = m.QuantizationSearchParams(rescore=r.rescore, oversampling=r.oversampling if r.rescore else None)
    if not r.exact and quant is None:
        return None
    return m.SearchParams(exact=r.exact, quantization=quant)


def _query(r: SearchRequest) -> Any:
    if r.feedback is None:
        return _to_client_query(r.vector)
    return _feedback(r.vector, r.feedback)


def _feedback(target: Vector, fb: RelevanceFeedback) -> m.RelevanceFeedbackQuery:
    # Needs Qdrant >= 1.17 (the server rejects the query otherwise); the local mode runs it too.
    return m.RelevanceFeedbackQuery(
        relevance_feedback=m.RelevanceFeedbackInput(
            target=_to_client_vector(target),
            feedback=[m.FeedbackItem(example=_to_client_vector(v), score=float(s)) for v, s in zip(fb.vectors, fb.scores)],
            strategy=m.NaiveFeedbackStrategy(naive=m.NaiveFeedbackStrategyParams(a=fb.a, b=fb.b, c=fb.c)),
        )
    )


def _prefetch(r: SearchRequest) -> m.Prefetch:
    return m.Prefetch(
        query=_query(r),
        using=r.vector_name,
        prefetch=[_prefetch(p) for p in r.prefetch] if r.prefetch else None,
        params=_params(r),
        filter=to_client_filter(r.filter, r.point_ids),
        limit=r.limit,
    )


def _to_client_vector(v: Vector) -> Any:
    if isinstance(v, SparseVector):
        return m.SparseVector(indices=v.indices, values=v.values)
    return np.asarray(v, dtype=np.float32).tolist()


def _to_client_query(v: Vector) -> Any:
    return _to_client_vector(v)


def _from_client_vector(v: Any) -> Vector:
    if isinstance(v, m.SparseVector):
        return SparseVector(indices=list(v.indices), values=list(v.values))
    return np.asarray(v, dtype=np.float32)


def _to_point(r: Any) -> StoredPoint:
    vectors = {k: _from_client_vector(v) for k, v in r.vector.items()} if isinstance(r.vector, dict) else {}
    return StoredPoint(point_id=str(r.id), vectors=vectors, payload=dict(r.payload or {}))


# -- failures ------------------------------------------------------------------------


def _describe_location(config: QdrantStoreConfig) -> str:
    """Where the store is, as messages should name it (with gRPC: the gRPC host and port actually dialled)."""
    if config.url and config.prefer_grpc:
        return f"{urlsplit(config.url).hostname}:{config.grpc_port} (gRPC; REST url {config.url})"
    return config.url or config.location or config.path or "?"


def _failure_kind(exc: BaseException) -> str | None:
    """What a qdrant-client exception means: ``transport`` (unreachable or slow: worth a retry),
    ``not_qdrant`` (something else answered), ``auth`` (key refused), or None (Qdrant's own answer)."""
    if isinstance(exc, UnexpectedResponse):
        if exc.status_code in (401, 403):
            return "auth"
        if exc.status_code in (429, 502, 503, 504):
            return "transport"
        return None if _qdrant_body(exc.content) else "not_qdrant"
    if isinstance(exc, ResponseHandlingException):
        source = exc.source
        return "transport" if isinstance(source, (httpx.TransportError, OSError)) else "not_qdrant"
    if isinstance(exc, (httpx.TransportError, OSError)):
        return "transport"
    if isinstance(exc, json.JSONDecodeError):  # a 200 answer that is not JSON: a web page, not Qdrant
        return "not_qdrant"
    code = getattr(exc, "code", None)
    if callable(code) and type(exc).__module__.startswith("grpc"):
        name = getattr(code(), "name", "")
        if name in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"):
            return "transport"
        if name in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
            return "auth"
        if name == "UNIMPLEMENTED":
            return "not_qdrant"
    return None


def _qdrant_body(content: bytes) -> bool:
    """Whether an error response's body is Qdrant's JSON (``{"status": {"error": ...}, ...}``)."""
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(body, dict) and "status" in body


def _never_sent(exc: BaseException) -> bool:
    """Whether the request surely never reached the server (no connection was made)."""
    source = exc.source if isinstance(exc, ResponseHandlingException) else exc
    if isinstance(source, (httpx.ConnectError, httpx.ConnectTimeout, ConnectionRefusedError)):
        return True
    details = getattr(exc, "details", None)
    text = details() if callable(details) else ""
    return "failed to connect" in str(text).lower() or "connection refused" in str(text).lower()


def _short(exc: BaseException) -> str:
    """One line naming an exception and, for wrapped transport errors, what they wrap."""
    inner = exc.source if isinstance(exc, ResponseHandlingException) else None
    if isinstance(exc, UnexpectedResponse):
        return f"HTTP {exc.status_code} {exc.reason_phrase}".strip()
    if inner is not None:
        exc = inner
    details = getattr(exc, "details", None)
    text = details() if callable(details) else str(exc)
    text = (text or "").splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
