"""Who may allow a model's own Python code to run (``trust_remote_code``).

Index folders, configuration files and model folders are data: opening or reading
them never runs code. A model that needs its own code (``trust_remote_code``) runs it
only when the caller grants it explicitly:

* per call: ``HybridRetriever.open(path, trust_remote_code=True)``,
  ``RetrieverConfig.from_file(path, trust_remote_code=True)``, or a config object built
  in code with ``trust_remote_code=True`` on the branch;
* per process: :func:`allow_remote_code`, the environment variable
  ``HYBRID_RETRIEVER_TRUST_REMOTE_CODE=1``, or the CLI's ``--trust-remote-code``.

A value stored in an index's manifest or written in a configuration file is never a grant.
"""

from __future__ import annotations

import os

#: Environment variable that grants trust_remote_code for the whole process.
ENV_VAR = "HYBRID_RETRIEVER_TRUST_REMOTE_CODE"

_granted = False


def allow_remote_code(allowed: bool = True) -> None:
    """Grant (or withdraw) ``trust_remote_code`` for every model this process loads."""
    global _granted
    _granted = allowed


def remote_code_allowed(explicit: bool | None = None) -> bool:
    """Whether the caller granted ``trust_remote_code``: ``explicit`` when given, else the process grant."""
    if explicit is not None:
        return bool(explicit)
    return _granted or os.environ.get(ENV_VAR, "").strip().lower() in ("1", "true", "yes")


def how_to_grant(call: str) -> str:
    """The sentence telling a user how to grant trust, ``call`` being the Python call they made."""
    return (
        f"if you trust that code, pass trust_remote_code=True to {call}, run the CLI with "
        f"--trust-remote-code, or set {ENV_VAR}=1 for the process"
    )
