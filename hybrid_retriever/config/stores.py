"""The ``store`` section: where the index lives (a local Qdrant Edge shard, or a Qdrant server)."""

from __future__ import annotations

import os
from typing import Annotated, Literal, Optional, Union
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, SerializationInfo, field_serializer, model_validator

from hybrid_retriever.config.base import LOADS_NOTHING, _Strict


class EdgeStoreConfig(_Strict):
    """Embedded Qdrant Edge shard on local disk (the default back-end)."""

    kind: Literal["edge"] = "edge"
    path: str = Field(default="./hybrid-index", description="Directory holding the shard.", json_schema_extra=LOADS_NOTHING)
    optimize_after_add: int = Field(
        default=1000,
        ge=0,
        description="Run Qdrant's optimizer after an add of at least this many documents "
        "(builds HNSW and sparse indexes; 0 = never automatically).",
    )


class QdrantStoreConfig(_Strict):
    """A Qdrant server, cluster or cloud reached through ``qdrant-client``.

    ``location=":memory:"`` (or ``path``) runs qdrant-client's in-process local mode,
    which speaks the same API and is meant for tests.
    """

    kind: Literal["qdrant"] = "qdrant"
    url: Optional[str] = Field(default=None, json_schema_extra=LOADS_NOTHING)
    location: Optional[str] = Field(default=None, json_schema_extra=LOADS_NOTHING)
    path: Optional[str] = Field(default=None, json_schema_extra=LOADS_NOTHING)
    # A secret: masked in repr/str and written as null to YAML/JSON (see _secret_out), so a saved
    # config carries no key; the environment variable supplies it again on reload.
    api_key: Optional[SecretStr] = Field(
        default=None,
        description="API key (Qdrant Cloud); never written out. None = read the variable named by api_key_env.",
    )
    api_key_env: Optional[str] = Field(
        default="QDRANT_API_KEY", description="Environment variable holding the API key when api_key is not given."
    )
    prefer_grpc: bool = False
    grpc_port: int = Field(default=6334, gt=0, lt=65536, description="Port of Qdrant's gRPC API (with prefer_grpc).")
    timeout: float = Field(
        default=10.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds one store operation may take, retries included (sub-second values are honoured).",
    )
    retries: int = Field(default=2, ge=0, description="Extra attempts of a read (search, get, count) that failed to connect or timed out.")
    retry_backoff_s: float = Field(
        default=0.1, ge=0, allow_inf_nan=False, description="Wait before the first retry of a read; doubled for each next one."
    )
    collection: str = "hybrid_retriever"
    # Distributed mode (a Qdrant cluster): how a new collection is split and copied, and how
    # many copies a write or read must reach. Applied when this library creates the collection.
    shard_number: Optional[int] = Field(default=None, gt=0, description="Shards of a new collection; None = Qdrant's default (one per node).")
    replication_factor: Optional[int] = Field(default=None, gt=0, description="Copies of each shard (cluster); None = Qdrant's default (1).")
    write_consistency_factor: Optional[int] = Field(
        default=None, gt=0, description="Replicas that must confirm a write; None = Qdrant's default (1)."
    )
    read_consistency: Optional[Union[Annotated[int, Field(gt=0)], Literal["all", "majority", "quorum"]]] = Field(
        default=None, description="Replicas a search or read must agree on: a number, 'all', 'majority' or 'quorum'; None = any one."
    )
    shard_key: Optional[str] = Field(
        default=None,
        description="Custom sharding: this retriever writes to and reads from the shard key given (created with the collection).",
    )
    write_ordering: Optional[Literal["weak", "medium", "strong"]] = Field(
        default=None,
        description="Order of writes across replicas: weak, medium (through the shard's leader when it is up) or strong "
        "(always the leader); None = Qdrant's default (weak).",
    )

    @model_validator(mode="after")
    def _one_target(self) -> "QdrantStoreConfig":
        given = [x for x in (self.url, self.location, self.path) if x]
        if len(given) != 1:
            raise ValueError("give exactly one of url, location (':memory:') or path for a qdrant store")
        if self.url:
            _check_url(self.url)
        return self

    @field_serializer("api_key")
    def _secret_out(self, key: Optional[SecretStr], info: SerializationInfo) -> Optional[SecretStr]:
        # Python-mode dumps (config copies: with_weights, tuning) keep the key, still masked;
        # JSON-mode dumps (YAML/JSON files, results, manifests) never contain it.
        return None if info.mode == "json" else key

    def resolved_api_key(self) -> str | None:
        """The API key to send: ``api_key``, else the environment variable ``api_key_env`` (None = no key)."""
        if self.api_key is not None:
            return self.api_key.get_secret_value() or None
        return (os.environ.get(self.api_key_env) or None) if self.api_key_env else None


def _check_url(url: str) -> None:
    """A Qdrant URL must be ``http(s)://host[:port][/prefix]``; say how to fix anything else."""
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError as exc:
        raise ValueError(f"url {url!r} is malformed ({exc}); write it as http://HOST:6333") from None
    if parts.scheme not in ("http", "https"):
        hint = f"http://{url}" if "://" not in url else "http://HOST:6333 or https://HOST:6333"
        raise ValueError(f"url {url!r} needs the scheme http:// or https://, e.g. {hint}")
    if not parts.hostname:
        raise ValueError(f"url {url!r} names no host; write it as {parts.scheme}://HOST:6333")


StoreConfig = Annotated[Union[EdgeStoreConfig, QdrantStoreConfig], Field(discriminator="kind")]
