"""``hybrid-retriever train-reranker``: fine-tune a cross-encoder on judged training queries.

Registered in :mod:`hybrid_retriever.cli`; helpers from there are imported inside the
function so either module can be imported first.

    hybrid-retriever train-reranker DATA --index PATH [--split train] [--base-model ID|PATH] [--out reranker/]
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hybrid_retriever.evaluation.rerank_training import DEFAULT_BASE_MODEL, TrainingSettings


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
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Fine-tune a cross-encoder reranker on judged training queries, with hard negatives from the hybrid index."""
    from hybrid_retriever.cli_common import console, err_console
    from hybrid_retriever.evaluation.cli import _judged, _open_or_build
    from hybrid_retriever.evaluation.rerank_training import train_reranker

    if split == "test":
        err_console.print("note: training on the test split makes any evaluation on it meaningless; train on "
                          "train (or dev) and evaluate on test", style="yellow", soft_wrap=True)
    judged = _judged(data, split, queries, qrels, corpus)
    settings = TrainingSettings(
        base_model=base_model, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, max_length=max_length,
        num_negatives=negatives, mine_depth=mine_depth, skip_top=skip_top, seed=seed, save_steps=save_steps,
    )
    retriever, _ = _open_or_build(index, None, judged.corpus, progress=progress,
                                  rebuild_hint="pass a BEIR folder (or --corpus) to build it")
    with retriever as r:
        result = train_reranker(r, judged.queries, judged.qrels, out, settings, progress=progress, resume=resume)
    secs = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    console.print(
        f"Trained on {result.n_queries} queries ({result.n_pairs} labelled pairs, {result.steps} steps; {secs})"
        + (f", resumed from {result.resumed_from}" if result.resumed_from else "")
        + f". Model saved to {out}.\nUse it with:  rerank: {{enabled: true, model: {out}}}",
        markup=False, soft_wrap=True,
    )
