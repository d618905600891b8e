"""A model's identity: a hash of the files that define its vectors.

The manifest of an index records it, so an index reopened with other weights under
the same name or path (a swapped folder, an updated Hub snapshot) is an
:class:`~hybrid_retriever.errors.IndexMismatchError` rather than silently wrong scores.
The hash covers every file of the model folder except documentation, hidden files and
derived exports (ONNX), so weights, tokenizer and configuration all count.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

log = logging.getLogger(__name__)

#: Files that do not change a model's vectors.
_SKIPPED_SUFFIXES = (".md", ".onnx", ".pyc")
_SKIPPED_DIRS = ("onnx", "__pycache__")

_cache: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}
_lock = threading.Lock()


def model_files(folder: Path) -> list[Path]:
    """The files that define the model in ``folder``, in a stable order."""
    out = []
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder)
        if any(p.startswith(".") or p in _SKIPPED_DIRS for p in rel.parts) or f.suffix.lower() in _SKIPPED_SUFFIXES:
            continue
        if f.is_file():
            out.append(f)
    return out


def weights_sha256(folder: str | Path) -> str:
    """SHA-256 over the model folder's files (names and contents); memoised per file sizes and times."""
    root = Path(folder).resolve()
    files = model_files(root)
    key = (str(root), tuple((f.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns) for f in files for st in [f.stat()]))
    with _lock:
        if key in _cache:
            return _cache[key]
    total = hashlib.sha256()
    for f in files:
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        total.update(f"{f.relative_to(root).as_posix()}\0{h.hexdigest()}\n".encode())
    digest = total.hexdigest()
    with _lock:
        _cache[key] = digest
    log.debug("model %s: sha256 %s over %d files", root, digest, len(files))
    return digest
