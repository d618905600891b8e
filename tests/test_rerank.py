"""Rerank stage: a tiny random cross-encoder built on disk, loaded through rerankers offline.

The reference for every order is the model's own logits computed directly with
transformers (tests/rerank_fixtures.py), one pair at a time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Sequence

import pytest

from hybrid_retriever import HybridRetriever
from hybrid_retriever.config import RerankConfig, RetrieverConfig
from hybrid_retriever.errors import ConfigError
from hybrid_retriever.rerank import RerankBackend, Reranker, RerankError, rerank_order
from hybrid_retriever.rerank.cross_encoder import CrossEncoderBackend, resolve_device, resolve_dtype
from rerank_fixtures import TINY_MAX_LENGTH, build_tiny_cross_encoder, direct_logits

QUERIES = ["vector database for embeddings", "how are documents ranked by terms"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce") / "model")


def rerank_cfg(model: Path, **kw) -> dict:
    return {"rerank": {"enabled": True, "model": str(model), "max_length": TINY_MAX_LENGTH, **kw}}


def by_logits(model: Path, query: str, texts: Sequence[str]) -> list[int]:
    logits = direct_logits(model, query, texts)
    return sorted(range(len(texts)), key=lambda i: -logits[i])


def test_rerank_order_equals_sorting_by_the_models_own_logits(make_retriever, small_docs, tiny_model: Path) -> None:
    plain = make_retriever()
    plain.add_documents(small_docs)
    r = make_retriever(**rerank_cfg(tiny_model, depth=6, batch_size=4))
    r.add_documents(small_docs)
    for q in QUERIES:
        fused = plain.search(q, k=6)
        hits = r.search(q, k=4)
        logits = direct_logits(tiny_model, q, [h.text for h in fused])
        expected = [fused[i].id for i in sorted(range(6), key=lambda i: -logits[i])][:4]
        assert [h.id for h in hits] == expected
        for rank, h in enumerate(hits, start=1):
            f = next(x for x in fused if x.id == h.id)
            assert h.rank == rank and h.rerank is not None and h.rerank.error is None
            assert h.rerank.raw == pytest.approx(logits[fused.index(f)], abs=1e-4)
            assert h.score == h.rerank.raw  # order "reranker": the final score is the reranker's
            assert (h.rerank.fused_rank, h.rerank.fused_score) == (f.rank, pytest.approx(f.score))
            assert h.rerank.rank == rank and 0.0 <= h.rerank.normalized <= 1.0
            assert h.provenance.keys() == f.provenance.keys()  # branch provenance is kept
        assert hits[0].rerank.normalized == 1.0
        assert hits[0].as_dict()["rerank"]["model"] == str(tiny_model)


def test_search_batch_scores_every_querys_pairs_together(make_retriever, small_docs, tiny_model: Path) -> None:
    r = make_retriever(**rerank_cfg(tiny_model, depth=5, batch_size=3))
    r.add_documents(small_docs)
    calls: list[int] = []
    backend = r.reranker.backend()
    original = backend.score

    def counting(queries, docs):
        calls.append(len(queries))
        return original(queries, docs)

    backend.score = counting  # type: ignore[method-assign]
    batch = r.search_batch(QUERIES, k=3)
    assert calls == [2]  # one call with both queries' 10 pairs (in batches of 3)
    for q, hits in zip(QUERIES, batch):
        single = r.search(q, k=3)
        assert [h.id for h in hits] == [h.id for h in single]
        assert [h.rerank.raw for h in hits] == pytest.approx([h.rerank.raw for h in single], abs=1e-4)


def test_interpolation_order_by_hand(make_retriever, small_docs, tiny_model: Path) -> None:
    plain = make_retriever()
    plain.add_documents(small_docs)
    r = make_retriever(**rerank_cfg(tiny_model, depth=5, order="interpolation", weight=0.3))
    r.add_documents(small_docs)
    q = QUERIES[0]
    fused = plain.search(q, k=5)
    logits = direct_logits(tiny_model, q, [h.text for h in fused])
    lo, hi = min(logits), max(logits)
    flo, fhi = min(h.score for h in fused), max(h.score for h in fused)
    final = {h.id: 0.3 * (s - lo) / (hi - lo) + 0.7 * (h.score - flo) / (fhi - flo) for h, s in zip(fused, logits)}
    hits = r.search(q, k=5)
    assert [h.id for h in hits] == sorted(final, key=lambda i: -final[i])
    assert [h.score for h in hits] == pytest.approx([final[h.id] for h in hits], abs=1e-4)


def test_rerank_order_function_hand_computed() -> None:
    o = rerank_order([0.9, 0.5, 0.1], [1.0, 3.0, 2.0])
    assert o.order == [1, 2, 0] and o.rank == [3, 1, 2] and o.normalized == [0.0, 1.0, 0.5]
    o = rerank_order([0.9, 0.5, 0.1], [1.0, 3.0, 2.0], "interpolation", 0.5)
    # final = 0.5·[0, 1, 0.5] + 0.5·[1, 0.5, 0] = [0.5, 0.75, 0.25]
    assert o.order == [1, 0, 2] and o.final == pytest.approx([0.5, 0.75, 0.25])
    assert rerank_order([0.9, 0.5], [2.0, 2.0]).order == [0, 1]  # ties keep the fused order


def test_depth_below_k_keeps_the_rest_in_fused_order(make_retriever, small_docs, tiny_model: Path) -> None:
    plain = make_retriever()
    plain.add_documents(small_docs)
    r = make_retriever(**rerank_cfg(tiny_model, depth=3))
    r.add_documents(small_docs)
    fused = plain.search(QUERIES[1], k=6)
    hits = r.search(QUERIES[1], k=6)
    assert {h.id for h in hits[:3]} == {h.id for h in fused[:3]}
    assert [h.id for h in hits[3:]] == [h.id for h in fused[3:]]
    assert all(h.rerank.raw is None and h.rerank.rank is None for h in hits[3:])
    assert [h.rank for h in hits] == list(range(1, 7))


def test_a_ready_rerankers_ranker_object(make_retriever, small_docs, tiny_model: Path, tmp_path: Path) -> None:
    from rerankers.models.transformer_ranker import TransformerRanker

    ranker = TransformerRanker(str(tiny_model), device="cpu", verbose=0, model_kwargs={"use_safetensors": True})
    plain = make_retriever()
    plain.add_documents(small_docs)
    cfg = RetrieverConfig.model_validate({"store": {"kind": "edge", "path": str(tmp_path / "own")},
                                          "runtime": {"show_progress": False}, "rerank": {"depth": 6}})
    with HybridRetriever(cfg, branches=[plain.branches["bm25"].__class__(plain.config.branch("bm25")), plain.branches["dense"]],
                         reranker=ranker) as r:
        r.add_documents(small_docs)
        q = QUERIES[0]
        fused = plain.search(q, k=6)
        hits = r.search(q, k=6)
        assert [h.id for h in hits] == [fused[i].id for i in by_logits(tiny_model, q, [h.text for h in fused])]
        assert hits[0].rerank.model == "TransformerRanker"


def test_loading_refuses_pickled_weights(tmp_path: Path, tiny_model: Path) -> None:
    import shutil

    import torch
    from transformers import AutoModelForSequenceClassification

    # The same model with its weights as a pickle (pytorch_model.bin) instead of safetensors.
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model, pickled)
    (pickled / "model.safetensors").unlink()
    torch.save(AutoModelForSequenceClassification.from_pretrained(str(tiny_model)).state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(Exception, match="safetensors"):
        CrossEncoderBackend(RerankConfig(enabled=True, model=str(pickled)))


class SlowBackend(RerankBackend):
    """Fault injection: the real tiny cross-encoder, delayed past the stage's timeout."""

    def __init__(self, inner: RerankBackend, delay: float) -> None:
        self.inner, self.delay, self.name = inner, delay, "slow"

    def score(self, queries, docs):
        time.sleep(self.delay)
        return self.inner.score(queries, docs)


def test_a_failing_or_slow_reranker_returns_the_fused_order_flagged(make_retriever, small_docs, tiny_model: Path, caplog) -> None:
    plain = make_retriever()
    plain.add_documents(small_docs)
    fused = plain.search(QUERIES[0], k=4)
    # A model folder that does not exist: loading fails at the first search.
    broken = make_retriever(**rerank_cfg(tiny_model.parent / "missing", depth=4))
    broken.add_documents(small_docs)
    with caplog.at_level("WARNING"):
        hits = broken.search(QUERIES[0], k=4)
    assert [h.id for h in hits] == [h.id for h in fused]
    assert [h.score for h in hits] == pytest.approx([h.score for h in fused])
    assert all(h.rerank.error and h.rerank.raw is None for h in hits)
    assert "returning the fused order" in caplog.text
    # A reranker past its timeout.
    slow = make_retriever(**rerank_cfg(tiny_model, depth=4, timeout=0.2))
    slow.add_documents(small_docs)
    slow.reranker._backend = SlowBackend(CrossEncoderBackend(slow.config.rerank), delay=1.5)
    t0 = time.perf_counter()
    hits = slow.search(QUERIES[0], k=4)
    assert time.perf_counter() - t0 < 1.4
    assert [h.id for h in hits] == [h.id for h in fused]
    assert "TimeoutError" in hits[0].rerank.error and "rerank.timeout=0.2" in hits[0].rerank.error
    # on_error: raise
    strict = make_retriever(**rerank_cfg(tiny_model.parent / "missing", on_error="raise"))
    strict.add_documents(small_docs)
    with pytest.raises(RerankError, match="reranking failed"):
        strict.search(QUERIES[0])


def test_model_loads_once_shared_by_concurrent_searches(make_retriever, small_docs, tiny_model: Path) -> None:
    r = make_retriever(**rerank_cfg(tiny_model, depth=5))
    r.add_documents(small_docs)
    assert not r.reranker.loaded  # lazily: nothing loaded before the first search
    expected = {q: [h.id for h in r.search(q, k=5)] for q in QUERIES}
    r.reranker.close()
    built: list[RerankBackend] = []
    import hybrid_retriever.rerank.stage as stage_module

    original = stage_module.build_backend

    def counting(config, ranker=None):
        b = original(config, ranker)
        built.append(b)
        return b

    stage_module.build_backend = counting
    try:
        results: dict[int, list[str]] = {}
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, [h.id for h in r.search(QUERIES[i % 2], k=5)]))
                   for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        stage_module.build_backend = original
    assert len(built) == 1
    assert all(results[i] == expected[QUERIES[i % 2]] for i in range(6))


async def test_arerank_runs_in_a_worker(make_retriever, small_docs, tiny_model: Path) -> None:
    r = make_retriever(**rerank_cfg(tiny_model, depth=5))
    r.add_documents(small_docs)
    hits = r.search_batch(QUERIES, k=5, rerank=False)
    loop_thread = threading.get_ident()
    seen: list[int] = []
    backend = r.reranker.backend()
    original = backend.score
    backend.score = lambda q, d: (seen.append(threading.get_ident()), original(q, d))[1]  # type: ignore[method-assign]
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    out = await r.reranker.arerank(QUERIES, hits, 5)
    task.cancel()
    assert seen and seen[0] != loop_thread and ticks > 0
    assert [[h.id for h in hs] for hs in out] == [[h.id for h in hs] for hs in r.reranker.rerank(QUERIES, hits, 5)]


def test_config_section_defaults_and_checks(tiny_model: Path) -> None:
    cfg = RetrieverConfig()
    assert cfg.rerank.enabled is False and cfg.rerank.device == "auto" and cfg.rerank.dtype == "auto"
    again = RetrieverConfig.from_yaml(RetrieverConfig.model_validate(rerank_cfg(tiny_model, order="interpolation", weight=0.4)).to_yaml())
    assert again.rerank.order == "interpolation" and again.rerank.weight == 0.4
    with pytest.raises(ConfigError, match="rerank.model"):
        RetrieverConfig.validate_data({"rerank": {"enabled": True}})
    with pytest.raises(ConfigError, match="rerank.weight"):
        RetrieverConfig.validate_data({"rerank": {"weight": 1.5}})
    import torch

    assert resolve_device("cpu") == "cpu" and resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("float16", "cpu") == torch.float16
    if not torch.cuda.is_available():
        assert resolve_device("auto") == "cpu"


def test_a_missing_cross_encoder_is_warned_about_once_per_process_with_the_fix(tmp_path: Path, caplog) -> None:
    """The fallback stays; the first failure is a WARNING naming the fix, later ones of the same kind are DEBUG."""
    from hybrid_retriever.config import RerankConfig
    from hybrid_retriever.rerank.stage import Reranker
    from hybrid_retriever.types import Hit

    stage = Reranker(RerankConfig(enabled=True, model=str(tmp_path / "no-such-cross-encoder")))
    hits = [Hit("a", "text a", {}, 0.9, 1, {}), Hit("b", "text b", {}, 0.5, 2, {})]
    with caplog.at_level("DEBUG", logger="hybrid_retriever.rerank"):
        for _ in range(3):
            out = stage.rerank(["q"], [hits], 2)[0]
            assert [h.id for h in out] == ["a", "b"] and out[0].rerank.error
    warned = [r for r in caplog.records if r.levelname == "WARNING" and "no-such-cross-encoder" in r.getMessage()]
    assert len(warned) == 1 and "Fix:" in warned[0].getMessage() and "rerank.model" in warned[0].getMessage()
    assert sum(r.levelname == "DEBUG" and "no-such-cross-encoder" in r.getMessage() for r in caplog.records) == 2


# ----------------------------------------------------------------- ONNX Runtime and adaptive depth


@pytest.fixture
def onnx_cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("HYBRID_RETRIEVER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_onnx_runs_the_cross_encoder_on_onnx_runtime_with_the_models_scores(onnx_cache: Path, tiny_model: Path) -> None:
    from hybrid_retriever.rerank.onnx_cross_encoder import OnnxCrossEncoderBackend
    from hybrid_retriever.rerank.stage import build_backend, resolve_runtime

    docs = ["Qdrant is a vector database.", "Cats sleep a lot.", "BM25 ranks documents by terms. " * 20, "42"]
    cfg = RerankConfig(enabled=True, model=str(tiny_model), max_length=TINY_MAX_LENGTH, device="cpu", batch_size=3,
                       backend="onnx")
    assert resolve_runtime(cfg) == "onnx" and RerankConfig().backend == "torch"
    backend = build_backend(cfg)
    assert isinstance(backend, OnnxCrossEncoderBackend)
    scores = backend.score([QUERIES[0], QUERIES[1]], [docs, docs[:2]])
    # Pairs are batched by length across queries, yet each score is the model's own logit for its pair.
    assert scores[0] == pytest.approx(direct_logits(tiny_model, QUERIES[0], docs), abs=1e-4)
    assert scores[1] == pytest.approx(direct_logits(tiny_model, QUERIES[1], docs[:2]), abs=1e-4)
    assert len(list(onnx_cache.rglob("model.onnx"))) == 1  # exported once, cached
    again = build_backend(cfg)
    assert again.score([QUERIES[0]], [docs])[0] == pytest.approx(scores[0], abs=1e-6)
    assert len(list(onnx_cache.rglob("model.onnx"))) == 1


def test_a_tampered_onnx_export_is_refused(onnx_cache: Path, tiny_model: Path) -> None:
    from hybrid_retriever.errors import ModelCacheError
    from hybrid_retriever.rerank.stage import build_backend

    cfg = RerankConfig(enabled=True, model=str(tiny_model), max_length=TINY_MAX_LENGTH, device="cpu", backend="onnx")
    build_backend(cfg)
    (path,) = onnx_cache.rglob("model.onnx")
    path.write_bytes(path.read_bytes()[:-16] + b"\0" * 16)
    with pytest.raises(ModelCacheError, match="does not match the hash"):
        build_backend(cfg)


def test_an_int8_export_is_checked_against_torch_on_the_probe(onnx_cache: Path, tiny_model: Path, monkeypatch) -> None:
    """int8 scores move; the probe bounds how far. With no room at all, the export is made again once, then refused."""
    from hybrid_retriever.errors import ModelCacheError
    from hybrid_retriever.rerank import onnx_cross_encoder
    from hybrid_retriever.rerank.stage import build_backend

    cfg = RerankConfig(enabled=True, model=str(tiny_model), max_length=TINY_MAX_LENGTH, device="cpu", backend="onnx-int8")
    monkeypatch.setitem(onnx_cross_encoder.PROBE_TOLERANCE, "int8", 0.0)
    with pytest.raises(ModelCacheError, match="scores the probe pairs"):
        build_backend(cfg)
    with pytest.raises(ConfigError, match="runs on the CPU"):
        build_backend(cfg.model_copy(update={"device": "cuda"}))


def test_adaptive_depth_reranks_only_queries_whose_branches_disagree(make_retriever, small_docs, tiny_model: Path,
                                                                     onnx_cache: Path) -> None:
    from hybrid_retriever.rerank.depth import agreement, hit_signals, rerank_depth

    r = make_retriever(**rerank_cfg(tiny_model, depth=5))
    r.add_documents(small_docs)
    fused = r.search_batch(QUERIES, k=5, rerank=False)
    support = [agreement(hit_signals(hs[0])) for hs in fused]
    assert all(s is not None and 0.0 <= s <= 1.0 for s in support)
    threshold = min(support)  # every query counts as clear
    r.reranker = Reranker(r.config.rerank.model_copy(update={"adaptive_agreement": threshold, "adaptive_depth": 0}))
    clear = r.search_batch(QUERIES, k=5)
    assert [[h.id for h in hs] for hs in clear] == [[h.id for h in hs] for hs in fused]
    assert all(h.rerank is not None and h.rerank.raw is None for hs in clear for h in hs)
    r.reranker = Reranker(r.config.rerank.model_copy(update={"adaptive_agreement": threshold, "adaptive_depth": 2}))
    two = r.search_batch(QUERIES, k=5)
    assert all([h.rerank.raw is not None for h in hs] == [True, True, False, False, False] for hs in two)
    cfg = r.config.rerank.model_copy(update={"adaptive_agreement": 1.0, "adaptive_depth": 2})
    assert rerank_depth(cfg, hit_signals(fused[0][0])) == (2 if support[0] >= 1.0 else 5)
    with pytest.raises(ConfigError, match="adaptive_depth"):
        RetrieverConfig.validate_data(rerank_cfg(tiny_model, depth=5, adaptive_depth=6))
