"""The configuration an index records, made safe to load: an index folder is data, never code.

:meth:`HybridRetriever.open` builds its configuration from the manifest, which anyone
who can write the folder can edit. So before it is used:

* only what describes how the index was *built* is read back (store, branches, fusion,
  runtime); the query-time stages ``rerank`` and ``prf`` come from the caller's own
  configuration, never from a folder someone sent (a stored one is dropped, with a warning);
* every ``trust_remote_code`` stored there, in any section, is dropped: a model that needs
  its own code runs it only when the caller grants it in that call or for the process
  (:mod:`hybrid_retriever.models.trust`);
* every model reference, in any section, is checked: a path inside the index folder is
  refused (a folder that is copied, shared or served must not carry code or weights that
  get loaded), and so is a relative path (it would depend on the folder the process runs
  in); ``models=`` names a model explicitly instead, and its files must match the recorded
  ``weights_sha256``.

The fields are found through the configuration schema's markers
(:mod:`hybrid_retriever.config_security`), so a section or model field added later is
covered without a change here.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from hybrid_retriever.config_security import marked_fields
from hybrid_retriever.errors import IndexPathError, InvalidInputError, RemoteCodeError
from hybrid_retriever.models.trust import how_to_grant, remote_code_allowed

log = logging.getLogger(__name__)


#: Sections that switch on query-time stages: they come from the caller, never from an index folder.
QUERY_TIME_SECTIONS = ("rerank", "prf")


def stored_config(
    manifest: dict[str, Any],
    index_dir: Path,
    trust_remote_code: bool | None = None,
    models: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The manifest's configuration dict with untrusted settings removed or checked (see the module docs)."""
    from hybrid_retriever.config import RetrieverConfig

    config = manifest.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("branches", []), list):
        raise IndexPathError(f"the manifest of the index at {index_dir} has no valid 'config' section; the index is damaged")
    data = copy.deepcopy(config)
    for section in QUERY_TIME_SECTIONS:
        dropped = data.pop(section, None)
        if isinstance(dropped, dict) and dropped.get("enabled"):
            log.warning(
                "the index at %s records %s enabled; query-time stages come from your own configuration, not from "
                "an index folder: pass %s={...} to HybridRetriever.open, or --config FILE to the CLI",
                index_dir, section, section,
            )
    branches = [b for b in data.get("branches", []) if isinstance(b, dict)]
    names = [str(b.get("name") or b.get("kind")) for b in branches]
    unknown = sorted(set(models or {}) - set(names))
    if unknown:
        raise InvalidInputError(f"models= names unknown branch(es) {unknown}; the index has {names}")
    # A stored grant is never one: drop every trust field, remembering which branches asked.
    asked: set[int] = set()
    for f in list(marked_fields(RetrieverConfig, data)):
        if f.kind == "trust" and f.container.pop(f.key) is True and f.section == "branches":
            asked.add(id(f.container))
    # Every stored model reference (the caller's models= replace a branch's) must point outside the folder.
    overridden: set[int] = set()
    for name, b in zip(names, branches):
        if models and name in models:
            b["model"] = models[name]
            overridden.add(id(b))
    for f in marked_fields(RetrieverConfig, data):
        if f.kind == "model" and isinstance(f.value, str) and id(f.container) not in overridden:
            owner = next((n for n, b in zip(names, branches) if b is f.container), f.dotted())
            check_model_reference(f.value, index_dir, owner)
    recorded = manifest.get("branches") if isinstance(manifest.get("branches"), dict) else {}
    for name, b in zip(names, branches):
        if id(b) in asked or bool((recorded.get(name) or {}).get("remote_code")):
            if not remote_code_allowed(trust_remote_code):
                raise RemoteCodeError(
                    f"the index at {index_dir} was built with branch {name!r}'s model {b.get('model')!r} running its "
                    "own code (trust_remote_code). An index folder cannot grant that; "
                    + how_to_grant("HybridRetriever.open(path)")
                )
            b["trust_remote_code"] = True
    return data


def check_model_reference(ref: str, index_dir: Path, branch: str) -> None:
    """Refuse a recorded model path that lies inside the index folder or is relative."""
    fix = f"pass models={{{branch!r}: '/absolute/path/to/the/model'}} to HybridRetriever.open (same model files)"
    p = Path(ref).expanduser()
    if p.is_absolute():
        if p.resolve().is_relative_to(index_dir.resolve()):
            raise IndexPathError(
                f"the index at {index_dir} names branch {branch!r}'s model at {ref}, inside the index folder; models "
                f"are never loaded from an index folder (it is data). Keep the model elsewhere and {fix}"
            )
        return
    if ref.startswith((".", "~")) or p.exists():
        raise IndexPathError(
            f"the index at {index_dir} names branch {branch!r}'s model by the relative path {ref!r}, which would be "
            f"resolved against the folder this process runs in; {fix}"
        )
