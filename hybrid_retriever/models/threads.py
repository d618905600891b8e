"""How many threads one encoder call may use on the CPU (torch and ONNX Runtime alike).

Both libraries default to one intra-op thread per core. On a machine whose cores are
busy with other work (a shared 2-core box: benchmarks/results/encoders.md) a second
thread does not make a single query faster: the query waits for the slower thread,
which waits for a core, and the tail explodes (fused search p95 556 ms with torch's
default 2 threads against 71 ms with 1). One thread per encoder call keeps the tail
flat; the retriever still runs its branches (and callers their queries) in parallel
threads, so several cores stay in use.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger(__name__)

#: Intra-op threads when the configuration does not say (see the module docstring).
DEFAULT_THREADS = 1

_threads: int | None = None


def set_intra_op_threads(threads: int | None) -> None:
    """Use ``threads`` intra-op threads in torch and in ONNX Runtime sessions created from now on.

    ``None`` leaves torch's own setting. This is process-wide (torch has one setting per process).
    Torch is not imported for this (its import takes seconds and ONNX Runtime does not need
    it): when it is not loaded yet, :func:`apply_torch_threads` applies the setting once a
    model loader imports it.
    """
    global _threads
    if threads is None:
        return
    _threads = threads
    if "torch" in sys.modules:
        apply_torch_threads()


def apply_torch_threads() -> None:
    """Give torch the thread count set by :func:`set_intra_op_threads` (imports torch; model loaders call it)."""
    if _threads is None:
        return
    import torch

    if torch.get_num_threads() != _threads:
        torch.set_num_threads(_threads)
        log.debug("torch intra-op threads set to %d", _threads)


def intra_op_threads() -> int:
    """The intra-op thread count set by :func:`set_intra_op_threads`, else :data:`DEFAULT_THREADS`."""
    return _threads if _threads is not None else DEFAULT_THREADS
