"""eval and tune with the rerank stage: reranked metrics beside the fused ones, the weight tuned on cached scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eval_fixtures import eval_index  # noqa: F401  (fixture)
from hybrid_retriever.evaluation import evaluate
from hybrid_retriever.evaluation.datasets import JudgedQueries
from hybrid_retriever.evaluation.metrics import evaluate_ranked
from hybrid_retriever.evaluation.rerank import tune_rerank_weight
from rerank_fixtures import TINY_MAX_LENGTH, build_tiny_cross_encoder

DEPTH = 10


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce-eval") / "model")


def with_rerank(ei, model: Path, **kw):
    data = ei.config.model_dump()
    data["rerank"] = {"enabled": True, "model": str(model), "depth": DEPTH, "max_length": TINY_MAX_LENGTH, **kw}
    return ei.open(type(ei.config).validate_data(data))


def test_eval_reports_reranked_metrics_and_added_latency(eval_index, tiny_model: Path, tmp_path: Path) -> None:
    ei = eval_index
    judged = JudgedQueries(queries=ei.queries, qrels=ei.qrels, name="cisi-slice")
    with with_rerank(ei, tiny_model) as r:
        res = evaluate(r, judged, ["ndcg@10", "recall@10"], cache=ei.cache, cache_dir=tmp_path, progress=False)
        # Reference: the library's own search with reranking, all queries in one batch like the cached runs.
        qids = list(ei.queries)
        hits = r.search_batch([ei.queries[q] for q in qids], k=DEPTH)
    ref = evaluate_ranked({q: [h.id for h in hs] for q, hs in zip(qids, hits)}, ei.qrels, ["ndcg@10"])["ndcg@10"]
    rr = res.systems["reranked"]
    assert rr.kind == "reranked" and rr.depth == DEPTH
    assert rr.per_query["ndcg@10"] == pytest.approx([ref[q] for q in res.qids], abs=1e-9)
    assert rr.mean["ndcg@10"] != pytest.approx(res.systems["fused"].mean["ndcg@10"])  # the random model moves things
    assert rr.latency_ms["added_mean"] > 0 and rr.latency_ms["mean"] > res.systems["fused"].latency_ms["mean"]
    assert any(s["a"] == "reranked" for s in res.significance)
    from hybrid_retriever.evaluation.report import eval_markdown

    assert "reranked (depth 10)" in eval_markdown(res) and "ms added per query" in eval_markdown(res)


def test_tune_weight_on_cached_scores(eval_index, tiny_model: Path, tmp_path: Path) -> None:
    ei = eval_index
    judged = JudgedQueries(queries=ei.queries, qrels=ei.qrels, name="cisi-slice")
    with with_rerank(ei, tiny_model) as r:
        res = evaluate(r, judged, ["ndcg@10"], cache=ei.cache, progress=False)
        t = tune_rerank_weight(r, ei.queries, ei.qrels, ei.cache, r.config, weights=(0.0, 0.5, 1.0), cache_dir=tmp_path,
                               progress=False, folds=3)
        again = tune_rerank_weight(r, ei.queries, ei.qrels, ei.cache, r.config, weights=(0.0, 0.5, 1.0),
                                   cache_dir=tmp_path, progress=False, folds=3)
    by_w = {w["weight"]: w["score"] for w in t.per_weight}
    # weight 1: the reranker alone (eval's reranked system); weight 0: min-max of the fused score keeps the fused order.
    assert by_w[1.0] == pytest.approx(res.systems["reranked"].mean["ndcg@10"])
    assert by_w[0.0] == pytest.approx(res.systems["fused"].mean["ndcg@10"])
    assert t.default_weight == 1.0 and t.best_weight in by_w and t.validation == "cv"
    assert np.isfinite(t.heldout_score)
    cfg = t.apply(ei.config)
    assert cfg.rerank.order == "interpolation" and cfg.rerank.weight == t.best_weight
    assert again.best_weight == t.best_weight and again.per_weight == t.per_weight
    files = list(tmp_path.glob("rerank-*.jsonl"))
    assert len(files) == 1 and sum(1 for _ in open(files[0])) == 1 + len(ei.queries)  # scored once, then read back


def test_tune_cli_chooses_the_rerank_weight_and_writes_it(eval_index, tiny_model: Path, tmp_path: Path) -> None:
    """``tune --no-fusion --rerank-weights`` end to end: the split's choice, written into the tuned config."""
    from typer.testing import CliRunner

    from hybrid_retriever.cli import app
    from hybrid_retriever.config import RetrieverConfig

    ei = eval_index
    data = ei.config.model_dump()
    data["rerank"] = {"enabled": True, "model": str(tiny_model), "depth": DEPTH, "max_length": TINY_MAX_LENGTH}
    cfg = RetrieverConfig.validate_data(data)
    cfg.save(tmp_path / "rerank.yaml")
    tuned = tmp_path / "tuned.yaml"
    res = CliRunner().invoke(app, [str(a) for a in (
        "tune", ei.beir, "--index", ei.path, "--config", tmp_path / "rerank.yaml", "--split", "train", "--dev-split", "dev",
        "--no-fusion", "--rerank-weights", "0,0.5,1", "--selection", "best", "--cache", tmp_path / "cache",
        "--out", tuned, "--batch-size", len(ei.queries), "--no-progress")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "tuned-report" / "tuning.json").read_text())["rerank"]
    assert report["validation"] == "split" and report["n_queries"] == len(ei.queries)
    # Reference: the weight that maximises nDCG@10 on the train split, computed here from the library's own
    # reranked searches (order interpolation at each weight).
    train = list(ei.queries)[:40]
    means = {}
    for w in (0.0, 0.5, 1.0):
        data["rerank"].update(order="interpolation", weight=w)
        with ei.open(RetrieverConfig.validate_data(data)) as r:
            hits = r.search_batch([ei.queries[q] for q in train], k=DEPTH)
        per = evaluate_ranked({q: [h.id for h in hs] for q, hs in zip(train, hits)}, {q: ei.qrels[q] for q in train},
                              ["ndcg@10"])["ndcg@10"]
        means[w] = float(np.mean([per[q] for q in train]))
    best = max(means, key=lambda w: (round(means[w], 9), w))
    assert report["best_weight"] == best, (report, means)
    written = RetrieverConfig.from_file(tuned).rerank
    assert written.enabled and written.order == "interpolation" and written.weight == best
    assert "Rerank weight on ndcg@10" in res.output


def test_eval_applies_adaptive_depth_as_search_does(eval_index, tiny_model: Path, tmp_path: Path) -> None:
    """A threshold in the middle of the queries' agreement: eval's reranked lists equal search's, query by query."""
    from hybrid_retriever.rerank.depth import agreement, hit_signals

    ei = eval_index
    judged = JudgedQueries(queries=ei.queries, qrels=ei.qrels, name="cisi-slice")
    qids = list(ei.queries)
    with with_rerank(ei, tiny_model) as r:
        fused = r.search_batch([ei.queries[q] for q in qids], k=DEPTH, rerank=False)
    levels = sorted(agreement(hit_signals(hs[0])) for hs in fused)
    threshold = levels[len(levels) // 2]
    with with_rerank(ei, tiny_model, adaptive_agreement=threshold, adaptive_depth=2) as r:
        res = evaluate(r, judged, ["ndcg@10"], cache=ei.cache, cache_dir=tmp_path, progress=False)
        hits = r.search_batch([ei.queries[q] for q in qids], k=DEPTH)
    assert 0 < sum(1 for hs in hits if sum(h.rerank.raw is not None for h in hs) == 2) < len(qids)
    ref = evaluate_ranked({q: [h.id for h in hs] for q, hs in zip(qids, hits)}, ei.qrels, ["ndcg@10"])["ndcg@10"]
    assert res.systems["reranked"].per_query["ndcg@10"] == pytest.approx([ref[q] for q in res.qids], abs=1e-9)
