"""``hybrid-retriever eval`` and ``hybrid-retriever tune``: the evaluation and tuning commands.

Registered in :mod:`hybrid_retriever.cli`; helpers from there are imported inside the
functions so either module can be imported first.

    hybrid-retriever eval DATA --index PATH [--split test] [--config FILE] [--out DIR]
    hybrid-retriever tune DATA --index PATH [--split train --dev-split test | --folds 5] [--out tuned.yaml]
    hybrid-retriever tune --synthetic --index PATH [--n-queries 500] [--out tuned.yaml]
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, List, Optional

import typer

from hybrid_retriever.config import RetrieverConfig
from hybrid_retriever.errors import IndexMismatchError, InvalidInputError
from hybrid_retriever.evaluation.datasets import JudgedQueries, load_judged, read_corpus
from hybrid_retriever.retriever import HybridRetriever, point_id
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
    """The retriever on ``index``: reopened (with --config's fusion/weights/depths) or built from ``corpus``."""
    from hybrid_retriever.cli import _config_for_new_index, console, index_exists, open_index

    if index_exists(index):
        if config is None:
            return open_index(index), False
        cfg = RetrieverConfig.from_file(config)
        data = cfg.model_dump()
        return open_index(index, branches=data["branches"], fusion=data["fusion"], runtime=data["runtime"]), False
    if not corpus:
        raise InvalidInputError(
            f"no index at {index}, and no corpus to build one from; {rebuild_hint}"
        )
    r = HybridRetriever(_config_for_new_index(index, config))
    console.print(f"Building the index at {index} from {len(corpus)} documents ...")
    r.add_documents(corpus, show_progress=progress)
    r.optimize()
    return r, True


def check_corpus_matches(retriever: HybridRetriever, corpus: list[Document], index: Path | str) -> list[str]:
    """Raise when the index lacks documents of the corpus; return warnings (e.g. extra documents in the index)."""
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
    return load_judged(data, split=split, queries=queries, qrels=qrels, corpus=corpus)


# ------------------------------------------------------------------------------ eval


def eval_command(
    data: Optional[Path] = typer.Argument(None, help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) or a judged-queries .jsonl."),
    index: Path = typer.Option(..., "--index", "-i", help="The index to evaluate (built from DATA's corpus when missing)."),
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
) -> None:
    """Evaluate every branch and the fusion on judged queries: metrics, candidate recall, latency, significance."""
    from hybrid_retriever.cli import console
    from hybrid_retriever.evaluation.report import (
        eval_markdown,
        plot_metric_vs_depth,
        plot_per_query_difference,
        write_json,
    )
    from hybrid_retriever.evaluation.runner import evaluate

    judged = _judged(data, split, queries, qrels, corpus)
    others = {p.stem: RetrieverConfig.from_file(p) for p in compare}
    retriever, built = _open_or_build(index, config, judged.corpus, progress=progress,
                                      rebuild_hint="pass a BEIR folder (or --corpus) to build it")
    with retriever as r:
        if judged.corpus is not None and not built:
            judged.warnings.extend(check_corpus_matches(r, judged.corpus, index))
        result = evaluate(r, judged, metrics, compare_configs=others, batch_size=batch_size, cache_dir=cache,
                          progress=progress, test=test)
    md = eval_markdown(result)
    typer.echo(md)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(result, out / "eval.json")
        (out / "eval.md").write_text(md, encoding="utf-8")
        written = [out / "eval.json", out / "eval.md"]
        if plots:
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
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Tune fusion method, weights and depths on judged queries (or pseudo-queries) and write the config."""
    from hybrid_retriever.cli import console, err_console
    from hybrid_retriever.evaluation.cache import collect_runs
    from hybrid_retriever.evaluation.grid import FusionGrid
    from hybrid_retriever.evaluation.report import plot_tuning, tuning_markdown, write_json
    from hybrid_retriever.evaluation.synthetic import pseudo_queries
    from hybrid_retriever.evaluation.tuning import SearchSpace, tune, write_config

    space = SearchSpace(
        methods=_words(methods), normalizations=_words(normalizations), missing=_words(missing),
        rrf_ks=_floats(rrf_k, "--rrf-k"), weight_step=weight_step, depths=_ints(depths, "--depths") if depths else None,
    )
    space.families()  # validate names before any search
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
        deepest = max(max(space.depths or (1,)), *(b.depth for b in base.branches))
        runs = collect_runs(r, all_queries, depth=deepest, complete=True, batch_size=batch_size, cache_dir=cache,
                            progress=progress)
        m_k = int(metric.split("@")[-1]) if "@" in metric else 10
        grid = FusionGrid.from_cache(runs, all_qrels, qids=list(all_queries), max_k=max(m_k, 10))
        console.print(f"Scoring the fusion space on {grid.n_queries} queries (runs cached in {runs.path}) ...", soft_wrap=True)
        result = tune(grid, base, metric=metric, space=space, folds=folds, seed=seed,
                      train_qids=list(judged.queries) if dev is not None else None,
                      dev_qids=list(dev.queries) if dev is not None else None, test=test, selection=selection)
        result.data = {"description": description, "index": str(index), "synthetic": synthetic,
                       "tuning": judged.describe(), "dev": dev.describe() if dev is not None else None}
        write_config(result, base, out, description)
    report_dir = report or out.with_name(out.stem + "-report")
    report_dir.mkdir(parents=True, exist_ok=True)
    md = tuning_markdown(result)
    (report_dir / "tuning.md").write_text(md, encoding="utf-8")
    write_json(result, report_dir / "tuning.json")
    plot = plot_tuning(result, report_dir / "weights.png")
    typer.echo(md)
    console.print(f"Wrote the tuned configuration to {out}; report in {report_dir}"
                  + (f" (plot {plot.name})" if plot else ""), soft_wrap=True)


def register(app: Any) -> None:
    """Add ``eval`` and ``tune`` to a typer app."""
    app.command("eval")(eval_command)
    app.command("tune")(tune_command)
