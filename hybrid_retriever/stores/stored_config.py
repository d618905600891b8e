"""The configuration an index records, made safe to load: an index folder is data, never code.

:meth:`HybridRetriever.open` builds its configuration from the manifest, which anyone
who can write the folder can edit. So before it is used:

* ``trust_remote_code`` stored there is dropped: a model that needs its own code runs
  it only when the caller grants it in that call or for the process
  (:mod:`hybrid_retriever.models.trust`);
* a model path inside the index folder is refused (a folder that is copied, shared
  or served must not carry code or weights that get loaded), and so is a relative
  path (it would depend on the folder the process runs in); ``models=`` names a model
  explicitly instead, and its files must match the recorded ``weights_sha256``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from hybrid_retriever.errors import IndexPathError, InvalidInputError, RemoteCodeError
from hybrid_retriever.models.trust import how_to_grant, remote_code_allowed


def stored_config(
    manifest: dict[str, Any],
    index_dir: Path,
    trust_remote_code: bool | None = None,
    models: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The manifest's configuration dict with untrusted settings removed or checked (see the module docs)."""
    config = manifest.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("branches", []), list):
        raise IndexPathError(f"the manifest of the index at {index_dir} has no valid 'config' section; the index is damaged")
    data = copy.deepcopy(config)
    branches = [b for b in data.get("branches", []) if isinstance(b, dict)]
    names = [str(b.get("name") or b.get("kind")) for b in branches]
    unknown = sorted(set(models or {}) - set(names))
    if unknown:
        raise InvalidInputError(f"models= names unknown branch(es) {unknown}; the index has {names}")
    recorded = manifest.get("branches") if isinstance(manifest.get("branches"), dict) else {}
    for name, b in zip(names, branches):
        built_with_code = bool(b.pop("trust_remote_code", False)) or bool((recorded.get(name) or {}).get("remote_code"))
        if models and name in models:
            b["model"] = models[name]
        elif isinstance(b.get("model"), str):
            check_model_reference(b["model"], index_dir, name)
        if built_with_code:
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
