"""PRF tuning: reusing the first stage changes nothing, cross-validation is honest, the CLI writes a usable config.

On the shared 80-document CISI index of ``eval_fixtures`` (BM25, MiniLM, plain BM25),
with the real model and Qdrant Edge; scores are checked against ``search_batch`` with
each PRF setting turned on and a plain-Python nDCG.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest
from typer.testing import CliRunner

from eval_fixtures import EvalIndex, eval_index  # noqa: F401  (fixture)
from hybrid_retriever import RetrieverConfig
from hybrid_retriever.cli import app
from hybrid_retriever.errors import ConfigError, InvalidInputError
from hybrid_retriever.evaluation import FusionParams, PRFSearchSpace, tune_prf
from hybrid_retriever.evaluation.prf_tuning import NO_PRF, with_prf
from hybrid_retriever.evaluation.report import prf_markdown
from hybrid_retriever.evaluation.validation import assign_folds, validate

runner = CliRunner()


def cli(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def ndcg10(ranked: Sequence[str], rels: dict[str, int]) -> float:
    """nDCG@10 with linear gains, written out (the reference the tuner is checked against)."""
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted((g for g in rels.values() if g > 0), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def end_to_end(ei: EvalIndex, config: RetrieverConfig) -> np.ndarray:
    """Per-query nDCG@10 of ``HybridRetriever.search_batch`` with ``config`` (PRF on or off), all queries in one batch."""
    with ei.open(config) as r:
        hits = r.search_batch(list(ei.queries.values()), k=10)
    return np.array([ndcg10([h.id for h in row], ei.qrels[q]) for q, row in zip(ei.queries, hits)])


SPACE = PRFSearchSpace(
    placements=("after", "both", "before"),
    branch_sets=(None, ("dense", "bm25")),
    fb_docs=(2, 5),
    betas=(1.0,),
    rm3_lambdas=(0.6,),
    fb_terms=(15,),
    guards=(True, False),
)


def test_each_setting_scores_what_search_returns_with_it(eval_index: EvalIndex) -> None:
    """The tuner reuses one first stage; every setting must still score exactly what search_batch gives with it."""
    n = len(eval_index.queries)
    with eval_index.open() as r:
        res = tune_prf(r, eval_index.queries, eval_index.qrels, space=SPACE, folds=4, selection="best",
                       batch_size=n, progress=False)
    assert res.scores is not None and res.scores.shape == (len(res.labels), n)
    assert res.labels[0] == NO_PRF and not res.configs[0].prf.enabled
    # each set: 3 placements x 2 fb_docs x 2 guards (dense+bm25 with its one lambda and term count)
    assert len(res.labels) == 1 + 2 * 12 and len(set(res.labels)) == len(res.labels)
    assert res.qids == list(eval_index.queries)
    np.testing.assert_allclose(res.scores[0], end_to_end(eval_index, eval_index.config), atol=1e-12)
    # a spread of settings: each placement, both branch sets, guard on and off
    picks = [i for i, lab in enumerate(res.labels) if lab in {
        "after [dense] fb_docs=2 alpha=1 beta=1 guard=off",
        "both [dense] fb_docs=5 alpha=1 beta=1 guard=on",
        "before [dense,bm25] fb_docs=2 alpha=1 beta=1 rm3_lambda=0.6 fb_terms=15 guard=off",
        "both [dense,bm25] fb_docs=5 alpha=1 beta=1 rm3_lambda=0.6 fb_terms=15 guard=on",
    }]
    assert len(picks) == 4
    for i in picks:
        cfg = res.configs[i]
        assert cfg.prf.enabled and cfg.fusion == eval_index.config.fusion
        np.testing.assert_allclose(res.scores[i], end_to_end(eval_index, cfg), atol=1e-12, err_msg=res.labels[i])
    assert any(not np.allclose(res.scores[i], res.scores[0]) for i in picks)  # PRF did change rankings


def test_prf_on_another_fusion_than_the_index_opened_with(eval_index: EvalIndex) -> None:
    """A base configuration with other weights and fusion: PRF runs on that fusion, not the open index's."""
    n = len(eval_index.queries)
    base = FusionParams("rrf", (0.2, 0.6, 0.2), (30, 40, 20), rrf_k=20).apply(eval_index.config)
    space = PRFSearchSpace(placements=("both",), fb_docs=(3,), betas=(1.0,), guards=(False,))
    with eval_index.open() as r:
        res = tune_prf(r, eval_index.queries, eval_index.qrels, base_config=base, space=space, folds=3,
                       batch_size=n, progress=False)
        assert r.config.fusion.method == eval_index.config.fusion.method  # the open retriever is left as it was
        assert r.search("information retrieval systems", k=3)  # and still usable
    assert res.fusion.startswith("rrf/k=20")
    np.testing.assert_allclose(res.scores[0], end_to_end(eval_index, base), atol=1e-12)
    assert res.configs[1].fusion.method == "rrf"
    np.testing.assert_allclose(res.scores[1], end_to_end(eval_index, res.configs[1]), atol=1e-12)


def test_cross_validation_never_scores_a_fold_with_its_own_choice() -> None:
    """Setting f+1 is best on fold f only: an honest CV can never score fold f with it."""
    n, k = 40, 4
    fold_of = assign_folds(n, k, seed=7)
    assert sorted(np.bincount(fold_of).tolist()) == [10, 10, 10, 10]
    S = np.full((k + 1, n), 0.5)  # setting 0: the default
    for f in range(k):
        S[f + 1] = np.where(fold_of == f, 1.0, 0.6)
    v = validate(S, "best", folds=k, seed=7)
    assert np.array_equal(v.fold_of, fold_of)
    for f in range(k):
        assert v.fold_choice[f] not in (0, f + 1)
    np.testing.assert_allclose(v.heldout, 0.6)  # a leak would score 1.0
    np.testing.assert_allclose(v.default_heldout, 0.5)
    # picking on all queries is a different thing from the held-out score
    assert v.best in range(1, k + 1) and S[v.best].mean() == pytest.approx(0.6 + 0.4 / k)


def test_tuner_cross_validation_matches_an_independent_recomputation(eval_index: EvalIndex) -> None:
    n = len(eval_index.queries)
    space = PRFSearchSpace(fb_docs=(1, 3), betas=(0.5, 1.0))
    with eval_index.open() as r:
        res = tune_prf(r, eval_index.queries, eval_index.qrels, space=space, folds=5, seed=3, selection="best",
                       batch_size=n, progress=False)
    S = res.scores
    assert S is not None and res.fold_of is not None and res.heldout_per_query is not None
    held = np.zeros(n)
    for f in range(5):
        mask = res.fold_of == f
        i = int(np.argmax(S[:, ~mask].mean(1)))  # ties to the first, as the tuner does
        assert res.fold_choice[f] == i
        held[mask] = S[i, mask]
    np.testing.assert_allclose(res.heldout_per_query, held)
    assert res.heldout_score == pytest.approx(held.mean())
    assert res.default_heldout_score == pytest.approx(S[0].mean())
    assert res.best_index == int(np.argmax(S.mean(1)))
    d = held - S[0]
    assert (res.wins, res.losses, res.ties) == (int((d > 1e-12).sum()), int((d < -1e-12).sum()), int((abs(d) <= 1e-12).sum()))
    assert 0.0 <= res.significance["p_value"] <= 1.0
    # train -> dev: picked on train only, reported on dev only
    qids = list(eval_index.queries)
    with eval_index.open() as r:
        split = tune_prf(r, eval_index.queries, eval_index.qrels, space=space, train_qids=qids[:40],
                         dev_qids=qids[40:], selection="best", batch_size=n, progress=False)
    i = int(np.argmax(S[:, :40].mean(1)))
    assert split.best_index == i and split.validation == "split" and split.n_heldout == n - 40
    assert split.heldout_score == pytest.approx(S[i, 40:].mean())
    md = prf_markdown(split)
    assert "held out" in md and split.chosen_label in md


def test_one_se_keeps_no_prf_when_feedback_changes_nothing(eval_index: EvalIndex) -> None:
    """With every feedback skipped by the guard, every setting ties with no PRF, and no PRF is kept."""
    base = with_prf(eval_index.config, {"guard": {"min_feedback": 100}})
    with eval_index.open() as r:
        res = tune_prf(r, eval_index.queries, eval_index.qrels, base_config=base,
                       space=PRFSearchSpace(fb_docs=(3,), betas=(1.0,)), batch_size=len(eval_index.queries),
                       progress=False)
    assert all(np.array_equal(row, res.scores[0]) for row in res.scores)
    assert res.applied[1:] == [0.0] * (len(res.labels) - 1)
    assert res.best_index == 0 and not res.prf_chosen and not res.apply(base).prf.enabled


# ------------------------------------------------------------------------------ CLI


def test_cli_writes_a_config_with_the_chosen_prf_that_query_accepts(eval_index: EvalIndex, tmp_path: Path) -> None:
    n = len(eval_index.queries)
    tuned = tmp_path / "tuned.yaml"
    res = cli("tune", eval_index.beir, "--index", eval_index.path, "--split", "train", "--dev-split", "dev",
              "--out", tuned, "--cache", tmp_path / "cache", "--methods", "interpolation", "--normalizations", "minmax",
              "--missing", "exact", "--weight-step", "0.5", "--batch-size", n, "--selection", "best",
              "--prf", "--prf-branches", "dense,bm25_plain+bm25", "--prf-placements", "both", "--prf-fb-docs", "1",
              "--prf-rm3-lambda", "0.7", "--prf-fb-terms", "10,30", "--prf-guard", "off", "--no-progress")
    assert res.exit_code == 0, res.output
    assert "## Tuning PRF on ndcg@10" in res.output
    report = json.loads((tmp_path / "tuned-report" / "tuning.json").read_text())
    prf = report["prf"]
    assert prf["schema"] == "hybrid-retriever/prf-tuning/1" and prf["validation"] == "split"
    # dense: one setting (alpha 1, the three default betas); bm25_plain+bm25: two term counts
    assert prf["n_queries"] == 40 and prf["n_heldout"] == n - 40 and prf["n_configs"] == 1 + 3 + 2
    # selection best: the chosen setting has the top training score of all candidates
    top = max(c["score"] for c in prf["candidates"])
    assert [c["score"] for c in prf["candidates"] if c["label"] == prf["chosen"]] == [top]
    # on these 40 training queries RM3 on both BM25 branches beats no PRF (and dense Rocchio does not)
    assert prf["prf_enabled"] is True and prf["chosen"].startswith("both [bm25_plain,bm25] fb_docs=1 rm3_lambda=0.7")
    cfg = RetrieverConfig.from_file(tuned)
    assert cfg.prf.enabled is True and cfg.prf.model_dump(mode="json") == prf["best"]
    assert cfg.prf.branches == ["bm25_plain", "bm25"] and cfg.prf.guard.enabled is False
    # the fusion chosen first is in the same file, and PRF was tuned on top of it
    assert FusionParams.from_config(cfg).label(report["branches"]) == report["best"]["label"] == prf["fusion"]
    header = [line for line in tuned.read_text().splitlines() if line.startswith("#")]
    assert any(line.startswith("# PRF chosen: " + prf["chosen"]) for line in header)
    q = cli("query", "information retrieval in libraries", "--index", eval_index.path, "--config", tuned, "--k", 3, "--json")
    assert q.exit_code == 0, q.output
    hits = json.loads(q.stdout)
    assert hits and all("prf" in h for h in hits)
    # eval scores the fusion without PRF, says so, and agrees with the tuner's no-PRF score on dev
    ev = cli("eval", eval_index.beir, "--split", "dev", "--index", eval_index.path, "--config", tuned,
             "--metrics", "ndcg@10", "--batch-size", n, "--no-progress")
    assert ev.exit_code == 0, ev.output
    assert "PRF is enabled in the configuration, but eval scores the fusion without PRF" in ev.output
    fused = float(next(line for line in ev.output.splitlines() if line.startswith("| fused |")).split("|")[2])
    assert fused == pytest.approx(prf["no_prf_heldout_score"], abs=0.01)  # other encoding batch: float noise only


def test_cli_prf_only_keeps_no_prf_when_nothing_beats_it(eval_index: EvalIndex, tmp_path: Path) -> None:
    start = tmp_path / "start.yaml"
    with_prf(eval_index.config, {"guard": {"min_feedback": 100}}).save(start)  # the guard skips every query
    out = tmp_path / "prf.yaml"
    res = cli("tune", eval_index.beir, "--index", eval_index.path, "--split", "test", "--folds", 3, "--config", start,
              "--no-fusion", "--prf", "--prf-fb-docs", "3", "--prf-beta", "1", "--out", out,
              "--batch-size", len(eval_index.queries), "--no-progress")
    assert res.exit_code == 0, res.output
    assert "## Tuning on" not in res.output and "no PRF, kept" in res.output
    cfg = RetrieverConfig.from_file(out)
    assert cfg.prf.enabled is False and cfg.prf.guard.min_feedback == 100
    assert cfg.fusion == eval_index.config.fusion and [b.weight for b in cfg.branches] == [0.4, 0.4, 0.2]
    report = json.loads((tmp_path / "prf-report" / "tuning.json").read_text())
    assert report["prf"]["prf_enabled"] is False and report["prf"]["validation"] == "cv"
    assert not (tmp_path / "prf-report" / "weights.png").exists()
    q = cli("query", "information retrieval in libraries", "--index", eval_index.path, "--config", out, "--k", 3, "--json")
    assert q.exit_code == 0, q.output
    assert all("prf" not in h for h in json.loads(q.output))


# ------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"fb_docs": ()}, "no fb_docs value"),
        ({"placements": ()}, "no placements value"),
        ({"betas": (0.5, 1.5)}, "beta 1.5 is outside [0, 1]"),
        ({"rm3_lambdas": (-0.1,)}, "rm3_lambda -0.1 is outside [0, 1]"),
        ({"alphas": (0.0,), "betas": (0.0,)}, "alpha and beta are 0"),
        ({"placements": ("sideways",)}, "unknown PRF placement"),
        ({"fb_docs": (0,)}, "fb_docs must be positive integers"),
        ({"branch_sets": ((),)}, "empty PRF branch set"),
    ],
)
def test_bad_search_space_is_a_clear_error(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidInputError) as exc:
        PRFSearchSpace(**kwargs).check()
    assert fragment in str(exc.value) and "e.g." in str(exc.value)  # the problem, and an example of the fix


def test_bad_input_to_the_tuner(eval_index: EvalIndex) -> None:
    with eval_index.open() as r:
        with pytest.raises(InvalidInputError, match=r"unknown branch\(es\) \['colbert'\]"):
            tune_prf(r, eval_index.queries, eval_index.qrels, space=PRFSearchSpace(branch_sets=(("dense", "colbert"),)),
                     progress=False)
        with pytest.raises(InvalidInputError, match="no judged query"):
            tune_prf(r, {"x": "a query without judgements"}, eval_index.qrels, progress=False)
        other = RetrieverConfig.model_validate({"branches": [{"kind": "bm25"}, {"kind": "dense"}]})
        with pytest.raises(InvalidInputError, match="differ from the open index"):
            tune_prf(r, eval_index.queries, eval_index.qrels, base_config=other, progress=False)
        data = eval_index.config.model_dump()
        data["branches"][0]["k1"] = 2.0
        with pytest.raises(InvalidInputError, match=r"'bm25' .* differs from the open index's in \['k1'\]"):
            tune_prf(r, eval_index.queries, eval_index.qrels, base_config=RetrieverConfig.model_validate(data),
                     progress=False)
        with pytest.raises(InvalidInputError, match="unknown selection rule"):
            tune_prf(r, eval_index.queries, eval_index.qrels, selection="luck", progress=False)
    with pytest.raises(ConfigError, match="prf.beta"):
        with_prf(eval_index.config, {"enabled": True, "beta": 2.0})


def test_cli_bad_prf_options_exit_2(eval_index: EvalIndex, tmp_path: Path) -> None:
    base = ["tune", eval_index.beir, "--index", eval_index.path, "--out", tmp_path / "t.yaml", "--cache", tmp_path / "c"]
    res = cli(*base, "--prf", "--prf-beta", "0.5,1.5")
    assert res.exit_code == 2 and "beta 1.5 is outside [0, 1]" in res.output and "--prf-beta" in res.output
    res = cli(*base, "--prf", "--prf-fb-docs", "")
    assert res.exit_code == 2 and "--prf-fb-docs" in res.output
    res = cli(*base, "--prf", "--prf-placements", "sideways")
    assert res.exit_code == 2 and "unknown PRF placement" in res.output
    res = cli(*base, "--prf", "--prf-guard", "maybe")
    assert res.exit_code == 2 and "--prf-guard takes on, off" in res.output
    res = cli(*base, "--prf-beta", "0.5")
    assert res.exit_code == 2 and "only apply with --prf" in res.output
    res = cli(*base, "--no-fusion")
    assert res.exit_code == 2 and "nothing to tune" in res.output
    res = cli(*base, "--prf", "--no-fusion", "--prf-branches", "dense+nope", "--no-progress")
    assert res.exit_code == 2 and "unknown branch(es) ['nope']" in res.output
    assert not (tmp_path / "t.yaml").exists()
