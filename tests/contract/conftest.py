"""The storage contract's fixture: every contract test runs on every backend (a new backend is
one more parameter here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dynamic_workflows.storage import MemoryStorage, SQLiteStorage, Storage
from dynamic_workflows.storage.postgres import PostgresStorage


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    store: Storage
    if request.param == "memory":
        store = MemoryStorage()
    elif request.param == "postgresql":
        store = PostgresStorage(request.getfixturevalue("pg_url"))
    else:
        store = SQLiteStorage(tmp_path / "contract.sqlite3")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


NODE_LEASE = 30.0
"""Seconds: the lease of the two PostgreSQL nodes of :func:`nodes`."""


@pytest.fixture
async def nodes(pg_url: str) -> AsyncIterator[tuple[PostgresStorage, PostgresStorage]]:
    """Two PostgreSQL storages ("node-a", "node-b") on one database, as two nodes."""
    a = PostgresStorage(pg_url, node_id="node-a", lease_seconds=NODE_LEASE)
    b = PostgresStorage(pg_url, node_id="node-b", lease_seconds=NODE_LEASE)
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()
