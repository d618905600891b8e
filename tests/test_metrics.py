"""Metrics and significance tests against independent references (ranx, scipy, brute force)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hybrid_retriever.errors import InvalidInputError
from hybrid_retriever.evaluation.metrics import evaluate_ranked, parse_metric, parse_metrics, rank_run
from hybrid_retriever.evaluation.significance import paired_t_test, randomization_test

ranx = pytest.importorskip("ranx")

KS = (1, 3, 5, 10, 50)


def _random_case(seed: int, ties: bool) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    """Random runs and graded qrels: ties, short runs, queries without relevant documents."""
    rng = np.random.default_rng(seed)
    pool = [f"d{i}" for i in range(120)]
    run: dict[str, dict[str, float]] = {}
    qrels: dict[str, dict[str, int]] = {}
    for qi in range(40):
        q = f"q{qi}"
        n = int(rng.integers(1, 70))
        docs = rng.choice(pool, size=n, replace=False)
        scores = rng.integers(0, 6, size=n).astype(float) if ties else rng.random(n)
        run[q] = {str(d): float(s) for d, s in zip(docs, scores)}
        judged = rng.choice(pool, size=int(rng.integers(1, 25)), replace=False)
        if qi % 7 == 0:  # judged, but nothing relevant
            qrels[q] = {str(d): 0 for d in judged}
        else:
            grades = rng.integers(0, 4, size=len(judged))
            grades[0] = max(grades[0], 1)
            qrels[q] = {str(d): int(g) for d, g in zip(judged, grades)}
    return run, qrels


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_match_ranx_on_random_runs(seed: int, ties: bool) -> None:
    run, qrels = _random_case(seed, ties)
    names = [f"{m}@{k}" for m in ("ndcg", "recall", "mrr", "map", "precision") for k in KS]
    rq, rr = ranx.Qrels(qrels), ranx.Run(run)
    judged_names = [f"precision@{k}-l0" for k in KS]
    ref = ranx.evaluate(rq, rr, names + judged_names, return_mean=False, save_results_in_run=False)
    # ranx breaks score ties with an unstable sort: score the very order it evaluated (kept in the Run)
    ranked = {q: list(docs.keys()) for q, docs in rr.run.items()}
    if ties:
        assert any(len(set(d.values())) < len(d) for d in run.values())
    ours = evaluate_ranked(ranked, qrels, names + [f"judged@{k}" for k in KS])
    for name in names:
        assert len(ref[name]) == len(qrels)
        for q, v in zip(sorted(qrels), ref[name]):  # ranx lists per-query scores in sorted query order
            assert ours[name][q] == pytest.approx(v, abs=1e-12), (name, q)
    # judged@k is Precision@k with every judged document counting (ranx: relevance level 0)
    for k, jn in zip(KS, judged_names):
        for q, v in zip(sorted(qrels), ref[jn]):
            assert ours[f"judged@{k}"][q] == pytest.approx(v, abs=1e-12)
    no_rel = [q for q, d in qrels.items() if not any(g >= 1 for g in d.values())]
    assert no_rel and all(ours["ndcg@10"][q] == 0.0 and ours["recall@50"][q] == 0.0 for q in no_rel)


def test_ranx_query_order_assumption() -> None:
    # ranx returns per-query scores in its qrels' sorted-key order; the comparison above relies on it
    qrels = {"b": {"x": 1}, "a": {"y": 1}}
    run = {"b": {"x": 1.0}, "a": {"z": 1.0}}
    vals = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), ["ndcg@10", "recall@10"], return_mean=False)
    assert list(vals["ndcg@10"]) == [0.0, 1.0]


def test_graded_ndcg_by_hand() -> None:
    # linear gain: DCG = 0/log2(2) + 1/log2(3) + 2/log2(4); ideal = 2/log2(2) + 1/log2(3)
    res = evaluate_ranked({"q": ["a", "b", "c"]}, {"q": {"b": 1, "c": 2, "z": 0}}, ["ndcg@3", "map@3", "mrr@3", "judged@3"])
    dcg = 1 / np.log2(3) + 2 / np.log2(4)
    idcg = 2 + 1 / np.log2(3)
    assert res["ndcg@3"]["q"] == pytest.approx(dcg / idcg)
    assert res["map@3"]["q"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert res["mrr@3"]["q"] == pytest.approx(0.5)
    assert res["judged@3"]["q"] == pytest.approx(2 / 3)


def test_judged_query_missing_from_run_scores_zero() -> None:
    res = evaluate_ranked({}, {"q": {"a": 1}}, ["ndcg@10", "recall@10"])
    assert res["ndcg@10"]["q"] == 0.0 and res["recall@10"]["q"] == 0.0


def test_rank_run_tie_rules() -> None:
    run = {"q": {"a": 1.0, "c": 2.0, "b": 1.0, "d": 1.0}}
    assert rank_run(run, "trec_eval")["q"] == ["c", "d", "b", "a"]  # ties: doc id descending, as trec_eval
    assert rank_run(run, "id")["q"] == ["c", "a", "b", "d"]
    assert rank_run(run, "given")["q"] == ["c", "a", "b", "d"]
    with pytest.raises(InvalidInputError):
        rank_run(run, "random")


def test_parse_metric() -> None:
    assert str(parse_metric("nDCG@10")) == "ndcg@10"
    assert str(parse_metric("P@5")) == "precision@5"
    assert [str(m) for m in parse_metrics("ndcg@10, recall@100,ndcg@10")] == ["ndcg@10", "recall@100"]
    for bad in ("ndcg", "foo@10", "ndcg@0", "ndcg@x"):
        with pytest.raises(InvalidInputError):
            parse_metric(bad)


# --------------------------------------------------------------------- significance


def test_t_test_matches_scipy() -> None:
    from scipy import stats

    rng = np.random.default_rng(3)
    a = rng.random(50)
    b = a + rng.normal(0.05, 0.2, 50)
    ours = paired_t_test(a, b)
    ref = stats.ttest_rel(b, a)
    assert ours.statistic == pytest.approx(ref.statistic)
    assert ours.p_value == pytest.approx(ref.pvalue)
    assert paired_t_test(a, a).p_value == 1.0


def test_randomization_exact_matches_brute_force() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.random(9), rng.random(9)
    d = b - a
    obs = abs(d.mean())
    count = sum(abs(np.mean([s * x for s, x in zip(signs, d)])) >= obs - 1e-12
                for signs in itertools.product((1, -1), repeat=len(d)))
    res = randomization_test(a, b)
    assert res.p_value == pytest.approx(count / 2 ** len(d))
    assert res.permutations == 2 ** 9


def test_randomization_monte_carlo_close_to_exact() -> None:
    rng = np.random.default_rng(7)
    a = rng.random(20)
    b = a + rng.normal(0.08, 0.25, 20)
    d = b - a
    # exact p over all 2^20 sign patterns, by bit tricks
    patterns = ((np.arange(2**20)[:, None] >> np.arange(20)) & 1) * 2.0 - 1.0
    exact = float(np.mean(np.abs(patterns @ d) / 20 >= abs(d.mean()) - 1e-12))
    mc = randomization_test(a, b, n_permutations=20_000, seed=1)
    assert mc.permutations == 20_000
    assert mc.p_value == pytest.approx(exact, abs=0.015)
    # clearly different systems get a small p-value, identical ones p = 1
    assert randomization_test(a, a + 0.3).p_value < 0.001
    assert randomization_test(a, a).p_value == 1.0
