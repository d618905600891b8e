"""HTTP service of hybrid-retriever: a FastAPI app over one index, with a demo page.

Example::

    from hybrid_retriever import RetrieverConfig
    from hybrid_retriever_server import ServerSettings, create_app

    app = create_app(RetrieverConfig(), ServerSettings(api_key="s3cret"))
    # uvicorn.run(app, host="127.0.0.1", port=8000), or: hybrid-retriever serve --index PATH

Install with ``pip install 'hybrid-retriever[server]'``. Names are imported on first use, so
the CLI's ``serve`` command and the ``query --server`` client load without FastAPI.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServerSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from hybrid_retriever_server.app import create_app

        return create_app
    if name == "ServerSettings":
        from hybrid_retriever_server.settings import ServerSettings

        return ServerSettings
    raise AttributeError(name)
