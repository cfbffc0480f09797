"""The PostgreSQL backend's connections: the pool, the retry policy, the error boundary.

Every statement goes through :meth:`Database.run`, which is where driver errors become
:class:`~dynamic_workflows.errors.StorageError` (and nowhere else), and where a lost connection
is retried when that is safe: reads, idempotent writes, a transaction that failed before its
``COMMIT`` was sent (the server rolled it back), and anything the server rolled back as a whole
(a deadlock). A single-statement write cut off in flight, or a commit, may or may not have
happened: it raises, saying so.

Round trips are counted (:attr:`Database.stats`) for the benchmarks' "round trips per step".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ..errors import ConfigurationError, StorageError
from .postgres_schema import Migration, current_version, migrate, quote_ident

__all__ = ["FAILED", "Database", "Session", "redact"]

T = TypeVar("T")

_RETRIES = 3
_RETRY_DELAY = 0.05

LOST: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # A connection whose protocol was left mid-operation when the server killed it (seen under
    # pg_terminate_backend): "cannot switch to state N; another operation is in progress".
    asyncpg.InternalClientError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
)
"""The connection failed: whatever was in flight may or may not have happened."""

FAILED: tuple[type[BaseException], ...] = (*LOST, asyncpg.PostgresError)
"""Anything the driver raises."""

_ROLLED_BACK: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.TransactionRollbackError,  # deadlock, serialization failure
    asyncpg.exceptions.InvalidCachedStatementError,  # the schema changed under a prepared plan
)
"""The statement or transaction failed as a whole and may run again."""


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def split_url(url: str) -> tuple[str, str | None]:
    """The URL without its ``schema`` parameter (asyncpg would take it for a server setting),
    and that schema."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = [(k, v) for k, v in query if k != "schema"]
    return urlunsplit(parts._replace(query=urlencode(rest))), schema or None


async def _learn_types(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    # asyncpg looks the array types up on each new connection, one query per statement that
    # meets new ones (some ms each): one statement with all of them makes it one lookup.
    await conn.prepare("SELECT $1::bigint[], $2::int[], $3::float8[], $4::bytea[]")


class Session:
    """A pooled connection lent to one operation; counts its round trips."""

    __slots__ = ("conn", "db")

    def __init__(self, conn: PoolConnectionProxy[asyncpg.Record], db: Database) -> None:
        self.conn = conn
        self.db = db

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self.db.round_trips += 1
        return await self.conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        self.db.round_trips += 1
        return await self.conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.db.round_trips += 1
        return await self.conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        self.db.round_trips += 1
        return await self.conn.execute(sql, *args)


class Database:
    """A pool of connections to ``url`` (``?schema=name`` selects a schema of its own)."""

    def __init__(self, url: str, *, pool_size: int, durability: str) -> None:
        if durability not in ("full", "normal"):
            raise ConfigurationError(f"durability must be 'full' or 'normal', got {durability!r}")
        if pool_size < 1:
            raise ConfigurationError(f"pool_size must be at least 1, got {pool_size!r}")
        self.url = url
        self.dsn, self.schema = split_url(url)
        # JIT compiles plans of queries it guesses are costly: the storage's are all short
        # (an index lookup, a batch of rows), where compiling only adds milliseconds.
        self.settings: dict[str, str] = {"application_name": "dynamic-workflows", "jit": "off"}
        if self.schema is not None:
            self.settings["search_path"] = quote_ident(self.schema)
        if durability == "normal":
            self.settings["synchronous_commit"] = "off"
        self.pool_size = pool_size
        self.current_schema: str | None = None
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self.round_trips = 0
        self.commits = 0
        self.operations = 0

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    async def open(self) -> None:
        """Connect, and create or migrate the schema."""
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self.pool_size,
                server_settings=self.settings,
                init=_learn_types,
            )
        except FAILED as exc:
            raise StorageError(
                f"cannot connect to PostgreSQL at {redact(self.url)}: {exc}"
            ) from exc
        try:
            async with pool.acquire() as conn:
                await migrate(conn, schema=self.schema)  # type: ignore[arg-type]
                self.current_schema = await conn.fetchval("SELECT current_schema()")
        except StorageError:
            await pool.close()
            raise
        except FAILED as exc:
            await pool.close()
            raise StorageError(f"cannot migrate PostgreSQL at {redact(self.url)}: {exc}") from exc
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=10.0)
            except TimeoutError:
                pool.terminate()

    async def connect_one(self) -> asyncpg.Connection:
        """A connection outside the pool (the listener's, a migration's)."""
        return await asyncpg.connect(self.dsn, server_settings=self.settings)

    async def migrate(self, target: int | None = None) -> tuple[list[Migration], int]:
        """Migrate over a connection of its own, without opening the pool: the migrations
        applied, and the version now."""
        try:
            conn = await self.connect_one()
        except FAILED as exc:
            raise StorageError(
                f"cannot connect to PostgreSQL at {redact(self.url)}: {exc}"
            ) from exc
        try:
            applied = await migrate(conn, schema=self.schema, target=target)
            return applied, await current_version(conn)
        except FAILED as exc:
            raise StorageError(f"cannot migrate PostgreSQL at {redact(self.url)}: {exc}") from exc
        finally:
            await conn.close()

    @property
    def stats(self) -> dict[str, int]:
        return {
            "commits": self.commits,
            "operations": self.operations,
            "round_trips": self.round_trips,
        }

    async def run(
        self,
        op: str,
        fn: Callable[[Session], Awaitable[T]],
        *,
        write: bool,
        transaction: bool = False,
        idempotent: bool = False,
    ) -> T:
        """Run ``fn`` on a pooled connection: in a transaction if asked (``BEGIN``/``COMMIT``),
        else as it is (each statement commits by itself: a write must then be one statement).
        ``op`` names the operation in errors."""
        pool = self._pool
        if pool is None:
            raise StorageError(f"{op}: the PostgreSQL storage is not open")
        self.operations += 1
        retry_lost = not write or idempotent or transaction
        for attempt in range(_RETRIES):
            committing = False
            try:
                async with pool.acquire() as conn:
                    session = Session(conn, self)
                    if not transaction:
                        result = await fn(session)
                    else:
                        tx = conn.transaction()
                        self.round_trips += 1
                        await tx.start()
                        try:
                            result = await fn(session)
                        except BaseException:
                            if not conn.is_closed():
                                self.round_trips += 1
                                with contextlib.suppress(Exception):  # the first error tells
                                    await tx.rollback()
                            raise
                        committing = True
                        self.round_trips += 1
                        await tx.commit()
                if write:
                    self.commits += 1
                return result
            except _ROLLED_BACK as exc:
                if attempt + 1 == _RETRIES:
                    raise StorageError(f"PostgreSQL: {op} failed: {exc}") from exc
            except LOST as exc:
                if committing or not retry_lost:
                    raise _lost(op, exc, unknown=True) from exc
                if attempt + 1 == _RETRIES:
                    raise _lost(op, exc, unknown=False) from exc
            except asyncpg.PostgresError as exc:
                raise StorageError(f"PostgreSQL: {op} failed: {exc}") from exc
            await asyncio.sleep(_RETRY_DELAY * 2**attempt)
        raise AssertionError("unreachable")


def _lost(op: str, exc: BaseException, *, unknown: bool) -> StorageError:
    what = "its outcome is unknown" if unknown else "gave up after retrying"
    return StorageError(f"PostgreSQL connection lost during {op} ({what}): {exc}")
