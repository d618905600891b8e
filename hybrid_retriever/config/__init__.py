"""One typed configuration object for the whole retriever.

The Python API, the CLI and the adapters all take a :class:`RetrieverConfig`; it
round-trips to YAML and JSON unchanged::

    >>> from hybrid_retriever.config import RetrieverConfig
    >>> cfg = RetrieverConfig.model_validate({"store": {"kind": "edge", "path": "./index"}})
    >>> RetrieverConfig.from_yaml(cfg.to_yaml()) == cfg
    True

One module per section, every name importable from here as well:
:mod:`~hybrid_retriever.config.stores` (``store``), :mod:`~hybrid_retriever.config.branches`
(``branches``), :mod:`~hybrid_retriever.config.fusion`, :mod:`~hybrid_retriever.config.runtime`,
:mod:`~hybrid_retriever.config.prf`, :mod:`~hybrid_retriever.config.rerank`; what they share is in
:mod:`~hybrid_retriever.config.base`. :class:`RetrieverConfig`, the root, is defined here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from hybrid_retriever.config.base import GRANTS_CODE, LOADS_MODEL, LOADS_NOTHING, _explain, _Strict
from hybrid_retriever.config.branches import (
    DEFAULT_DENSE_MODEL,
    BM25BranchConfig,
    BranchConfig,
    DenseBranchConfig,
    MultiVectorBranchConfig,
    MuveraConfig,
)
from hybrid_retriever.config.fusion import (
    CompletedNormalization,
    FusionConfig,
    FusionMethod,
    MissingPolicy,
    Normalization,
)
from hybrid_retriever.config.prf import PRFConfig, PRFGuardConfig, PRFPlacement
from hybrid_retriever.config.rerank import RerankConfig, RerankOrder
from hybrid_retriever.config.runtime import RuntimeConfig
from hybrid_retriever.config.stores import EdgeStoreConfig, QdrantStoreConfig, StoreConfig
from hybrid_retriever.config_security import marked_fields
from hybrid_retriever.errors import ConfigError

__all__ = [
    "DEFAULT_DENSE_MODEL",
    "GRANTS_CODE",
    "LOADS_MODEL",
    "LOADS_NOTHING",
    "BM25BranchConfig",
    "BranchConfig",
    "CompletedNormalization",
    "DenseBranchConfig",
    "EdgeStoreConfig",
    "FusionConfig",
    "FusionMethod",
    "MissingPolicy",
    "MultiVectorBranchConfig",
    "MuveraConfig",
    "Normalization",
    "PRFConfig",
    "PRFGuardConfig",
    "PRFPlacement",
    "QdrantStoreConfig",
    "RerankConfig",
    "RerankOrder",
    "RetrieverConfig",
    "RuntimeConfig",
    "StoreConfig",
]


class RetrieverConfig(_Strict):
    """Everything a :class:`~hybrid_retriever.retriever.HybridRetriever` needs."""

    store: StoreConfig = Field(default_factory=EdgeStoreConfig)
    branches: list[BranchConfig] = Field(
        default_factory=lambda: [BM25BranchConfig(weight=0.5), DenseBranchConfig(weight=0.5)]
    )
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    prf: PRFConfig = Field(default_factory=PRFConfig)
    rerank: RerankConfig = Field(default_factory=RerankConfig)

    @field_validator("branches")
    @classmethod
    def _valid_branches(cls, branches: list[Any]) -> list[Any]:
        if not branches:
            raise ValueError("at least one branch is needed (bm25, dense)")
        names = [b.branch_name for b in branches]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"branch names must be unique; repeated: {dupes} (set 'name' on each)")
        total = sum(b.weight for b in branches)
        if total <= 0:
            raise ValueError("branch weights are all zero; give at least one branch a positive weight")
        if not math.isfinite(total):  # each is finite, but e.g. 1e308 + 1e308 overflows and every score would be 0
            raise ValueError("branch weights sum to more than the largest float; scale them down (only their ratios matter)")
        return branches

    @model_validator(mode="after")
    def _valid_prf(self) -> "RetrieverConfig":
        if not self.prf.enabled:
            return self
        unknown = set(self.prf.branches or []) - set(self.branch_names)
        if unknown:
            raise ValueError(f"prf.branches names unknown branch(es) {sorted(unknown)}; branches: {self.branch_names}")
        if self.prf.branches is not None and not self.prf.branches:
            raise ValueError("prf.branches is empty: name the branches that get feedback, or leave it unset")
        if self.fusion.server_side:
            raise ValueError("PRF needs per-branch scores: set fusion.server_side to false, or prf.enabled to false")
        return self

    # -- access helpers -------------------------------------------------------------

    def branch(self, name: str) -> Any:
        """The config of the branch called ``name``."""
        for b in self.branches:
            if b.branch_name == name:
                return b
        raise ConfigError(f"unknown branch {name!r}; this configuration has {self.branch_names}")

    @property
    def branch_names(self) -> list[str]:
        return [b.branch_name for b in self.branches]

    def weights(self) -> dict[str, float]:
        """Branch weights normalised to sum to one."""
        total = sum(b.weight for b in self.branches)
        return {b.branch_name: b.weight / total for b in self.branches}

    def with_weights(self, weights: dict[str, float]) -> "RetrieverConfig":
        """A copy with the given branch weights (unknown names are an error)."""
        unknown = set(weights) - set(self.branch_names)
        if unknown:
            raise ConfigError(f"unknown branch(es) {sorted(unknown)}; known: {self.branch_names}")
        data = self.model_dump()
        for b in data["branches"]:
            name = b["name"] or b["kind"]
            if name in weights:
                b["weight"] = weights[name]
        return RetrieverConfig.validate_data(data)

    # -- (de)serialisation ----------------------------------------------------------

    @classmethod
    def validate_data(cls, data: dict[str, Any]) -> "RetrieverConfig":
        """Validate a plain dict, turning pydantic's errors into one :class:`ConfigError`."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_explain(exc)) from None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str, trust_remote_code: bool | None = None) -> "RetrieverConfig":
        """Parse JSON text; ``trust_remote_code: true`` in it must be granted by the caller (see ``from_file``)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"configuration is not valid JSON: {exc}") from None
        except RecursionError:
            raise ConfigError("configuration is nested too deeply to be a configuration") from None
        return _granted(cls.validate_data(data), trust_remote_code, "the configuration")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str, trust_remote_code: bool | None = None) -> "RetrieverConfig":
        """Parse YAML text; ``trust_remote_code: true`` in it must be granted by the caller (see ``from_file``)."""
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"configuration is not valid YAML: {exc}") from None
        except RecursionError:
            raise ConfigError("configuration is nested too deeply to be a configuration") from None
        if not isinstance(data, dict):
            raise ConfigError("configuration must be a mapping at its top level")
        return _granted(cls.validate_data(data), trust_remote_code, "the configuration")

    @classmethod
    def from_file(cls, path: str | Path, trust_remote_code: bool | None = None) -> "RetrieverConfig":
        """Read a ``.yaml``/``.yml`` or ``.json`` configuration file.

        A file is data: a branch with ``trust_remote_code: true`` in it is refused unless
        the caller grants it here (``trust_remote_code=True``) or for the process
        (:mod:`hybrid_retriever.models.trust`).
        """
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"configuration file {p} does not exist")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read configuration file {p}: {exc}") from None
        try:
            return cls.from_json(text, trust_remote_code) if p.suffix.lower() == ".json" else cls.from_yaml(text, trust_remote_code)
        except ConfigError as exc:
            raise type(exc)(f"{p}: {exc}") from None

    def save(self, path: str | Path, header: str | None = None) -> None:
        """Write to ``.json`` or YAML (any other suffix); ``header`` becomes a YAML comment block."""
        p = Path(path)
        if p.suffix.lower() == ".json":
            p.write_text(self.to_json() + "\n", encoding="utf-8")
            return
        comment = "".join(f"# {line}\n" for line in header.splitlines()) if header else ""
        p.write_text(comment + self.to_yaml(), encoding="utf-8")


def _granted(config: RetrieverConfig, trust_remote_code: bool | None, source: str) -> RetrieverConfig:
    """``config`` read from ``source``, unless it turns on trust_remote_code that the caller did not grant.

    Every grant field in every section counts (found through the schema's markers, see
    :mod:`hybrid_retriever.config_security`), so a section added later is covered too.
    """
    from hybrid_retriever.errors import RemoteCodeError
    from hybrid_retriever.models.trust import how_to_grant, remote_code_allowed

    data = config.model_dump(mode="json")
    asking = [f.dotted() for f in marked_fields(RetrieverConfig, data) if f.kind == "trust" and f.value is True]
    if asking and not remote_code_allowed(trust_remote_code):
        raise RemoteCodeError(
            f"{source} sets trust_remote_code: true at {asking}, which would run code shipped with the "
            "model; a configuration file cannot grant that. Remove it, or, "
            + how_to_grant("RetrieverConfig.from_file(path)")
        )
    return config
