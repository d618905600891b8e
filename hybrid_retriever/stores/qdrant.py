"""Remote Qdrant (server, cluster, cloud) through ``qdrant-client``.

The manifest lives in the collection's own metadata, so any client reopening the
collection sees what built it. ``QdrantClient(":memory:")`` serves the same API
in-process and is what the tests use.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator, Literal, Sequence

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as m

from hybrid_retriever.branches.base import VectorSpec
from hybrid_retriever.config import QdrantStoreConfig
from hybrid_retriever.errors import StoreUnavailableError
from hybrid_retriever.stores.base import RelevanceFeedback, ScoredIds, SearchRequest, Store, StoredPoint
from hybrid_retriever.stores.filters import FilterSpec, to_client_filter
from hybrid_retriever.types import SparseVector, Vector

log = logging.getLogger(__name__)

MANIFEST_KEY = "hybrid_retriever"

_DISTANCES = {"Cosine": m.Distance.COSINE, "Dot": m.Distance.DOT, "Euclid": m.Distance.EUCLID}


class QdrantStore(Store):
    """One Qdrant collection reached with ``qdrant-client``."""

    def __init__(self, config: QdrantStoreConfig, client: QdrantClient | None = None) -> None:
        self.config = config
        self.collection = config.collection
        self.location = config.url or config.location or config.path or "?"
        self.client = client or QdrantClient(
            url=config.url,
            location=config.location,
            path=config.path,
            api_key=config.api_key,
            prefer_grpc=config.prefer_grpc,
            timeout=int(max(1, round(config.timeout))),
        )
        self._is_local = self.client._client.__class__.__name__.startswith("QdrantLocal")
        # Cluster settings for every write and search (None: Qdrant's defaults; the local mode has no shards).
        self._shard_key = config.shard_key if config.shard_key and not self._is_local else None
        rc = config.read_consistency
        self._read_consistency: Any = m.ReadConsistencyType(rc) if isinstance(rc, str) else rc

    @contextlib.contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """Turn transport failures into one clear error naming the server and the fix."""
        try:
            yield
        except StoreUnavailableError:
            raise
        except Exception as exc:  # qdrant-client raises httpx, grpc and its own types
            name = type(exc).__name__
            transport = any(
                t in name for t in ("Connect", "Timeout", "ResponseHandling", "RpcError", "Unavailable")
            ) or isinstance(exc, (ConnectionError, TimeoutError))
            if transport:
                raise StoreUnavailableError(
                    f"Qdrant at {self.location} did not answer ({what}: {name}: {exc}). Check that the server "
                    "is running (e.g. `docker compose up -d qdrant`) and that url, api_key and timeout are right"
                ) from exc
            raise

    # -- lifecycle ------------------------------------------------------------------

    def exists(self) -> bool:
        with self._calling("collection_exists"):
            return bool(self.client.collection_exists(self.collection))

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
        with self._calling("create_collection"):
            self.client.create_collection(
                self.collection,
                vectors_config=dense or {},
                sparse_vectors_config=sparse or None,
                metadata={MANIFEST_KEY: manifest},
                # Distributed mode; None leaves Qdrant's defaults (the local mode ignores these).
                shard_number=cfg.shard_number,
                replication_factor=cfg.replication_factor,
                write_consistency_factor=cfg.write_consistency_factor,
                sharding_method=m.ShardingMethod.CUSTOM if cfg.shard_key else None,
            )
            if cfg.shard_key and not self._is_local:  # the local mode has no shards
                self.client.create_shard_key(self.collection, cfg.shard_key, shards_number=cfg.shard_number)

    def read_manifest(self) -> dict[str, Any] | None:
        if not self.exists():
            return None
        with self._calling("get_collection"):
            metadata = self.client.get_collection(self.collection).config.metadata or {}
        return metadata.get(MANIFEST_KEY)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        with self._calling("update_collection"):
            self.client.update_collection(self.collection, metadata={MANIFEST_KEY: manifest})

    def close(self) -> None:
        self.client.close()

    # -- writes ---------------------------------------------------------------------

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        structs = [
            m.PointStruct(id=p.point_id, vector={k: _to_client_vector(v) for k, v in p.vectors.items()}, payload=p.payload)
            for p in points
        ]
        with self._calling("upsert"):
            self.client.upsert(self.collection, points=structs, wait=True, shard_key_selector=self._shard_key)

    def delete(self, point_ids: Sequence[str]) -> None:
        with self._calling("delete"):
            self.client.delete(
                self.collection, points_selector=m.PointIdsList(points=list(point_ids)), wait=True, shard_key_selector=self._shard_key
            )

    def optimize(self) -> None:
        # A Qdrant server builds its indexes in the background on its own.
        return None

    # -- reads ----------------------------------------------------------------------

    def retrieve(self, point_ids: Sequence[str], with_vectors: Sequence[str] | bool = False) -> list[StoredPoint]:
        if not point_ids:
            return []
        wv: Any = list(with_vectors) if not isinstance(with_vectors, bool) else with_vectors
        with self._calling("retrieve"):
            records = self.client.retrieve(
                self.collection, ids=list(point_ids), with_payload=True, with_vectors=wv,
                consistency=self._read_consistency, shard_key_selector=self._shard_key,
            )
        return [_to_point(r) for r in records]

    def count(self, filter: FilterSpec | None = None) -> int:
        if not self.exists():
            return 0
        with self._calling("count"):
            return int(
                self.client.count(
                    self.collection, count_filter=to_client_filter(filter), exact=True, shard_key_selector=self._shard_key
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
        with self._calling("query_batch_points"):
            answers = self.client.query_batch_points(
                self.collection, requests=[self._request(r) for r in requests], consistency=self._read_consistency
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
        with self._calling("query_points"):
            answer = self.client.query_points(self.collection, prefetch=prefetch, query=query, limit=limit, with_payload=False)
        return [(str(p.id), float(p.score)) for p in answer.points]

    def scroll(
        self, limit: int, offset: str | None = None, filter: FilterSpec | None = None
    ) -> tuple[list[StoredPoint], str | None]:
        if not self.exists():
            return [], None
        with self._calling("scroll"):
            records, next_offset = self.client.scroll(
                self.collection, scroll_filter=to_client_filter(filter), limit=limit, offset=offset, with_payload=True,
                consistency=self._read_consistency, shard_key_selector=self._shard_key,
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
