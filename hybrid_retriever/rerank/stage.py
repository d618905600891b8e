"""The rerank stage: the fused top ``depth`` of each query rescored, reordered, with provenance.

The backend (model) loads once, lazily, on the first search, under a lock, and is then
shared by every concurrent search. A backend that fails, or runs past
``rerank.timeout``, leaves the fused order in place; each hit's ``rerank.error`` says
why and a warning is logged (``on_error: raise`` raises instead).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from typing import Any, Sequence

from hybrid_retriever.config import RerankConfig
from hybrid_retriever.errors import ConfigError, HybridRetrieverError
from hybrid_retriever.rerank.base import RerankBackend
from hybrid_retriever.rerank.depth import hit_signals, rerank_depth
from hybrid_retriever.rerank.order import rerank_order
from hybrid_retriever.types import Hit, RerankScore

log = logging.getLogger(__name__)


class RerankError(HybridRetrieverError):
    """The reranker failed or timed out and ``rerank.on_error`` is ``raise``."""


def build_backend(config: RerankConfig, ranker: Any = None) -> RerankBackend:
    """The backend for ``config``, or for a ready ranker object / backend passed in."""
    if isinstance(ranker, RerankBackend):
        return ranker
    if ranker is not None:
        from hybrid_retriever.rerank.ranker import RankerBackend

        return RankerBackend(ranker)
    if config.model_type is None or config.model_type in ("cross-encoder", "transformers"):
        runtime = resolve_runtime(config)
        if runtime == "torch":
            from hybrid_retriever.rerank.cross_encoder import CrossEncoderBackend

            return CrossEncoderBackend(config)
        from hybrid_retriever.rerank.onnx_cross_encoder import OnnxCrossEncoderBackend

        return OnnxCrossEncoderBackend(config, "int8" if runtime == "onnx-int8" else "fp32")
    return _rerankers_factory(config)


def resolve_runtime(config: RerankConfig) -> str:
    """What runs a cross-encoder: ``rerank.backend``; the ONNX ones need the CPU."""
    from hybrid_retriever.models.resolve import pick_device

    if config.backend != "torch" and pick_device(None if config.device == "auto" else config.device) != "cpu":
        raise ConfigError(f"rerank.backend {config.backend} runs on the CPU, but rerank.device is {config.device!r}: "
                          "set rerank.device: cpu, or rerank.backend: torch for the GPU")
    return config.backend


def _rerankers_factory(config: RerankConfig) -> RerankBackend:
    """Another architecture (``model_type``) through ``rerankers.Reranker``."""
    from rerankers import Reranker as Factory

    from hybrid_retriever.models.resolve import resolve_model_path
    from hybrid_retriever.rerank.cross_encoder import resolve_device, resolve_dtype
    from hybrid_retriever.rerank.ranker import RankerBackend

    device = resolve_device(config.device)
    ranker = Factory(resolve_model_path(config.model or ""), model_type=config.model_type, device=device,
                     dtype=resolve_dtype(config.dtype, device), batch_size=config.batch_size, verbose=0)
    return RankerBackend(ranker, name=config.model)


#: (model, kind of failure) already warned about in this process: later ones are logged at DEBUG.
_WARNED: set[tuple[str, str]] = set()
_WARNED_LOCK = threading.Lock()


def _fallback_fix(exc: BaseException) -> str:
    """What to do about a reranker failure, by its kind."""
    if isinstance(exc, ImportError):
        return "install the rerank extra: pip install 'hybrid-retriever[rerank]'"
    if isinstance(exc, TimeoutError):
        return "raise rerank.timeout, lower rerank.depth, or run the reranker on a GPU (rerank.device)"
    if isinstance(exc, OSError):  # offline and not cached, a wrong id, or a missing folder
        return ("download the model once with network access (unset HF_HUB_OFFLINE), or set rerank.model to a local "
                "folder holding it; check the id or path")
    return "check rerank.model and rerank.model_type"


def _warn_fallback(name: str, exc: BaseException, reason: str) -> None:
    """Once per process per model and kind of failure: a WARNING naming the fix (the fallback itself stays)."""
    key = (name, type(exc).__name__)
    with _WARNED_LOCK:
        first = key not in _WARNED
        _WARNED.add(key)
    if first:
        log.warning(
            "reranker %s failed (%s); returning the fused order (flagged in each hit's rerank.error). Fix: %s. "
            "(rerank.on_error: raise makes this an error; later failures of this kind are logged at DEBUG)",
            name, reason, _fallback_fix(exc),
        )
    else:
        log.debug("reranker %s failed (%s); returning the fused order", name, reason)


class Reranker:
    """Rescores fused hits with a cross-encoder (or any backend); thread-safe, loads lazily.

    >>> from hybrid_retriever.config import RerankConfig
    >>> stage = Reranker(RerankConfig(enabled=True, model="cross-encoder/ms-marco-MiniLM-L-6-v2"))
    >>> stage.loaded
    False
    """

    def __init__(self, config: RerankConfig, ranker: Any = None) -> None:
        self.config = config
        self._given = ranker
        self._backend: RerankBackend | None = ranker if isinstance(ranker, RerankBackend) else None
        self._lock = threading.Lock()
        # Only with a timeout: a worker runs the model so the caller can stop waiting for it.
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hybrid-rerank") if config.timeout else None

    @property
    def depth(self) -> int:
        return self.config.depth

    @property
    def loaded(self) -> bool:
        return self._backend is not None

    @property
    def name(self) -> str:
        if self._backend is not None:
            return self._backend.name
        return self.config.model or type(self._given).__name__

    def backend(self) -> RerankBackend:
        """The backend, loaded on first use (once, whichever thread asks first)."""
        if self._backend is None:
            with self._lock:
                if self._backend is None:
                    t0 = time.perf_counter()
                    self._backend = build_backend(self.config, self._given)
                    log.info("reranker %s ready in %.1f s", self._backend.name, time.perf_counter() - t0)
        return self._backend

    def score(self, queries: Sequence[str], docs: Sequence[Sequence[str]]) -> list[list[float]]:
        """Reranker scores of each query's documents (no timeout, errors propagate)."""
        if len(queries) != len(docs):
            raise ValueError(f"{len(queries)} queries but {len(docs)} document lists")
        scores = self.backend().score(queries, docs)
        if [len(s) for s in scores] != [len(d) for d in docs]:
            raise RuntimeError("the reranker returned a different number of scores than documents")
        return scores

    def _score_in_time(self, queries: Sequence[str], docs: Sequence[Sequence[str]]) -> list[list[float]]:
        if self._pool is None:
            return self.score(queries, docs)
        future = self._pool.submit(self.score, queries, docs)
        try:
            return future.result(timeout=self.config.timeout)
        except FutureTimeout:
            raise TimeoutError(f"reranker took longer than rerank.timeout={self.config.timeout:g} s") from None

    def rerank(self, queries: Sequence[str], hits: Sequence[Sequence[Hit]], k: int) -> list[list[Hit]]:
        """Each query's hits (fused order) with the top ``depth`` rescored and reordered; ``k`` kept."""
        candidates = [list(h[: rerank_depth(self.config, hit_signals(h[0]) if h else None)]) for h in hits]
        todo = [i for i, c in enumerate(candidates) if c]
        try:
            scored = self._score_in_time([queries[i] for i in todo], [[h.text for h in candidates[i]] for i in todo]) if todo else []
            scores = [[] for _ in candidates]
            for i, s in zip(todo, scored):
                scores[i] = s
        except Exception as exc:
            if self.config.on_error == "raise":
                raise RerankError(f"reranking failed: {type(exc).__name__}: {exc}") from exc
            reason = f"{type(exc).__name__}: {exc}"
            _warn_fallback(self.name, exc, reason)
            return [self._fused(h, k, reason) for h in hits]
        return [self._ordered(h, c, s, k) for h, c, s in zip(hits, candidates, scores)]

    async def arerank(self, queries: Sequence[str], hits: Sequence[Sequence[Hit]], k: int) -> list[list[Hit]]:
        """:meth:`rerank` in a worker thread, so the event loop is never blocked by the model."""
        return await asyncio.to_thread(self.rerank, queries, hits, k)

    def _ordered(self, hits: Sequence[Hit], candidates: list[Hit], scores: list[float], k: int) -> list[Hit]:
        o = rerank_order([h.score for h in candidates], scores, self.config.order, self.config.weight)
        out = []
        for new_rank, i in enumerate(o.order, start=1):
            h = candidates[i]
            prov = RerankScore(raw=float(scores[i]), normalized=o.normalized[i], rank=o.rank[i], fused_score=h.score,
                               fused_rank=h.rank, model=self.name)
            out.append(replace(h, score=o.final[i], rank=new_rank, rerank=prov))
        # Below the depth: not rescored, kept in fused order after the reranked ones.
        for h in hits[len(candidates) :]:
            prov = RerankScore(raw=None, normalized=None, rank=None, fused_score=h.score, fused_rank=h.rank, model=self.name)
            out.append(replace(h, rank=len(out) + 1, rerank=prov))
        return out[:k]

    def _fused(self, hits: Sequence[Hit], k: int, reason: str) -> list[Hit]:
        return [
            replace(h, rerank=RerankScore(raw=None, normalized=None, rank=None, fused_score=h.score, fused_rank=h.rank,
                                          model=self.name, error=reason))
            for h in hits[:k]
        ]

    def close(self) -> None:
        """Stop the timeout workers and release the model."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            if self._backend is not None and self._backend is not self._given:
                self._backend.close()
            self._backend = None
