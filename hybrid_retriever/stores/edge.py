"""Embedded Qdrant: a Qdrant Edge shard on local disk (the default store).

Layout of the index folder: ``shard/`` (Qdrant Edge's own files) and
``manifest.json`` (what built the index). Qdrant Edge searches segments by brute
force until they are optimised, so :meth:`optimize` runs after bulk ingest.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import qdrant_edge as qe

from hybrid_retriever.branches.base import VectorSpec
from hybrid_retriever.errors import IndexPathError, InvalidInputError
from hybrid_retriever.stores.base import RelevanceFeedback, ScoredIds, SearchRequest, Store, StoredPoint
from hybrid_retriever.stores.filters import FilterSpec, to_edge_filter
from hybrid_retriever.types import SparseVector, Vector

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
SHARD_DIR = "shard"

_DISTANCES = {"Cosine": qe.Distance.Cosine, "Dot": qe.Distance.Dot, "Euclid": qe.Distance.Euclid}


class EdgeStore(Store):
    """A Qdrant Edge shard in folder ``path``. Writes are serialised; searches run concurrently."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self.location = str(self.path)
        if self.path.exists() and not self.path.is_dir():
            raise IndexPathError(f"index path {self.path} is a file; give a folder path (it is created if missing)")
        self._shard: qe.EdgeShard | None = None
        self._write_lock = threading.Lock()
        if (self.path / SHARD_DIR).is_dir() and (self.path / MANIFEST_FILE).is_file():
            try:
                self._shard = qe.EdgeShard.load(str(self.path / SHARD_DIR))
            except Exception as exc:
                if "WouldBlock" in str(exc) or "lock" in str(exc).lower():
                    raise IndexPathError(
                        f"the index at {self.path} is already open (in this or another process); "
                        "close the other retriever first, search through the service holding it "
                        "(hybrid-retriever query --server URL), or use a Qdrant server for shared access"
                    ) from None
                raise IndexPathError(f"cannot open the index at {self.path}: {exc}") from None

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
        self._shard = qe.EdgeShard.create(
            str(self.path / SHARD_DIR), qe.EdgeConfig(vectors=dense or None, sparse_vectors=sparse or None)
        )
        self.write_manifest(manifest)

    def read_manifest(self) -> dict[str, Any] | None:
        f = self.path / MANIFEST_FILE
        if self._shard is None or not f.is_file():
            return None
        return json.loads(f.read_text(encoding="utf-8"))

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        # Write-then-rename so a crash never leaves a half-written manifest.
        tmp = self.path / (MANIFEST_FILE + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.path / MANIFEST_FILE)

    def close(self) -> None:
        if self._shard is not None:
            with self._write_lock:
                self._shard.flush()
                self._shard.close()
                self._shard = None

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
            self.shard.update(qe.UpdateOperation.upsert_points(edge_points))
            self.shard.flush()

    def delete(self, point_ids: Sequence[str]) -> None:
        with self._write_lock:
            self.shard.update(qe.UpdateOperation.delete_points(list(point_ids)))
            self.shard.flush()

    def optimize(self) -> None:
        with self._write_lock:
            self.shard.optimize()

    # -- reads ----------------------------------------------------------------------

    def retrieve(self, point_ids: Sequence[str], with_vectors: Sequence[str] | bool = False) -> list[StoredPoint]:
        if not point_ids:
            return []
        wv = list(with_vectors) if not isinstance(with_vectors, bool) else with_vectors
        records = self.shard.retrieve(list(point_ids), with_payload=True, with_vector=wv)
        return [_to_point(r) for r in records]

    def count(self, filter: FilterSpec | None = None) -> int:
        if self._shard is None:
            return 0
        return int(self.shard.count(qe.CountRequest(exact=True, filter=to_edge_filter(filter))))

    def _request(self, r: SearchRequest) -> qe.QueryRequest:
        return qe.QueryRequest(
            limit=r.limit,
            query=_query(r),
            prefetches=[_prefetch(p) for p in r.prefetch] if r.prefetch else None,
            filter=to_edge_filter(r.filter, r.point_ids),
            params=_params(r),
            with_payload=False,
        )

    def search_batch(self, requests: Sequence[SearchRequest]) -> list[ScoredIds]:
        if not requests:
            return []
        answers = self.shard.query_batch(qe.QueryBatchRequest([self._request(r) for r in requests]))
        return [[(str(p.id), float(p.score)) for p in answer] for answer in answers]

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
        answer = self.shard.query(qe.QueryRequest(limit=limit, prefetches=prefetches, query=fusion, with_payload=False))
        return [(str(p.id), float(p.score)) for p in answer]

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
