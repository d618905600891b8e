"""`hybrid-retriever eval` / `tune` end to end on a real index, and bad input (clear errors, exit 2)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from eval_fixtures import EvalIndex, eval_index, write_beir  # noqa: F401  (fixture)
from hybrid_retriever import RetrieverConfig
from hybrid_retriever.cli import app
from hybrid_retriever.errors import InvalidInputError
from hybrid_retriever.evaluation import FusionGrid, FusionParams, evaluate_ranked
from hybrid_retriever.evaluation.datasets import (
    load_beir,
    load_judged,
    load_jsonl_queries,
    read_qrels,
    read_trec_run,
    write_trec_run,
)

runner = CliRunner()


def cli(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def test_eval_reports_branches_fusion_and_plots(eval_index: EvalIndex, tmp_path: Path) -> None:
    out = tmp_path / "report"
    n = len(eval_index.queries)
    res = cli("eval", eval_index.beir, "--index", eval_index.path, "--out", out, "--batch-size", n, "--no-progress")
    assert res.exit_code == 0, res.output
    assert "| fused |" in res.output and "candidate recall" in res.output.lower()
    data = json.loads((out / "eval.json").read_text())
    assert data["schema"] == "hybrid-retriever/eval/1" and data["n_queries"] == n
    assert set(data["systems"]) == {"bm25", "dense", "bm25_plain", "fused"}
    # the fused scores are those of the index's configuration on the same runs (one batch, same encodings)
    grid = FusionGrid.from_cache(eval_index.cache, eval_index.qrels, max_k=100)
    expected = grid.metrics(FusionParams.from_config(eval_index.config), ["ndcg@10", "recall@100", "judged@10"])
    for m, v in expected.items():
        assert data["systems"]["fused"]["metrics"][m] == pytest.approx(v.mean(), abs=1e-12)
    # each branch's metrics, checked with the plain ranked-list evaluator on its cached list
    from hybrid_retriever import point_id

    inverse = {point_id(d.id): d.id for d in eval_index.docs}
    for b in ("bm25", "dense"):
        run = {q: [inverse[p] for p in eval_index.cache[q].branches[b].ids] for q in eval_index.queries}
        ref = evaluate_ranked(run, eval_index.qrels, ["ndcg@10", "mrr@10"])
        for m in ("ndcg@10", "mrr@10"):
            assert data["systems"][b]["metrics"][m] == pytest.approx(np.mean(list(ref[m].values())), abs=1e-12)
    union = data["union_candidate_recall"]["value"]
    assert all(union >= data["systems"][b]["candidate_recall"] - 1e-12 for b in ("bm25", "dense", "bm25_plain"))
    assert data["systems"]["fused"]["latency_ms"]["p95"] >= data["systems"]["fused"]["latency_ms"]["mean"] * 0.5
    assert {s["a"] for s in data["significance"]} == {"bm25", "dense", "bm25_plain"}
    for png in ("per_query_difference.png", "metric_vs_depth.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert len(data["per_query"]["fused"]["ndcg@10"]) == n


def test_tune_on_a_split_writes_a_config_that_eval_confirms(eval_index: EvalIndex, tmp_path: Path) -> None:
    tuned = tmp_path / "tuned.yaml"
    cache = tmp_path / "cache"
    args = ["tune", eval_index.beir, "--index", eval_index.path, "--split", "train", "--dev-split", "dev",
            "--out", tuned, "--cache", cache, "--weight-step", "0.25", "--depths", "20,40", "--rrf-k", "10,60",
            "--batch-size", len(eval_index.queries), "--selection", "best", "--no-progress"]
    res = cli(*args)
    assert res.exit_code == 0, res.output
    header = [line for line in tuned.read_text().splitlines() if line.startswith("#")]
    assert any("held out" in line for line in header) and any("split train" in line for line in header)
    cfg = RetrieverConfig.from_file(tuned)
    report = json.loads((tmp_path / "tuned-report" / "tuning.json").read_text())
    assert report["schema"] == "hybrid-retriever/tuning/1" and report["validation"] == "split"
    assert report["n_queries"] == 40 and FusionParams.from_config(cfg).label(report["branches"]) == report["best"]["label"]
    assert (tmp_path / "tuned-report" / "weights.png").read_bytes()[:4] == b"\x89PNG"  # three branches: the simplex
    (cache_file,) = cache.glob("*.jsonl")  # the runs are on disk: a rerun resumes (tests/test_tuning.py)
    assert sum(1 for _ in open(cache_file)) == 1 + len(eval_index.queries)
    # the tuned config, evaluated on the dev split, scores what the tuner reported for it
    eval_index.config.save(tmp_path / "default.yaml")
    ev = cli("eval", eval_index.beir, "--split", "dev", "--index", eval_index.path, "--config", tuned,
             "--compare", tmp_path / "default.yaml", "--metrics", "ndcg@10", "--out", tmp_path / "ev", "--no-plots",
             "--no-progress", "--batch-size", 64)
    assert ev.exit_code == 0, ev.output
    systems = json.loads((tmp_path / "ev" / "eval.json").read_text())["systems"]
    fused = systems["fused"]["metrics"]["ndcg@10"]
    assert fused == pytest.approx(report["heldout_score"], abs=0.01)  # queries encoded in another batch: float noise only
    # the default config, fused from the same runs, scores what the tuner reported for the default
    assert systems["fused:default"]["metrics"]["ndcg@10"] == pytest.approx(report["default_heldout_score"], abs=0.01)


def test_tune_synthetic_without_judgements(eval_index: EvalIndex, tmp_path: Path) -> None:
    out = tmp_path / "syn.json"
    res = cli("tune", "--synthetic", "--index", eval_index.path, "--n-queries", 30, "--folds", 3, "--out", out,
              "--cache", tmp_path / "c", "--weight-step", "0.5", "--depths", "40", "--rrf-k", "60", "--no-progress")
    assert res.exit_code == 0, res.output
    cfg = RetrieverConfig.from_file(out)
    assert cfg.branch_names == eval_index.config.branch_names
    report = json.loads((tmp_path / "syn-report" / "tuning.json").read_text())
    assert report["data"]["synthetic"] is True and report["n_queries"] == 30


def test_eval_builds_a_missing_index_from_the_corpus(tmp_path: Path) -> None:
    from conftest import SMALL_CORPUS
    from hybrid_retriever import Document

    docs = [Document(text=t, id=i) for i, t, _ in SMALL_CORPUS]
    queries = {"q1": "vector database in Rust", "q2": "fusing ranked lists", "q3": "a pet that sleeps a lot"}
    qrels = {"q1": {"qdrant": 1}, "q2": {"rrf": 2, "bm25": 0}, "q3": {"cats": 1}}
    folder = write_beir(tmp_path / "small", docs, queries, qrels, {"test": list(queries)})
    res = cli("eval", folder, "--index", tmp_path / "new", "--metrics", "ndcg@3,recall@5", "--out", tmp_path / "o",
              "--no-plots", "--no-progress")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "new").is_dir() and "Building the index" in res.output
    data = json.loads((tmp_path / "o" / "eval.json").read_text())
    assert data["systems"]["fused"]["metrics"]["recall@5"] == 1.0  # 8 documents: every relevant one is found
    assert data["data"]["queries"] == 3 and data["data"]["queries_without_relevant"] == 0


# ------------------------------------------------------------------------ bad input


def test_bad_input_is_a_clear_error(eval_index: EvalIndex, tmp_path: Path) -> None:
    res = cli("eval", eval_index.beir, "--split", "nope", "--index", tmp_path / "none")
    assert res.exit_code == 2 and "no split 'nope'" in res.output and "dev, test, train" in res.output
    res = cli("eval", eval_index.beir, "--index", eval_index.path, "--metrics", "ndcg@10,bleu@4")
    assert res.exit_code == 2 and "bleu" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("fusion:\n  metod: rrf\n")
    res = cli("eval", eval_index.beir, "--index", eval_index.path, "--config", bad)
    assert res.exit_code == 2 and "fusion.metod" in res.output
    bad.write_text("branches:\n- kind: bm25\n  weight: heavy\n")
    res = cli("tune", eval_index.beir, "--index", eval_index.path, "--config", bad)
    assert res.exit_code == 2 and "branches.0" in res.output and "weight" in res.output
    empty = write_beir(tmp_path / "empty", eval_index.docs[:3], eval_index.queries, eval_index.qrels, {"test": []})
    res = cli("eval", empty, "--index", tmp_path / "none")
    assert res.exit_code == 2 and "no judgements" in res.output
    res = cli("eval", eval_index.beir, "--index", tmp_path / "none", "--queries", eval_index.beir / "queries.jsonl")
    assert res.exit_code == 2 and "--qrels" in res.output


def test_corpus_that_does_not_match_the_index(eval_index: EvalIndex, tmp_path: Path) -> None:
    from hybrid_retriever import Document

    other = [Document(text=d.text, id=f"x-{d.id}") for d in eval_index.docs[:5]]
    qrels = {"q": {"x-" + eval_index.docs[0].id: 1}}
    folder = write_beir(tmp_path / "other", other, {"q": "some query"}, qrels, {"test": ["q"]})
    res = cli("eval", folder, "--index", eval_index.path, "--no-progress")
    assert res.exit_code == 2
    assert "does not match the corpus" in res.output and "5 of its 5 documents" in res.output


def test_qrels_naming_unknown_documents_or_queries_are_counted(eval_index: EvalIndex, tmp_path: Path, caplog) -> None:
    qids = list(eval_index.queries)[:5]
    folder = write_beir(tmp_path / "b", eval_index.docs, eval_index.queries, eval_index.qrels, {"test": qids})
    with open(folder / "qrels" / "test.tsv", "a") as f:
        f.write(f"{qids[0]}\tno-such-doc\t1\n{qids[1]}\talso-missing\t2\nno-such-query\t{eval_index.docs[0].id}\t1\n")
    with caplog.at_level(logging.WARNING):
        jq = load_beir(folder)
    assert jq.unknown_docs == 2 and jq.unknown_queries == 1
    assert list(jq.queries) == qids and "no-such-doc" not in jq.qrels[qids[0]]
    assert sum("not in the corpus" in r.message for r in caplog.records) == 1
    assert jq.unjudged_queries == len(eval_index.queries) - 5
    with pytest.raises(InvalidInputError, match="none of the"):
        with open(folder / "qrels" / "only-bad.tsv", "w") as f:
            f.write("query-id\tcorpus-id\tscore\nnope\tnope\t1\n")
        load_beir(folder, split="only-bad")


def test_other_formats(tmp_path: Path) -> None:
    # the project's judged-queries JSONL: relevant as a list (grade 1) or a mapping id -> grade
    p = tmp_path / "judged.jsonl"
    p.write_text('{"id": "a", "text": "first", "relevant": ["d1", "d2"]}\n'
                 '{"id": "b", "text": "second", "relevant": {"d3": 2, "d4": 0}}\n'
                 '{"id": "c", "text": "unjudged"}\n')
    jq = load_jsonl_queries(p)
    assert jq.qrels == {"a": {"d1": 1, "d2": 1}, "b": {"d3": 2, "d4": 0}} and jq.unjudged_queries == 1
    assert load_judged(p).queries == {"a": "first", "b": "second"}
    # TREC qrels (4 columns) and runs
    (tmp_path / "q.trec").write_text("1 0 d1 2\n1 0 d2 0\n2 0 d9 1\n")
    assert read_qrels(tmp_path / "q.trec") == {"1": {"d1": 2, "d2": 0}, "2": {"d9": 1}}
    write_trec_run(tmp_path / "run.trec", {"1": [("d1", 3.5), ("d2", 1.25)]})
    assert read_trec_run(tmp_path / "run.trec") == {"1": {"d1": 3.5, "d2": 1.25}}
    (tmp_path / "queries.tsv").write_text("1\tfirst query\n2\tsecond\n")
    jq = load_judged(queries=tmp_path / "queries.tsv", qrels=tmp_path / "q.trec")
    assert jq.queries == {"1": "first query", "2": "second"}
    (tmp_path / "empty.tsv").write_text("query-id\tcorpus-id\tscore\n")
    with pytest.raises(InvalidInputError, match="no judgements"):
        read_qrels(tmp_path / "empty.tsv")
    (tmp_path / "bad.tsv").write_text("query-id\tcorpus-id\tscore\n1\td1\thigh\n")
    with pytest.raises(InvalidInputError, match="not a number"):
        read_qrels(tmp_path / "bad.tsv")
