"""The library's exception types. Every message names the problem and the fix."""

from __future__ import annotations


class HybridRetrieverError(Exception):
    """Base class of every error this library raises on purpose."""


class ConfigError(HybridRetrieverError, ValueError):
    """The configuration is invalid (unknown branch or fusion name, bad weights, ...)."""


class InvalidInputError(HybridRetrieverError, ValueError):
    """A query, document, id list or argument is unusable as given."""


class IndexMismatchError(HybridRetrieverError):
    """An existing index was built with settings that differ from the ones asked for."""


class FilterError(HybridRetrieverError, ValueError):
    """A filter is malformed or names a field no stored document has."""


class StoreUnavailableError(HybridRetrieverError, ConnectionError):
    """The Qdrant back-end cannot be reached or refused the request."""


class IndexPathError(HybridRetrieverError):
    """The index path cannot hold an index (it is a file, or not writable)."""


class RemoteCodeError(HybridRetrieverError, PermissionError):
    """A model needs to run its own code (trust_remote_code) and the caller has not allowed it."""


class IndexCorruptError(HybridRetrieverError):
    """An index folder's files are damaged or incomplete (an unreadable manifest, stored data without one)."""


class IndexLockedError(IndexPathError):
    """Another retriever, in this or another process, has the Edge index folder open."""


class BranchFailureError(HybridRetrieverError):
    """A retrieval branch failed or timed out and ``runtime.on_branch_error`` is ``raise``,
    or every branch of a search failed (then there is nothing to return)."""


class ModelCacheError(HybridRetrieverError):
    """A cached model file (an ONNX export) does not match what was recorded when it was made."""
