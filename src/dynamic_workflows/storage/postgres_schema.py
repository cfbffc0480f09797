"""The PostgreSQL schema: versioned migrations, the named queries, and a description of what is
in a database (which the tests compare with ``sql/postgres/schema.sql``).

Every ``.sql`` file is in ``sql/postgres/``: ``NNNN_name.sql`` are the migrations, applied in
order; ``queries.sql`` holds the backend's statements under ``-- name: ...`` headers;
``schema.sql`` is the schema the migrations add up to, for reading (nothing runs it but a test
that checks the migrations reproduce it).

Several nodes may start at once against one database: :func:`migrate` takes an advisory lock
(one per schema), so one of them migrates and the others then find nothing to do; the migration
is one transaction, so nobody ever sees half a migration.
"""

from __future__ import annotations

import contextlib
import re
from functools import cache
from importlib import resources

import asyncpg
import msgspec

from ..errors import StorageError

__all__ = ["Migration", "describe", "latest_version", "migrate", "migrations", "queries"]

VERSION_TABLE = "dwf_migrations"
_MIGRATION_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")
_QUERY_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


class Migration(msgspec.Struct, frozen=True):
    """One schema change: ``NNNN_name.sql``."""

    version: int
    name: str
    sql: str

    @property
    def label(self) -> str:
        """``0002_nodes``: how the CLI names it."""
        return f"{self.version:04d}_{self.name}"


def _folder() -> resources.abc.Traversable:
    return resources.files("dynamic_workflows.storage").joinpath("sql/postgres")


@cache
def migrations() -> tuple[Migration, ...]:
    """The migrations, in order."""
    found = []
    for entry in _folder().iterdir():
        m = _MIGRATION_FILE.match(entry.name)
        if m is not None:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text()))
    found.sort(key=lambda mig: mig.version)
    return tuple(found)


def latest_version() -> int:
    """The version the migrations bring a database to."""
    return migrations()[-1].version


@cache
def queries() -> dict[str, str]:
    """``queries.sql``'s statements by name (each without its comments' header)."""
    text = _folder().joinpath("queries.sql").read_text()
    parts = _QUERY_HEADER.split(text)
    return {
        name: body.strip().rstrip(";") for name, body in zip(parts[1::2], parts[2::2], strict=True)
    }


def schema_sql() -> str:
    """``schema.sql``: the whole schema as the migrations leave it."""
    return _folder().joinpath("schema.sql").read_text()


def quote_ident(name: str) -> str:
    """``name`` as a PostgreSQL identifier."""
    return '"' + name.replace('"', '""') + '"'


async def current_version(conn: asyncpg.Connection) -> int:
    """The version of the schema on ``conn``'s search path (0 when empty)."""
    if await conn.fetchval("SELECT to_regclass($1)", VERSION_TABLE) is None:
        return 0
    version = await conn.fetchval(f"SELECT max(version) FROM {VERSION_TABLE}")
    return int(version or 0)


async def migrate(
    conn: asyncpg.Connection, *, schema: str | None = None, target: int | None = None
) -> list[Migration]:
    """Bring the schema on ``conn``'s search path (``schema``, created if missing, when given)
    to ``target`` (default: the latest) and return the migrations applied, if any.

    Raises StorageError if the database is newer than this code: a node of an older release
    must not write into a schema it does not know."""
    known = migrations()
    latest = known[-1].version
    want = latest if target is None else target
    version = await current_version(conn)  # no lock when there is nothing to do
    _check_not_newer(version, latest)
    if version >= want:
        return []
    lock_name = "dynamic_workflows.migrate:" + (
        schema or await conn.fetchval("SELECT current_schema()") or ""
    )
    # A session-level lock, and the transaction begun only once it is held: beginning a
    # transaction is where a session catches up with the catalog changes other sessions
    # committed (its caches of pg_class & co.); taking an advisory lock is not. Locked inside the
    # transaction, a node that had waited for another's migration still read the version table
    # as missing (looked up before the wait, in current_version) and its CREATE TABLE failed:
    # 'relation "dwf_migrations" already exists' on a fresh database.
    await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", lock_name)
    unlock = "SELECT pg_advisory_unlock(hashtextextended($1, 0))"
    try:
        applied = await _migrate_locked(conn, known, want, schema)
    except BaseException:
        if not conn.is_closed():  # a closed connection let go of its lock
            with contextlib.suppress(Exception):  # the first error tells
                await conn.execute(unlock, lock_name)
        raise
    await conn.execute(unlock, lock_name)
    return applied


async def _migrate_locked(
    conn: asyncpg.Connection, known: tuple[Migration, ...], want: int, schema: str | None
) -> list[Migration]:
    latest = known[-1].version
    applied: list[Migration] = []
    async with conn.transaction():
        if schema is not None:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        if await conn.fetchval("SELECT to_regclass($1)", VERSION_TABLE) is None:
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
        done = {r[0] for r in await conn.fetch(f"SELECT version FROM {VERSION_TABLE}")}
        _check_not_newer(max(done, default=0), latest)
        for mig in known:
            if mig.version in done or mig.version > want:
                continue
            await conn.execute(mig.sql)
            await conn.execute(
                f"INSERT INTO {VERSION_TABLE} (version, name) VALUES ($1, $2)",
                mig.version,
                mig.name,
            )
            applied.append(mig)
    return applied


def _check_not_newer(version: int, latest: int) -> None:
    if version > latest:
        raise StorageError(
            f"the database schema is at version {version}, newer than this release of "
            f"dynamic-workflows knows ({latest}): upgrade this node"
        )


_DESCRIBE_COLUMNS = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       coalesce(pg_get_expr(d.adbin, d.adrelid), ''), a.attidentity::text,
       coalesce(co.collname, '')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 100
WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname <> $1
ORDER BY c.relname, a.attnum
"""

_DESCRIBE_CONSTRAINTS = """
SELECT c.relname, k.conname, pg_get_constraintdef(k.oid)
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relname <> $1
ORDER BY c.relname, k.conname
"""

_DESCRIBE_INDEXES = """
SELECT tablename, indexname, indexdef FROM pg_indexes
WHERE schemaname = current_schema() AND tablename <> $1
ORDER BY tablename, indexname
"""

_DESCRIBE_TRIGGERS = """
SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid)
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND NOT t.tgisinternal
ORDER BY c.relname, t.tgname
"""

_DESCRIBE_FUNCTIONS = """
SELECT p.proname, pg_get_functiondef(p.oid)
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = current_schema()
ORDER BY p.proname, p.oid
"""


async def describe(conn: asyncpg.Connection) -> str:
    """The schema on ``conn``'s search path as text, one line per column, constraint, index and
    trigger, and each function's definition (the migrations' version table left out): two
    schemas are the same if this is."""
    schema = await conn.fetchval("SELECT current_schema()")
    lines = []
    for table, name, typ, notnull, default, identity, collation in await conn.fetch(
        _DESCRIBE_COLUMNS, VERSION_TABLE
    ):
        extra = " NOT NULL" if notnull else ""
        if default:
            extra += f" DEFAULT {default}"
        if identity:
            extra += " IDENTITY " + {"a": "ALWAYS", "d": "BY DEFAULT"}[identity]
        if collation:
            extra += f" COLLATE {collation}"
        lines.append(f"column {table} {name} {typ}{extra}")  # in the table's column order
    for table, name, definition in await conn.fetch(_DESCRIBE_CONSTRAINTS, VERSION_TABLE):
        lines.append(f"constraint {table} {name} {definition}")
    for table, name, definition in await conn.fetch(_DESCRIBE_INDEXES, VERSION_TABLE):
        lines.append(f"index {table} {name} {_unqualified(definition, schema)}")
    for table, name, definition in await conn.fetch(_DESCRIBE_TRIGGERS):
        lines.append(f"trigger {table} {name} {_unqualified(definition, schema)}")
    for name, definition in await conn.fetch(_DESCRIBE_FUNCTIONS):
        lines.append(f"function {name} {_unqualified(definition, schema).strip()}")
    return "\n".join(lines) + "\n"


def _unqualified(definition: str, schema: str) -> str:
    """``definition`` with ``schema.`` dropped from the names in it (two schemas compared)."""
    for prefix in (f"{quote_ident(schema)}.", f"{schema}."):
        definition = definition.replace(f" {prefix}", " ").replace(f"({prefix}", "(")
    return definition
