"""What built an index, and whether the current configuration can reopen it."""

from __future__ import annotations

import math
from typing import Any

from hybrid_retriever.errors import IndexCorruptError
from hybrid_retriever.version import __version__

SCHEMA_VERSION = 1

#: Top-level keys of a manifest and the JSON types they must have.
_REQUIRED: dict[str, tuple[type, ...]] = {
    "schema_version": (int,),
    "library_version": (str,),
    "branches": (dict,),
    "metadata_fields": (list,),
    "config": (dict,),
}

#: The key where a single-writer store records how many documents it holds: [least, most]
#: (a range while a write is in flight; see EdgeStore). Absent in indexes written before it.
DOCUMENTS_KEY = "documents"

#: BM25 statistics a manifest records, with what a sound value is (NaN, infinity, 0 lengths are not).
_BM25_NUMBERS: dict[str, tuple[str, Any]] = {
    "k1": ("a finite number >= 0", lambda v: v >= 0),
    "b": ("a number from 0 to 1", lambda v: 0 <= v <= 1),
    "avg_len": ("a finite number > 0", lambda v: v > 0),
}

#: Branch settings that may differ on reopen without changing stored vectors.
_FREE_KEYS = {"avg_len", "language_detection"}
#: Branch entries checked by the branch itself, not by equality (the identity probe: a vector within a tolerance).
_CHECKED_BY_BRANCH = {"probe"}
#: Branch settings recorded only by newer versions, with the value older indexes were built with.
_ADDED_LATER: dict[str, Any] = {"tokenizer": "word"}
#: The manifest key holding a model's identity (hybrid_retriever.models.identity).
_HASH = "weights_sha256"


def build_manifest(
    branches: dict[str, dict[str, Any]], config: dict[str, Any], metadata_fields: list[str]
) -> dict[str, Any]:
    """The record kept beside the index (Edge) or in the collection metadata (server)."""
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
            if key in _FREE_KEYS and new.get(key) is None or key in _CHECKED_BY_BRANCH:
                continue
            if key not in old and key in _ADDED_LATER and new.get(key) == _ADDED_LATER[key]:
                continue  # an index written before the key existed, built the way its old default says
            if key == _HASH and (old.get(key) is None or new.get(key) is None):
                continue  # not recorded by an older index, or the model is not on disk yet
            if key == "model" and same_weights:
                continue
            if old.get(key) != new.get(key):
                what = "model files (weights_sha256)" if key == _HASH else key
                problems.append(f"branch {name!r}: {what} is {old.get(key)!r} in the index, {new.get(key)!r} in the configuration")
    return problems


def validate_manifest(data: Any, where: str, fix: str) -> dict[str, Any]:
    """``data`` (a parsed manifest) if its structure is sound, else :class:`IndexCorruptError`.

    Checks the keys and JSON types everything downstream relies on; extra keys are
    allowed (newer fields). ``where`` names the file in the message, ``fix`` says what to do.
    """
    problems = _structure_problems(data)
    if problems:
        raise IndexCorruptError(f"the index manifest {where} is corrupt: {'; '.join(problems)}. {fix}")
    return data


def _structure_problems(data: Any) -> list[str]:
    if not isinstance(data, dict):
        return [f"it holds {_json_type(data)}, not an object"]
    problems = []
    for key, types in _REQUIRED.items():
        if key not in data:
            problems.append(f"key {key!r} is missing")
        elif not isinstance(data[key], types) or isinstance(data[key], bool):
            problems.append(f"{key!r} is {_json_type(data[key])}, expected {_json_type(types[0]())}")
    if problems:
        return problems
    if not data["branches"]:
        problems.append("'branches' is empty")
    for name, branch in data["branches"].items():
        if not isinstance(branch, dict) or not isinstance(branch.get("kind"), str):
            problems.append(f"branch {name!r} is not an object with a 'kind'")
    if not all(isinstance(f, str) for f in data["metadata_fields"]):
        problems.append("'metadata_fields' holds non-strings")
    if not isinstance(data["config"].get("branches"), list):
        problems.append("'config' has no 'branches' list")
    for name, branch in data["branches"].items():
        if isinstance(branch, dict) and branch.get("kind") == "bm25":
            problems += _bm25_problems(f"branch {name!r}", branch)
            languages = branch.get("per_document_languages")
            for lang, stats in languages.items() if isinstance(languages, dict) else ():
                problems += _bm25_problems(f"branch {name!r} language {lang!r}", stats if isinstance(stats, dict) else {})
    docs = data.get(DOCUMENTS_KEY)
    if docs is not None and not (
        isinstance(docs, list) and len(docs) == 2 and all(type(v) is int and v >= 0 for v in docs) and docs[0] <= docs[1]
    ):
        problems.append(f"{DOCUMENTS_KEY!r} is {docs!r}, expected [least, most] document counts")
    return problems


def _bm25_problems(where: str, stats: dict[str, Any]) -> list[str]:
    """BM25 statistics that would make every score NaN, infinite or zero."""
    problems = []
    for key, (sound, ok) in _BM25_NUMBERS.items():
        v = stats.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(v):
            problems.append(f"{where}: {key} is {v!r}, expected {sound}")
    return problems


def _json_type(value: Any) -> str:
    """What ``value`` is in JSON terms, with its article ("an array")."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), f"a {type(value).__name__}")
