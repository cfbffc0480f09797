"""``dwf migrate``: bring a database's schema up to date without starting an engine.

Engines migrate on start too; running this first is for a shared database, so that nodes of a
new release start on a schema that is ready (and an operator sees what changed).
"""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path

import msgspec

from ..errors import ConfigurationError, StorageError
from .sqlite import SQLiteStorage

__all__ = ["MigrationReport", "migrate_url"]


class MigrationReport(msgspec.Struct, frozen=True):
    """What :func:`migrate_url` did: the migrations applied (``0002_nodes``...), in order, and
    the version the schema is at now."""

    applied: list[str]
    version: int


async def migrate_url(url: str) -> MigrationReport:
    """Create or update the schema of the database at ``url`` (a storage URL or SQLite path)."""
    if url in ("memory://", ":memory:", "memory"):
        raise ConfigurationError("memory:// keeps nothing: there is no schema to migrate")
    if url.startswith(("postgres://", "postgresql://")):
        from . import open_storage
        from .postgres import PostgresStorage

        store = open_storage(url)  # the URL's own parameters (lease_seconds...) read as ever
        assert isinstance(store, PostgresStorage)
        applied, version = await store.migrate()
        return MigrationReport([m.label for m in applied], version)
    if url.startswith("sqlite://"):
        url = url[len("sqlite://") :]
    elif "://" in url:
        raise ConfigurationError(f"unknown storage URL scheme in {url!r}")
    if not url:
        raise ConfigurationError("the storage URL names no file")
    return await _migrate_sqlite(Path(url))


def _sqlite_version(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read SQLite database {path}: {exc}") from exc


def _sqlite_labels() -> dict[int, str]:
    folder = resources.files("dynamic_workflows.storage").joinpath("sql/sqlite")
    return {
        int(entry.name.split("_", 1)[0]): entry.name.removesuffix(".sql")
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    }


async def _migrate_sqlite(path: Path) -> MigrationReport:
    before = _sqlite_version(path)
    store = SQLiteStorage(path)  # opening migrates
    await store.open()
    await store.close()
    after = _sqlite_version(path)
    labels = _sqlite_labels()
    return MigrationReport([labels[v] for v in sorted(labels) if before < v <= after], after)
