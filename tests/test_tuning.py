"""Tuning: fusion on cached runs equals the retriever's search; the tuner agrees with ranx; CV is honest."""

from __future__ import annotations

import numpy as np
import pytest

from eval_fixtures import CACHE_DEPTH, EvalIndex, eval_index  # noqa: F401  (fixture)
from hybrid_retriever import RetrieverConfig
from hybrid_retriever.errors import InvalidInputError
from hybrid_retriever.evaluation import (
    FusionGrid,
    FusionParams,
    SearchSpace,
    collect_runs,
    fuse_reference,
    pseudo_queries,
    tune,
    weight_grid,
    write_config,
)
from hybrid_retriever.evaluation.report import plot_simplex, plot_weight_line, tuning_markdown
from hybrid_retriever.evaluation.validation import select

ranx = pytest.importorskip("ranx")

D = CACHE_DEPTH
CONFIGS = [
    FusionParams("interpolation", (0.4, 0.4, 0.2), (D, D, D)),
    FusionParams("interpolation", (0.3, 0.6, 0.1), (D, D, D), "zscore", "exact"),
    FusionParams("interpolation", (0.2, 0.5, 0.3), (D, D, D), "dbsf", "floor"),
    FusionParams("interpolation", (0.5, 0.5, 0.0), (D, D, D), "rank", "floor", floor_value=-0.25),
    FusionParams("rrf", (0.2, 0.6, 0.2), (D, D, D), rrf_k=5),
    # Adaptive: per-query weights from each list's clarity (the sparse offset on both BM25 branches).
    FusionParams("adaptive", (0.4, 0.4, 0.2), (D, D, D), "dbsf", "exact", clarity_weight=2.0,
                 sparse_clarity_offset=0.125, support_weight=1.5, sparse=(True, False, True)),
    FusionParams("adaptive", (0.3, 0.6, 0.1), (D, D, D), "zscore", "exact", completed="raw", support_weight=3.0,
                 clarity_weight=0.5),
]
TRUNCATED = [
    FusionParams("interpolation", (0.3, 0.6, 0.1), (15, D, 25), "rank", "exact"),
    FusionParams("rrf", (1.0, 1.0, 1.0), (20, 30, 10), rrf_k=60),
    FusionParams("adaptive", (0.3, 0.6, 0.1), (5, D, 25), "minmax", "exact", clarity_weight=3.0,
                 sparse_clarity_offset=0.2, support_weight=2.0, sparse=(True, False, True)),
]


def _search(ei: EvalIndex, p: FusionParams, k: int) -> list[list[tuple[str, float]]]:
    from hybrid_retriever import point_id

    with ei.open(p.apply(ei.config)) as r:
        hits = r.search_batch(list(ei.queries.values()), k=k)
    return [[(point_id(h.id), h.score) for h in row] for row in hits]


def _grid(ei: EvalIndex, branches: list[str] | None = None) -> FusionGrid:
    qids = list(ei.queries)
    return FusionGrid(ei.cache.subset(qids), branches or ei.cache.branches, ei.qrels, max_k=100,
                      cached_depths=ei.cache.depth)


def test_cached_fusion_equals_search(eval_index: EvalIndex) -> None:
    """Scored on the cache, a configuration ranks exactly as HybridRetriever.search (ids and scores)."""
    grid = _grid(eval_index)
    qids = list(eval_index.queries)
    for p in CONFIGS:
        searched = _search(eval_index, p, 30)
        assert grid.fused(p, 30) == searched, p.label(grid.branches)
        cfg = p.apply(eval_index.config)
        for q, row in zip(qids, searched):
            assert [(it.id, it.score) for it in fuse_reference(eval_index.cache[q], cfg)[:30]] == row


def _tie_at_cut(ei: EvalIndex, q: str, depths: dict[str, int]) -> bool:
    for b, d in depths.items():
        s = ei.cache[q].branches[b].scores
        if d < len(s) and s[d - 1] == s[d]:
            return True
    return False


def test_truncated_depths_equal_search_except_ties_at_the_cut(eval_index: EvalIndex) -> None:
    """Cutting cached lists equals searching shallower, except where tied scores straddle the cut
    (Qdrant then returns any of the tied documents)."""
    grid = _grid(eval_index)
    qids = list(eval_index.queries)
    for p in TRUNCATED:
        cfg = p.apply(eval_index.config)
        fused = grid.fused(p, 30)
        searched = _search(eval_index, p, 30)
        depths = dict(zip(grid.branches, p.depths))
        differ = [q for q, a, b in zip(qids, fused, searched) if a != b]
        assert all(_tie_at_cut(eval_index, q, depths) for q in differ), (p.label(grid.branches), differ)
        assert len(differ) <= len(qids) // 5
        for q, row in zip(qids, fused):  # the slow reference path agrees exactly, ties or not
            assert [(it.id, it.score) for it in fuse_reference(eval_index.cache[q], cfg)[:30]] == row


def _ranx_runs(ei: EvalIndex, branches: list[str], qids: list[str]) -> list:
    return [ranx.Run({q: dict(zip(ei.cache[q].branches[b].ids, ei.cache[q].branches[b].scores)) for q in qids}, name=b)
            for b in branches]


def _non_degenerate(ei: EvalIndex, branches: list[str]) -> list[str]:
    """Queries where every branch list has two or more distinct scores (ranx's min-max maps a flat list to 0,
    this library to 1; a documented convention difference, not a bug)."""
    return [q for q in ei.queries if all(len(set(ei.cache[q].branches[b].scores)) > 1 for b in branches)]


@pytest.mark.parametrize("branches", [["bm25", "dense"], ["bm25", "dense", "bm25_plain"]])
def test_tuner_finds_ranx_optimize_fusion_weights(eval_index: EvalIndex, branches: list[str]) -> None:
    """Same cached runs, same weight grid: every grid point scores as in ranx's optimization report,
    and the best weights are the same."""
    from hybrid_retriever import point_id
    from ranx.fusion_optimization.optimize_weights import get_possible_weights, get_trial_configs

    qids = _non_degenerate(eval_index, branches)
    assert len(qids) >= len(eval_index.queries) - 3
    qrels = {q: eval_index.qrels[q] for q in qids}
    ranx_qrels = ranx.Qrels({q: {point_id(d): g for d, g in qrels[q].items()} for q in qids})
    best, report = ranx.optimize_fusion(ranx_qrels, _ranx_runs(eval_index, branches, qids), norm="min-max",
                                        method="wsum", metric="ndcg@10", step=0.1, show_progress=False,
                                        return_optimization_report=True)
    trials = get_trial_configs(get_possible_weights(0.1), len(branches))
    assert len(trials) == len(report.results)  # the report lists scores in the order of ranx's trials
    grid = FusionGrid(eval_index.cache.subset(qids), branches, qrels, max_k=10, cached_depths=eval_index.cache.depth)
    params = [FusionParams("interpolation", tuple(w), (D,) * len(branches), "minmax", "floor") for w in trials]
    ours = grid.score(params, "ndcg@10").mean(1)
    theirs = np.array(report.results, dtype=np.float64)
    np.testing.assert_allclose(ours, theirs, atol=1e-9)
    # ranx keeps the last of equal maxima, this tuner the first: compare the set of maximisers
    top = set(tuple(trials[i]) for i in np.nonzero(ours >= ours.max() - 1e-12)[0])
    assert tuple(float(x) for x in best["weights"]) in top
    base = RetrieverConfig.model_validate({"branches": [eval_index.config.branch(b).model_dump() for b in branches]})
    space = SearchSpace(methods=("interpolation",), normalizations=("minmax",), missing=("floor",),
                        weights=tuple(tuple(w) for w in trials), depths=(D,))
    res = tune(grid, base.model_copy(update={"fusion": base.fusion.model_copy(update={"missing": "floor"})}),
               space=space, selection="best", folds=3)
    assert res.best_score == pytest.approx(max(report.results), abs=1e-9)
    assert res.best.weights in top or res.best == res.default


def test_weighted_rrf_scores_match_ranx_rrf(eval_index: EvalIndex) -> None:
    """Equal-weight RRF on the cache = ranx's RRF up to the weights' sum (ranx adds 1/(k+rank) unweighted)."""
    branches = ["bm25", "dense"]
    qids = list(eval_index.queries)
    grid = _grid(eval_index, branches)
    for k in (10, 60):
        fused = ranx.fuse(_ranx_runs(eval_index, branches, qids), method="rrf", params={"k": k})
        ours = grid.fused(FusionParams("rrf", (1.0, 1.0), (D, D), rrf_k=k), 1000)
        for q, row in zip(qids, ours):
            ref = dict(fused.run[q])
            assert len(ref) == len(row)
            for pid, s in row:
                assert 2 * s == pytest.approx(ref[pid], rel=1e-12)


def test_cross_validation_is_honest(eval_index: EvalIndex) -> None:
    grid = _grid(eval_index)
    space = SearchSpace(weight_step=0.25, depths=(20, D), rrf_ks=(10, 60))
    res = tune(grid, eval_index.config, space=space, folds=4, seed=3, selection="best")
    S = res.scores
    assert S is not None and S.shape == (res.n_configs, grid.n_queries)
    assert res.params[0] == FusionParams.from_config(eval_index.config)
    # recompute the held-out score from the fold assignment, independently of tune()
    held = np.zeros(grid.n_queries)
    for f in range(4):
        mask = res.fold_of == f
        i = int(np.argmax(S[:, ~mask].mean(1)))
        held[mask] = S[i, mask]
    assert res.heldout_score == pytest.approx(held.mean())
    assert res.default_heldout_score == pytest.approx(S[0].mean())
    assert res.best_score == pytest.approx(S.mean(1).max())
    assert res.heldout_score <= res.best_score + 1e-12  # held-out cannot beat picking on the same queries
    np.testing.assert_allclose(res.heldout_scores(grid, "ndcg@10"), held)
    assert 0.0 <= res.significance["p_value"] <= 1.0
    # a train/dev split: picked on train, reported on dev
    qids = list(eval_index.queries)
    split = tune(grid, eval_index.config, space=space, train_qids=qids[:40], dev_qids=qids[40:], selection="best")
    train_idx, dev_idx = np.arange(40), np.arange(40, len(qids))
    i = int(np.argmax(S[:, train_idx].mean(1)))
    assert split.best == res.params[i]
    assert split.heldout_score == pytest.approx(S[i, dev_idx].mean())
    assert split.default_heldout_score == pytest.approx(S[0, dev_idx].mean())
    md = tuning_markdown(res)
    assert "held out" in md and res.best.label(grid.branches) in md


def test_one_se_selection_keeps_the_default_unless_clearly_beaten() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(60)
    wobble = np.where(np.arange(60) % 2 == 0, 0.2, -0.19)  # better on average by 0.005, with a 0.2 spread
    noisy = np.vstack([base, base + wobble])
    assert select(noisy, "best") == int(np.argmax(noisy.mean(1)))
    assert select(noisy, "one-se") == 0
    clear = np.vstack([base, base + 0.05 + rng.normal(0, 0.01, 60)])
    assert select(clear, "one-se") == 1
    with pytest.raises(InvalidInputError):
        select(clear, "worst")


def test_weight_grid() -> None:
    two = weight_grid(2, 0.1)
    assert len(two) == 11 and two[0] == (1.0, 0.0) and two[-1] == (0.0, 1.0)
    three = weight_grid(3, 0.1)
    assert len(three) == 66 and all(abs(sum(w) - 1) < 1e-9 for w in three)
    assert (1 / 3, 1 / 3, 1 / 3) not in three and len(set(three)) == 66
    with pytest.raises(InvalidInputError):
        weight_grid(2, 0.3)


def test_many_configurations_are_scored_quickly(eval_index: EvalIndex) -> None:
    import time

    grid = _grid(eval_index)
    params = SearchSpace(weight_step=0.1, depths=(20, D)).enumerate(3, grid.cached_depths)
    assert len(params) > 1000
    t0 = time.perf_counter()
    S = grid.score(params, "ndcg@10")
    assert S.shape == (len(params), grid.n_queries) and np.isfinite(S).all()
    # no speed target here (see python -m benchmarks tuning); just that it is vectorised, not a loop per config
    assert time.perf_counter() - t0 < 60


def test_written_config_round_trips_with_header(eval_index: EvalIndex, tmp_path) -> None:
    grid = _grid(eval_index)
    res = tune(grid, eval_index.config, space=SearchSpace(weight_step=0.25, depths=(D,), rrf_ks=(60,)), folds=3)
    for name in ("tuned.yaml", "tuned.json"):
        cfg = write_config(res, eval_index.config, tmp_path / name, "cisi slice")
        loaded = RetrieverConfig.from_file(tmp_path / name)
        assert loaded == cfg == res.best.apply(eval_index.config)
        assert FusionParams.from_config(loaded) == res.best
    text = (tmp_path / "tuned.yaml").read_text()
    assert text.startswith("# Tuned by `hybrid-retriever tune` on cisi slice")
    assert "ndcg@10 held out" in text and res.best.label(grid.branches) in text


def test_plots(eval_index: EvalIndex, tmp_path) -> None:
    three = tune(_grid(eval_index), eval_index.config, space=SearchSpace(weight_step=0.1, depths=(D,), rrf_ks=(60,)), folds=3)
    p3 = plot_simplex(three, tmp_path / "simplex.png")
    base2 = RetrieverConfig.model_validate({"branches": [eval_index.config.branch(b).model_dump() for b in ("bm25", "dense")]})
    two = tune(_grid(eval_index, ["bm25", "dense"]), base2, space=SearchSpace(depths=(D,), rrf_ks=(60,)), folds=3)
    p2 = plot_weight_line(two, tmp_path / "line.png")
    for p in (p2, p3):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    with pytest.raises(InvalidInputError):
        plot_weight_line(three, tmp_path / "x.png")


def test_cache_is_resumable(eval_index: EvalIndex, tmp_path) -> None:
    qids = list(eval_index.queries)
    half = {q: eval_index.queries[q] for q in qids[:10]}
    more = {q: eval_index.queries[q] for q in qids[:16]}
    with eval_index.open() as r:
        first = collect_runs(r, half, depth=20, complete=True, cache_dir=tmp_path, progress=False, batch_size=1)
        assert first.searched == 10 and first.path is not None and first.path.is_file()
        with open(first.path, "a") as f:
            f.write('{"qid": "cut short by a cras')  # an interrupted write
        second = collect_runs(r, more, depth=20, complete=True, cache_dir=tmp_path, progress=False, batch_size=1)
        assert second.resumed == 10 and second.searched == 6
        assert second.path == first.path
        for q in qids[:10]:
            assert second[q].branches["bm25"].ids == first[q].branches["bm25"].ids
            assert second[q].branches["dense"].scores == first[q].branches["dense"].scores
        # other settings (depth) go to another file, never mixed with these runs
        other = collect_runs(r, half, depth=10, complete=True, cache_dir=tmp_path, progress=False, batch_size=5)
        assert other.path != first.path and other.searched == 10
        assert all(len(other[q].branches["dense"].ids) == 10 for q in half)


def test_synthetic_tuning_end_to_end(eval_index: EvalIndex) -> None:
    queries, qrels = pseudo_queries(eval_index.docs, n=25, seed=4)
    assert len(queries) == 25 and all(len(v) == 1 for v in qrels.values())
    again, _ = pseudo_queries(eval_index.docs, n=25, seed=4)
    assert again == queries
    texts = {d.id: d.text for d in eval_index.docs}
    verbatim, _ = pseudo_queries(eval_index.docs, n=25, seed=4, drop_rare=0.0)
    for q, t in verbatim.items():
        (doc,) = qrels[q]
        assert t in " ".join(texts[doc].split())
    rare, _ = pseudo_queries(eval_index.docs, n=25, seed=4, drop_rare=0.5)
    assert sum(len(t.split()) for t in rare.values()) < sum(len(t.split()) for t in verbatim.values())
    with eval_index.open() as r:
        cache = collect_runs(r, queries, depth=D, complete=True, progress=False)
    grid = FusionGrid.from_cache(cache, qrels, max_k=10)
    res = tune(grid, eval_index.config, space=SearchSpace(weight_step=0.25, depths=(D,), rrf_ks=(60,)), folds=3)
    assert res.n_queries == 25 and 0 <= res.best_score <= 1


def test_evaluation_uses_only_the_public_fusion_api() -> None:
    """Evaluation stays apart from fusion (as in ranx): only ``hybrid_retriever.fusion``'s exports are imported."""
    import ast
    from pathlib import Path

    import hybrid_retriever.evaluation as ev
    import hybrid_retriever.fusion as fusion

    for path in Path(ev.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hybrid_retriever.fusion"):
                assert node.module == "hybrid_retriever.fusion", (path.name, node.module)
                assert all(a.name in fusion.__all__ for a in node.names), (path.name, [a.name for a in node.names])
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("hybrid_retriever.fusion.") for a in node.names), path.name
