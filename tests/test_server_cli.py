"""`hybrid-retriever serve` and `query --server`: how the command is found and which store it serves."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybrid_retriever.cli import app
from hybrid_retriever.cli_common import contributed
from hybrid_retriever.config import EdgeStoreConfig, QdrantStoreConfig, RetrieverConfig
from hybrid_retriever.errors import ConfigError, InvalidInputError
from hybrid_retriever_server.cli import DEFAULT_INDEX, _config, serve


def test_serve_is_contributed_through_an_entry_point() -> None:
    names = {c.name: c.callback for c in app.registered_commands}
    assert names["serve"] is serve  # the core CLI found it without importing the package itself
    help_text = CliRunner().invoke(app, ["serve", "--help"]).output
    assert "--qdrant-url" in help_text and "--index" in help_text


def test_a_missing_extension_names_the_extra_to_install() -> None:
    with pytest.raises(InvalidInputError, match=r"pip install 'hybrid-retriever\[server\]'"):
        contributed("hybrid_retriever.no_such_group", "search", "server")


def test_query_needs_an_index_or_a_server() -> None:
    for args in (["query", "x"], ["query", "x", "--index", "i", "--server", "http://127.0.0.1:1"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "--server URL" in result.output


def test_query_through_an_unreachable_server_is_one_clear_error() -> None:
    result = CliRunner().invoke(app, ["query", "x", "--server", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and "hybrid-retriever serve" in result.output


def test_serve_picks_the_store(tmp_path: Path) -> None:
    default = _config(None, None, None, None)
    assert isinstance(default.store, EdgeStoreConfig) and default.store.path == DEFAULT_INDEX
    edge = _config(tmp_path / "idx", None, None, None)
    assert isinstance(edge.store, EdgeStoreConfig) and edge.store.path == str(tmp_path / "idx")
    remote = _config(None, "http://qdrant:6333", "docs", None)
    assert isinstance(remote.store, QdrantStoreConfig)
    assert (remote.store.url, remote.store.collection, remote.store.location) == ("http://qdrant:6333", "docs", None)
    # A config file's branches and fusion are kept; the URL replaces its store's target.
    cfg_file = tmp_path / "c.yaml"
    RetrieverConfig.model_validate({"fusion": {"method": "rrf"}, "store": {"kind": "qdrant", "location": ":memory:", "shard_number": 2}}).save(cfg_file)
    from_file = _config(None, "http://q:6333", None, cfg_file)
    assert from_file.fusion.method == "rrf" and from_file.store.url == "http://q:6333" and from_file.store.shard_number == 2
    with pytest.raises(ConfigError, match="not both"):
        _config(tmp_path, "http://q:6333", None, None)
    with pytest.raises(ConfigError, match="--collection"):
        _config(tmp_path, None, "docs", None)


def test_serve_without_the_server_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the [server] extra were not installed
    result = CliRunner().invoke(app, ["serve", "--index", "somewhere"])
    assert result.exit_code == 2
    assert "pip install 'hybrid-retriever[server]'" in result.output and "uvicorn" in result.output
