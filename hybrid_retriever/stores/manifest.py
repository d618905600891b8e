"""What built an index, and whether the current configuration can reopen it."""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 1

#: Branch settings that may differ on reopen without changing stored vectors.
_FREE_KEYS = {"avg_len"}
#: The manifest key holding a model's identity (hybrid_retriever.models.identity).
_HASH = "weights_sha256"


def build_manifest(
    branches: dict[str, dict[str, Any]], config: dict[str, Any], metadata_fields: list[str]
) -> dict[str, Any]:
    """The record kept beside the index (Edge) or in the collection metadata (server)."""
    from hybrid_retriever import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "library_version": __version__,
        "branches": branches,
        "metadata_fields": sorted(metadata_fields),
        "config": config,
    }


def mismatches(stored: dict[str, Any], current: dict[str, dict[str, Any]], partial: bool = False) -> list[str]:
    """Human-readable differences between stored branch settings and the current ones.

    With ``partial``, only the keys each current branch gives are compared (the
    settings known before its model loads). A model is identified by its weights: the
    same ``weights_sha256`` under another name or path is the same model, and an index
    written before hashes were recorded is not held to one.
    """
    problems: list[str] = []
    version = stored.get("schema_version")
    if version != SCHEMA_VERSION:
        problems.append(f"index schema version is {version}, this library writes {SCHEMA_VERSION}")
    stored_branches: dict[str, dict[str, Any]] = stored.get("branches", {})
    if set(stored_branches) != set(current):
        problems.append(f"index has branches {sorted(stored_branches)}, configuration has {sorted(current)}")
    for name in sorted(set(stored_branches) & set(current)):
        old, new = stored_branches[name], current[name]
        same_weights = old.get(_HASH) is not None and old.get(_HASH) == new.get(_HASH)
        for key in sorted(set(new) if partial else set(old) | set(new)):
            if key in _FREE_KEYS and new.get(key) is None:
                continue
            if key == _HASH and (old.get(key) is None or new.get(key) is None):
                continue  # not recorded by an older index, or the model is not on disk yet
            if key == "model" and same_weights:
                continue
            if old.get(key) != new.get(key):
                what = "model files (weights_sha256)" if key == _HASH else key
                problems.append(f"branch {name!r}: {what} is {old.get(key)!r} in the index, {new.get(key)!r} in the configuration")
    return problems
