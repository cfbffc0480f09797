"""One owner per database file: an exclusive lock held for the life of an open storage.

An engine treats every ``running`` row of its database as its own run (``recover`` requeues
them at start). A second engine opened on the same SQLite file would therefore take over the
first one's live runs and run their in-flight steps a second time. So the storage takes
``flock(LOCK_EX | LOCK_NB)`` on ``<db>.lock`` beside the database and keeps it until it is
closed; a second open, in another process or in this one, fails at once with a
:class:`~dynamic_workflows.errors.StorageError` that names the holder, which the lock file
describes (pid, host, command line).

Why ``flock`` on a separate file: the kernel releases it when the holder dies, even by
``SIGKILL``, so a crash never leaves the database locked (a pid file would need guessing
whether its pid is still the same process); it conflicts between two opens in one process
(``fcntl``/POSIX locks do not, and closing any descriptor of the file drops them); and SQLite
never opens the ``.lock`` file itself. The lock file is not deleted on release: a process
that opened it just before the unlink would lock an inode nobody else sees.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
from pathlib import Path

from ..errors import StorageError

__all__ = ["FileLock"]


class FileLock:
    """The lock of the database at ``database``: the file ``<database>.lock``."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = database.with_name(database.name + ".lock")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock and write who holds it, or raise StorageError at once if another
        process, or another storage of this process, has it."""
        if self._fd is not None or sys.platform == "win32":
            return
        import fcntl

        try:
            # Not O_TRUNC: the file tells a refused opener who holds the lock.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot open the lock file {self.path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read(fd))
            os.close(fd)
            raise StorageError(
                f"the SQLite database {self.database} is in use by {holder}: one process at a "
                f"time may run an engine on it (it holds {self.path}); stop that process, or "
                "use another --db"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StorageError(f"cannot lock {self.path}: {exc}") from exc
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, _holder().encode(), 0)
        except OSError:
            pass  # the lock is what counts; the description is a courtesy
        self._fd = fd

    def release(self) -> None:
        """Let the lock go (closing the descriptor releases it)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # no stale description for the next reader
        except OSError:
            pass
        os.close(fd)


def _holder() -> str:
    return json.dumps(
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": shlex.join(sys.orig_argv),
        }
    )


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 65536, 0).decode(errors="replace")
    except OSError:
        return ""


def _describe(text: str) -> str:
    try:
        info = json.loads(text)
        pid, host, command = info["pid"], info["host"], info["command"]
    except (ValueError, KeyError, TypeError):
        return "another process (it has not said which yet)"
    where = "" if host == socket.gethostname() else f" on {host}"
    return f"process {pid}{where} ({command})"
