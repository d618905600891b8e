"""The ``hybrid-retriever`` command line: a thin layer over the public API.

    hybrid-retriever index SOURCE (--index PATH | --qdrant-url URL | --server URL) [--config FILE] [--batch-size N]
                                  [--chunk-size N] [--reindex] [--sync | --no-sync] [--strict]
    hybrid-retriever query TEXT (--index PATH | --server URL) [--k N] [--filter JSON] [--explain | --json]
                                [--group-by FIELD | --passages TOKENS]
    hybrid-retriever serve [--index PATH | --qdrant-url URL]      (with the [server] extra)
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
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Sequence

# Before sentence-transformers/transformers are imported (lazily, at model load): no
# per-shard "Loading weights" bars, no tokenizer fork warnings.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import click  # noqa: E402
import typer  # noqa: E402
from rich import box  # noqa: E402
from rich.table import Table  # noqa: E402
from rich.text import Text  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402
from typer.core import TyperGroup  # noqa: E402

from hybrid_retriever.version import __version__  # noqa: E402
from hybrid_retriever.errors import HybridRetrieverError, InvalidInputError  # noqa: E402
from hybrid_retriever.models.trust import allow_remote_code  # noqa: E402

if TYPE_CHECKING:  # imported where used, so `--help` stays fast (numpy, pydantic models, the retriever)
    from hybrid_retriever.chunking import Chunker, ModelWindow, WindowCheck
    from hybrid_retriever.config import RetrieverConfig
    from hybrid_retriever.ingest import IngestReport
    from hybrid_retriever.retriever import HybridRetriever
    from hybrid_retriever.sources import SourceReport
    from hybrid_retriever.sync import SeenIds
    from hybrid_retriever.types import Hit
from hybrid_retriever.cli_common import (  # noqa: E402
    config_for_new_index,
    contributed,
    console,
    err_console,
    fail,
    index_exists,
    open_index,
    open_index_with,
    parse_filter_option,
)

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
    trust_remote_code: bool = typer.Option(
        False,
        "--trust-remote-code",
        help="Allow models that need their own Python code to run it (never taken from an index or a config file).",
    ),
) -> None:
    """Hybrid BM25 + dense retrieval on Qdrant, with every branch's score on every hit."""
    _setup_logging(verbose)
    if trust_remote_code:
        allow_remote_code(True)


# --------------------------------------------------------------------------- helpers


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
        for h in hits:
            if h.group is not None:
                console.print(f"{h.rank:>2}. {_describe_group(h)}", style="dim", markup=False, soft_wrap=True)
        return
    if title:
        console.print(title, style="bold", markup=False)
    width = max(console.width - 6, 20)
    for h in hits:
        line = Text(f"{h.rank:>2}. ")
        line.append(_fmt(h.score), style="bold")
        line.append(f"  {h.id}", style="cyan")
        if h.group is not None:
            line.append(f"  {_describe_group(h)}", style="dim")
        console.print(line, soft_wrap=True)
        console.print(Text("    " + _snippet(h.text, width)), soft_wrap=True)


def _describe_group(h: Hit) -> str:
    """``source: a.md, 3 chunks matched (ranks 1, 4, 9 of 50)`` for a grouped hit."""
    g = h.group
    if g is None:
        return ""
    ranks = ", ".join(str(r) for r in g.ranks[:8]) + (", ..." if len(g.ranks) > 8 else "")
    noun = "entry" if g.matched == 1 else "entries"
    return f"{g.field}: {g.key}, {g.matched} {noun} matched (ranks {ranks} of the top {g.depth})"


def _describe_fusion(r: HybridRetriever) -> str:
    f = r.config.fusion
    method = f"rrf (k={f.rrf_k:g})" if f.method == "rrf" else f"{f.method} ({f.normalization}, missing={f.missing})"
    weights = ", ".join(f"{n}={w:.2f}" for n, w in r.config.weights().items())
    return f"fusion: {method}; weights: {weights}"


# -------------------------------------------------------------------------- commands


@app.command()
def index(
    source: Path = typer.Argument(..., help="A .jsonl file, a BEIR folder (with corpus.jsonl) or a folder of .txt/.md files."),
    index_path: Optional[Path] = typer.Option(None, "--index", "-i", help="Folder of an Edge index (created if missing, added to if present)."),
    qdrant_url: Optional[str] = typer.Option(
        None, "--qdrant-url", help="Index into a collection on this Qdrant server instead (e.g. the docker stack's http://localhost:6333)."
    ),
    collection: Optional[str] = typer.Option(None, "--collection", help="With a Qdrant store: the collection (default: the config's)."),
    server: Optional[str] = typer.Option(
        None, "--server", help="Index through a running `hybrid-retriever serve` at this URL (it chunks and encodes)."
    ),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="With --server: the service's API key (default: $HYBRID_RETRIEVER_API_KEY)."),
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="RetrieverConfig as .yaml/.yml or .json (see `hybrid-retriever config`); default: the defaults. "
        "A config whose store is a Qdrant server (store.kind: qdrant) indexes into it."
    ),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Most documents encoded and written per batch."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    chunk_size: Optional[int] = typer.Option(
        None,
        "--chunk-size",
        min=0,
        help="Split documents into chunks of at most N tokens of the dense model (see --chunk-unit). "
        "Default: files of a folder are split to fit the model's window, JSONL/BEIR rows are not split. 0: never split.",
    ),
    chunk_overlap: int = typer.Option(0, "--chunk-overlap", min=0, help="Most tokens (or characters) neighbouring chunks share."),
    chunk_unit: str = typer.Option("tokens", "--chunk-unit", help="What --chunk-size counts: 'tokens' (of the dense model) or 'characters'."),
    follow_links: bool = typer.Option(False, "--follow-links", help="Also index linked files whose target is outside the folder."),
    reindex: bool = typer.Option(False, "--reindex", help="Encode every document again, even those stored unchanged."),
    sync: Optional[bool] = typer.Option(
        None, "--sync/--no-sync",
        help="Remove stored documents SOURCE no longer holds (deleted files). Default: when SOURCE is the only source "
        "the index was filled from; --sync: always (the index mirrors SOURCE); --no-sync: never.",
    ),
    strict: bool = typer.Option(False, "--strict", help="Stop at a file that cannot be read, instead of skipping it with a warning."),
) -> None:
    """Index the documents of SOURCE into an Edge index (--index), a Qdrant server (--qdrant-url or a
    --config with a qdrant store) or a running service (--server).

    A new index is built with --config (or the default configuration); an existing
    one is added to: documents stored with the same id and identical text, metadata
    and settings are skipped, changed ones are encoded again (--reindex: all of them).
    With --config on an existing index, the configuration must match the one it was
    built with. Files that are not UTF-8 are read with their detected encoding; files that
    cannot be read are skipped and counted (--strict: stop). After a complete run, documents
    SOURCE no longer holds are removed (see --sync). Ctrl-C stops after the current batch
    (a few seconds) and keeps what was written; running the same command again goes on from there.
    """
    from hybrid_retriever.sources import read_documents

    if chunk_unit not in ("tokens", "characters"):
        raise InvalidInputError(f"--chunk-unit must be 'tokens' or 'characters', got {chunk_unit!r}")
    given = [name for name, v in (("--index", index_path), ("--qdrant-url", qdrant_url), ("--server", server)) if v is not None]
    if len(given) > 1:
        raise InvalidInputError(f"give one of --index, --qdrant-url and --server, not both {' and '.join(given)}")
    read_documents(source, follow_links=follow_links)  # checks the source now, before a model loads
    options = IndexOptions(batch_size, progress, chunk_size, chunk_overlap, chunk_unit, follow_links, reindex, sync, strict)
    if server is not None:
        if config is not None or collection is not None:
            raise InvalidInputError("with --server the service's own configuration is used: leave out --config and --collection")
        connect = contributed("hybrid_retriever.remote", "connect", "server")
        index_through_server(connect(server, api_key=api_key), source, options)
        return
    retriever, where = _index_target(index_path, qdrant_url, collection, config)
    _index_into(retriever, where, source, options)


@dataclass(frozen=True)
class IndexOptions:
    """The ``index`` command's options about reading, chunking, skipping and syncing."""

    batch_size: int | None = None
    progress: bool = True
    chunk_size: int | None = None
    chunk_overlap: int = 0
    chunk_unit: str = "tokens"
    follow_links: bool = False
    reindex: bool = False
    sync: bool | None = None
    strict: bool = False


def _index_target(index_path: Path | None, qdrant_url: str | None, collection: str | None, config: Path | None) -> tuple[HybridRetriever, str]:
    """The retriever to index into and how to name it: an Edge folder, or a Qdrant collection."""
    from hybrid_retriever.config import QdrantStoreConfig, RetrieverConfig
    from hybrid_retriever.retriever import HybridRetriever

    cfg = RetrieverConfig.from_file(config) if config is not None else None
    qdrant = qdrant_url is not None or collection is not None or (
        index_path is None and cfg is not None and isinstance(cfg.store, QdrantStoreConfig)
    )
    if not qdrant:
        if index_path is None:
            raise InvalidInputError(
                "give --index PATH (an Edge index folder), --qdrant-url URL (a Qdrant server), a --config whose store "
                "is a Qdrant server, or --server URL (a running `hybrid-retriever serve`)"
            )
        if config is None and index_exists(index_path):
            return open_index(index_path), f"the index at {index_path}"
        return HybridRetriever(config_for_new_index(index_path, config)), f"the index at {index_path}"
    if index_path is not None:
        raise InvalidInputError("--index is an Edge folder; with a Qdrant store leave it out")
    return open_qdrant_target(cfg, qdrant_url, collection, config)


def open_qdrant_target(
    cfg: RetrieverConfig | None, url: str | None, collection: str | None, config: Path | None
) -> tuple[HybridRetriever, str]:
    """A retriever on a Qdrant collection: ``cfg``'s settings, or (no config file) those the collection was
    built with, or the defaults for a new one; ``url``/``collection`` replace the config's."""
    from hybrid_retriever.config import QdrantStoreConfig, RetrieverConfig
    from hybrid_retriever.retriever import HybridRetriever
    from hybrid_retriever.stores import QdrantStore
    from hybrid_retriever.stores.stored_config import stored_config

    base = cfg if cfg is not None else RetrieverConfig()
    store = base.store.model_dump(mode="json") if isinstance(base.store, QdrantStoreConfig) else {"kind": "qdrant"}
    if isinstance(base.store, QdrantStoreConfig) and base.store.api_key is not None:
        store["api_key"] = base.store.api_key.get_secret_value()
    if url is not None:
        store.update(url=url, location=None, path=None)
    if collection is not None:
        store["collection"] = collection
    if not (store.get("url") or store.get("location") or store.get("path")):
        raise InvalidInputError(f"{config} names a qdrant store without url, location or path; add one or pass --qdrant-url URL")
    store_cfg = QdrantStoreConfig.model_validate(store)
    data = base.model_dump(mode="json")
    if cfg is None:  # reopen with what the collection was built with, as --index does for a folder
        probe = QdrantStore(store_cfg)
        try:
            manifest = probe.read_manifest()
            where = probe.location
        finally:
            probe.close()
        if manifest is not None:
            data = stored_config(manifest, Path(str(where)))
    data["store"] = store
    retriever = HybridRetriever(RetrieverConfig.validate_data(data))
    return retriever, f"collection {store_cfg.collection!r} at {retriever.store.location}"


def _index_into(retriever: HybridRetriever, where: str, source: Path, o: IndexOptions) -> None:
    """The ``index`` command on a retriever opened here (an Edge folder or a Qdrant collection)."""
    from hybrid_retriever.chunking import ChunkCounts, stale_chunk_ids
    from hybrid_retriever.ingest import BATCH_SECONDS, IngestReport
    from hybrid_retriever.sources import SourceReport, count_documents, read_documents, source_kind
    from hybrid_retriever.sync import UNRECORDED, SeenIds

    kind = source_kind(source)
    report = IngestReport()
    read = SourceReport()
    seen = SeenIds()
    t_start = time.perf_counter()
    try:
        with retriever as r:
            recorded = r.sources if r.sources is not None else ([UNRECORDED] if r.count() else [])
            chunker, check = _chunking_for(r, kind, o.chunk_size, o.chunk_overlap, o.chunk_unit)
            docs = seen(read_documents(source, chunker=chunker, follow_links=o.follow_links, strict=o.strict, report=read))
            total = _count_chunks(source, chunker, o.follow_links) if chunker is not None else count_documents(source, follow_links=o.follow_links)
            if check is not None:
                docs = check(docs)
            counts = ChunkCounts()
            t0 = time.perf_counter()
            with _stop_on_interrupt(report):
                ids = r.add_documents(
                    counts(docs) if chunker is not None else docs,
                    batch_size=o.batch_size, show_progress=o.progress, skip_unchanged=not o.reindex, report=report, total=total,
                    batch_seconds=BATCH_SECONDS,
                )
            elapsed = time.perf_counter() - t0
            if check is not None:
                check.report()
            stale = stale_chunk_ids(counts.counts, r.get) if counts.counts and not report.stopped else []
            if stale:  # a file that shrank (fewer chunks now) or was indexed whole before
                r.delete(stale)
            removed, note = ([], None) if report.stopped else _sync(r, source, seen.ids | {n for n, _ in read.unreadable}, recorded, o.sync)
            stored = r.count()
            analyzers = [f"BM25 branch {n!r}: {b.describe()}" for n, b in r.branches.items() if hasattr(b, "describe")]
    except KeyboardInterrupt:  # a second Ctrl-C, or one before indexing began
        err_console.print(
            f"interrupted; {report.written} documents written. Run the same command again to go on.", markup=False, soft_wrap=True
        )
        raise typer.Exit(code=EXIT_INTERRUPTED) from None
    unit = "chunks" if chunker is not None else "documents"
    if report.stopped:
        err_console.print(
            f"stopped: {report.written} {unit} written ({report.skipped} unchanged skipped); {where} "
            f"holds {stored} {_held(chunker is not None)}. Run the same command again to go on: what is stored is skipped.",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=EXIT_INTERRUPTED)
    what = f"{len(ids)} {unit} from {source}" + (f" (at most {chunker.describe()})" if chunker is not None else "")
    summary = f"{report.written} encoded again (--reindex)" if o.reindex else (
        f"{report.new} new, {report.replaced} changed, {report.skipped} unchanged (skipped)"
    )
    if stale:
        summary += f", {len(stale)} stale chunks removed"
    if removed:
        summary += f", {len(removed)} removed (no longer in the source)"
    if read.unreadable:
        summary += f", {len(read.unreadable)} unreadable file{'s' if len(read.unreadable) != 1 else ''} skipped"
    console.print(
        f"Indexed {what}: {summary} in {time.perf_counter() - t_start:.1f} s{_rate(report.written, elapsed, unit)}; "
        f"{where} holds {stored} {_held(chunker is not None)}.",
        markup=False,
        soft_wrap=True,
    )
    if note:
        err_console.print(f"note: {note}", markup=False, soft_wrap=True)
    for line in analyzers:  # which language BM25 analyses the corpus as (bm25.language auto detects it)
        console.print(line, markup=False, soft_wrap=True)


def index_through_server(client: Any, source: Path, o: IndexOptions) -> None:
    """``index SOURCE --server URL``: whole documents go to the service in batches; it chunks, encodes and stores them."""
    from hybrid_retriever.ingest import IngestReport
    from hybrid_retriever.sources import SourceReport, count_documents, read_documents, source_kind
    from hybrid_retriever.sync import SeenIds, source_key

    kind = source_kind(source)
    wanted = o.chunk_size != 0 and (o.chunk_size is not None or kind == "text")
    chunking = {"size": o.chunk_size, "overlap": o.chunk_overlap, "unit": o.chunk_unit} if wanted else None
    limits = client.limits()
    report, read, seen = IngestReport(), SourceReport(), SeenIds()
    stale = handled = 0
    stored = None
    t_start = time.perf_counter()
    docs = seen(read_documents(source, follow_links=o.follow_links, strict=o.strict, report=read))
    key = source_key(source)
    bar = tqdm(total=count_documents(source, follow_links=o.follow_links), desc="indexing", unit="doc", disable=not o.progress, mininterval=1.0)
    try:
        with _stop_on_interrupt(report):
            for batch in _request_batches(docs, limits):
                answer = client.index_documents(batch, chunking=chunking, reindex=o.reindex, source=key)
                report.written += answer["written"]
                report.replaced += answer["replaced"]
                report.skipped += answer["skipped"]
                stale += answer["stale_removed"]
                handled += len(answer["ids"])
                stored = answer["count"]
                bar.update(len(batch))
                if report.stop_requested:
                    report.stopped = True
                    break
    except KeyboardInterrupt:
        err_console.print(f"interrupted; {report.written} written. Run the same command again to go on.", markup=False, soft_wrap=True)
        raise typer.Exit(code=EXIT_INTERRUPTED) from None
    finally:
        bar.close()
    unit = "chunks" if chunking is not None else "documents"
    where = f"the index served at {client.url}"
    if report.stopped:
        err_console.print(
            f"stopped: {report.written} {unit} written ({report.skipped} unchanged skipped); {where} holds {stored} "
            f"{_held(chunking is not None)}. Run the same command again to go on: what is stored is skipped.",
            markup=False, soft_wrap=True,
        )
        raise typer.Exit(code=EXIT_INTERRUPTED)
    synced = client.sync_source(key, sorted(seen.ids | {n for n, _ in read.unreadable}), o.sync)
    summary = f"{report.written} encoded again (--reindex)" if o.reindex else (
        f"{report.new} new, {report.replaced} changed, {report.skipped} unchanged (skipped)"
    )
    if stale:
        summary += f", {stale} stale chunks removed"
    if synced["removed"]:
        summary += f", {synced['removed']} removed (no longer in the source)"
    if read.unreadable:
        summary += f", {len(read.unreadable)} unreadable file{'s' if len(read.unreadable) != 1 else ''} skipped"
    how = ""
    if chunking is not None:
        how = f" (chunked by the service: at most {o.chunk_size} {o.chunk_unit}, overlap {o.chunk_overlap})" if o.chunk_size else (
            " (chunked by the service to its dense model's window)")
    console.print(
        f"Indexed {handled} {unit} from {source}{how}: {summary} in {time.perf_counter() - t_start:.1f} s; "
        f"{where} holds {synced['count']} {_held(chunking is not None)}.",
        markup=False, soft_wrap=True,
    )
    if synced.get("note"):
        err_console.print(f"note: {synced['note']}", markup=False, soft_wrap=True)


def _request_batches(docs: Iterable[Any], limits: dict[str, int]) -> Iterator[list[Any]]:
    """Batches of documents within the service's limits: documents per request, and about half its body limit
    (JSON escaping can double a text's bytes); a document over the text limit is an error naming it."""
    budget = max(limits["max_body_bytes"] // 2, 1)
    batch: list[Any] = []
    size = 0
    for d in docs:
        if len(d.text) > limits["max_text_chars"]:
            raise InvalidInputError(
                f"document {d.id!r} has {len(d.text)} characters, over the service's limit of {limits['max_text_chars']}; "
                "raise HYBRID_RETRIEVER_MAX_TEXT_CHARS on the server, or index it locally"
            )
        n = len(d.text.encode("utf-8")) + 200
        if batch and (len(batch) >= limits["max_batch"] or size + n > budget):
            yield batch
            batch, size = [], 0
        batch.append(d)
        size += n
    if batch:
        yield batch


def _held(chunked: bool) -> str:
    """What an index's count counts: every stored entry is one searchable document or chunk."""
    return "entries (chunks or whole documents)" if chunked else "documents"


def _sync(r: HybridRetriever, source: Path, seen: set[str], recorded: list[str], mode: bool | None) -> tuple[list[str], str | None]:
    """After a complete run: remove what the source no longer holds (see :mod:`hybrid_retriever.sync`); the ids removed and a note."""
    from hybrid_retriever.sync import decide, source_key, stored_outside

    key = source_key(source)
    outside = stored_outside(r.documents(), seen) if mode is not False else []
    decision = decide(mode, recorded, key, len(outside))
    removed = outside if decision.remove else []
    if removed:
        r.delete(removed)
    r.record_sources(decision.sources)
    return removed, decision.note


#: Exit code after Ctrl-C (128 + SIGINT), what shells report for an interrupted command.
EXIT_INTERRUPTED = 130


#: Fewest documents encoded for the summary to show a rate (a few include the model's loading).
RATE_MIN_DOCS = 20


def _rate(n: int, seconds: float, unit: str = "documents") -> str:
    """`` (12.3 docs/s)`` for the documents (or chunks) encoded, or nothing when too few to measure."""
    if n < RATE_MIN_DOCS or seconds < 0.05:
        return ""
    rate = n / seconds
    what = "chunks/s" if unit == "chunks" else "docs/s"
    return f" (encoded {rate:.1f} {what})" if rate < 100 else f" (encoded {rate:.0f} {what})"


def _dense_window(r: HybridRetriever) -> "ModelWindow | None":
    """The window of the index's dense model (loads it), or None without a dense branch."""
    from hybrid_retriever.branches import DenseBranch
    from hybrid_retriever.chunking import ModelWindow

    dense = next((b for b in r.branches.values() if isinstance(b, DenseBranch)), None)
    return ModelWindow.of(dense.model) if dense is not None else None


def _chunking_for(
    r: HybridRetriever, kind: str, size: int | None, overlap: int, unit: str
) -> "tuple[Chunker | None, WindowCheck | None]":
    """The chunker the options ask for (or None), and a check of unsplit documents' lengths (or None)."""
    from hybrid_retriever.chunking import Chunker, WindowCheck, splitter_available

    window = _dense_window(r)
    wanted = size is not None and size > 0
    if size is None and kind == "text":  # the default: split files, not rows
        if splitter_available():
            wanted = True
        else:
            logging.getLogger("hybrid_retriever").warning(
                "files are indexed whole: install the chunking extra to split them (pip install \"hybrid-retriever[chunking]\")"
            )
    if not wanted:
        return None, WindowCheck(window) if window is not None else None
    if unit == "characters" or window is None:
        if unit == "tokens" and size is not None:
            logging.getLogger("hybrid_retriever").warning("the index has no dense model: --chunk-size counts characters")
        return Chunker(size or None, overlap), None
    return Chunker(size or None, overlap, window=window), None


def _count_chunks(source: Path, chunker: "Chunker", follow_links: bool) -> int:
    """How many chunks SOURCE makes (a first pass for the progress bar; its warnings come in the real pass)."""
    from hybrid_retriever.sources import read_documents

    sources_log = logging.getLogger("hybrid_retriever.sources")
    quiet = logging.Filter("no-such-logger")  # rejects every record of the sources logger meanwhile
    sources_log.addFilter(quiet)
    try:
        return sum(1 for _ in read_documents(source, chunker=chunker, follow_links=follow_links))
    finally:
        sources_log.removeFilter(quiet)


@contextmanager
def _stop_on_interrupt(report: IngestReport) -> Iterator[None]:
    """Ctrl-C asks ``report``'s ingestion to stop after the current batch; a second one stops at once."""

    def handler(signum: int, frame: Any) -> None:
        if report.stop_requested:
            raise KeyboardInterrupt
        report.request_stop()
        err_console.print(
            f"\nstopping after the current batch; {report.written} documents written (Ctrl-C again to stop at once)",
            markup=False,
            soft_wrap=True,
        )

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@app.command()
def query(
    text: str = typer.Argument(..., help="What to search for."),
    index_path: Optional[Path] = typer.Option(None, "--index", "-i", help="Folder of an index built with `hybrid-retriever index`."),
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
    server: Optional[str] = typer.Option(
        None, "--server", help="Search through a running `hybrid-retriever serve` at this URL (e.g. an index it holds)."
    ),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="With --server: the service's API key (default: $HYBRID_RETRIEVER_API_KEY)."),
    group_by: Optional[str] = typer.Option(
        None, "--group-by", "-g", help="One hit per value of this metadata field, e.g. 'source' (one per file): its best chunk, "
        "with how many of its chunks matched and their ranks.",
    ),
    budget: Optional[int] = typer.Option(
        None, "--passages", min=1, help="Print passages for RAG instead: the best hits within N tokens, adjacent chunks of "
        "a file joined in reading order.",
    ),
) -> None:
    """Search the index at --index (or the one served at --server) for TEXT."""
    spec = parse_filter_option(filter)
    if index_path is not None and server is not None:
        raise InvalidInputError("give --index PATH or --server URL, not both: --server searches the index the service holds")
    if (index_path is None) == (server is None):
        raise InvalidInputError("give --index PATH (an index folder) or --server URL (a running `hybrid-retriever serve`)")
    if budget is not None and (group_by is not None or server is not None):
        raise InvalidInputError("--passages works on an --index, without --group-by (passages already join a file's chunks)")
    if server is not None:
        remote = contributed("hybrid_retriever.remote", "search", "server")
        hits = remote(server, text, k=k, filter=spec, api_key=api_key, **({"group_by": group_by} if group_by else {}))
        if as_json:
            typer.echo(json.dumps([h.as_dict() for h in hits], indent=2, ensure_ascii=False))
            return
        print_hits(hits, list(hits[0].provenance) if hits else [], explain=explain)
        return
    with open_index_with(index_path, config_file) as r:
        if budget is not None:
            _print_passages(r.search_passages(text, budget, k=k, filter=spec), as_json)
            return
        hits = r.search(text, k=k, filter=spec, group_by=group_by)
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


def _print_passages(passages: Sequence[Any], as_json: bool) -> None:
    """Passages (hybrid_retriever.grouping.Passage) as JSON or for people."""
    if as_json:
        typer.echo(json.dumps([p.as_dict() for p in passages], indent=2, ensure_ascii=False))
        return
    if not passages:
        console.print("no results")
    for n, p in enumerate(passages, start=1):
        console.print(Text(f"{n:>2}. ") + Text(p.source, style="cyan") + Text(
            f"  chunks {', '.join(p.ids)}; best rank {p.rank}, score {_fmt(p.score)}; {p.tokens} tokens", style="dim"), soft_wrap=True)
        console.print(Text(p.text), soft_wrap=True)
        console.print()


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
    from hybrid_retriever.retriever import HybridRetriever
    from hybrid_retriever.sources import read_jsonl

    corpus = demo_corpus_path()
    cfg = config_for_new_index(index_path, None)
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
    from hybrid_retriever.config import RetrieverConfig

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



@app.command("repair")
def repair_command(
    index_path: Path = typer.Option(..., "--index", "-i", help="Folder of the index to repair."),
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="The configuration the index was built with (.yaml/.json); default: the defaults."
    ),
) -> None:
    """Rebuild a missing or corrupt manifest.json from the stored documents (nothing is deleted)."""
    from hybrid_retriever.config import RetrieverConfig
    from hybrid_retriever.repair import repair_index

    report = repair_index(index_path, RetrieverConfig.from_file(config) if config is not None else None)
    console.print(report.summary(), markup=False, soft_wrap=True)


def _register_contributed_commands() -> None:
    """Add the commands of the ``hybrid_retriever.commands`` entry points (``serve`` from the server
    package); without the server package, ``serve`` says which extra to install."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="hybrid_retriever.commands"):
        try:
            app.command(ep.name)(ep.load())
        except ImportError as exc:
            logging.getLogger("hybrid_retriever").debug("command %r not available: %s", ep.name, exc)
    if not any(c.name == "serve" for c in app.registered_commands):

        @app.command("serve", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
        def serve_missing() -> None:
            """Serve an index over HTTP (needs the server extra)."""
            raise InvalidInputError("`serve` needs the server extra: pip install 'hybrid-retriever[server]'")


from hybrid_retriever.evaluation.rerank_cli import train_reranker_command  # noqa: E402

app.command("train-reranker")(train_reranker_command)

_register_contributed_commands()


if __name__ == "__main__":  # pragma: no cover
    app()
