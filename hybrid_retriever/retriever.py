"""HybridRetriever: wires branches, a Qdrant store and fusion together.

Orchestration only: branches encode, the store searches, fusion functions rank.

    >>> from hybrid_retriever import HybridRetriever, RetrieverConfig
    >>> cfg = RetrieverConfig.model_validate({"store": {"kind": "edge", "path": "/tmp/hr-doc-index"}})
    >>> with HybridRetriever(cfg) as r:                                      # doctest: +SKIP
    ...     r.add_texts(["Qdrant stores vectors.", "BM25 ranks by terms."], ids=["a", "b"])
    ...     for hit in r.search("vector database", k=1):
    ...         print(hit.id, round(hit.score, 3), hit.provenance["bm25"].rank)
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Iterable, Iterator, Sequence

from tqdm.auto import tqdm

from hybrid_retriever.branches import Branch, build_branch
from hybrid_retriever.config import RetrieverConfig
from hybrid_retriever.errors import ConfigError, FilterError, IndexMismatchError, InvalidInputError
from hybrid_retriever.fusion import BranchList, FusedItem, interpolate, weighted_rrf
from hybrid_retriever.stores import SearchRequest, Store, StoredPoint, build_store, parse_filter
from hybrid_retriever.stores.base import PAYLOAD_ID, PAYLOAD_METADATA, PAYLOAD_TEXT
from hybrid_retriever.stores.filters import FilterSpec
from hybrid_retriever.stores.manifest import build_manifest, mismatches
from hybrid_retriever.models.threads import set_intra_op_threads
from hybrid_retriever.prf import PRFPipeline
from hybrid_retriever.types import BranchResult, BranchScore, Document, Hit, ScoredId, Vector

log = logging.getLogger(__name__)

#: Namespace of point ids: point id = uuid5(NAMESPACE, user id).
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://pypi.org/project/hybrid-retriever/")

#: Documents read before the first write of a new index to measure corpus statistics.
FIT_SAMPLE = 10_000


def point_id(doc_id: str) -> str:
    """The Qdrant point id stored for a user document id (stable across runs and machines)."""
    return str(uuid.uuid5(ID_NAMESPACE, doc_id))


class HybridRetriever:
    """Hybrid search over one Qdrant index: BM25 and dense branches, fused, with provenance.

    Create it from a :class:`RetrieverConfig` (a new or existing index) or reopen an
    index with :meth:`open`, which reads the configuration the index was built with.
    Safe to call from several threads at once.
    """

    def __init__(
        self,
        config: RetrieverConfig | None = None,
        *,
        store: Store | None = None,
        branches: Sequence[Branch] | None = None,
    ) -> None:
        self.config = config or RetrieverConfig()
        set_intra_op_threads(self.config.runtime.threads)  # before any encoder loads (see models/threads.py)
        self._owns_store = store is None  # a store passed in stays the caller's to close
        self.store = store or build_store(self.config.store)
        built = list(branches) if branches is not None else [build_branch(c) for c in self.config.branches]
        self.branches: dict[str, Branch] = {b.name: b for b in built}
        if set(self.branches) != set(self.config.branch_names):
            raise ConfigError(f"branches {sorted(self.branches)} do not match the configuration's {self.config.branch_names}")
        for b in built:  # e.g. a multivector branch sharing the dense branch's model
            b.attach(self.branches)
        self._pool = ThreadPoolExecutor(max_workers=self.config.runtime.max_workers, thread_name_prefix="hybrid-retriever")
        self._write_lock = threading.Lock()
        self._manifest: dict[str, Any] | None = self.store.read_manifest()
        # Pseudo-relevance feedback (hybrid_retriever.prf), when configured.
        self._prf = PRFPipeline(self) if self.config.prf.enabled else None
        self._unoptimized = 0
        if self._manifest is not None:
            try:
                self._check_manifest(self._manifest)
            except Exception:
                # Release the index (an Edge shard stays locked while open) and the threads.
                self.close()
                raise

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str, **overrides: Any) -> "HybridRetriever":
        """Reopen the Edge index at ``path`` with the configuration it was built with.

        ``overrides`` replace top-level sections (``fusion``, ``runtime``) of the stored
        configuration, e.g. ``open(path, fusion={"method": "rrf"})``.
        """
        from hybrid_retriever.stores.edge import EdgeStore

        store = EdgeStore(path)
        manifest = store.read_manifest()
        if manifest is None:
            raise InvalidInputError(f"no index at {path}; build one first (hybrid-retriever index SOURCE --index {path})")
        data = dict(manifest["config"])
        data["store"] = {**data.get("store", {}), "kind": "edge", "path": str(path)}
        data.update(overrides)
        try:
            retriever = cls(RetrieverConfig.validate_data(data), store=store)
        except BaseException:
            store.close()  # release the shard's lock
            raise
        retriever._owns_store = True  # opened here, so released by close()
        return retriever

    def _check_manifest(self, manifest: dict[str, Any]) -> None:
        for name, branch in self.branches.items():
            branch.restore(manifest.get("branches", {}).get(name, {}))
        problems = mismatches(manifest, self._branch_manifests())
        if problems:
            raise IndexMismatchError(
                f"the index at {self.store.location} was built with other settings:\n  - "
                + "\n  - ".join(problems)
                + "\nReopen it with the settings it was built with (HybridRetriever.open(path) reads them from the "
                "index), or build a new index at another path or collection."
            )

    def _branch_manifests(self) -> dict[str, dict[str, Any]]:
        return {name: b.manifest() for name, b in self.branches.items()}

    # ---------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Release the worker threads, and flush and release the index unless the caller passed it in."""
        self._pool.shutdown(wait=True)
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> "HybridRetriever":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- ingestion

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: Iterable[dict[str, Any]] | None = None,
        ids: Iterable[str] | None = None,
        *,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> list[str]:
        """Index texts (with optional metadata and ids); returns the document ids."""
        texts = list(texts)
        metas = list(metadatas) if metadatas is not None else [{} for _ in texts]
        id_list = list(ids) if ids is not None else [None] * len(texts)
        if not (len(texts) == len(metas) == len(id_list)):
            raise InvalidInputError(
                f"texts ({len(texts)}), metadatas ({len(metas)}) and ids ({len(id_list)}) must have the same length"
            )
        docs = [Document(text=t, metadata=dict(m or {}), id=i) for t, m, i in zip(texts, metas, id_list)]
        return self.add_documents(docs, batch_size=batch_size, show_progress=show_progress)

    def add_documents(
        self,
        documents: Iterable[Document],
        *,
        batch_size: int | None = None,
        show_progress: bool | None = None,
        vectors: dict[str, Sequence[Vector]] | None = None,
    ) -> list[str]:
        """Index documents in batches; re-adding an id replaces that document.

        ``documents`` may be a list or any iterable (streamed batch by batch). Each
        batch is validated before it is written, so an error leaves every earlier
        batch stored and searchable. ``vectors`` supplies precomputed vectors for some
        branches (branch name -> one vector per document, in order; lists only), e.g.
        cached embeddings in benchmarks.
        """
        batch_size = batch_size or self.config.runtime.ingest_batch_size
        show = self.config.runtime.show_progress if show_progress is None else show_progress
        if vectors is not None:
            unknown = set(vectors) - set(self.branches)
            if unknown:
                raise InvalidInputError(f"vectors given for unknown branch(es) {sorted(unknown)}; branches: {sorted(self.branches)}")
            if not isinstance(documents, Sequence):
                raise InvalidInputError("precomputed vectors need documents as a list, in the same order")
        total = len(documents) if isinstance(documents, Sequence) else None
        if isinstance(documents, Sequence):
            _validate_documents(documents)
        stream: Iterator[Document] = iter(documents)
        added: list[str] = []
        seen: set[str] = set()
        with self._write_lock:
            if self._manifest is None:
                head = list(itertools.islice(stream, FIT_SAMPLE))
                if not head:
                    raise InvalidInputError("no documents to index: the corpus is empty")
                _validate_documents(head)
                for b in self.branches.values():
                    b.fit([d.text for d in head])
                stream = itertools.chain(head, stream)
            bar = tqdm(total=total, desc="indexing", unit="doc", disable=not show)
            try:
                offset = 0
                while True:
                    batch = list(itertools.islice(stream, batch_size))
                    if not batch:
                        break
                    _validate_documents(batch)
                    # Documents without an id get a random one; the caller's objects stay untouched.
                    batch = [d if d.id is not None else replace(d, id=uuid.uuid4().hex) for d in batch]
                    for d in batch:
                        if d.id in seen:
                            raise InvalidInputError(f"duplicate document id {d.id!r} in one add; ids must be unique")
                        seen.add(d.id)
                    given = {n: list(v[offset : offset + len(batch)]) for n, v in (vectors or {}).items()}
                    self._write_batch(batch, given)
                    added.extend(d.id for d in batch if d.id is not None)
                    offset += len(batch)
                    bar.update(len(batch))
            finally:
                bar.close()
                if added:
                    self._after_add(len(added))
        if vectors is not None and total is not None and any(len(v) != total for v in vectors.values()):
            log.warning("precomputed vector lists differ in length from the documents")
        return added

    def _write_batch(self, batch: list[Document], given: dict[str, list[Vector]]) -> None:
        texts = [d.text for d in batch]
        futures: dict[str, Future[list[Vector]]] = {
            name: self._pool.submit(branch.encode_documents, texts)
            for name, branch in self.branches.items()
            if name not in given
        }
        encoded = {name: f.result() for name, f in futures.items()}
        encoded.update(given)
        for name, vecs in encoded.items():
            if len(vecs) != len(batch):
                raise InvalidInputError(f"branch {name!r} produced {len(vecs)} vectors for {len(batch)} documents")
        if self._manifest is None:
            self._create_index()
        # A branch may store more than one named vector per document (e.g. a multi-vector and its FDE).
        stored = {name: self.branches[name].stored_vectors(encoded[name]) for name in self.branches}
        points = [
            StoredPoint(
                point_id=point_id(d.id),  # type: ignore[arg-type]
                vectors={k: v for name in self.branches for k, v in stored[name][i].items()},
                payload={PAYLOAD_ID: d.id, PAYLOAD_TEXT: d.text, PAYLOAD_METADATA: d.metadata},
            )
            for i, d in enumerate(batch)
        ]
        new_fields = {k for d in batch for k in d.metadata} - set(self._manifest["metadata_fields"])  # type: ignore[index]
        if new_fields:
            # Record fields before the points, so a filter never rejects a stored field.
            self._manifest["metadata_fields"] = sorted(set(self._manifest["metadata_fields"]) | new_fields)  # type: ignore[index]
            self.store.write_manifest(self._manifest)  # type: ignore[arg-type]
        self.store.upsert(points)

    def _create_index(self) -> None:
        manifest = build_manifest(
            self._branch_manifests(), self.config.model_dump(mode="json", exclude={"store"}), metadata_fields=[]
        )
        specs = [s for b in self.branches.values() for s in b.vector_specs]
        self.store.create(specs, manifest)
        self._manifest = manifest

    def _after_add(self, n: int) -> None:
        threshold = getattr(self.config.store, "optimize_after_add", 0)
        self._unoptimized += n
        if threshold and self._unoptimized >= threshold:
            self.optimize()

    def optimize(self) -> None:
        """Build Qdrant's indexes now (HNSW, sparse); done automatically after large adds."""
        t0 = time.perf_counter()
        self.store.optimize()
        self._unoptimized = 0
        log.info("optimized %s in %.1f s", self.store.location, time.perf_counter() - t0)

    def delete(self, ids: Sequence[str]) -> None:
        """Delete documents by id; unknown ids are ignored."""
        ids = _validate_ids(ids)
        if ids and self._manifest is not None:
            with self._write_lock:
                self.store.delete([point_id(i) for i in ids])

    def get(self, ids: Sequence[str]) -> list[Document]:
        """Stored documents by id, in the order asked; unknown ids are skipped."""
        ids = _validate_ids(ids)
        if not ids or self._manifest is None:
            return []
        by_point = {p.point_id: p for p in self.store.retrieve([point_id(i) for i in ids])}
        return [_to_document(by_point[point_id(i)]) for i in ids if point_id(i) in by_point]

    def count(self, filter: Any = None) -> int:
        """Number of stored documents (matching ``filter``)."""
        return self.store.count(self._filter(filter)) if self._manifest is not None else 0

    def documents(self, batch_size: int = 256, filter: Any = None) -> Iterator[Document]:
        """Iterate over every stored document (matching ``filter``), page by page."""
        if self._manifest is None:
            return
        spec = self._filter(filter)
        offset: str | None = None
        while True:
            points, offset = self.store.scroll(batch_size, offset, spec)
            yield from (_to_document(p) for p in points)
            if offset is None:
                break

    @property
    def metadata_fields(self) -> list[str]:
        """Metadata fields seen in stored documents (the fields filters may name)."""
        return list(self._manifest["metadata_fields"]) if self._manifest else []

    # ------------------------------------------------------------------- search

    def search(self, query: str, k: int | None = None, filter: Any = None) -> list[Hit]:
        """The ``k`` best documents for ``query``, each with every branch's score and rank."""
        return self.search_batch([query], k=k, filter=filter)[0]

    def search_batch(self, queries: Sequence[str], k: int | None = None, filter: Any = None) -> list[list[Hit]]:
        """:meth:`search` for many queries at once (one encoder call per branch, one batched Qdrant call)."""
        k = self._k(k)
        if isinstance(queries, str):
            raise InvalidInputError("search_batch takes a list of queries; use search() for one")
        if self._manifest is None or not queries:
            _validate_queries(queries)
            return [[] for _ in queries]
        fusion = self.config.fusion
        if fusion.server_side:
            return self._server_side(queries, k, self._filter(filter))
        results = self.search_branches(queries, filter=filter, complete=fusion.method == "interpolation" and fusion.missing == "exact")
        fused = [self.fuse(r) for r in results]
        if self._prf is not None:
            second = self._prf.run(results, fused, self._filter(filter))
            return self._prf.annotate(self._hits(second.fused, second.results, k), results, fused, second.info)
        return self._hits(fused, results, k)

    def search_branches(
        self,
        queries: Sequence[str],
        filter: Any = None,
        depth: dict[str, int] | int | None = None,
        complete: bool = True,
    ) -> list[dict[str, BranchResult]]:
        """Every branch's own ranked list per query, before fusion (for evaluation and tuning).

        Branch encoders run concurrently; all searches go to Qdrant as one batch. With
        ``complete``, each candidate that some branch returned gets its exact score in
        the branches that did not return it (searched among those ids only).
        """
        queries = _validate_queries(queries)
        spec = self._filter(filter)
        if not queries:
            return []
        depths = {
            name: (depth.get(name, self.config.branch(name).depth) if isinstance(depth, dict) else depth or self.config.branch(name).depth)
            for name in self.branches
        }
        results: list[dict[str, BranchResult]] = [{} for _ in queries]
        if self._manifest is None:
            return [{n: BranchResult(branch=n, hits=[]) for n in self.branches} for _ in queries]
        encoded = self._encode_queries(queries)
        ok = [n for n, (vecs, _, err) in encoded.items() if err is None]
        if not ok:
            first = next(iter(encoded.values()))[2]
            raise InvalidInputError(f"every branch failed to encode the query: {first}")
        requests = [self._branch_request(n, qi, encoded, depths, spec, ok) for qi in range(len(queries)) for n in ok]
        t0 = time.perf_counter()
        answers = self.store.search_batch(requests)
        search_ms = (time.perf_counter() - t0) * 1000 / max(len(queries), 1)
        it = iter(answers)
        for qi in range(len(queries)):
            for n in self.branches:
                vecs, ms, err = encoded[n]
                hits = [ScoredId(pid, s, r) for r, (pid, s) in enumerate(_tie_sorted(next(it)), start=1)] if err is None else []
                results[qi][n] = BranchResult(
                    branch=n, hits=hits, encode_ms=ms, search_ms=search_ms, error=err,
                    query_vector=vecs[qi] if err is None else None,
                )
        if complete and len(ok) > 1:
            self._complete(results, encoded, spec)
        return results

    def _branch_request(
        self,
        n: str,
        qi: int,
        encoded: dict[str, tuple[list[Vector], float, str | None]],
        depths: dict[str, int],
        spec: FilterSpec | None,
        ok: list[str],
    ) -> SearchRequest:
        """Branch ``n``'s search for query ``qi``: nearest on its vector, a re-scoring of a first stage
        on another vector it owns (MUVERA), or a re-scoring of the other branches' candidates (rescorer)."""
        b = self.branches[n]
        vector = encoded[n][0][qi]
        prefetch: list[SearchRequest] | None = None
        limit = depths[n]
        if b.rescores_others:
            prefetch = [
                SearchRequest(vector_name=o, vector=encoded[o][0][qi], limit=depths[o], filter=spec, **self.branches[o].search_options())
                for o in ok
                if o != n and not self.branches[o].rescores_others
            ]
            limit = sum(p.limit for p in prefetch) or limit  # every candidate of the union gets its score
        else:
            stage = b.first_stage(vector)
            if stage is not None:
                prefetch = [SearchRequest(vector_name=stage.vector_name, vector=stage.vector, limit=stage.limit, filter=spec)]
        return SearchRequest(vector_name=n, vector=vector, limit=limit, filter=spec, prefetch=prefetch or None, **b.search_options())

    def _encode_queries(self, queries: list[str]) -> dict[str, tuple[list[Vector], float, str | None]]:
        def run(branch: Branch) -> tuple[list[Vector], float, str | None]:
            t0 = time.perf_counter()
            try:
                vecs = branch.encode_queries(queries)
            except Exception as exc:  # one failing branch must not sink the others
                log.warning("branch %r failed to encode queries: %s", branch.name, exc)
                return [], 0.0, f"{type(exc).__name__}: {exc}"
            return vecs, (time.perf_counter() - t0) * 1000 / len(queries), None

        # The calling thread encodes the last branch itself (by default the dense one) while
        # the pool encodes the others: one thread hand-off fewer per search (benchmarks/latency.py).
        *others, (last_name, last) = self.branches.items()
        futures = {name: self._pool.submit(run, b) for name, b in others}
        mine = run(last)
        out = {name: f.result() for name, f in futures.items()}
        out[last_name] = mine
        return {name: out[name] for name in self.branches}

    def _complete(
        self,
        results: list[dict[str, BranchResult]],
        encoded: dict[str, tuple[list[Vector], float, str | None]],
        spec: FilterSpec | None,
    ) -> None:
        """Score completion: exact scores of the union's candidates in branches that missed them."""
        requests: list[SearchRequest] = []
        targets: list[tuple[int, str, list[str]]] = []
        for qi, per_branch in enumerate(results):
            union = {h.point_id for r in per_branch.values() for h in r.hits}
            for n, r in per_branch.items():
                if r.error is not None:
                    continue
                missing = union - {h.point_id for h in r.hits}
                if missing:
                    requests.append(
                        SearchRequest(
                            vector_name=n, vector=encoded[n][0][qi], limit=len(missing), filter=spec, point_ids=sorted(missing), exact=True
                        )
                    )
                    targets.append((qi, n, sorted(missing)))
        for (qi, n, asked), answer in zip(targets, self.store.search_batch(requests)):
            scores = dict(answer)
            if self.branches[n].vector_spec.kind == "sparse":
                # A document sharing no term with the query is not returned: its exact score is 0.
                scores.update({pid: 0.0 for pid in asked if pid not in scores})
            results[qi][n].completed = scores

    # ------------------------------------------------------------------- fusion

    def fuse(self, per_branch: dict[str, BranchResult]) -> list[FusedItem]:
        """Fuse one query's branch results with the configured method (best first)."""
        fusion = self.config.fusion
        weights = self.config.weights()
        lists = {
            n: BranchList(
                [h.point_id for h in r.hits],
                [h.score for h in r.hits],
                extra=r.completed if fusion.missing == "exact" else {},
            )
            for n, r in per_branch.items()
            if r.error is None
        }
        if fusion.method == "rrf":
            return weighted_rrf(lists, weights, k=fusion.rrf_k)
        floor = fusion.floor_value if fusion.missing == "floor" else None
        return interpolate(lists, weights, normalization=fusion.normalization, floor_value=floor)

    def _hits(self, fused: list[list[FusedItem]], results: list[dict[str, BranchResult]], k: int) -> list[list[Hit]]:
        top = [items[:k] for items in fused]
        points = {p.point_id: p for p in self.store.retrieve(sorted({it.id for items in top for it in items}))}
        out: list[list[Hit]] = []
        for items, per_branch in zip(top, results):
            ranks = {n: {h.point_id: h for h in r.hits} for n, r in per_branch.items()}
            hits = []
            for rank, it in enumerate(items, start=1):
                p = points.get(it.id)
                if p is None:  # deleted between search and fetch
                    continue
                prov = {}
                for n, r in per_branch.items():
                    own = ranks[n].get(it.id)
                    raw = own.score if own else r.completed.get(it.id)
                    completed = own is None and it.id in r.completed
                    prov[n] = BranchScore(raw=raw, normalized=it.normalized.get(n), rank=own.rank if own else None, completed=completed)
                doc = _to_document(p)
                hits.append(Hit(id=doc.id or it.id, text=doc.text, metadata=doc.metadata, score=it.score, rank=rank, provenance=prov))
            out.append(hits)
        return out

    def _server_side(self, queries: Sequence[str], k: int, spec: FilterSpec | None) -> list[list[Hit]]:
        """One Qdrant request per query with a prefetch per branch and Qdrant's own fusion."""
        queries = _validate_queries(queries)
        fusion = self.config.fusion
        encoded = self._encode_queries(queries)
        names = list(self.branches)
        weights = self.config.weights()
        # Qdrant's RRF term is 1 / (k_q + position) with 0-based positions, i.e.
        # 1 / (k_q - 1 + rank): it equals the paper's (and fusion.rrf's) 1 / (k + rank)
        # when k_q = k + 1. Qdrant weighs a branch as 1 / (rank / w + k_q - 1), so with
        # the largest weight scaled to 1, equal weights agree with the client side
        # exactly and unequal ones stretch the lighter branches' ranks instead.
        rrf_k = fusion.rrf_k + 1
        if fusion.method == "rrf" and rrf_k != int(rrf_k):
            raise ConfigError(f"server-side RRF needs an integer rrf_k, got {fusion.rrf_k}")
        top_weight = max(weights.values())
        if fusion.method != "rrf" and len(set(weights.values())) > 1:
            log.warning(
                "server-side DBSF cannot weigh branches (Qdrant's DBSF has no weights): branch weights %s are "
                "ignored; set fusion.server_side to false to apply them",
                weights,
            )
        out = []
        for qi in range(len(queries)):
            requests = [
                SearchRequest(vector_name=n, vector=encoded[n][0][qi], limit=self.config.branch(n).depth, filter=spec) for n in names
            ]
            answer = self.store.fused_search(
                requests,
                "rrf" if fusion.method == "rrf" else "dbsf",
                limit=k,
                rrf_k=int(rrf_k),
                weights=[weights[n] / top_weight for n in names],
            )
            out.append([FusedItem(id=pid, score=s, normalized={n: None for n in names}, floored={}) for pid, s in answer])
        empty = [{n: BranchResult(branch=n, hits=[]) for n in names} for _ in queries]
        return self._hits(out, empty, k)

    # ---------------------------------------------------------------- validation

    def _k(self, k: int | None) -> int:
        k = self.config.runtime.k if k is None else k
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise InvalidInputError(f"k must be a positive integer, got {k!r}")
        return k

    def _filter(self, filter: Any) -> FilterSpec | None:
        spec = parse_filter(filter)
        if spec is None:
            return None
        known = set(self.metadata_fields)
        unknown = spec.fields() - known
        if unknown:
            raise FilterError(
                f"filter names metadata field(s) {sorted(unknown)} that no stored document has; "
                f"known fields: {sorted(known)}"
            )
        return spec


def _tie_sorted(answer: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """A branch's answer best first, equal scores in point-id order.

    Qdrant leaves the order of equal scores unspecified (Edge and qdrant-client differ),
    and ranks feed RRF and rank normalisation, so ties get one order on every back-end.
    """
    return sorted(answer, key=lambda t: (-t[1], t[0]))


def _validate_queries(queries: Sequence[str]) -> list[str]:
    out = list(queries)
    for q in out:
        if not isinstance(q, str):
            raise InvalidInputError(f"a query must be a string, got {type(q).__name__}")
        if not q.strip():
            raise InvalidInputError("the query is empty or whitespace; give some text to search for")
    return out


def _validate_ids(ids: Sequence[str]) -> list[str]:
    if isinstance(ids, str):
        raise InvalidInputError("ids must be a list of strings, not one string")
    out = list(ids)
    for i in out:
        if not isinstance(i, str) or not i:
            raise InvalidInputError(f"document ids must be non-empty strings, got {i!r}")
    return out


def _validate_documents(docs: Sequence[Document]) -> None:
    seen: set[str] = set()
    for n, d in enumerate(docs):
        if not isinstance(d, Document):
            raise InvalidInputError(f"item {n} is a {type(d).__name__}, not a Document")
        if not isinstance(d.text, str) or not d.text.strip():
            raise InvalidInputError(
                f"document {d.id if d.id is not None else '#' + str(n)} has empty text; drop it or give it content"
            )
        if d.id is not None:
            if not isinstance(d.id, str) or not d.id:
                raise InvalidInputError(f"document #{n} has id {d.id!r}; ids must be non-empty strings")
            if d.id in seen:
                raise InvalidInputError(f"duplicate document id {d.id!r} in one batch; ids must be unique")
            seen.add(d.id)
        if not isinstance(d.metadata, dict):
            raise InvalidInputError(f"document {d.id!r} metadata must be a dict, got {type(d.metadata).__name__}")
        bad = [k for k in d.metadata if not isinstance(k, str)]
        if bad:
            raise InvalidInputError(f"document {d.id!r} metadata keys must be strings, got {bad}")
        for k, v in d.metadata.items():
            if isinstance(v, float) and math.isnan(v):
                raise InvalidInputError(f"document {d.id!r} metadata {k!r} is NaN, which Qdrant cannot store")


def _to_document(p: StoredPoint) -> Document:
    return Document(
        text=p.payload.get(PAYLOAD_TEXT, ""),
        metadata=dict(p.payload.get(PAYLOAD_METADATA) or {}),
        id=p.payload.get(PAYLOAD_ID, p.point_id),
    )
