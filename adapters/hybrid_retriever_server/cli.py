"""``hybrid-retriever serve``: the HTTP service on an Edge index folder or a Qdrant server.

Registered through the ``hybrid_retriever.commands`` entry point, so the core CLI never
imports this package. FastAPI and uvicorn are imported only when the command runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from hybrid_retriever.errors import ConfigError, InvalidInputError

if TYPE_CHECKING:  # imported where used: the CLI loads this module for `--help` too
    from hybrid_retriever.config import RetrieverConfig
    from hybrid_retriever.retriever import HybridRetriever

log = logging.getLogger("hybrid_retriever_server")

#: Where the service looks for an index when neither --index nor --qdrant-url is given.
DEFAULT_INDEX = "./hybrid-index"


def serve(
    index_path: Optional[Path] = typer.Option(
        None, "--index", "-i", envvar="HYBRID_RETRIEVER_INDEX",
        help="Edge index folder (opened with the settings it was built with; created on first add).",
    ),
    qdrant_url: Optional[str] = typer.Option(
        None, "--qdrant-url", envvar="HYBRID_RETRIEVER_QDRANT_URL", help="Serve a collection on this Qdrant server instead."
    ),
    collection: Optional[str] = typer.Option(None, "--collection", help="Qdrant collection (default: the config's)."),
    config_file: Optional[Path] = typer.Option(
        None, "--config", "-c", envvar="HYBRID_RETRIEVER_CONFIG", help="RetrieverConfig (.yaml/.json) to serve with."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 in a container)."),
    port: int = typer.Option(8000, "--port", "-p", min=1, max=65535),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's log level."),
) -> None:
    """Serve the index over HTTP (API, OpenAPI docs at /docs, demo page at /).

    One process holds an Edge index and serves requests concurrently; for several
    workers or replicas put the index on a Qdrant server (--qdrant-url). Auth, limits
    and CORS come from HYBRID_RETRIEVER_* variables (HYBRID_RETRIEVER_API_KEY, ...).
    """
    try:
        import uvicorn

        from hybrid_retriever_server.app import create_app
        from hybrid_retriever_server.settings import ServerSettings
    except ImportError as exc:
        raise InvalidInputError(
            f"`serve` needs the server extra ({exc.name} is missing): pip install 'hybrid-retriever[server]'"
        ) from None
    settings = ServerSettings.from_env()
    config = _config(index_path, qdrant_url, collection, config_file)
    app = create_app(lambda: open_retriever(config, use_index_settings=config_file is None), settings)
    typer.echo(f"serving {config.store.kind} index {_where(config)} at http://{host}:{port}/ (API docs: /docs)", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, workers=1)


def _config(index_path: Path | None, qdrant_url: str | None, collection: str | None, config_file: Path | None) -> RetrieverConfig:
    from hybrid_retriever.config import RetrieverConfig

    if index_path is not None and qdrant_url is not None:
        raise ConfigError("give --index (an Edge folder) or --qdrant-url, not both")
    cfg = RetrieverConfig.from_file(config_file) if config_file is not None else RetrieverConfig()
    data = cfg.model_dump(mode="json")
    if qdrant_url is not None:
        store = data["store"] if data["store"]["kind"] == "qdrant" else {"kind": "qdrant"}
        store.update(url=qdrant_url, location=None, path=None)
        data["store"] = store
    elif index_path is not None or data["store"]["kind"] == "edge":
        path = str(index_path) if index_path is not None else data["store"].get("path") or DEFAULT_INDEX
        data["store"] = {**(data["store"] if data["store"]["kind"] == "edge" else {}), "kind": "edge", "path": path}
    if collection is not None:
        if data["store"]["kind"] != "qdrant":
            raise ConfigError("--collection is for a Qdrant store; add --qdrant-url")
        data["store"]["collection"] = collection
    return RetrieverConfig.validate_data(data)


def open_retriever(config: RetrieverConfig, use_index_settings: bool = True) -> HybridRetriever:
    """The retriever to serve. An existing Edge index opens with the settings it was built with
    (``use_index_settings``) or with ``config``'s, which must match its branches; a new folder or
    a Qdrant collection uses ``config``."""
    from hybrid_retriever.config import EdgeStoreConfig
    from hybrid_retriever.retriever import HybridRetriever
    from hybrid_retriever.stores.edge import MANIFEST_FILE

    store = config.store
    if use_index_settings and isinstance(store, EdgeStoreConfig) and (Path(store.path) / MANIFEST_FILE).is_file():
        return HybridRetriever.open(store.path)
    return HybridRetriever(config)


def _where(config: RetrieverConfig) -> str:
    from hybrid_retriever.config import QdrantStoreConfig

    store = config.store
    if isinstance(store, QdrantStoreConfig):
        return f"{store.url or store.location or store.path} collection {store.collection}"
    return store.path
