"""The manifest of an open index, and the checks that the branches loaded are the ones that built it.

An index records what built it (:mod:`hybrid_retriever.stores.manifest`): every branch's
settings and model identity, each model's identity probe, the metadata fields stored and the
sources that filled it. A :class:`~hybrid_retriever.retriever.HybridRetriever` keeps one
:class:`IndexManifest` (the writer, :mod:`hybrid_retriever.index_writer`, keeps it in step
with the store) and checks it in two steps, so that opening an index loads no model:

* **On open** (:meth:`IndexManifest.check_on_open`): what is known without a model. A model
  that ran its own code (``trust_remote_code``) loads only when the caller grants it; each
  branch restores what it learned at first ingest (BM25 ``avg_len``, the detected language);
  a different model or setting is an :class:`~hybrid_retriever.errors.IndexMismatchError` at once.
* **Before the first encoding** (:meth:`IndexManifest.verify`, once, thread-safe): every stored
  setting, those read from the loaded models included (dimension, weights' hash), and each
  branch's identity probe (the encoder reproduces the vector the model gave for a fixed text
  when the index was built, see :mod:`hybrid_retriever.models.probe`).
"""

from __future__ import annotations

import threading
from typing import Any, Mapping

from hybrid_retriever.branches.base import Branch
from hybrid_retriever.errors import IndexMismatchError, RemoteCodeError
from hybrid_retriever.models.trust import how_to_grant
from hybrid_retriever.stores.base import Store
from hybrid_retriever.stores.manifest import mismatches


class IndexManifest:
    """The manifest of the index in ``store`` (``data``; None until the first write creates the index)."""

    def __init__(self, store: Store, branches: Mapping[str, Branch]) -> None:
        self.store = store
        self.branches = branches
        self.data: dict[str, Any] | None = store.read_manifest()
        # A new index has nothing to check; settings that need a loaded model are checked on first
        # use (verify), after the call's own input was validated.
        self._verified = self.data is None
        self._verify_lock = threading.Lock()

    def check_on_open(self) -> None:
        """The settings known without loading a model: a different model is an error at once."""
        if self.data is None:
            return
        for name, branch in self.branches.items():
            stored = self.data.get("branches", {}).get(name, {})
            if stored.get("remote_code") and not getattr(branch.config, "trust_remote_code", False):
                raise RemoteCodeError(
                    f"the index at {self.store.location} was built with branch {name!r}'s model "
                    f"{stored.get('model')!r} running its own code (trust_remote_code); reopening it runs that code "
                    "again, which only the caller can allow: set trust_remote_code: true on the branch in code, "
                    + how_to_grant("HybridRetriever.open(path)")
                )
            branch.restore(stored)  # statistics learned at first ingest (BM25 avg_len, detected language)
        declared = {n: b.declared_manifest() for n, b in self.branches.items()}
        self._raise_mismatches(mismatches(self.data, declared, partial=True))

    def verify(self) -> None:
        """Once, before the first encoding: every stored setting, including those read from loaded models."""
        if self._verified:
            return
        with self._verify_lock:
            if not self._verified:
                self._raise_mismatches(mismatches(self.data or {}, self.branch_manifests()))
                stored = (self.data or {}).get("branches", {})
                for name, b in self.branches.items():
                    b.check_probe((stored.get(name) or {}).get("probe"))  # the encoder reproduces the model's vector
                self._verified = True

    def branch_manifests(self) -> dict[str, dict[str, Any]]:
        """What each loaded branch would record (its settings and its model's identity)."""
        return {name: b.manifest() for name, b in self.branches.items()}

    @property
    def metadata_fields(self) -> list[str]:
        """Metadata fields seen in stored documents (the fields filters may name)."""
        return list(self.data["metadata_fields"]) if self.data else []

    @property
    def sources(self) -> list[str] | None:
        """The sources recorded as having filled the index; None when none were recorded."""
        recorded = (self.data or {}).get("sources")
        return [str(s) for s in recorded] if isinstance(recorded, list) else None

    def _raise_mismatches(self, problems: list[str]) -> None:
        if problems:
            raise IndexMismatchError(
                f"the index at {self.store.location} was built with other settings:\n  - "
                + "\n  - ".join(problems)
                + "\nReopen it with the settings it was built with (HybridRetriever.open(path) reads them from the "
                "index), or build a new index at another path or collection."
            )
