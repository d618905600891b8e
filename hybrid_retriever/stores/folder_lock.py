"""The library's own exclusive lock on an index folder, taken before anything touches the store.

Qdrant Edge's WAL lock refuses a second open only after ``EdgeShard.load`` has already
changed the live shard (it deletes the segments' ``tracker_journal.dat``), which breaks the
holder's next flush. So every store that keeps its data in a folder (Edge, and
qdrant-client's local mode with ``path``) takes this lock first: a second opener, in
another process or in this one, is refused before it reads or writes a single file.

``flock`` locks belong to an open file description, so a second open in the same process
conflicts too, and the kernel releases the lock when the holder exits, however it exits.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from hybrid_retriever.errors import IndexLockedError, IndexPathError

log = logging.getLogger(__name__)

#: The lock file's name inside an index folder (empty; only its lock matters).
LOCK_FILE = ".hybrid-retriever.lock"

try:
    import fcntl
except ImportError:  # Windows: no flock; the store's own lock is all there is
    fcntl = None  # type: ignore[assignment]


class FolderLock:
    """An exclusive, non-blocking lock on ``folder`` held until :meth:`release`.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> first = FolderLock.acquire(d, "index")
    >>> FolderLock.acquire(d, "index")
    Traceback (most recent call last):
    ...
    hybrid_retriever.errors.IndexLockedError: ...
    >>> first.release()
    """

    def __init__(self, fd: int | None, path: Path) -> None:
        self._fd = fd
        self.path = path

    @classmethod
    def acquire(cls, folder: str | os.PathLike[str], what: str, alternatives: str = "") -> "FolderLock":
        """Lock ``folder`` (which must exist) or raise :class:`IndexLockedError` naming ``what`` is held.

        A folder this process may not write (a read-only mount) cannot hold a lock file
        unless one is already there; it is then used unlocked, as nothing can write it.
        """
        path = Path(folder) / LOCK_FILE
        if fcntl is None:
            return cls(None, path)
        flags = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)  # never through a planted symlink
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise IndexPathError(
                    f"{path} is a symbolic link; the lock file of an index folder must be a plain file: delete it "
                    "(it holds nothing) and open the index again"
                ) from None
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            try:
                fd = os.open(path, os.O_RDONLY | flags)
            except OSError:
                log.debug("cannot create %s (%s): the folder is read-only, opened without the library's lock", path, exc)
                return cls(None, path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise IndexLockedError(
                    f"the {what} at {folder} is already open in another retriever, in this or another process "
                    f"(it holds the lock on {path}); it is used by one process at a time and nothing was read or "
                    f"changed. Close the other one first{alternatives}"
                ) from None
            raise
        return cls(fd, path)

    def release(self) -> None:
        """Give the lock back (closing the descriptor releases it); calling it twice is harmless."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None
