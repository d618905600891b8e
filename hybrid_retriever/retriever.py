"""HybridRetriever: wires branches, a Qdrant store and fusion together.

Orchestration of search only: branches encode, the store searches, fusion functions rank, the
PRF and rerank stages refine. Writing is :mod:`hybrid_retriever.index_writer`'s job, and the
checks that an index matches the branches opening it are :mod:`hybrid_retriever.index_manifest`'s.

    >>> from hybrid_retriever import HybridRetriever, RetrieverConfig
    >>> cfg = RetrieverConfig.model_validate({"store": {"kind": "edge", "path": "/tmp/hr-doc-index"}})
    >>> with HybridRetriever(cfg) as r:                                      # doctest: +SKIP
    ...     r.add_texts(["Qdrant stores vectors.", "BM25 ranks by terms."], ids=["a", "b"])
    ...     for hit in r.search("vector database", k=1):
    ...         print(hit.id, round(hit.score, 3), hit.provenance["bm25"].rank)
"""

from __future__ import annotations

import copy
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Sequence

from hybrid_retriever.branches import Branch, build_branch
from hybrid_retriever.config import FusionConfig, RetrieverConfig
from hybrid_retriever.errors import (
    BranchFailureError,
    ConfigError,
    FilterError,
    HybridRetrieverError,
    InvalidInputError,
    StoreUnavailableError,
)
from hybrid_retriever.fusion import FusedItem
from hybrid_retriever.fusion.adaptive import branch_signals, list_signals, no_query_tokens, vector_facts
from hybrid_retriever.fusion.results import fuse_lists, fuse_results, served_weights
from hybrid_retriever.fusion.types import BranchList
from hybrid_retriever.branch_runs import BranchRun
from hybrid_retriever.ids import point_id  # also importable from here, as older code does
from hybrid_retriever.index_manifest import IndexManifest
from hybrid_retriever.index_writer import IndexWriter, documents_from_texts
from hybrid_retriever.ingest import IngestReport
from hybrid_retriever.models.card import branch_languages
from hybrid_retriever.models.threads import set_intra_op_threads
from hybrid_retriever.payload import as_list, check_text, validate_ids
from hybrid_retriever.prf import PRFPipeline
from hybrid_retriever.rerank.stage import Reranker
from hybrid_retriever.resilience import BranchFailures, CallBudget, describe, wait_until
from hybrid_retriever.stores import SearchRequest, Store, StoredPoint, build_store, parse_filter
from hybrid_retriever.stores.base import PAYLOAD_ID, PAYLOAD_METADATA, PAYLOAD_TEXT, Ranked
from hybrid_retriever.stores.filters import FilterSpec
from hybrid_retriever.stores.stored_config import stored_config
from hybrid_retriever.types import BranchResult, BranchScore, Document, Hit, Vector

log = logging.getLogger(__name__)


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
        reranker: Any = None,
    ) -> None:
        self.config = config or RetrieverConfig()
        set_intra_op_threads(self.config.runtime.threads)  # before any encoder loads (see models/threads.py)
        self._owns_store = store is None  # a store passed in stays the caller's to close
        self.store = store or build_store(self.config.store)
        built = list(branches) if branches is not None else [build_branch(c) for c in self.config.branches]
        self.branches: dict[str, Branch] = {b.name: b for b in built}
        if set(self.branches) != set(self.config.branch_names):
            raise ConfigError(f"branches {sorted(self.branches)} do not match the configuration's {self.config.branch_names}")
        self._pool = ThreadPoolExecutor(max_workers=self.config.runtime.max_workers, thread_name_prefix="hybrid-retriever")
        # What the index records about itself, checked against the branches (index_manifest.py): settings
        # known without a model now, those that need a loaded model on first use (opening loads no model).
        self._manifest = IndexManifest(self.store, self.branches)
        # The write path (index_writer.py): add, delete, optimize, record sources.
        self._writer = IndexWriter(self.store, self.branches, self._pool, self._manifest)
        # Pseudo-relevance feedback (hybrid_retriever.prf), when configured.
        self._prf = PRFPipeline(self) if self.config.prf.enabled else None
        # Rerank stage (hybrid_retriever.rerank): configured, or a ranker object passed in.
        self.reranker = Reranker(self.config.rerank, reranker) if self.config.rerank.enabled or reranker is not None else None
        self._languages: dict[str, frozenset[str] | None] | None = None  # per branch, for adaptive fusion
        try:
            self._manifest.check_on_open()
            for b in built:  # e.g. a multivector branch sharing the dense branch's model
                b.attach(self.branches)
        except Exception:
            # Release the index (an Edge shard stays locked while open) and the threads.
            self.close()
            raise

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        path: str,
        *,
        trust_remote_code: bool | None = None,
        models: dict[str, str] | None = None,
        **overrides: Any,
    ) -> "HybridRetriever":
        """Reopen the Edge index at ``path`` with the configuration it was built with.

        ``overrides`` replace top-level sections (``fusion``, ``runtime``) of the stored
        configuration, e.g. ``open(path, fusion={"method": "rrf"})``. An index folder is
        data: opening it never runs code from it. A model that needs its own code
        (built with ``trust_remote_code``) loads only when this call grants it
        (``trust_remote_code=True``, or the process-wide grant of
        :mod:`hybrid_retriever.models.trust`). ``models`` maps branch names to the model
        folder or id to load for them (e.g. the model moved); its files must be the ones
        the index was built with.
        """
        from hybrid_retriever.stores.edge import EdgeStore

        store = EdgeStore(path)
        try:
            manifest = store.read_manifest()
            if manifest is None:
                raise InvalidInputError(f"no index at {path}; build one first (hybrid-retriever index SOURCE --index {path})")
            data = stored_config(manifest, store.path, trust_remote_code, models)
            data["store"] = {**data.get("store", {}), "kind": "edge", "path": str(path)}
            data.update(overrides)
            retriever = cls(RetrieverConfig.validate_data(data), store=store)
        except BaseException:
            store.close()  # release the shard's lock
            raise
        retriever._owns_store = True  # opened here, so released by close()
        return retriever

    # ---------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Release the worker threads, and flush and release the index unless the caller passed it in."""
        self._pool.shutdown(wait=True)
        if self.reranker is not None:
            self.reranker.close()
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> "HybridRetriever":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def with_fusion(self, fusion: FusionConfig | None = None, weights: dict[str, float] | None = None) -> "HybridRetriever":
        """A view of this retriever that fuses with other ``fusion`` settings and/or branch ``weights``.

        The view shares the store, the loaded models and the worker threads (nothing is
        loaded again), so it is cheap enough to make per request. Close this retriever,
        never the view.
        """
        data = (self.config.with_weights(weights) if weights else self.config).model_dump()
        if fusion is not None:
            data["fusion"] = fusion.model_dump()
        view = copy.copy(self)
        view.config = RetrieverConfig.validate_data(data)  # PRF / server-side checks run again
        view._owns_store = False
        view._prf = PRFPipeline(view) if view.config.prf.enabled else None
        return view

    # ---------------------------------------------------------------- ingestion (index_writer.py)

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: Iterable[dict[str, Any]] | None = None,
        ids: Iterable[str] | None = None,
        *,
        batch_size: int | None = None,
        show_progress: bool | None = None,
        skip_unchanged: bool = False,
        report: IngestReport | None = None,
    ) -> list[str]:
        """Index texts (with optional metadata and ids); returns the document ids (see :meth:`add_documents`)."""
        docs = documents_from_texts(texts, metadatas, ids)
        return self.add_documents(
            docs, batch_size=batch_size, show_progress=show_progress, skip_unchanged=skip_unchanged, report=report
        )

    def add_documents(
        self,
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
        """Index documents in batches; re-adding an id replaces that document.

        ``documents`` may be a list or any iterable (streamed batch by batch). Each
        batch is validated before it is written, so an error leaves every earlier
        batch stored and searchable, and says how many documents were written. An id
        may appear only once per call (a repeat is an error naming both positions, see
        :mod:`hybrid_retriever.ingest`). ``vectors`` supplies precomputed vectors for
        some branches (branch name -> one vector per document, in order; lists only),
        e.g. cached embeddings in benchmarks.

        With ``skip_unchanged``, documents already stored with identical text, metadata
        and branch settings are not encoded again (a content hash is stored with every
        document). ``report`` (an :class:`~hybrid_retriever.ingest.IngestReport`) is
        filled in as the call goes: how many were written, replaced and skipped; its
        ``request_stop()`` ends the call after the current batch. With ``batch_seconds``
        (e.g. :data:`hybrid_retriever.ingest.BATCH_SECONDS`, as the CLI does), batches are
        sized to take about that long each, at most ``batch_size``, so progress shows
        every few seconds and a stop is quick; by default every batch has ``batch_size``
        documents. ``total`` is the progress bar's total when ``documents`` is not a
        list. Returns the ids of the documents handled (written or skipped), in order.
        (The write path: :mod:`hybrid_retriever.index_writer`.)
        """
        return self._writer.add_documents(
            self.config, documents, batch_size=batch_size, show_progress=show_progress, vectors=vectors,
            skip_unchanged=skip_unchanged, report=report, total=total, batch_seconds=batch_seconds,
        )

    def optimize(self) -> None:
        """Build Qdrant's indexes now (HNSW, sparse); done automatically after large adds."""
        self._writer.optimize()

    def delete(self, ids: Sequence[str]) -> None:
        """Delete documents by id; unknown ids are ignored."""
        self._writer.delete(ids)

    def get(self, ids: Sequence[str]) -> list[Document]:
        """Stored documents by id, in the order asked; unknown ids are skipped."""
        ids = validate_ids(ids)
        if not ids or self._manifest.data is None:
            return []
        by_point = {p.point_id: p for p in self.store.retrieve([point_id(i) for i in ids])}
        return [_to_document(by_point[point_id(i)]) for i in ids if point_id(i) in by_point]

    def count(self, filter: Any = None) -> int:
        """Number of stored documents (matching ``filter``)."""
        return self.store.count(self._filter(filter)) if self._manifest.data is not None else 0

    def documents(self, batch_size: int = 256, filter: Any = None) -> Iterator[Document]:
        """Iterate over every stored document (matching ``filter``), page by page."""
        if self._manifest.data is None:
            return
        spec = self._filter(filter)
        offset: str | None = None
        while True:
            points, offset = self.store.scroll(batch_size, offset, spec)
            yield from (_to_document(p) for p in points)
            if offset is None:
                break

    @property
    def sources(self) -> list[str] | None:
        """The sources recorded as having filled the index (see :mod:`hybrid_retriever.sync`); None
        when none were recorded (a new index, or one built before sources were recorded)."""
        return self._manifest.sources

    def record_sources(self, sources: list[str]) -> None:
        """Record the sources that filled the index in its manifest (an index with no documents records nothing)."""
        self._writer.record_sources(sources)

    @property
    def metadata_fields(self) -> list[str]:
        """Metadata fields seen in stored documents (the fields filters may name)."""
        return self._manifest.metadata_fields

    # ------------------------------------------------------------------- search

    def search(self, query: str, k: int | None = None, filter: Any = None, *, group_by: str | None = None) -> list[Hit]:
        """The ``k`` best documents for ``query``, each with every branch's score and rank.

        With ``group_by`` (a metadata field, e.g. ``"source"``): the ``k`` best groups, one hit
        each (its best chunk), with how many of its chunks matched and their ranks in ``hit.group``
        (see :mod:`hybrid_retriever.grouping`).
        """
        if group_by is None:
            return self.search_batch([query], k=k, filter=filter)[0]
        from hybrid_retriever.grouping import group_depth, group_hits

        k = self._k(k)
        return group_hits(self.search_batch([query], k=group_depth(k), filter=filter)[0], k, group_by)

    def search_passages(self, query: str, budget: int, k: int | None = None, filter: Any = None) -> list[Any]:
        """Passages for RAG: the best hits that fit ``budget`` tokens (of the dense model's tokenizer, else
        words), adjacent chunks of one source joined in reading order (see :func:`hybrid_retriever.grouping.merge_passages`).

        ``k`` hits are searched (default: the index's ``runtime.k``).
        """
        from hybrid_retriever.grouping import merge_passages, word_count

        hits = self.search(query, k=k, filter=filter)
        return merge_passages(hits, budget, self.token_counter() or word_count)

    def token_counter(self) -> Callable[[str], int] | None:
        """Tokens of a text by the dense model's tokenizer (None without a dense branch)."""
        from hybrid_retriever.branches import DenseBranch
        from hybrid_retriever.chunking import ModelWindow

        if getattr(self, "_counter", None) is None:
            dense = next((b for b in self.branches.values() if isinstance(b, DenseBranch)), None)
            self._counter = ModelWindow.of(dense.model).count if dense is not None else None
        return self._counter

    def search_batch(
        self, queries: Sequence[str], k: int | None = None, filter: Any = None, *, rerank: bool = True
    ) -> list[list[Hit]]:
        """:meth:`search` for many queries at once (one encoder call per branch, one batched Qdrant call).

        ``rerank=False`` skips a configured rerank stage (the fused order, e.g. to mine training negatives).
        """
        k = self._k(k)
        if isinstance(queries, str):
            raise InvalidInputError("search_batch takes a list of queries; use search() for one")
        if self._manifest.data is None or not queries:
            _validate_queries(queries)
            return [[] for _ in queries]
        fusion = self.config.fusion
        # The rerank stage sees the fused top `depth` (at least k); it cuts back to k.
        stage = self.reranker if rerank else None
        n = k if stage is None else max(k, stage.depth)
        if fusion.server_side:
            return self._reranked(stage, queries, self._server_side(queries, n, self._filter(filter)), k)
        if self._prf is not None:  # PRF reads the whole fused list and the public branch results
            results = self.search_branches(queries, filter=filter, complete=fusion.completes_scores)
            fused = [self.fuse(r) for r in results]
            second = self._prf.run(results, fused, self._filter(filter))
            runs = [{b: BranchRun.of(r) for b, r in per.items()} for per in second.results]
            hits = self._prf.annotate(self._hits(second.fused, runs, n), results, fused, second.info)
            return self._reranked(stage, queries, hits, k)
        # Points stay the store's keys until the top n: only the hits returned get text ids and provenance.
        queries = _validate_queries(queries)
        runs = self._branch_runs(queries, self._filter(filter), None, fusion.completes_scores)
        fused = [self._fuse_runs(per, limit=n) for per in runs]
        return self._reranked(stage, queries, self._hits(fused, runs, n), k)

    @staticmethod
    def _reranked(stage: Reranker | None, queries: Sequence[str], hits: list[list[Hit]], k: int) -> list[list[Hit]]:
        """The rerank stage over every query's fused hits at once (all pairs batched), or the hits cut to ``k``."""
        if stage is None:
            return [h[:k] for h in hits]
        return stage.rerank(list(queries), hits, k)

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
        the branches that did not return it (searched among those ids only). With
        ``runtime.branch_timeout_s`` or ``runtime.deadline_s`` set, each branch searches
        on its own and one that fails or is late is left out of the call (see
        :mod:`hybrid_retriever.resilience`): its result has ``error`` set and no hits.
        """
        queries = _validate_queries(queries)
        spec = self._filter(filter)
        if not queries:
            return []
        runs = self._branch_runs(queries, spec, depth, complete, measure_all=True)
        texts = self.store.key_texts
        return [{n: run.result(n, texts) for n, run in per.items()} for per in runs]

    def _branch_runs(
        self, queries: list[str], spec: FilterSpec | None, depth: dict[str, int] | int | None, complete: bool,
        measure_all: bool = False,
    ) -> list[dict[str, BranchRun]]:
        """:meth:`search_branches` with the points as the store's keys (:class:`BranchRun`).

        Query-side measures are taken for every query with ``measure_all``, else only where fusion reads them."""
        depths = {
            name: (depth.get(name, self.config.branch(name).depth) if isinstance(depth, dict) else depth or self.config.branch(name).depth)
            for name in self.branches
        }
        if self._manifest.data is None:
            return [{n: BranchRun([], []) for n in self.branches} for _ in queries]
        budget = CallBudget.begin(self.config.runtime)
        failures = BranchFailures(self.config.runtime.on_branch_error)
        encoded = self._encode_queries(queries, budget)
        for n, (_, _, err) in encoded.items():
            if err is not None:
                failures.add(n, "encode", err)
        failures.raise_if_all(self.branches)
        ok = [n for n in self.branches if n not in failures.reasons]
        requests = {n: [self._branch_request(n, qi, encoded, depths, spec, ok) for qi in range(len(queries))] for n in ok}
        answers, search_ms = self._search(requests, budget, failures)
        failures.raise_if_all(self.branches)
        answered = [n for n in ok if n not in failures.reasons]
        measured = self._query_signals(queries, ok, None if measure_all else self._measures_read(encoded, answered, len(queries)))
        runs: list[dict[str, BranchRun]] = [{} for _ in queries]
        for qi in range(len(queries)):
            for n in self.branches:
                vecs, ms, _ = encoded[n]
                err = failures.reasons.get(n)
                keys, scores = _tie_sorted(answers[n][qi]) if err is None else ([], [])
                if not self.branches[n].rescores_others:
                    # asked for a few more: ties at the cut are settled by point id
                    keys, scores = keys[: depths[n]], scores[: depths[n]]
                runs[qi][n] = BranchRun(
                    keys, scores, encode_ms=ms, search_ms=search_ms.get(n, 0.0), error=err,
                    query_vector=vecs[qi] if err is None else None,
                    signals=measured[n][qi] if n in measured else {},
                )
        if complete and len(self.branches) - len(failures.reasons) > 1:
            self._complete(runs, encoded, spec, budget)
        return runs

    def _search(
        self, requests: dict[str, list[SearchRequest]], budget: CallBudget, failures: BranchFailures
    ) -> tuple[dict[str, list[Ranked]], dict[str, float]]:
        """Each branch's answers (one per query) and its search time per query in ms; failures recorded.

        Without time limits every branch's searches go to Qdrant as one batch (the fast
        path); should the batch be refused for a reason other than the store being
        unreachable, each branch is retried alone to find the one at fault. With limits,
        each branch is its own request on the pool, waited for until its time is up.
        """
        nq = len(next(iter(requests.values())))
        if not budget.limited:
            names = list(requests)
            t0 = time.perf_counter()
            try:
                flat = self.store.search_ranked([requests[n][qi] for qi in range(nq) for n in names])
            except HybridRetrieverError:
                raise  # the store is down (every branch fails alike) or the caller's input is bad
            except Exception as exc:
                if len(names) < 2 or failures.on_error == "raise":
                    raise
                log.warning("the batched search failed (%s); searching each branch alone to find the one at fault", describe(exc))
                return self._search_each(requests, failures)
            ms = (time.perf_counter() - t0) * 1000 / nq
            it = iter(flat)
            answers: dict[str, list[Ranked]] = {n: [] for n in names}
            for _ in range(nq):
                for n in names:
                    answers[n].append(next(it))
            return answers, {n: ms for n in names}
        futures = {n: self._pool.submit(_timed, self.store.search_ranked, reqs) for n, reqs in requests.items()}
        end = budget.branch_end
        timed: dict[str, tuple[list[Ranked], float]] = {}
        for n, outcome in wait_until(futures, end).items():
            if outcome.late:
                failures.add(n, "search", budget.late(end))
            elif outcome.error is not None:
                _raise_if_callers_fault(outcome.error)
                failures.add(n, "search", describe(outcome.error), outcome.error)
            else:
                timed[n] = outcome.value  # type: ignore[assignment]
        return {n: a for n, (a, _) in timed.items()}, {n: ms / nq for n, (_, ms) in timed.items()}

    def _search_each(
        self, requests: dict[str, list[SearchRequest]], failures: BranchFailures
    ) -> tuple[dict[str, list[Ranked]], dict[str, float]]:
        """Search branch by branch, recording the ones whose requests fail."""
        answers: dict[str, list[Ranked]] = {}
        ms: dict[str, float] = {}
        for n, reqs in requests.items():
            try:
                answers[n], took = _timed(self.store.search_ranked, reqs)
            except Exception as exc:
                _raise_if_callers_fault(exc)
                failures.add(n, "search", describe(exc), exc)
                continue
            ms[n] = took / len(reqs)
        return answers, ms

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
            limit += _tie_margin(limit)
        return SearchRequest(vector_name=n, vector=vector, limit=limit, filter=spec, prefetch=prefetch or None, **b.search_options())

    def _encode_queries(
        self, queries: list[str], budget: CallBudget | None = None
    ) -> dict[str, tuple[list[Vector], float, str | None]]:
        """Each branch's query vectors, encoding time per query (ms) and error (None = encoded)."""
        self._manifest.verify()

        def run(branch: Branch) -> tuple[list[Vector], float, str | None]:
            t0 = time.perf_counter()
            try:
                vecs = branch.encode_queries(queries)
            except Exception as exc:  # one failing branch must not sink the others
                return [], 0.0, describe(exc)
            return vecs, (time.perf_counter() - t0) * 1000 / len(queries), None

        if budget is not None and budget.limited:
            # Every branch on the pool, so the calling thread can stop waiting for a late one.
            end = budget.branch_end
            outcomes = wait_until({name: self._pool.submit(run, b) for name, b in self.branches.items()}, end)
            return {
                name: o.value if not o.late else ([], 0.0, budget.late(end))  # type: ignore[misc]
                for name, o in outcomes.items()
            }
        # Sparse (BM25) query encoding takes ~20 µs, less than handing it to a thread: the calling
        # thread encodes those first, then the last model branch (by default the dense one) while
        # the pool encodes any other model branches (`python -m benchmarks latency`).
        out = {name: run(b) for name, b in self.branches.items() if b.vector_spec.kind == "sparse"}
        *others, last = [(name, b) for name, b in self.branches.items() if name not in out] or [(None, None)]
        futures = {name: self._pool.submit(run, b) for name, b in others}
        if last[1] is not None:
            out[last[0]] = run(last[1])
        out.update({name: f.result() for name, f in futures.items()})
        return {name: out[name] for name in self.branches}

    def _complete(
        self,
        runs: list[dict[str, BranchRun]],
        encoded: dict[str, tuple[list[Vector], float, str | None]],
        spec: FilterSpec | None,
        budget: CallBudget | None = None,
    ) -> None:
        """Score completion: exact scores of the union's candidates in branches that missed them.

        Past the call's deadline (``runtime.deadline_s``) completion is skipped with a
        warning and fusion treats the missing scores as ``fusion.missing: floor`` would.
        """
        requests: list[SearchRequest] = []
        targets: list[tuple[int, str, list[Any]]] = []
        for qi, per_branch in enumerate(runs):
            union = set().union(*(r.keys for r in per_branch.values()))
            for n, r in per_branch.items():
                if r.error is not None:
                    continue
                missing = sorted(union.difference(r.keys))
                if missing:
                    requests.append(
                        SearchRequest(vector_name=n, vector=encoded[n][0][qi], limit=len(missing), filter=spec, point_ids=missing, exact=True)
                    )
                    targets.append((qi, n, missing))
        if not requests:
            return
        if budget is not None and budget.call_end is not None:
            outcome = wait_until({"completion": self._pool.submit(self.store.search_ranked, requests)}, budget.call_end)["completion"]
            if outcome.late or outcome.error is not None:
                why = budget.late(budget.call_end) if outcome.late else describe(outcome.error)  # type: ignore[arg-type]
                if self.config.runtime.on_branch_error == "raise":
                    raise BranchFailureError(f"score completion failed ({why}); set runtime.on_branch_error to 'degrade' to fuse without it") from outcome.error
                log.warning("score completion skipped (%s): missing scores are floored", why)
                return
            answers = outcome.value
        else:
            answers = self.store.search_ranked(requests)
        for (qi, n, asked), answer in zip(targets, answers):  # type: ignore[arg-type]
            scores = dict(zip(answer.keys, answer.scores))
            if self.branches[n].vector_spec.kind == "sparse":
                # A document sharing no term with the query is not returned: its exact score is 0.
                scores.update({pid: 0.0 for pid in asked if pid not in scores})
            runs[qi][n].completed = scores

    # ------------------------------------------------------------------- fusion

    def fuse(self, per_branch: dict[str, BranchResult], limit: int | None = None) -> list[FusedItem]:
        """Fuse one query's branch results with the configured method (best first; the best ``limit`` only if given)."""
        fusion = self.config.fusion
        weights = served_weights(self.config.weights(), per_branch)  # a failed branch's weight is shared out
        signals = {}
        if fusion.method == "adaptive":
            content, languages = self.adaptive_context()
            signals = branch_signals(per_branch, content, languages)
        return fuse_results(per_branch, fusion, weights, signals, limit=limit)

    def _fuse_runs(self, runs: dict[str, BranchRun], limit: int | None = None) -> list[FusedItem]:
        """:meth:`fuse` on one query's runs (the fused items' ids are the store's keys)."""
        fusion = self.config.fusion
        weights = served_weights(self.config.weights(), runs)
        signals = {}
        if fusion.method == "adaptive":
            content, languages = self.adaptive_context()
            signals = list_signals(
                {n: r.keys if r.error is None else [] for n, r in runs.items()}, {n: r.scores for n, r in runs.items()},
                {n: vector_facts(r.query_vector, r.signals) for n, r in runs.items()}, content, languages,
            )
        exact = fusion.missing == "exact"
        lists = {n: BranchList(r.keys, r.scores, extra=r.completed if exact else {}) for n, r in runs.items() if r.error is None}
        return fuse_lists(lists, fusion, weights, signals, limit=limit)

    def adaptive_context(self) -> tuple[str | None, dict[str, frozenset[str] | None]]:
        """What adaptive fusion knows beyond one query's branch results: the corpus (content) language and
        the languages each branch's model covers (its config, else its model card; None = any or unknown).
        Evaluation records it with its cached runs so its fusion reads what this retriever's does."""
        if self._languages is None:
            self._languages = {n: branch_languages(self.config.branch(n)) for n in self.branches}
        content = next((b.content_language for b in self.branches.values() if getattr(b, "content_language", None)), None)
        return content, self._languages

    def _query_signals(
        self, queries: list[str], names: Sequence[str], only: dict[str, list[int]] | None = None
    ) -> dict[str, list[dict[str, float]]]:
        """Query-side measures of branches that take them (a dense model's fragmentation), for adaptive fusion.

        Taken whatever the fusion method (a tokenisation per query), so cached evaluation runs can score adaptive
        fusion too; ``only`` (branch -> query positions) limits them to those queries (none for a branch not in it)."""
        out = {}
        for n in names:
            measure = getattr(self.branches[n], "query_signals", None)
            if measure is None:
                continue
            if only is None:
                out[n] = measure(queries)
                continue
            out[n] = [{} for _ in queries]
            at = only.get(n, [])
            for qi, m in zip(at, measure([queries[qi] for qi in at]) if at else []):
                out[n][qi] = m
        return out

    def _measures_read(self, encoded: dict[str, tuple[list[Vector], float, str | None]], names: Sequence[str], nq: int) -> dict[str, list[int]]:
        """Which queries' measures fusion reads, per branch: adaptive fusion reads a branch's fragmentation only where
        the query's language (a per-document-language BM25's choice, else the corpus's) is outside its model's languages
        (:func:`~hybrid_retriever.fusion.adaptive.adaptive_weights`); elsewhere the tokenisation is skipped."""
        if self.config.fusion.method != "adaptive":
            return {}
        content, languages = self.adaptive_context()
        langs: list[str | None] = []
        for qi in range(nq):
            asked = (getattr(encoded[n][0][qi], "language", None) for n in names if encoded[n][2] is None)
            langs.append(next((x for x in asked if x), None) or content)
        out = {}
        for n in names:
            covered = languages.get(n)
            if covered is not None:
                out[n] = [qi for qi, lang in enumerate(langs) if lang is not None and lang not in covered]
        return out

    def _hits(self, fused: list[list[FusedItem]], runs: list[dict[str, BranchRun]], k: int) -> list[list[Hit]]:
        """The top ``k`` fused items of each query as hits: stored documents and each branch's provenance.

        Fused item ids are the runs' keys; only these hits' keys become text ids."""
        top = [items[:k] for items in fused]
        keys = list(dict.fromkeys(it.id for items in top for it in items))
        text = dict(zip(keys, self.store.key_texts(keys)))
        points = {p.point_id: p for p in self.store.retrieve(sorted(text.values()))}
        out: list[list[Hit]] = []
        for items, per_branch in zip(top, runs):
            where = {n: dict(zip(r.keys, range(len(r.keys)))) for n, r in per_branch.items()}
            hits = []
            for rank, it in enumerate(items, start=1):
                p = points.get(text[it.id])
                if p is None:  # deleted between search and fetch
                    continue
                prov = {}
                for n, r in per_branch.items():
                    at = where[n].get(it.id)
                    prov[n] = BranchScore(
                        raw=r.scores[at] if at is not None else r.completed.get(it.id),
                        normalized=it.normalized.get(n), rank=r.rank(at) if at is not None else None,
                        completed=at is None and it.id in r.completed,
                        error=r.error, weight=it.weights.get(n) if it.weights else None,
                        flags=(it.flags or {}).get(n) or (["no_query_tokens"] if no_query_tokens(r.query_vector) else []),
                        signals=dict((it.signals or {}).get(n) or {}),
                    )
                doc = _to_document(p)
                hits.append(Hit(id=doc.id or text[it.id], text=doc.text, metadata=doc.metadata, score=it.score, rank=rank, provenance=prov))
            out.append(hits)
        return out

    def _server_side(self, queries: Sequence[str], k: int, spec: FilterSpec | None) -> list[list[Hit]]:
        """One Qdrant request per query with a prefetch per branch and Qdrant's own fusion."""
        queries = _validate_queries(queries)
        fusion = self.config.fusion
        encoded = self._encode_queries(queries)
        failures = BranchFailures(self.config.runtime.on_branch_error)
        for n, (_, _, err) in encoded.items():
            if err is not None:
                failures.add(n, "encode", err)
        failures.raise_if_all(self.branches)
        names = [n for n in self.branches if n not in failures.reasons]
        weights = {n: w for n, w in self.config.weights().items() if n in names}
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
        empty = [{n: BranchRun([], [], error=failures.reasons.get(n)) for n in self.branches} for _ in queries]
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


def _raise_if_callers_fault(exc: BaseException) -> None:
    """The library's own errors about the input (a bad filter, ...) are the caller's to fix, not a branch failure."""
    if isinstance(exc, HybridRetrieverError) and not isinstance(exc, StoreUnavailableError):
        raise exc


def _timed(fn: Callable[[Sequence[SearchRequest]], list[Ranked]], requests: Sequence[SearchRequest]) -> tuple[list[Ranked], float]:
    """``fn(requests)`` and how long it took in ms."""
    t0 = time.perf_counter()
    answers = fn(requests)
    return answers, (time.perf_counter() - t0) * 1000


def _tie_margin(depth: int) -> int:
    """Extra hits asked of the store beyond ``depth``: which of several documents tied at the cut a
    store returns is its own choice (Edge and qdrant-client differ); with a few more in hand, the
    cut is made after sorting ties by point id, so every back-end keeps the same documents."""
    return max(4, depth // 10)


def _tie_sorted(answer: Ranked) -> tuple[list[Any], list[float]]:
    """A branch's answer best first, equal scores in point-id order (keys compare as the text ids do): keys, scores.

    Qdrant leaves the order of equal scores unspecified (Edge and qdrant-client differ),
    and ranks feed RRF and rank normalisation, so ties get one order on every back-end.
    """
    keys, scores = answer.keys, answer.scores
    if all(a > b for a, b in zip(scores, scores[1:])):  # strictly descending (the usual answer): nothing to settle
        return keys, scores
    order = sorted(range(len(keys)), key=lambda i: (-scores[i], keys[i]))
    return [keys[i] for i in order], [scores[i] for i in order]


def _validate_queries(queries: Sequence[str]) -> list[str]:
    out = as_list(queries, "queries", "search_batch(['first query', 'second query'])")
    for q in out:
        if not isinstance(q, str):
            raise InvalidInputError(f"a query must be a string, got {type(q).__name__}")
        if not q.strip():
            raise InvalidInputError("the query is empty or whitespace; give some text to search for")
        check_text(q, "the query")
    return out


def _to_document(p: StoredPoint) -> Document:
    return Document(
        text=p.payload.get(PAYLOAD_TEXT, ""),
        metadata=dict(p.payload.get(PAYLOAD_METADATA) or {}),
        id=p.payload.get(PAYLOAD_ID, p.point_id),
    )

