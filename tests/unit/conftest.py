"""Fixtures for the unit tests: every engine-level test runs once per storage backend
(``make_env``); the admin API's tests get ``dwf dev``'s app over a project of theirs
(``dev_client``)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from unit_support import DevClientFactory, EnvFactory, dev_app_client, workflow

from dynamic_workflows.testing import WorkflowTestEnv


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_env(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[EnvFactory]:
    """``make_env(run_or_class, **kwargs)``: a WorkflowTestEnv on this test's backend, each on
    a database of its own (on PostgreSQL, a schema of the session's test database)."""
    counter = itertools.count()
    pg = request.getfixturevalue("pg_server") if backend == "postgresql" else None
    schemas: list[str] = []

    def factory(entrypoint: Any, **kwargs: Any) -> WorkflowTestEnv:
        if not isinstance(entrypoint, type):
            entrypoint = workflow(entrypoint)
        folder = tmp_path / f"db{next(counter)}"
        folder.mkdir()
        storage = backend
        if pg is not None:
            schemas.append(pg.acquire())
            storage = pg.schema_url(schemas[-1])
        return WorkflowTestEnv(entrypoint, storage=storage, tmp_path=folder, **kwargs)

    yield factory
    for schema in schemas:
        assert pg is not None
        pg.release(schema)


@pytest.fixture
async def dev_client(tmp_path: Path) -> AsyncIterator[DevClientFactory]:
    """``await dev_client(config, entry, storage_url="memory://")``: an httpx client of ``dwf
    dev``'s app (the admin API under ``/cdn-cgi/local/explorer/api``) over a project of the
    test's, its tenant code in-process; stopped when the test ends."""
    async with contextlib.AsyncExitStack() as stack:
        folders = itertools.count()

        async def make(
            config: str, entry: str, *, storage_url: str = "memory://"
        ) -> httpx.AsyncClient:
            folder = tmp_path / f"project{next(folders)}"
            return await stack.enter_async_context(
                dev_app_client(folder, config, entry, storage_url=storage_url)
            )

        yield make
