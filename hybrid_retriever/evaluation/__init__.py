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
- :mod:`.report` JSON, Markdown and PNG plots;
- :mod:`.rerank` reranker scores cached for eval and tune (depth, order, weight as re-sorts);
- :mod:`.rerank_training` ``train-reranker``: fine-tune a cross-encoder, then choose (or refuse) its rerank settings on held-out queries.

    >>> from hybrid_retriever import HybridRetriever                           # doctest: +SKIP
    >>> from hybrid_retriever.evaluation import load_beir, evaluate
    >>> r = HybridRetriever.open("./index")                                   # doctest: +SKIP
    >>> res = evaluate(r, load_beir("scifact", split="test"))                  # doctest: +SKIP
    >>> res.systems["fused"].mean["ndcg@10"]                                   # doctest: +SKIP
"""

from typing import TYPE_CHECKING

from hybrid_retriever.lazy import lazy_exports

#: Public name -> defining module, imported on first use (PEP 562): the CLI imports its
#: ``eval``/``tune`` commands from this package without loading every evaluation module.
_EXPORTS: dict[str, str] = {
    "BranchRun": "hybrid_retriever.evaluation.cache",
    "QueryRuns": "hybrid_retriever.evaluation.cache",
    "RunCache": "hybrid_retriever.evaluation.cache",
    "collect_runs": "hybrid_retriever.evaluation.cache",
    "JudgedQueries": "hybrid_retriever.evaluation.datasets",
    "Qrels": "hybrid_retriever.evaluation.datasets",
    "load_beir": "hybrid_retriever.evaluation.datasets",
    "load_judged": "hybrid_retriever.evaluation.datasets",
    "load_jsonl_queries": "hybrid_retriever.evaluation.datasets",
    "read_corpus": "hybrid_retriever.evaluation.datasets",
    "read_qrels": "hybrid_retriever.evaluation.datasets",
    "read_queries": "hybrid_retriever.evaluation.datasets",
    "read_trec_run": "hybrid_retriever.evaluation.datasets",
    "write_trec_run": "hybrid_retriever.evaluation.datasets",
    "FusionGrid": "hybrid_retriever.evaluation.grid",
    "FusionParams": "hybrid_retriever.evaluation.grid",
    "fuse_reference": "hybrid_retriever.evaluation.grid",
    "DEFAULT_METRICS": "hybrid_retriever.evaluation.metrics",
    "Metric": "hybrid_retriever.evaluation.metrics",
    "evaluate_ranked": "hybrid_retriever.evaluation.metrics",
    "parse_metric": "hybrid_retriever.evaluation.metrics",
    "rank_run": "hybrid_retriever.evaluation.metrics",
    "PRFSearchSpace": "hybrid_retriever.evaluation.prf_tuning",
    "PRFTuningResult": "hybrid_retriever.evaluation.prf_tuning",
    "tune_prf": "hybrid_retriever.evaluation.prf_tuning",
    "EvalResult": "hybrid_retriever.evaluation.runner",
    "SystemResult": "hybrid_retriever.evaluation.runner",
    "evaluate": "hybrid_retriever.evaluation.runner",
    "PairedTest": "hybrid_retriever.evaluation.significance",
    "paired_t_test": "hybrid_retriever.evaluation.significance",
    "randomization_test": "hybrid_retriever.evaluation.significance",
    "pseudo_queries": "hybrid_retriever.evaluation.synthetic",
    "SearchSpace": "hybrid_retriever.evaluation.tuning",
    "TuningResult": "hybrid_retriever.evaluation.tuning",
    "tune": "hybrid_retriever.evaluation.tuning",
    "weight_grid": "hybrid_retriever.evaluation.tuning",
    "write_config": "hybrid_retriever.evaluation.tuning",
}

if TYPE_CHECKING:
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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


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
