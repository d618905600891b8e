"""`eval` and `tune` score the system `search` serves, in every language (issue 22).

On a slice of xquad-r/de and xquad-r/zh (shared datasets; CI has them) an index is built by
`hybrid-retriever eval` with the default configuration (adaptive fusion, BM25 in the detected
language, English-only MiniLM: the out-of-language flag and the fragmentation signal are live),
plus queries whose every word is a German stopword (no BM25 tokens). Per query, nDCG@10 of eval's
`fused` row, and of the tuning grid's scoring of the same configuration, must equal nDCG@10 of the
hits `search_batch` returns from that index.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import load_beir_slice
from eval_fixtures import write_beir
from hybrid_retriever import HybridRetriever
from hybrid_retriever.cli import app
from hybrid_retriever.evaluation import FusionGrid, FusionParams, collect_runs, evaluate_ranked
from hybrid_retriever.evaluation.grid import served_inputs

#: Passages per slice: about 100 judged queries each, a few seconds of MiniLM encoding.
N_DOCS = 100
#: Queries made only of German stopwords: BM25 analyses them to nothing, so only the dense branch can rank.
NO_TOKEN_QUERIES = ["und die der", "das ist nicht", "wie viel der die", "was ist das", "was war es", "wo und wie"]


def _slice(name: str, root: Path) -> tuple[Path, dict[str, str], dict[str, dict[str, int]]]:
    docs, queries, qrels = load_beir_slice(name, N_DOCS)
    if name.endswith("/de"):
        for i, text in enumerate(NO_TOKEN_QUERIES):
            queries[f"stop{i}"] = text
            qrels[f"stop{i}"] = {docs[i * 7].id: 1}
    write_beir(root, docs, queries, qrels, {"test": list(queries)})
    return root, queries, qrels


@pytest.mark.parametrize("name", ["xquad-r/de", "xquad-r/zh"])
def test_eval_and_tune_score_what_search_serves(name: str, tmp_path: Path) -> None:
    data, queries, qrels = _slice(name, tmp_path / "beir")
    index, out = tmp_path / "index", tmp_path / "report"
    res = CliRunner().invoke(app, ["eval", str(data), "--index", str(index), "--out", str(out), "--no-progress",
                                   "--batch-size", "16", "--cache", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "eval.json").read_text())
    qids = report["per_query"]["qids"]
    evaluated = dict(zip(qids, report["per_query"]["fused"]["ndcg@10"]))

    with HybridRetriever.open(index) as r:
        assert r.config.fusion.method == "adaptive"
        texts = [queries[q] for q in qids]
        hits = r.search_batch(texts, k=10)
        served = evaluate_ranked({q: [h.id for h in hs] for q, hs in zip(qids, hits)}, qrels, ["ndcg@10"])["ndcg@10"]
        # The tuning grid scores the index's own configuration on cached runs the same way.
        runs = collect_runs(r, dict(zip(qids, texts)), complete=True, progress=False)
        grid = FusionGrid.from_cache(runs, qrels, qids=qids, max_k=10)
        tuned = dict(zip(grid.qids, grid.metrics(FusionParams.from_config(r.config), ["ndcg@10"])["ndcg@10"]))
        # The signals are live, so the check is not vacuous: the dense branch is out of its language on
        # every query and its weight moves per query; stopword queries leave BM25 without tokens.
        inputs = {q: served_inputs(runs[q], {b.branch_name: b.depth for b in r.config.branches}, r.config.weights())[2]
                  for q in qids}
        flat = hits[0][0].provenance
    assert all(not s["dense"].in_language for s in inputs.values())
    assert len({round(s["dense"].fragmentation or 0.0, 6) for s in inputs.values()}) > 5
    assert flat["dense"].flags == ["out_of_language"]
    if name.endswith("/de"):
        stop = [q for q in qids if q.startswith("stop")]
        assert len(stop) == len(NO_TOKEN_QUERIES) and all(inputs[q]["bm25"].no_query_tokens for q in stop)
    assert len(qids) > 80
    for q in qids:
        assert evaluated[q] == pytest.approx(served[q], abs=1e-6), q  # eval.json rounds to 6 decimals
        assert tuned[q] == pytest.approx(served[q], abs=1e-12), q
    assert np.mean(list(served.values())) > 0.5
