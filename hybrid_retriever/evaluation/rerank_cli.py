"""``hybrid-retriever train-reranker``: fine-tune a cross-encoder on judged queries and write its rerank config.

Registered in :mod:`hybrid_retriever.cli`; helpers from there are imported inside the
function so either module can be imported first.

    hybrid-retriever train-reranker DATA --index PATH [--split train] [--holdout 0.2] [--out reranker/]
                                    [--write-config reranker.yaml]

Exit status 0 when a rerank configuration was written; :data:`EXIT_NOT_BETTER` when the
model was trained and saved but did not beat the fused order on the held-out queries (no
configuration is written; the numbers are printed); 2 for bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hybrid_retriever.evaluation.rerank_training import DEFAULT_BASE_MODEL, TrainingSettings

#: Exit status when the trained model does not beat the fused order on the held-out queries.
EXIT_NOT_BETTER = 3


def train_reranker_command(
    data: Optional[Path] = typer.Argument(None, help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) or a judged-queries .jsonl."),
    index: Path = typer.Option(..., "--index", "-i", help="The hybrid index hard negatives are mined from (built from DATA's corpus when missing)."),
    split: str = typer.Option("train", "--split", "-s", help="Qrels split to train on; never the split you evaluate on."),
    queries: Optional[Path] = typer.Option(None, "--queries", help="Queries file (JSONL or TSV), with --qrels instead of DATA."),
    qrels: Optional[Path] = typer.Option(None, "--qrels", help="Qrels file (BEIR TSV or TREC), with --queries."),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="Corpus JSONL for --queries/--qrels or a judged .jsonl."),
    out: Path = typer.Option(Path("reranker"), "--out", "-o", help="Folder for the trained model (then rerank.model)."),
    base_model: str = typer.Option(DEFAULT_BASE_MODEL, "--base-model", help="Model to start from: Hugging Face id or folder."),
    epochs: float = typer.Option(1.0, "--epochs", min=0.01, help="Passes over the training pairs."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Pairs per training step."),
    learning_rate: float = typer.Option(3e-5, "--learning-rate", "--lr", min=0.0, help="Peak learning rate (linear warm-up, then decay)."),
    max_length: int = typer.Option(256, "--max-length", min=16, help="Tokens per query-document pair."),
    negatives: int = typer.Option(4, "--negatives", min=1, help="Hard negatives per judged pair."),
    mine_depth: int = typer.Option(30, "--mine-depth", min=2, help="Fused candidates per training query forming the negative pool."),
    skip_top: int = typer.Option(0, "--skip-top", min=0, help="Skip this many nearest candidates (guards against unjudged positives)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the head's initialisation, the data order and dropout."),
    save_steps: int = typer.Option(100, "--save-steps", min=1, help="Steps between checkpoints (a rerun resumes from the latest)."),
    resume: bool = typer.Option(True, "--resume/--restart", help="Continue from the latest checkpoint in --out, or start over."),
    holdout: float = typer.Option(0.2, "--holdout", min=0.0, help="Judged queries kept out of training to choose the rerank settings on: a share below 1, or a number of queries (0: choose nothing, write no config)."),
    depths: str = typer.Option("10,20,50", "--rerank-depths", help="Rerank depths tried on the held-out queries."),
    write_config: Optional[Path] = typer.Option(None, "--write-config", help="Where the chosen configuration goes (YAML or .json; default: <out>.yaml beside the model folder)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Fine-tune a cross-encoder reranker on judged training queries, with hard negatives from the hybrid index."""
    from hybrid_retriever.cli_common import console, err_console
    from hybrid_retriever.evaluation.cli import _ints, _judged, _open_or_build
    from hybrid_retriever.evaluation.rerank_training import train_reranker

    if split == "test":
        err_console.print("note: training on the test split makes any evaluation on it meaningless; train on "
                          "train (or dev) and evaluate on test", style="yellow", soft_wrap=True)
    judged = _judged(data, split, queries, qrels, corpus)
    settings = TrainingSettings(
        base_model=base_model, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, max_length=max_length,
        num_negatives=negatives, mine_depth=mine_depth, skip_top=skip_top, seed=seed, save_steps=save_steps,
        holdout=holdout, depths=_ints(depths, "--rerank-depths"),
    )
    config_path = write_config or out.with_name(out.name + ".yaml")
    retriever, _ = _open_or_build(index, None, judged.corpus, progress=progress,
                                  rebuild_hint="pass a BEIR folder (or --corpus) to build it")
    with retriever as r:
        result = train_reranker(r, judged.queries, judged.qrels, out, settings, progress=progress, resume=resume)
        base = r.config
    secs = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    console.print(
        f"Trained on {result.n_queries} queries ({result.n_pairs} labelled pairs, {result.steps} steps; {secs})"
        + (f", resumed from {result.resumed_from}" if result.resumed_from else "")
        + f". Model saved to {out}.",
        markup=False, soft_wrap=True,
    )
    choice = result.choice
    if choice is None:
        console.print(f"No queries were held out (--holdout 0), so no rerank settings were chosen. Use it with:  "
                      f"rerank: {{enabled: true, model: {out}, order: interpolation, weight: ...}} and choose the "
                      "weight with `hybrid-retriever tune --no-fusion --rerank-weights`", markup=False, soft_wrap=True)
        return
    for row in choice.per_depth:
        console.print(f"  depth {row['depth']}: weight {row['weight']:g}, {choice.metric} {row['heldout_score']:.4f} "
                      f"cross-validated vs {row['fused_score']:.4f} fused", markup=False, soft_wrap=True)
    if not choice.accepted:
        err_console.print(f"No rerank configuration written: {choice.reason}. The model is saved in {out}, but "
                          "reranking with it would not improve on the fused order here; train longer or on more "
                          "queries, or keep reranking off.", style="yellow", markup=False, soft_wrap=True)
        raise typer.Exit(code=EXIT_NOT_BETTER)
    cfg = choice.apply(base, str(out.resolve()), max_length)
    cfg.save(config_path, header=choice.header())
    console.print(f"Chose {choice.reason}. Wrote {config_path}; use it with --config {config_path} "
                  f"(rerank: depth {choice.depth}, order {choice.order}, weight {choice.weight:g}).",
                  markup=False, soft_wrap=True)
