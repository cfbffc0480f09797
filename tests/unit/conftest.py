"""Fixtures for the engine-level unit tests: every such test runs once per storage backend."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from unit_support import EnvFactory, workflow

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
