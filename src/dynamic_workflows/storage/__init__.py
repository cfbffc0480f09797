"""Storage backends, chosen by URL: ``memory://``, ``sqlite:///path/to/db`` (or a plain path)."""

from __future__ import annotations

from ..errors import ConfigurationError
from .base import Storage
from .memory import MemoryStorage
from .sqlite import SQLiteStorage

__all__ = ["MemoryStorage", "SQLiteStorage", "Storage", "open_storage"]


def open_storage(url: str, *, durability: str = "full") -> Storage:
    """The backend for ``url``: ``memory://``, ``sqlite:///abs/path``, ``sqlite://rel/path`` or a
    filesystem path (SQLite)."""
    if url in ("memory://", ":memory:", "memory"):
        return MemoryStorage()
    if url.startswith("sqlite://"):
        path = url[len("sqlite://") :]
        if not path:
            raise ConfigurationError(f"storage URL {url!r} names no file")
        return SQLiteStorage(path, durability=durability)
    if url.startswith(("postgres://", "postgresql://")):
        raise ConfigurationError(
            "the PostgreSQL backend is not available in this version; use sqlite:// or memory://"
        )
    if "://" in url:
        raise ConfigurationError(
            f"unknown storage URL scheme in {url!r}; use memory:// or sqlite:///path"
        )
    return SQLiteStorage(url, durability=durability)
