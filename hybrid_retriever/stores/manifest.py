"""What built an index, and whether the current configuration can reopen it."""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 1

#: Branch settings that may differ on reopen without changing stored vectors.
_FREE_KEYS = {"avg_len", "language_detection"}


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


def mismatches(stored: dict[str, Any], current: dict[str, dict[str, Any]]) -> list[str]:
    """Human-readable differences between stored branch settings and the current ones."""
    problems: list[str] = []
    version = stored.get("schema_version")
    if version != SCHEMA_VERSION:
        problems.append(f"index schema version is {version}, this library writes {SCHEMA_VERSION}")
    stored_branches: dict[str, dict[str, Any]] = stored.get("branches", {})
    if set(stored_branches) != set(current):
        problems.append(f"index has branches {sorted(stored_branches)}, configuration has {sorted(current)}")
    for name in sorted(set(stored_branches) & set(current)):
        old, new = stored_branches[name], current[name]
        for key in sorted(set(old) | set(new)):
            if key in _FREE_KEYS and new.get(key) is None:
                continue
            if old.get(key) != new.get(key):
                problems.append(f"branch {name!r}: {key} is {old.get(key)!r} in the index, {new.get(key)!r} in the configuration")
    return problems
