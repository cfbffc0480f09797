"""Fixtures every test folder may use: PostgreSQL (see ``pg_support``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import pg_support


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pg_support.PgServer]:
    """This session's database on the test server (skips without one, fails under CI=true)."""
    server = pg_support.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(pg_server: pg_support.PgServer) -> Iterator[str]:
    """The URL of an empty, migrated schema of its own for this test."""
    schema = pg_server.acquire()
    try:
        yield pg_server.schema_url(schema)
    finally:
        pg_server.release(schema)
