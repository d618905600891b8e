"""Evaluation and tuning: judged queries in, metrics, reports and a tuned configuration out.

One module per concern, all on the library's public API (fusion through the public
``hybrid_retriever.fusion`` functions only):

- :mod:`.datasets` BEIR folders, TREC run/qrels files, the project's judged JSONL;
- :mod:`.metrics` nDCG, Recall, MRR, MAP, Precision, judged@k with numpy;
- :mod:`.significance` paired randomisation test and t-test;
- :mod:`.cache` each branch's raw runs, searched once and cached on disk (resumable);
- :mod:`.grid` fusion of cached runs, vectorised over many configurations;
- :mod:`.runner` per-branch and fused metrics, candidate recall, latency in one pass;
- :mod:`.tuning` search of the fusion space with cross-validation, tuned config out;
- :mod:`.prf_tuning` pseudo-relevance feedback settings on one first stage, validated the same way;
- :mod:`.synthetic` pseudo-queries cut from the corpus, for tuning without judgements;
- :mod:`.report` JSON, Markdown and PNG plots.

    >>> from hybrid_retriever import HybridRetriever                           # doctest: +SKIP
    >>> from hybrid_retriever.evaluation import load_beir, evaluate
    >>> r = HybridRetriever.open("./index")                                   # doctest: +SKIP
    >>> res = evaluate(r, load_beir("scifact", split="test"))                  # doctest: +SKIP
    >>> res.systems["fused"].mean["ndcg@10"]                                   # doctest: +SKIP
"""

from hybrid_retriever.evaluation.cache import BranchRun, QueryRuns, RunCache, collect_runs
from hybrid_retriever.evaluation.datasets import (
    JudgedQueries,
    Qrels,
    load_beir,
    load_judged,
    load_jsonl_queries,
    read_corpus,
    read_qrels,
    read_queries,
    read_trec_run,
    write_trec_run,
)
from hybrid_retriever.evaluation.grid import FusionGrid, FusionParams, fuse_reference
from hybrid_retriever.evaluation.metrics import DEFAULT_METRICS, Metric, evaluate_ranked, parse_metric, rank_run
from hybrid_retriever.evaluation.prf_tuning import PRFSearchSpace, PRFTuningResult, tune_prf
from hybrid_retriever.evaluation.runner import EvalResult, SystemResult, evaluate
from hybrid_retriever.evaluation.significance import PairedTest, paired_t_test, randomization_test
from hybrid_retriever.evaluation.synthetic import pseudo_queries
from hybrid_retriever.evaluation.tuning import SearchSpace, TuningResult, tune, weight_grid, write_config

__all__ = [
    "BranchRun",
    "DEFAULT_METRICS",
    "EvalResult",
    "FusionGrid",
    "FusionParams",
    "JudgedQueries",
    "Metric",
    "PRFSearchSpace",
    "PRFTuningResult",
    "PairedTest",
    "Qrels",
    "QueryRuns",
    "RunCache",
    "SearchSpace",
    "SystemResult",
    "TuningResult",
    "collect_runs",
    "evaluate",
    "evaluate_ranked",
    "fuse_reference",
    "load_beir",
    "load_judged",
    "load_jsonl_queries",
    "paired_t_test",
    "parse_metric",
    "pseudo_queries",
    "randomization_test",
    "rank_run",
    "read_corpus",
    "read_qrels",
    "read_queries",
    "read_trec_run",
    "tune",
    "tune_prf",
    "weight_grid",
    "write_config",
    "write_trec_run",
]
