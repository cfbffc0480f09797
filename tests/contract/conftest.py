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
