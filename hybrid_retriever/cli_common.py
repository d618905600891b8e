"""Shared pieces of the command line: the consoles, the error exit, opening and creating indexes.

Every command module (``cli``, ``evaluation.cli``, ``evaluation.rerank_cli``, ``repair``) imports
these from here, so none of them imports another's module to reach them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from hybrid_retriever.errors import ConfigError, InvalidInputError

if TYPE_CHECKING:  # imported where used: `hybrid-retriever --help` loads none of them
    from hybrid_retriever.config import RetrieverConfig
    from hybrid_retriever.retriever import HybridRetriever

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


def index_exists(path: str | Path) -> bool:
    """Whether ``path`` holds an index built by this library."""
    from hybrid_retriever.stores.edge import MANIFEST_FILE

    return (Path(path).expanduser() / MANIFEST_FILE).is_file()


def _no_index(path: str | Path) -> None:
    """Raise the error for a folder without a manifest: ``repair`` where index data is there, else build one."""
    from hybrid_retriever.retriever import HybridRetriever
    from hybrid_retriever.stores.edge import SHARD_DIR

    if (Path(path).expanduser() / SHARD_DIR).is_dir():
        HybridRetriever.open(str(path)).close()  # raises the store's error: documents but no manifest, run repair
        raise InvalidInputError(
            f"the index at {path} has data but no manifest.json; run `hybrid-retriever repair --index {path}`"
        )
    raise InvalidInputError(f"no index at {path}; build one first: hybrid-retriever index SOURCE --index {path}")


def open_index(path: str | Path, **overrides: Any) -> HybridRetriever:
    """Reopen the index at ``path`` with the settings it was built with (see :meth:`HybridRetriever.open`)."""
    from hybrid_retriever.retriever import HybridRetriever

    if not index_exists(path):
        _no_index(path)
    return HybridRetriever.open(str(path), **overrides)


def open_index_with(path: str | Path, config_file: Path | None) -> HybridRetriever:
    """Reopen the index at ``path`` with its own settings, or with ``config_file``'s (store set to ``path``).

    Branch settings in the file must match the index's (an IndexMismatchError says which
    differ); fusion, weights, depths, PRF and runtime settings are taken from the file.
    """
    from hybrid_retriever.config import RetrieverConfig
    from hybrid_retriever.retriever import HybridRetriever

    if config_file is None:
        return open_index(path)
    if not index_exists(path):
        _no_index(path)
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


def config_for_new_index(index: Path, config_file: Path | None) -> RetrieverConfig:
    """The configuration file's settings (or the defaults) with the store set to the Edge folder ``index``."""
    from hybrid_retriever.config import EdgeStoreConfig, RetrieverConfig

    cfg = RetrieverConfig.from_file(config_file) if config_file is not None else RetrieverConfig()
    if not isinstance(cfg.store, EdgeStoreConfig):
        raise ConfigError(
            f"the CLI builds a local index at --index; {config_file} names a '{cfg.store.kind}' store. "
            "Remove the store section, or use the Python API to index into a Qdrant server"
        )
    data = cfg.model_dump()
    data["store"] = {**data["store"], "path": str(index)}
    return RetrieverConfig.validate_data(data)


def contributed(group: str, name: str, extra: str) -> Any:
    """The object an installed package registers as entry point ``name`` in ``group``.

    Adapters (e.g. the HTTP service) plug in this way, so the core never imports them.
    """
    from importlib.metadata import entry_points

    for ep in entry_points(group=group):
        if ep.name == name:
            try:
                return ep.load()
            except ImportError:
                break
    raise InvalidInputError(f"this needs the {extra} extra: pip install 'hybrid-retriever[{extra}]'")
