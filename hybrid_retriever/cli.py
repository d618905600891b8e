"""The ``hybrid-retriever`` command line: a thin layer over the public API.

    hybrid-retriever index SOURCE --index PATH [--config FILE] [--batch-size N]
    hybrid-retriever query TEXT --index PATH [--k N] [--filter JSON] [--explain | --json]
    hybrid-retriever demo [--index PATH]
    hybrid-retriever config [--json]

Adding a command (``eval``, ``tune``, ``serve``, ...)
----------------------------------------------------
Write it in its own module and register it in the "Commands contributed by other modules"
section at the bottom of this file, either as one command (``app.command("eval")(fn)``) or
as a group (``app.add_typer(sub_app, name="tune")``). Two things come for free:

* any :class:`~hybrid_retriever.errors.HybridRetrieverError` a command raises is printed
  as one red line on stderr and exits with code 2, no traceback (see :class:`_Group`);
* the helpers below: :func:`open_index`, :func:`parse_filter_option`,
  :func:`print_hits`, :func:`explain_table`, and the ``console``/``err_console`` objects.

Data (hits as JSON, the config as YAML) goes to stdout with ``typer.echo``; anything
for people (tables, progress, messages) goes through rich.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Optional, Sequence

# Before sentence-transformers/transformers are imported (lazily, at model load): no
# per-shard "Loading weights" bars, no tokenizer fork warnings.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import click  # noqa: E402
import typer  # noqa: E402
from rich import box  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from rich.text import Text  # noqa: E402
from typer.core import TyperGroup  # noqa: E402

from hybrid_retriever import __version__  # noqa: E402
from hybrid_retriever.config import EdgeStoreConfig, RetrieverConfig  # noqa: E402
from hybrid_retriever.errors import ConfigError, HybridRetrieverError, InvalidInputError  # noqa: E402
from hybrid_retriever.retriever import HybridRetriever  # noqa: E402
from hybrid_retriever.sources import read_documents, read_jsonl  # noqa: E402
from hybrid_retriever.stores.edge import MANIFEST_FILE  # noqa: E402
from hybrid_retriever.types import Hit  # noqa: E402

#: Exit code for errors the library reports (bad input, bad config, missing index, ...).
EXIT_ERROR = 2

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def one_line(message: str) -> str:
    """A possibly multi-line error message folded onto one line."""
    out = ""
    for raw in str(message).splitlines():
        line = raw.strip().removeprefix("- ").strip()
        if not line:
            continue
        out += line if not out else (" " if out.endswith(":") else "; ") + line
    return out


def fail(message: str) -> "typer.Exit":
    """Print ``message`` as one red line on stderr; returns the Exit to raise."""
    err_console.print(f"error: {one_line(message)}", style="bold red", markup=False, soft_wrap=True)
    return typer.Exit(code=EXIT_ERROR)


class _Group(TyperGroup):
    """The root command group: library errors from any subcommand -> one red line, exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HybridRetrieverError as exc:
            raise fail(str(exc)) from None


app = typer.Typer(
    cls=_Group,
    name="hybrid-retriever",
    help="Hybrid BM25 + dense retrieval on Qdrant, with every branch's score on every hit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _setup_logging(verbose: bool) -> None:
    """Library warnings (e.g. skipped empty rows) to stderr; with ``verbose`` its info messages too.

    Only a handler is added: propagation and the logger's level stay as they are unless
    ``verbose``, so an application (or a test) embedding the CLI keeps its own logging.
    """
    logger = logging.getLogger("hybrid_retriever")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
    if verbose:
        logger.setLevel(logging.INFO)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hybrid-retriever {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what the library does (model loading, optimising)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Hybrid BM25 + dense retrieval on Qdrant, with every branch's score on every hit."""
    _setup_logging(verbose)


# --------------------------------------------------------------------------- helpers


def index_exists(path: str | Path) -> bool:
    """Whether ``path`` holds an index built by this library."""
    return (Path(path).expanduser() / MANIFEST_FILE).is_file()


def open_index(path: str | Path, **overrides: Any) -> HybridRetriever:
    """Reopen the index at ``path`` with the settings it was built with (see :meth:`HybridRetriever.open`)."""
    if not index_exists(path):
        raise InvalidInputError(f"no index at {path}; build one first: hybrid-retriever index SOURCE --index {path}")
    return HybridRetriever.open(str(path), **overrides)


def open_index_with(path: str | Path, config_file: Path | None) -> HybridRetriever:
    """Reopen the index at ``path`` with its own settings, or with ``config_file``'s (store set to ``path``).

    Branch settings in the file must match the index's (an IndexMismatchError says which
    differ); fusion, weights, depths, PRF and runtime settings are taken from the file.
    """
    if config_file is None:
        return open_index(path)
    if not index_exists(path):
        raise InvalidInputError(f"no index at {path}; build one first: hybrid-retriever index SOURCE --index {path}")
    data = RetrieverConfig.from_file(config_file).model_dump(mode="json")
    data["store"] = {"kind": "edge", "path": str(path)}
    return HybridRetriever(RetrieverConfig.validate_data(data))


def parse_filter_option(text: str | None) -> dict[str, Any] | None:
    """The ``--filter`` option: a JSON object in the dict filter form (see stores/filters.py)."""
    if text is None:
        return None
    example = """e.g. --filter '{"topic": "space", "year": {"gte": 2000}}'"""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"--filter is not valid JSON ({exc.msg}); {example}") from None
    if not isinstance(value, dict):
        raise InvalidInputError(f"--filter must be a JSON object, got {type(value).__name__}; {example}")
    return value


def _config_for_new_index(index: Path, config_file: Path | None) -> RetrieverConfig:
    """The configuration file's settings (or the defaults) with the store set to the Edge folder ``index``."""
    cfg = RetrieverConfig.from_file(config_file) if config_file is not None else RetrieverConfig()
    if not isinstance(cfg.store, EdgeStoreConfig):
        raise ConfigError(
            f"the CLI builds a local index at --index; {config_file} names a '{cfg.store.kind}' store. "
            "Remove the store section, or use the Python API to index into a Qdrant server"
        )
    data = cfg.model_dump()
    data["store"] = {**data["store"], "path": str(index)}
    return RetrieverConfig.validate_data(data)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def explain_table(hits: Sequence[Hit], branches: Sequence[str], title: str | None = None) -> Table:
    """A table of hits: rank, id, fused score, and per branch raw/normalised score, rank, completed flag."""
    # No padding: the box's one-space column divider is the gap, so two branches fit in 80 columns.
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=0, pad_edge=False, title_justify="left", title_style="bold")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("id", overflow="fold", min_width=8)
    table.add_column("fused", justify="right", no_wrap=True, min_width=6)
    for b in branches:
        # The branch name heads the first column of its group; the others stay short to fit 80 columns.
        table.add_column(f"{b}\nraw", justify="right", no_wrap=True, min_width=6)
        table.add_column("\nnorm", justify="right", no_wrap=True, min_width=6)
        table.add_column("\nrank", justify="right", no_wrap=True)
        table.add_column("\ncompl", justify="center", no_wrap=True)
    reranked = any(h.rerank is not None for h in hits)
    if reranked:
        _rerank_columns(table)
    for h in hits:
        cells: list[Any] = [str(h.rank), Text(h.id), _fmt(h.score)]  # Text: an id is never read as markup
        for b in branches:
            s = h.provenance.get(b)
            if s is None:
                cells += ["–", "–", "–", ""]
            else:
                cells += [_fmt(s.raw), _fmt(s.normalized), "–" if s.rank is None else str(s.rank), "yes" if s.completed else ""]
        if reranked:
            cells += _rerank_cells(h)
        table.add_row(*cells)
    return table


def _rerank_columns(table: Table) -> None:
    """The rerank stage's group of the explain table: reranker raw/normalised score and rank, the fused rank before it."""
    table.add_column("rerank\nraw", justify="right", no_wrap=True, min_width=6)
    table.add_column("\nnorm", justify="right", no_wrap=True, min_width=6)
    table.add_column("\nrank", justify="right", no_wrap=True)
    table.add_column("\nfused#", justify="right", no_wrap=True)


def _rerank_cells(h: Hit) -> list[Any]:
    r = h.rerank
    if r is None:
        return ["–", "–", "–", "–"]
    raw: Any = Text("failed", style="red") if r.error else _fmt(r.raw)
    return [raw, _fmt(r.normalized), "–" if r.rank is None else str(r.rank), str(r.fused_rank)]


EXPLAIN_LEGEND = (
    "raw: the branch's own score (BM25 / cosine); norm: the value fusion used; rank: the document's rank in the "
    "branch's own list (– = the branch did not return it); compl: raw was fetched by score completion."
)
RERANK_LEGEND = (
    "Reranked: the score column holds the final score; rerank raw/norm/rank: the reranker's score, its min-max "
    "normalised value over the reranked candidates and its rank; fused#: the rank before reranking."
)


def _snippet(text: str, width: int = 90) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def print_hits(hits: Sequence[Hit], branches: Sequence[str], *, explain: bool = False, title: str | None = None) -> None:
    """Print hits for people: a short ranked list, or with ``explain`` every branch's view of each hit."""
    if not hits:
        console.print("no results")
        return
    if explain:
        console.print(explain_table(hits, branches, title=title))
        return
    if title:
        console.print(title, style="bold", markup=False)
    width = max(console.width - 6, 20)
    for h in hits:
        line = Text(f"{h.rank:>2}. ")
        line.append(_fmt(h.score), style="bold")
        line.append(f"  {h.id}", style="cyan")
        console.print(line, soft_wrap=True)
        console.print(Text("    " + _snippet(h.text, width)), soft_wrap=True)


def _describe_fusion(r: HybridRetriever) -> str:
    f = r.config.fusion
    method = f"rrf (k={f.rrf_k:g})" if f.method == "rrf" else f"interpolation ({f.normalization}, missing={f.missing})"
    weights = ", ".join(f"{n}={w:.2f}" for n, w in r.config.weights().items())
    return f"fusion: {method}; weights: {weights}"


# -------------------------------------------------------------------------- commands


@app.command()
def index(
    source: Path = typer.Argument(..., help="A .jsonl file, a BEIR folder (with corpus.jsonl) or a folder of .txt/.md files."),
    index_path: Path = typer.Option(..., "--index", "-i", help="Folder of the index (created if missing, added to if present)."),
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="RetrieverConfig as .yaml/.yml or .json (see `hybrid-retriever config`); default: the defaults."
    ),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Documents encoded and written per batch."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Index the documents of SOURCE into the index at --index.

    A new index is built with --config (or the default configuration); an existing
    one is added to (re-adding an id replaces that document). With --config on an
    existing index, the configuration must match the one it was built with.
    """
    docs = read_documents(source)
    if config is None and index_exists(index_path):
        retriever = open_index(index_path)
    else:
        retriever = HybridRetriever(_config_for_new_index(index_path, config))
    with retriever as r:
        t0 = time.perf_counter()
        ids = r.add_documents(docs, batch_size=batch_size, show_progress=progress)
        elapsed = time.perf_counter() - t0
        total = r.count()
    rate = len(ids) / elapsed if elapsed > 0 else float("inf")
    console.print(
        f"Indexed {len(ids)} documents from {source} in {elapsed:.1f} s ({rate:.0f} docs/s); "
        f"the index at {index_path} holds {total} documents.",
        markup=False,
        soft_wrap=True,
    )


@app.command()
def query(
    text: str = typer.Argument(..., help="What to search for."),
    index_path: Path = typer.Option(..., "--index", "-i", help="Folder of an index built with `hybrid-retriever index`."),
    k: Optional[int] = typer.Option(None, "--k", "-k", min=1, help="Number of results (default: the index's runtime.k)."),
    filter: Optional[str] = typer.Option(
        None, "--filter", "-f", help="""Metadata filter as JSON, e.g. '{"topic": "space", "year": {"gte": 2000}}'."""
    ),
    explain: bool = typer.Option(False, "--explain", "-e", help="Show every branch's raw and normalised score, rank and completion flag."),
    as_json: bool = typer.Option(False, "--json", help="Print the hits as JSON (with provenance); wins over --explain."),
    config_file: Optional[Path] = typer.Option(
        None,
        "--config",
        "-c",
        help="YAML/JSON configuration to search with (e.g. one written by `tune`); its branches must match the index's.",
    ),
) -> None:
    """Search the index at --index for TEXT."""
    spec = parse_filter_option(filter)
    with open_index_with(index_path, config_file) as r:
        hits = r.search(text, k=k, filter=spec)
        if as_json:
            typer.echo(json.dumps([h.as_dict() for h in hits], indent=2, ensure_ascii=False))
            return
        print_hits(hits, r.config.branch_names, explain=explain)
        if explain:
            console.print(_describe_fusion(r), style="dim", markup=False, soft_wrap=True)
            console.print(EXPLAIN_LEGEND, style="dim")
            if any(h.rerank is not None for h in hits):
                rc = r.config.rerank
                console.print(f"rerank: {r.reranker.name if r.reranker else rc.model}, depth {rc.depth}, order {rc.order}"
                              + (f" (weight {rc.weight:g})" if rc.order == "interpolation" else ""), style="dim",
                              markup=False, soft_wrap=True)
                console.print(RERANK_LEGEND, style="dim")


@dataclass(frozen=True)
class DemoQuery:
    """One query of the demo, what it shows, and the document the hybrid should rank first."""

    text: str
    shows: str
    expected: str
    filter: dict[str, Any] = field(default_factory=dict)


#: The demo's queries. tests/test_cli.py checks that ``expected`` ranks first (and what each says about the branches).
DEMO_QUERIES: tuple[DemoQuery, ...] = (
    DemoQuery(
        "who was Peruggia",
        "a rare name: BM25 matches it exactly; to the dense model it is just an unfamiliar word",
        "art-mona-lisa",
    ),
    DemoQuery(
        "which amphibian can regenerate a missing leg",
        "a paraphrase: the answer shares no word with the query, so BM25 finds nothing and the dense branch finds it",
        "bio-axolotl",
    ),
    DemoQuery(
        "Quill thermostat says the room is hot but it is cold",
        "a product name plus a description: BM25 matches the name in every Quill note, the dense branch picks the one that fits",
        "kb-qt200-f3",
    ),
    DemoQuery(
        "first powered flight",
        "a metadata filter: only documents about events from 2000 on (without it, the Wright brothers rank first)",
        "space-perseverance",
        {"year": {"gte": 2000}},
    ),
)

DEMO_INDEX = ".demo-index"


def demo_corpus_path() -> Path:
    """The bundled demo corpus (hybrid_retriever/data/demo_corpus.jsonl)."""
    return Path(str(resources.files("hybrid_retriever") / "data" / "demo_corpus.jsonl"))


@app.command()
def demo(
    index_path: Path = typer.Option(Path(DEMO_INDEX), "--index", "-i", help="Where to build the demo index (kept, so you can query it)."),
    k: int = typer.Option(3, "--k", "-k", min=1, help="Results shown per query."),
) -> None:
    """Index the bundled demo corpus and show how each branch scores a few queries."""
    corpus = demo_corpus_path()
    cfg = _config_for_new_index(index_path, None)
    console.print(f"Loading the dense model and indexing the demo corpus ({corpus.name}) into {index_path} ...", markup=False, soft_wrap=True)
    t0 = time.perf_counter()
    with HybridRetriever(cfg) as r:
        n = len(r.add_documents(read_jsonl(corpus), show_progress=False))
        elapsed = time.perf_counter() - t0
        console.print(f"Loaded the model and indexed {n} documents in {elapsed:.1f} s. {_describe_fusion(r)}\n", markup=False, soft_wrap=True)
        for q in DEMO_QUERIES:
            hits = r.search(q.text, k=k, filter=q.filter or None)
            flt = f"   --filter '{json.dumps(q.filter)}'" if q.filter else ""
            console.print(Text("query: ", style="bold cyan") + Text(q.text + flt), soft_wrap=True)
            console.print(f"  {q.shows}", style="italic", markup=False, soft_wrap=True)
            print_hits(hits, r.config.branch_names, explain=True)
            if hits:
                console.print(f"  top hit: {_snippet(hits[0].text, 110)}\n", style="dim", markup=False, soft_wrap=True)
    console.print(EXPLAIN_LEGEND, style="dim")
    console.print(
        f'\nTry your own: hybrid-retriever query "how do vaccines work" --index {index_path} --explain', markup=False, soft_wrap=True
    )


@app.command("config")
def config_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of YAML."),
) -> None:
    """Print the default configuration (YAML) to start a config file from."""
    cfg = RetrieverConfig()
    if as_json:
        typer.echo(cfg.to_json())
        return
    typer.echo(
        "# hybrid-retriever configuration (the defaults). Use it with:\n"
        "#   hybrid-retriever index SOURCE --index PATH --config this.yaml\n"
        "# The CLI sets store.path from --index. Every field: README.md, 'Configuration reference'.\n"
        + cfg.to_yaml().rstrip("\n")
    )


# ---------------------------------------------- commands contributed by other modules
# Register eval / tune / serve here, e.g.:
#     from hybrid_retriever.evaluation.cli import tune_app
#     app.add_typer(tune_app, name="tune")

from hybrid_retriever.evaluation.cli import eval_command, tune_command  # noqa: E402

app.command("eval")(eval_command)
app.command("tune")(tune_command)

from hybrid_retriever.rerank.cli import train_reranker_command  # noqa: E402

app.command("train-reranker")(train_reranker_command)


if __name__ == "__main__":  # pragma: no cover
    app()
