"""``hybrid-retriever eval`` and ``hybrid-retriever tune``: the evaluation and tuning commands.

Registered in :mod:`hybrid_retriever.cli`; helpers from there are imported inside the
functions so either module can be imported first.

    hybrid-retriever eval DATA --index PATH [--split test] [--config FILE] [--out DIR]
    hybrid-retriever eval DATA --server URL [--api-key KEY] [--out DIR]     (an index a service holds)
    hybrid-retriever tune DATA --index PATH [--split train --dev-split test | --folds 5] [--out tuned.yaml]
    hybrid-retriever tune --synthetic --index PATH [--n-queries 500] [--out tuned.yaml]
    hybrid-retriever tune DATA --index PATH ... --prf [--prf-fb-docs 1,3,5 --prf-beta 0.25,0.5,1 ...]
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional

import typer

from hybrid_retriever.errors import IndexMismatchError, InvalidInputError

if TYPE_CHECKING:  # imported where used: `hybrid-retriever --help` loads none of them
    from hybrid_retriever.config import RetrieverConfig
    from hybrid_retriever.evaluation.datasets import JudgedQueries
    from hybrid_retriever.evaluation.prf_tuning import PRFSearchSpace
    from hybrid_retriever.retriever import HybridRetriever
    from hybrid_retriever.types import Document

log = logging.getLogger(__name__)

DEFAULT_CACHE = ".hybrid-retriever-cache"


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InvalidInputError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not out or any(x <= 0 for x in out):
        raise InvalidInputError(f"{what} must be positive integers, got {text!r}")
    return out


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        out = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InvalidInputError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not out:
        raise InvalidInputError(f"{what} is empty")
    return out


def _words(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _open_or_build(
    index: Path, config: Optional[Path], corpus: Optional[list[Document]], *, progress: bool, rebuild_hint: str
) -> tuple[HybridRetriever, bool]:
    """The retriever on ``index``: reopened (with --config's fusion/weights/depths/PRF) or built from ``corpus``."""
    from hybrid_retriever.cli_common import config_for_new_index, console, index_exists, open_index
    from hybrid_retriever.config import RetrieverConfig
    from hybrid_retriever.retriever import HybridRetriever

    if index_exists(index):
        if config is None:
            return open_index(index), False
        cfg = RetrieverConfig.from_file(config)
        data = cfg.model_dump()
        return open_index(index, branches=data["branches"], fusion=data["fusion"], runtime=data["runtime"],
                          prf=data["prf"], rerank=data["rerank"]), False
    if not corpus:
        raise InvalidInputError(
            f"no index at {index}, and no corpus to build one from; {rebuild_hint}"
        )
    r = HybridRetriever(config_for_new_index(index, config))
    console.print(f"Building the index at {index} from {len(corpus)} documents ...")
    r.add_documents(corpus, show_progress=progress)
    r.optimize()
    return r, True


def check_corpus_matches(retriever: HybridRetriever, corpus: list[Document], index: Path | str) -> list[str]:
    """Raise when the index lacks documents of the corpus; return warnings (e.g. extra documents in the index)."""
    from hybrid_retriever.ids import point_id

    ids = [d.id for d in corpus if d.id]
    pids = [point_id(i) for i in ids]
    found: set[str] = set()
    for s in range(0, len(pids), 1000):
        found.update(p.point_id for p in retriever.store.retrieve(pids[s : s + 1000]))
    missing = [i for i, p in zip(ids, pids) if p not in found]
    if missing:
        raise IndexMismatchError(
            f"the index at {index} does not match the corpus: {len(missing)} of its {len(ids)} documents are not in the "
            f"index (e.g. {missing[:3]}). Point --index at the index built from this corpus, or give a new --index "
            "path to build one"
        )
    n = retriever.count()
    if n > len(ids):
        return [f"the index holds {n - len(ids)} documents beyond the corpus; they can be retrieved and count as unjudged"]
    return []


def _judged(data: Optional[Path], split: str, queries: Optional[Path], qrels: Optional[Path], corpus: Optional[Path]) -> JudgedQueries:
    from hybrid_retriever.evaluation.datasets import load_judged

    return load_judged(data, split=split, queries=queries, qrels=qrels, corpus=corpus)


# ------------------------------------------------------------------------------ eval


def eval_command(
    data: Optional[Path] = typer.Argument(None, help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) or a judged-queries .jsonl."),
    index: Optional[Path] = typer.Option(None, "--index", "-i", help="The index to evaluate (built from DATA's corpus when missing)."),
    split: str = typer.Option("test", "--split", "-s", help="Qrels split of a BEIR folder."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Fusion, weights and depths to evaluate (a RetrieverConfig file); default: the index's."),
    queries: Optional[Path] = typer.Option(None, "--queries", help="Queries file (JSONL or TSV), with --qrels instead of DATA."),
    qrels: Optional[Path] = typer.Option(None, "--qrels", help="Qrels file (BEIR TSV or TREC), with --queries."),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="Corpus JSONL for --queries/--qrels or a judged .jsonl."),
    metrics: str = typer.Option("ndcg@10,recall@100,mrr@10,map@100,precision@10,judged@10", "--metrics", "-m", help="Comma-separated name@k; the first is the main one."),
    compare: List[Path] = typer.Option([], "--compare", help="Another config file to fuse from the same runs and test against (repeatable)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for eval.json, eval.md and the plots."),
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="Queries per search call (1 = true per-query latency)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help=f"Folder caching the branch runs (resumable); e.g. {DEFAULT_CACHE}."),
    test: str = typer.Option("randomization", "--test", help="Paired significance test: randomization or t-test."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write PNG plots to --out."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    server: Optional[str] = typer.Option(
        None, "--server", help="Evaluate the index served by a running `hybrid-retriever serve` at this URL (e.g. an Edge index it holds) instead of --index."
    ),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="The service's API key (default: $HYBRID_RETRIEVER_API_KEY)."),
) -> None:
    """Evaluate every branch and the fusion on judged queries: metrics, candidate recall, latency, significance."""
    from hybrid_retriever.cli_common import console, contributed, err_console
    from hybrid_retriever.config import RetrieverConfig
    from hybrid_retriever.evaluation.report import (
        eval_markdown,
        plot_metric_vs_depth,
        plot_per_query_difference,
        write_json,
    )
    from hybrid_retriever.evaluation.runner import evaluate, source_judgements, unmatched_warning
    from hybrid_retriever.evaluation.served import evaluate_served

    if (index is None) == (server is None):
        raise InvalidInputError("give --index PATH (an index folder) or --server URL (a running `hybrid-retriever serve`)")
    if server is not None:
        given = [name for name, value in (("--config", config), ("--compare", compare), ("--cache", cache)) if value]
        if given:
            raise InvalidInputError(f"{', '.join(given)} need the index itself (--index): through --server the service "
                                    "searches with its own configuration")
    judged = _judged(data, split, queries, qrels, corpus)
    if server is not None:
        service = contributed("hybrid_retriever.remote", "connect", "server")(server, api_key=api_key)
        result = evaluate_served(service, judged, metrics, batch_size=batch_size, progress=progress, test=test)
        for w in result.warnings:
            if "match nothing" in w:
                err_console.print(f"WARNING: {w}", style="bold yellow", markup=False, soft_wrap=True)
    else:
        assert index is not None
        others = {p.stem: RetrieverConfig.from_file(p) for p in compare}
        retriever, built = _open_or_build(index, config, judged.corpus, progress=progress,
                                          rebuild_hint="pass a BEIR folder (or --corpus) to build it")
        with retriever as r:
            if judged.corpus is not None and not built:
                judged.warnings.extend(check_corpus_matches(r, judged.corpus, index))
            id_map, unmatched = source_judgements(r, judged)
            if id_map:
                judged.warnings.append(
                    "judgements name sources (files) of a chunked index: each ranked list is scored by source, a source "
                    "counting at the rank of its best chunk (as `query --group-by source` shows it)"
                )
            if unmatched:
                judged.unknown_docs += len(unmatched)
                warning = unmatched_warning(unmatched, f"the index at {index}")
                judged.warnings.append(warning)
                err_console.print(f"WARNING: {warning}", style="bold yellow", markup=False, soft_wrap=True)
            result = evaluate(r, judged, metrics, compare_configs=others, batch_size=batch_size, cache_dir=cache,
                              progress=progress, test=test, id_map=id_map)
    md = eval_markdown(result)
    typer.echo(md)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(result, out / "eval.json")
        (out / "eval.md").write_text(md, encoding="utf-8")
        written = [out / "eval.json", out / "eval.md"]
        if plots:
            if any(s.kind == "branch" for s in result.systems.values()):  # through --server: no branch runs
                written.append(plot_per_query_difference(result, out / "per_query_difference.png"))
            written.append(plot_metric_vs_depth(result, out / "metric_vs_depth.png"))
        console.print("Wrote " + ", ".join(str(p) for p in written), soft_wrap=True)


# ------------------------------------------------------------------------------ tune


def tune_command(
    data: Optional[Path] = typer.Argument(None, help="A BEIR folder or judged-queries .jsonl (optional with --synthetic: corpus source)."),
    index: Path = typer.Option(..., "--index", "-i", help="The index to tune on (built from DATA's corpus when missing)."),
    split: str = typer.Option("test", "--split", "-s", help="Qrels split to tune on (e.g. train)."),
    dev_split: Optional[str] = typer.Option(None, "--dev-split", help="Qrels split to report on (e.g. test); without it: k-fold CV over --split."),
    folds: int = typer.Option(5, "--folds", min=2, help="Cross-validation folds when no --dev-split."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Starting configuration (default: the index's); its fusion is the 'default' compared against."),
    queries: Optional[Path] = typer.Option(None, "--queries", help="Queries file, with --qrels instead of DATA."),
    qrels: Optional[Path] = typer.Option(None, "--qrels", help="Qrels file, with --queries."),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="Corpus JSONL (to build the index, or the source of --synthetic pseudo-queries)."),
    metric: str = typer.Option("ndcg@10", "--metric", "-m", help="The metric to maximise (name@k)."),
    out: Path = typer.Option(Path("tuned.yaml"), "--out", "-o", help="Where to write the tuned configuration (.yaml or .json)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Folder for tuning.json, tuning.md and the plot (default: <out>-report/)."),
    synthetic: bool = typer.Option(False, "--synthetic", help="No judgements: tune on pseudo-queries cut from the corpus."),
    n_queries: int = typer.Option(500, "--n-queries", min=2, help="Pseudo-queries to make with --synthetic."),
    seed: int = typer.Option(0, "--seed", help="Seed of the folds and the pseudo-queries."),
    methods: str = typer.Option("interpolation,rrf", "--methods", help="Fusion methods to try."),
    normalizations: str = typer.Option("minmax,zscore,dbsf,rank", "--normalizations", help="Normalisations for interpolation."),
    missing: str = typer.Option("exact,floor", "--missing", help="Missing-score policies for interpolation."),
    rrf_k: str = typer.Option("1,5,10,20,40,60,100", "--rrf-k", help="RRF constants to try."),
    weight_step: float = typer.Option(0.05, "--weight-step", help="Step of the weight grid on the simplex."),
    depths: Optional[str] = typer.Option(None, "--depths", help="Per-branch depths to try, e.g. 10,20,50,100 (default: keep the configuration's depths). Shallower lists can lift nDCG@10 but cut recall."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Queries per search call while caching runs."),
    cache: Path = typer.Option(Path(DEFAULT_CACHE), "--cache", help="Folder caching the branch runs; a rerun resumes from it."),
    test: str = typer.Option("randomization", "--test", help="Paired test of tuned vs default on held-out queries."),
    selection: str = typer.Option("one-se", "--selection", help="one-se: keep the default unless beaten by more than one standard error; best: the top score."),
    fusion: bool = typer.Option(True, "--fusion/--no-fusion", help="Tune the fusion; --no-fusion keeps the configuration's (with --prf: tune PRF only)."),
    prf: bool = typer.Option(False, "--prf", help="Also tune pseudo-relevance feedback, on top of the tuned (or, with --no-fusion, the given) fusion."),
    prf_placements: Optional[str] = typer.Option(None, "--prf-placements", help="PRF placements to try: none, before, after, both (default: after,both)."),
    prf_branches: Optional[str] = typer.Option(None, "--prf-branches", help="Branch sets that get feedback, comma-separated, + joins one set's branches, e.g. dense,dense+bm25 (default: every dense branch)."),
    prf_fb_docs: Optional[str] = typer.Option(None, "--prf-fb-docs", help="Feedback documents to try (default: 1,3,5)."),
    prf_alpha: Optional[str] = typer.Option(None, "--prf-alpha", help="Rocchio weights of the query, in [0, 1] (default: 1)."),
    prf_beta: Optional[str] = typer.Option(None, "--prf-beta", help="Rocchio weights of the feedback, in [0, 1] (default: 0.25,0.5,1)."),
    prf_rm3_lambda: Optional[str] = typer.Option(None, "--prf-rm3-lambda", help="RM3 weights of the original query, in [0, 1], for sets with a BM25 branch (default: 0.5,0.7)."),
    prf_fb_terms: Optional[str] = typer.Option(None, "--prf-fb-terms", help="Expansion terms kept, for sets with a BM25 branch (default: 10,30)."),
    prf_depth: Optional[str] = typer.Option(None, "--prf-depth", help="Second-stage depths to try (default: each branch's depth)."),
    prf_guard: Optional[str] = typer.Option(None, "--prf-guard", help="Drift guard: on, off or on,off (default: as configured)."),
    rerank_weights: Optional[str] = typer.Option(None, "--rerank-weights", help="Also tune the interpolation weight of the reranker score (the configuration's rerank section), e.g. 0,0.25,0.5,0.75,1; reranker scores are cached in --cache."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Tune fusion method, weights and depths (and with --prf, pseudo-relevance feedback) on judged queries and write the config."""
    from hybrid_retriever.cli_common import console, err_console
    from hybrid_retriever.evaluation.datasets import JudgedQueries, load_judged, read_corpus
    from hybrid_retriever.evaluation.cache import collect_runs
    from hybrid_retriever.evaluation.grid import FusionGrid
    from hybrid_retriever.evaluation.prf_tuning import tune_prf
    from hybrid_retriever.evaluation.report import plot_tuning, prf_markdown, tuning_markdown, write_json
    from hybrid_retriever.evaluation.synthetic import pseudo_queries
    from hybrid_retriever.evaluation.tuning import SearchSpace, tune, write_config

    space = SearchSpace(
        methods=_words(methods), normalizations=_words(normalizations), missing=_words(missing),
        rrf_ks=_floats(rrf_k, "--rrf-k"), weight_step=weight_step, depths=_ints(depths, "--depths") if depths else None,
    )
    space.families()  # validate names before any search
    prf_options = {"--prf-placements": prf_placements, "--prf-branches": prf_branches, "--prf-fb-docs": prf_fb_docs,
                   "--prf-alpha": prf_alpha, "--prf-beta": prf_beta, "--prf-rm3-lambda": prf_rm3_lambda,
                   "--prf-fb-terms": prf_fb_terms, "--prf-depth": prf_depth, "--prf-guard": prf_guard}
    given = [name for name, value in prf_options.items() if value is not None]
    if given and not prf:
        raise InvalidInputError(f"{', '.join(given)} only apply with --prf: add --prf to tune pseudo-relevance feedback")
    if not fusion and not prf and rerank_weights is None:
        raise InvalidInputError("--no-fusion leaves nothing to tune: add --prf to tune pseudo-relevance feedback only")
    rr_weights = _floats(rerank_weights, "--rerank-weights") if rerank_weights is not None else None
    prf_space = _prf_space(prf_placements, prf_branches, prf_fb_docs, prf_alpha, prf_beta, prf_rm3_lambda, prf_fb_terms,
                           prf_depth, prf_guard) if prf else None
    dev: JudgedQueries | None = None
    docs: list[Document] | None = None
    if synthetic:
        if data is not None and Path(data).is_dir():
            docs, _ = read_corpus(Path(data) / "corpus.jsonl")
        elif corpus is not None:
            docs, _ = read_corpus(corpus)
        judged = None
        description = f"{n_queries} synthetic pseudo-queries"
    else:
        judged = _judged(data, split, queries, qrels, corpus)
        docs = judged.corpus
        if dev_split is not None:
            if data is None or not Path(data).is_dir():
                raise InvalidInputError("--dev-split needs a BEIR folder as DATA")
            dev = load_judged(data, split=dev_split)
            if dev.corpus is not None and docs is None:
                docs = dev.corpus
        description = f"{data or qrels} split {split}" + (f", reported on {dev_split}" if dev_split else f", {folds}-fold CV")
    retriever, built = _open_or_build(index, config, docs, progress=progress,
                                      rebuild_hint="pass a BEIR folder (or --corpus) to build it")
    with retriever as r:
        base = r.config
        if prf_space is not None:  # branch names and every PRF setting checked before any search
            prf_space.candidates(base, {n: b.vector_spec.kind for n, b in r.branches.items()})
        if docs is not None and not built and not synthetic:
            for w in check_corpus_matches(r, docs, index):
                log.warning(w)
        if synthetic:
            if docs is None:
                docs = list(r.documents())
            qs, qr = pseudo_queries(docs, n=n_queries, seed=seed)
            judged = JudgedQueries(queries=qs, qrels=qr, name="synthetic", source=f"{len(qs)} pseudo-queries")
            description = f"{len(qs)} synthetic pseudo-queries cut from {len(docs)} documents of {index}"
            err_console.print(
                "note: pseudo-queries are cut from the documents, so they favour term matching (BM25); on the "
                "benchmark collections synthetic-tuned configurations did not beat the default on real queries "
                "(docs/tuning.md). Judged queries, even 50, are the better guide.", style="yellow", soft_wrap=True)
        assert judged is not None
        all_queries = dict(judged.queries)
        all_qrels = dict(judged.qrels)
        if dev is not None:
            overlap = set(dev.queries) & set(all_queries)
            if overlap:
                raise InvalidInputError(f"splits {split} and {dev_split} share {len(overlap)} queries; they must be disjoint")
            all_queries.update(dev.queries)
            all_qrels.update(dev.qrels)
        train_qids = list(judged.queries) if dev is not None else None
        dev_qids = list(dev.queries) if dev is not None else None
        data_info = {"description": description, "index": str(index), "synthetic": synthetic,
                     "tuning": judged.describe(), "dev": dev.describe() if dev is not None else None}
        result = None
        tuned = base
        if fusion:
            deepest = max(max(space.depths or (1,)), *(b.depth for b in base.branches))
            runs = collect_runs(r, all_queries, depth=deepest, complete=True, batch_size=batch_size, cache_dir=cache,
                                progress=progress)
            m_k = int(metric.split("@")[-1]) if "@" in metric else 10
            grid = FusionGrid.from_cache(runs, all_qrels, qids=list(all_queries), max_k=max(m_k, 10))
            console.print(f"Scoring the fusion space on {grid.n_queries} queries (runs cached in {runs.path}) ...", soft_wrap=True)
            result = tune(grid, base, metric=metric, space=space, folds=folds, seed=seed, train_qids=train_qids,
                          dev_qids=dev_qids, test=test, selection=selection)
            result.data = data_info
            tuned = result.best.apply(base)
        prf_result = None
        if prf_space is not None:
            # PRF on top of the fusion just chosen: the configuration that will be written.
            console.print(f"Tuning PRF on {len(all_queries)} queries: the first stage once, then each setting's "
                          "second stage ...", soft_wrap=True)
            prf_result = tune_prf(r, all_queries, all_qrels, base_config=tuned, space=prf_space, metric=metric,
                                  folds=folds, seed=seed, train_qids=train_qids, dev_qids=dev_qids, test=test,
                                  selection=selection, batch_size=batch_size, progress=progress)
            prf_result.data = dict(data_info)
            if result is not None and result.validation == "cv" and result.best != result.default:
                # The fusion under PRF was picked on every query, the held-out fold included.
                prf_result.data["note"] = (
                    "PRF was tuned on top of a fusion chosen on all tuning queries, so in each cross-validation fold "
                    "the held-out queries helped choose the fusion: PRF's gain over no PRF (same fusion) is a fair "
                    "estimate, both absolute scores are optimistic. For a clean PRF estimate run with --no-fusion, "
                    "or tune on one split and report on another (--dev-split)."
                )
        rerank_result = None
        if rr_weights is not None:
            rerank_result = _tune_rerank(r, tuned, all_queries, all_qrels, rr_weights, metric=metric, folds=folds,
                                         seed=seed, train_qids=train_qids, dev_qids=dev_qids, test=test,
                                         selection=selection, batch_size=batch_size, cache=cache, progress=progress)
        write_config(result, base, out, description, prf=prf_result, rerank=rerank_result)
    report_dir = report or out.with_name(out.stem + "-report")
    report_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    if result is not None:
        sections.append(tuning_markdown(result))
    if prf_result is not None:
        sections.append(prf_markdown(prf_result))
    if rerank_result is not None:
        sections.append(_rerank_markdown(rerank_result))
    md = "\n".join(sections)
    (report_dir / "tuning.md").write_text(md, encoding="utf-8")
    report_json: dict[str, Any] = (result.as_dict() if result is not None
                                   else {"schema": "hybrid-retriever/tuning/1", "data": data_info})
    if prf_result is not None:
        report_json["prf"] = prf_result.as_dict()
    if rerank_result is not None:
        report_json["rerank"] = rerank_result.as_dict()
    write_json(report_json, report_dir / "tuning.json")
    plot = plot_tuning(result, report_dir / "weights.png") if result is not None else None
    typer.echo(md)
    console.print(f"Wrote the tuned configuration to {out}; report in {report_dir}"
                  + (f" (plot {plot.name})" if plot else ""), soft_wrap=True)


def _tune_rerank(r: HybridRetriever, tuned: RetrieverConfig, queries: dict[str, str], qrels: dict[str, Any],
                 weights: tuple[float, ...], *, batch_size: int, cache: Path, progress: bool, **kw: Any) -> Any:
    """The rerank interpolation weight on top of the fusion just chosen (reranker scores cached in ``cache``)."""
    from hybrid_retriever.cli_common import console
    from hybrid_retriever.evaluation.cache import collect_runs
    from hybrid_retriever.evaluation.rerank import tune_rerank_weight
    from hybrid_retriever.rerank import Reranker

    if not tuned.rerank.enabled and r.reranker is None:
        raise InvalidInputError("--rerank-weights needs a reranker: give --config with a rerank section "
                                "(rerank: {enabled: true, model: ...})")
    if r.reranker is None or r.reranker.config != tuned.rerank:
        r.reranker = Reranker(tuned.rerank)
    deepest = max(b.depth for b in tuned.branches)
    runs = collect_runs(r, queries, depth=deepest, complete=True, batch_size=batch_size, cache_dir=cache, progress=progress)
    console.print(f"Tuning the rerank weight on {len(queries)} queries (reranker scores cached in {cache}) ...", soft_wrap=True)
    return tune_rerank_weight(r, queries, qrels, runs, tuned, weights=weights, cache_dir=cache, progress=progress, **kw)


def _rerank_markdown(res: Any) -> str:
    rows = "\n".join(f"| {w['weight']:g} | {w['score']:.4f} |" for w in res.per_weight)
    return (f"## Rerank weight on {res.metric}\n\nChosen weight {res.best_weight:g} (depth {res.depth}); held out "
            f"({res.validation}) {res.heldout_score:.4f} vs {res.default_heldout_score:.4f} with the configured weight "
            f"{res.default_weight:g} (paired {res.significance.get('test')} p={res.significance.get('p_value', float('nan')):.3g}).\n\n"
            f"| weight | mean on all tuning queries |\n|---|---|\n{rows}\n")


def _prf_space(placements: Optional[str], branches: Optional[str], fb_docs: Optional[str], alpha: Optional[str],
               beta: Optional[str], rm3_lambda: Optional[str], fb_terms: Optional[str], depth: Optional[str],
               guard: Optional[str]) -> PRFSearchSpace:
    """The PRF search space from the --prf-* options (each left out keeps the default's values), checked."""
    from hybrid_retriever.evaluation.prf_tuning import PRFSearchSpace

    d = PRFSearchSpace()
    sets: tuple[tuple[str, ...] | None, ...] = d.branch_sets
    if branches is not None:
        sets = tuple(tuple(b.strip() for b in item.split("+")) for item in branches.split(",") if item.strip())
    guards = d.guards
    if guard is not None:
        values = {"on": True, "off": False}
        bad = [g for g in _words(guard) if g not in values]
        if bad:
            raise InvalidInputError(f"--prf-guard takes on, off or on,off; got {guard!r}")
        guards = tuple(values[g] for g in _words(guard))
    space = PRFSearchSpace(
        placements=_words(placements) if placements is not None else d.placements,
        branch_sets=sets,
        fb_docs=_ints(fb_docs, "--prf-fb-docs") if fb_docs is not None else d.fb_docs,
        alphas=_floats(alpha, "--prf-alpha") if alpha is not None else d.alphas,
        betas=_floats(beta, "--prf-beta") if beta is not None else d.betas,
        rm3_lambdas=_floats(rm3_lambda, "--prf-rm3-lambda") if rm3_lambda is not None else d.rm3_lambdas,
        fb_terms=_ints(fb_terms, "--prf-fb-terms") if fb_terms is not None else d.fb_terms,
        depths=_ints(depth, "--prf-depth") if depth is not None else d.depths,
        guards=guards,
    )
    space.check()
    return space


def register(app: Any) -> None:
    """Add ``eval`` and ``tune`` to a typer app."""
    app.command("eval")(eval_command)
    app.command("tune")(tune_command)
