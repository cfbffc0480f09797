"""PostgreSQL for the tests (imported as ``pg_support``; the fixtures are in ``conftest.py``).

The server is ``$DWF_TEST_POSTGRES`` (default: the local one, ``127.0.0.1:5432``, user postgres;
without TLS, which the tests' many short connections would each negotiate).
Each test session makes a database of its own (other sessions may test against the same server
at the same time) and drops it at the end. Tests get a schema each, already migrated: schemas
are made on demand, emptied after each test and handed out again, which costs a few
milliseconds where migrating a new schema costs some twenty.

When no server answers, the tests that need one skip, except under ``CI=true``, where they fail:
CI has a server, and a suite that skips there has not tested PostgreSQL.

The admin connection lives on a thread of its own with its own event loop, so that fixtures of
any scope, sync or async, can use it whatever loop the test runs on.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from dynamic_workflows.storage.postgres_schema import migrate, quote_ident

T = TypeVar("T")

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test?sslmode=disable"
TABLES = ("instances", "steps", "events", "nodes", "logs", "tenants", "schedule_ticks")


def server_url() -> str:
    return os.environ.get("DWF_TEST_POSTGRES", DEFAULT_URL)


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


def with_schema(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&schema={schema}" if parts.query else f"schema={schema}"
    return urlunsplit(parts._replace(query=query))


def unavailable(reason: str) -> None:
    """Skip, or fail under CI=true."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is required under CI=true: {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL server: {reason}")


class PgServer:
    """A database of this session's on the test server, and its pool of migrated schemas."""

    def __init__(self, url: str) -> None:
        self.server = url
        self.database = f"dwf_test_{secrets.token_hex(4)}"
        self.url = with_database(url, self.database)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._conn: asyncpg.Connection | None = None
        self._free: list[str] = []
        self._made: list[str] = []
        self._count = 0
        try:
            self._call(self._create(), timeout=30)
        except BaseException:
            self._stop()
            raise

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _create(self) -> None:
        admin = await asyncpg.connect(self.server, timeout=5)
        try:
            await admin.execute(f"CREATE DATABASE {self.database}")
        finally:
            await admin.close()
        self._conn = await asyncpg.connect(self.url, timeout=5)
        # A test that leaves a transaction open must not hang the session: emptying its schema
        # gives up, and the schema is dropped instead of reused.
        await self._conn.execute("SET lock_timeout = '5s'")

    # -- schemas -------------------------------------------------------------------------------

    def schema_url(self, schema: str) -> str:
        """The storage URL of ``schema`` in this session's database."""
        return with_schema(self.url, schema)

    def new_schema_name(self) -> str:
        self._count += 1
        return f"t{self._count}"

    def acquire(self) -> str:
        """An empty, migrated schema for one test (give it back with :meth:`release`)."""
        if self._free:
            return self._free.pop()
        name = self.new_schema_name()
        self._call(self._migrated(name))
        self._made.append(name)
        return name

    async def _migrated(self, name: str) -> None:
        assert self._conn is not None
        await self._conn.execute(f"CREATE SCHEMA {quote_ident(name)}")
        await self._conn.execute(f"SET search_path = {quote_ident(name)}")
        try:
            await migrate(self._conn)
        finally:
            await self._conn.execute("RESET search_path")

    def release(self, schema: str) -> None:
        """Empty ``schema`` for the next test (or drop it, if that fails)."""
        try:
            self._call(self._empty(schema))
        except Exception:
            self.drop(schema)
            self._made.remove(schema)
            return
        self._free.append(schema)

    async def _empty(self, schema: str) -> None:
        assert self._conn is not None
        s = quote_ident(schema)
        await self._conn.execute(
            "".join(f"DELETE FROM {s}.{t};" for t in TABLES)
            + f"SELECT setval(pg_get_serial_sequence('{s}.instances', 'pk'), 1, false);"
            + f"SELECT setval(pg_get_serial_sequence('{s}.events', 'seq'), 1, false);"
        )

    def drop(self, schema: str) -> None:
        """Drop ``schema`` (one a test made for itself, or a broken one)."""
        self._call(self._execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE"))

    def execute(self, sql: str, *args: Any) -> str:
        """Run ``sql`` on the admin connection (tests that look under the storage)."""
        return self._call(self._execute(sql, *args))

    def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return self._call(self._fetch(sql, *args))

    async def _execute(self, sql: str, *args: Any) -> str:
        assert self._conn is not None
        return await self._conn.execute(sql, *args)

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        assert self._conn is not None
        return await self._conn.fetch(sql, *args)

    # -- the end -------------------------------------------------------------------------------

    def close(self) -> None:
        try:
            self._call(self._drop_database(), timeout=30)
        finally:
            self._stop()

    async def _drop_database(self) -> None:
        if self._conn is not None:
            await self._conn.close()
        admin = await asyncpg.connect(self.server, timeout=5)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
        finally:
            await admin.close()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


def start() -> PgServer:
    """This session's database on the test server, or skip (fail under CI=true)."""
    url = server_url()
    try:
        return PgServer(url)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        unavailable(f"{url}: {exc}")
        raise  # unreachable: unavailable() raised
