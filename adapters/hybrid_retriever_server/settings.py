"""Settings of the HTTP service itself (auth, limits, CORS); the retriever keeps its own RetrieverConfig.

Every field can be set from the environment with the ``HYBRID_RETRIEVER_`` prefix, e.g.
``HYBRID_RETRIEVER_API_KEY``, ``HYBRID_RETRIEVER_ALLOWED_HOSTS=retriever.example.com`` or
``HYBRID_RETRIEVER_CORS_ORIGINS='["http://localhost:3000"]'``
(lists as JSON), which is how docker-compose configures it.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from hybrid_retriever.errors import ConfigError

ENV_PREFIX = "HYBRID_RETRIEVER_"


class ServerSettings(BaseModel):
    """Auth, allowed hosts, request limits and CORS of the service. The API key is a secret: never logged or shown."""

    model_config = ConfigDict(extra="forbid")

    api_key: Optional[SecretStr] = Field(
        default=None, description="When set, every data endpoint needs this key in the api_key_header header."
    )
    api_key_header: str = Field(default="X-API-Key", min_length=1)
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed to call the API from a browser.")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names (the Host header) the service answers to besides localhost, 127.0.0.1, [::1] and the address "
        "it listens on; '*' = any. Empty (the default): those only without an API key (DNS rebinding protection), any with one.",
    )
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0, description="Largest request body accepted.")
    max_batch: int = Field(default=256, gt=0, description="Documents per POST /documents (and ids per DELETE).")
    max_queries: int = Field(default=64, gt=0, description="Queries per POST /search/batch.")
    max_query_chars: int = Field(default=2000, gt=0, description="Longest query accepted.")
    max_text_chars: int = Field(default=100_000, gt=0, description="Longest document text accepted.")
    max_k: int = Field(default=100, gt=0, description="Largest k a search may ask for.")
    demo_page: bool = Field(default=True, description="Serve the demo page at /.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "ServerSettings":
        """Settings from ``HYBRID_RETRIEVER_*`` variables; ``overrides`` (e.g. from CLI options) win."""
        env = os.environ if environ is None else environ
        data: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is None or raw == "":
                continue
            data[name] = json.loads(raw) if field.annotation == list[str] and raw.lstrip().startswith("[") else raw
            if field.annotation == list[str] and isinstance(data[name], str):
                data[name] = [x.strip() for x in data[name].split(",") if x.strip()]
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"invalid server settings ({ENV_PREFIX}* variables or serve options): {problems}") from None

    def public(self) -> dict[str, Any]:
        """What GET /config shows: the limits, whether auth is on, never the key."""
        out = self.model_dump(exclude={"api_key"})
        out["auth"] = self.api_key is not None
        return out
