"""Storage backends, chosen by URL: ``memory://``, ``sqlite:///path/to/db`` (or a plain path),
``postgresql://user@host/database`` (shared by several nodes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ConfigurationError
from .base import Storage
from .memory import MemoryStorage
from .sqlite import SQLiteStorage

if TYPE_CHECKING:
    from .postgres import PostgresStorage

__all__ = ["MemoryStorage", "PostgresStorage", "SQLiteStorage", "Storage", "open_storage"]


def open_storage(url: str, *, durability: str = "full") -> Storage:
    """The backend for ``url``: ``memory://``, ``sqlite:///abs/path``, ``sqlite://rel/path``, a
    filesystem path (SQLite), or ``postgresql://...`` / ``postgres://...`` (PostgreSQL; add
    ``?schema=name`` for a schema of its own)."""
    if url in ("memory://", ":memory:", "memory"):
        return MemoryStorage()
    if url.startswith("sqlite://"):
        path = url[len("sqlite://") :]
        if not path:
            raise ConfigurationError(f"storage URL {url!r} names no file")
        return SQLiteStorage(path, durability=durability)
    if url.startswith(("postgres://", "postgresql://")):
        from .postgres import PostgresStorage

        url, lease = _take_lease_seconds(url)
        if lease is None:
            return PostgresStorage(url, durability=durability)
        return PostgresStorage(url, durability=durability, lease_seconds=lease)
    if "://" in url:
        raise ConfigurationError(
            f"unknown storage URL scheme in {url!r}; use memory://, sqlite:///path or "
            "postgresql://..."
        )
    return SQLiteStorage(url, durability=durability)


def _take_lease_seconds(url: str) -> tuple[str, float | None]:
    """``?lease_seconds=N`` (how long a node holds a claimed run without renewing it) taken out
    of a PostgreSQL URL, which keeps its other parameters."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    values = [v for k, v in query if k == "lease_seconds"]
    if not values:
        return url, None
    try:
        lease = float(values[-1])
    except ValueError:
        lease = float("nan")
    if not (0 < lease < 86_400):
        raise ConfigurationError(
            f"storage URL: lease_seconds must be a number of seconds above 0 and below 86400, "
            f"got {values[-1]!r}"
        )
    rest = [(k, v) for k, v in query if k != "lease_seconds"]
    return urlunsplit(parts._replace(query=urlencode(rest))), lease


def __getattr__(name: str) -> Any:
    # asyncpg takes ~80 ms to import: only a process that uses PostgreSQL pays for it.
    if name == "PostgresStorage":
        from .postgres import PostgresStorage

        return PostgresStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
