"""The PostgreSQL schema: the migrations reproduce ``schema.sql``, one at a time as well as all
at once; they are recorded, applied once when several nodes start together (in a schema of
their own or in a fresh database's public schema), and a database newer than the code is
refused."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Iterator

import asyncpg
import pytest

import pg_support
from dynamic_workflows.errors import StorageError
from dynamic_workflows.storage import PostgresStorage
from dynamic_workflows.storage.postgres_schema import (
    describe,
    latest_version,
    migrate,
    migrations,
    quote_ident,
    schema_sql,
)


@pytest.fixture
async def conn(pg_server: pg_support.PgServer) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(pg_server.url)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
def fresh(pg_server: pg_support.PgServer) -> Iterator[Callable[[], str]]:
    """``fresh()``: a schema name nobody uses yet (the schema is dropped after the test)."""
    made: list[str] = []

    def name() -> str:
        made.append(pg_server.new_schema_name())
        return made[-1]

    yield name
    for schema in made:
        pg_server.drop(schema)


@pytest.fixture
async def fresh_database(pg_server: pg_support.PgServer) -> AsyncIterator[str]:
    """The URL of a database made for this test (dropped after): nothing in it, not even the
    version table, which lives in the schema on the search path (here ``public``)."""
    name = f"{pg_server.database}_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(pg_server.server)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield pg_support.with_database(pg_server.server, name)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def use(conn: asyncpg.Connection, schema: str) -> None:
    await conn.execute(f"SET search_path = {quote_ident(schema)}")


async def test_migrating_from_empty_reproduces_schema_sql(
    pg_server: pg_support.PgServer, conn: asyncpg.Connection, fresh: Callable[[], str]
) -> None:
    reference = fresh()
    await conn.execute(f"CREATE SCHEMA {quote_ident(reference)}")
    await use(conn, reference)
    await conn.execute(schema_sql())
    expected = await describe(conn)

    migrated = fresh()
    await use(conn, migrated)
    applied = await migrate(conn, schema=migrated)
    assert [m.version for m in applied] == [m.version for m in migrations()]
    assert await describe(conn) == expected
    # not an empty comparison: the tables, columns, indexes, triggers and functions are in it
    for line in (
        "column instances owner text",
        "column instances lease_until double precision",
        "column steps name text NOT NULL COLLATE C",
        "index instances instances_leased",
        "constraint instances instances_workflow_scope_id_key UNIQUE (workflow, scope, id)",
        "column nodes heartbeat_at double precision NOT NULL",
        "column tenants next_wake double precision",
        "index tenants tenants_next_wake",
        "trigger instances instances_next_wake_insert CREATE TRIGGER",
        "trigger instances instances_next_wake_update CREATE TRIGGER",
        "function dwf_raise_next_wake CREATE OR REPLACE FUNCTION",
    ):
        assert line in expected


async def test_each_migration_alone_gives_what_all_at_once_give(
    pg_server: pg_support.PgServer, conn: asyncpg.Connection, fresh: Callable[[], str]
) -> None:
    at_once = fresh()
    await use(conn, at_once)
    await migrate(conn, schema=at_once)
    expected = await describe(conn)

    stepwise = fresh()
    await use(conn, stepwise)
    for mig in migrations():
        assert await migrate(conn, schema=stepwise, target=mig.version) == [mig]
    assert await describe(conn) == expected


async def test_migrations_are_recorded_and_applied_once(
    pg_server: pg_support.PgServer, conn: asyncpg.Connection, fresh: Callable[[], str]
) -> None:
    name = fresh()
    await use(conn, name)
    assert len(await migrate(conn, schema=name)) == len(migrations())
    assert await migrate(conn, schema=name) == []
    rows = await conn.fetch("SELECT version, name FROM dwf_migrations ORDER BY version")
    assert [(r[0], r[1]) for r in rows] == [(m.version, m.name) for m in migrations()]
    assert latest_version() == migrations()[-1].version


async def test_nodes_starting_together_migrate_once(
    pg_server: pg_support.PgServer, conn: asyncpg.Connection, fresh: Callable[[], str]
) -> None:
    name = fresh()
    url = pg_server.schema_url(name)
    stores = [PostgresStorage(url, pool_size=1) for _ in range(5)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    await use(conn, name)
    count = await conn.fetchval("SELECT count(*) FROM dwf_migrations")
    assert count == len(migrations())


@pytest.mark.parametrize("how", ["dwf migrate", "node start"])
async def test_three_migrations_at_once_on_a_fresh_database_all_succeed(
    fresh_database: str, how: str
) -> None:
    # The race made certain: the three look for the version table (missing) and then wait for
    # the migration lock, held here, until all three wait; then they go. They used to fail but
    # the first: 'relation "dwf_migrations" already exists' (the table they had looked up before
    # the wait still read as missing after it).
    holder = await asyncpg.connect(fresh_database)
    key = "dynamic_workflows.migrate:public"
    await holder.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", key)
    stores = [PostgresStorage(fresh_database, pool_size=1) for _ in range(3)]
    try:
        if how == "dwf migrate":
            runs = asyncio.gather(*(s.migrate() for s in stores), return_exceptions=True)
        else:
            runs = asyncio.gather(*(s.open() for s in stores), return_exceptions=True)
        waiting = 0
        for _ in range(500):
            waiting = await holder.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            if waiting == 3:
                break
            await asyncio.sleep(0.01)
        assert waiting == 3
        await holder.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
        results = await runs
        failed = [r for r in results if isinstance(r, BaseException)]
        assert not failed, failed
        if how == "dwf migrate":
            applied = sorted((len(r[0]), r[1]) for r in results)  # type: ignore[index]
            assert applied == [(0, latest_version())] * 2 + [(len(migrations()), latest_version())]
        rows = await holder.fetch("SELECT version, name FROM dwf_migrations ORDER BY version")
        assert [(r[0], r[1]) for r in rows] == [(m.version, m.name) for m in migrations()]
        # a node that started on it works: it can create an instance
        if how == "node start":
            assert await stores[0].count_instances() == {}
    finally:
        await asyncio.gather(*(s.close() for s in stores))
        await holder.close()


async def test_a_database_newer_than_the_code_is_refused(
    pg_server: pg_support.PgServer, conn: asyncpg.Connection, fresh: Callable[[], str]
) -> None:
    name = fresh()
    await use(conn, name)
    await migrate(conn, schema=name)
    await conn.execute("INSERT INTO dwf_migrations (version, name) VALUES (9999, 'future')")
    with pytest.raises(StorageError, match="newer than this release"):
        await migrate(conn, schema=name)
    store = PostgresStorage(pg_server.schema_url(name))
    with pytest.raises(StorageError, match="newer than this release"):
        await store.open()
    await store.close()


def test_migration_files_are_numbered_without_gaps() -> None:
    assert [m.version for m in migrations()] == list(range(1, len(migrations()) + 1))
    assert all(m.label == f"{m.version:04d}_{m.name}" for m in migrations())


async def test_0009_fills_in_the_hints_of_the_instances_already_there(
    pg_server: pg_support.PgServer, conn: asyncpg.Connection, fresh: Callable[[], str]
) -> None:
    name = fresh()
    await use(conn, name)
    await migrate(conn, schema=name, target=8)
    rows = [
        ("a", "1", "queued", 10.0),
        ("a", "2", "waiting", 5.0),
        ("a", "3", "complete", None),
        ("b", "1", "running", None),
        ("c", "1", "waiting", 50.0),  # no tenants row (written by a release before 0008's fix)
    ]
    for scope, id, status, wake_at in rows:
        await conn.execute(
            "INSERT INTO instances (workflow, scope, id, status, params, created_at, updated_at,"
            " wake_at) VALUES ('wf', $1, $2, $3, 'null', 0, 0, $4)",
            scope,
            id,
            status,
            wake_at,
        )
    await conn.execute("INSERT INTO tenants (scope) VALUES ('a'), ('b'), ('idle')")
    assert [m.version for m in await migrate(conn, schema=name)] == [9]
    hints = {r[0]: r[1] for r in await conn.fetch("SELECT scope, next_wake FROM tenants")}
    assert hints == {"a": 5.0, "b": None, "c": 50.0, "idle": None}
