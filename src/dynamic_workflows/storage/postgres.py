"""The shared backend: PostgreSQL through asyncpg, for one node or several over one database.

Semantics are SQLite's (the contract tests run on both); what sharing adds:

* **Ownership.** A claimed run's row names its ``owner`` (this node's ``node_id``) and a
  ``lease_until``; the engine renews the leases of its runs (:meth:`renew_leases`). A row
  whose lease ran out is taken over by whichever node claims it next, with its generation
  bumped, so every write of the old owner (all fenced by generation, and by ownership) is
  refused from then on. :meth:`recover` lets go only of this node's own rows: other nodes' live
  runs are not requeued, their lapsed leases are taken over by ``claim_due`` instead.
* **Parking.** A run kept warm in memory reads ``waiting`` while its owner still holds it
  (:meth:`park_run`): no other node claims it while the lease lives.
* **Notifications.** The transactions that make work for other nodes ``NOTIFY`` it (delivered
  at commit); :meth:`listen` hears them on one dedicated connection.

The state machine is :mod:`dynamic_workflows.core.transitions`: a transition locks the row
(``FOR UPDATE``), asks the function named for it, and writes the answer. The hot paths are
single statements: ``create_instances``, ``record_steps`` (one statement for many runs' writes,
and concurrent calls are merged while one is in flight, as SQLite's group commit does) and the
claim. ``stats`` counts round trips for the benchmarks.

Driver errors become :class:`~dynamic_workflows.errors.StorageError` here and nowhere else. A
lost connection is retried when that is safe (reads, idempotent writes, and transactions that
failed before their ``COMMIT`` was sent); a write whose outcome is unknown raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from ..core import transitions as tr
from ..core.journal import ErrorInfo, JournalEntry
from ..core.transitions import (
    ACTIVE_STATUSES,
    CLAIMABLE_STATUSES,
    BufferedEvent,
    Change,
    ControlResult,
    EventDelivery,
    Status,
    WaitResult,
)
from ..errors import ConfigurationError, StorageError
from .base import Claim, InstanceRow, NewInstance
from .postgres_listen import Listener
from .postgres_schema import Migration, current_version, migrate, queries, quote_ident

__all__ = ["PostgresStorage"]

T = TypeVar("T")

_INSTANCE_COLUMNS = (
    "pk, workflow, scope, id, status, params, generation, created_at, updated_at, output, "
    "error_name, error_message, wake_at, started_at, ended_at"
)
_STEP_COLUMNS = (
    "name, count, kind, state, value, error_name, error_message, attempt, wake_at, event_type"
)


def _of(alias: str, columns: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


def _load_queries() -> dict[str, str]:
    fill = {
        "{instance_columns}": _INSTANCE_COLUMNS,
        "{instance_columns_of_i}": _of("i", _INSTANCE_COLUMNS) + ", picked.t",
        "{step_columns}": _STEP_COLUMNS,
        "{step_columns_of_s}": _of("s", _STEP_COLUMNS),
    }
    out = {}
    for name, sql in queries().items():
        for key, value in fill.items():
            sql = sql.replace(key, value)
        out[name] = sql
    return out


Q = _load_queries()

_ACTIVE = sorted(ACTIVE_STATUSES)
_CLAIMABLE = sorted(CLAIMABLE_STATUSES)
_RETRIES = 3
_RETRY_DELAY = 0.05
_DUE_SOON = 5.0
"""A run suspended to wake within this many seconds is announced (``due``): other nodes may
be sleeping until a later time they knew of."""

_LOST: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
)
"""The connection failed: whatever was in flight may or may not have happened."""

_FAILED: tuple[type[BaseException], ...] = (*_LOST, asyncpg.PostgresError)

_ROLLED_BACK: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.TransactionRollbackError,  # deadlock, serialization failure
    asyncpg.exceptions.InvalidCachedStatementError,  # the schema changed under a prepared plan
)
"""The statement or transaction failed as a whole and may run again."""


async def _learn_types(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    # asyncpg looks the array types up on each new connection, one query per statement that
    # meets new ones (some ms each): one statement with all of them makes it one lookup.
    await conn.prepare("SELECT $1::bigint[], $2::int[], $3::float8[], $4::bytea[]")


class _Held(msgspec.Struct, frozen=True):
    """What a transition reads of a locked row (a ``transitions.InstanceState``) and who holds
    it."""

    status: str
    generation: int
    wake_at: float | None
    started_at: float | None
    owner: str | None
    lease_until: float | None


def _held(r: asyncpg.Record) -> _Held:
    return _Held(r[0], r[1], r[2], r[3], r[4], r[5])


def _row(r: asyncpg.Record) -> InstanceRow:
    return InstanceRow(
        pk=r[0],
        workflow=r[1],
        scope=r[2],
        id=r[3],
        status=r[4],
        params=r[5],
        generation=r[6],
        created_at=r[7],
        updated_at=r[8],
        output=r[9],
        error=None if r[10] is None else ErrorInfo(r[10], r[11] or ""),
        wake_at=r[12],
        started_at=r[13],
        ended_at=r[14],
    )


def _entry(r: asyncpg.Record, at: int = 0) -> JournalEntry:
    return JournalEntry(
        name=r[at],
        count=r[at + 1],
        kind=r[at + 2],
        state=r[at + 3],
        value=r[at + 4],
        error=None if r[at + 5] is None else ErrorInfo(r[at + 5], r[at + 6] or ""),
        attempt=r[at + 7],
        wake_at=r[at + 8],
        event_type=r[at + 9],
    )


def _step_args(pk: int, e: JournalEntry, now: float) -> tuple[Any, ...]:
    return (
        pk,
        e.name,
        e.count,
        e.kind,
        e.state,
        e.value,
        None if e.error is None else e.error.name,
        None if e.error is None else e.error.message,
        e.attempt,
        e.wake_at,
        e.event_type,
        now,
    )


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _split_url(url: str) -> tuple[str, str | None]:
    """The URL without its ``schema`` parameter (asyncpg would take it for a server setting),
    and that schema."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = [(k, v) for k, v in query if k != "schema"]
    return urlunsplit(parts._replace(query=urlencode(rest))), schema or None


class _Counted:
    """A pooled connection whose round trips the storage counts."""

    __slots__ = ("conn", "store")

    def __init__(self, conn: PoolConnectionProxy[asyncpg.Record], store: PostgresStorage) -> None:
        self.conn = conn
        self.store = store

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self.store._round_trips += 1
        return await self.conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        self.store._round_trips += 1
        return await self.conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.store._round_trips += 1
        return await self.conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        self.store._round_trips += 1
        return await self.conn.execute(sql, *args)


class PostgresStorage:
    """PostgreSQL at ``url`` (``postgresql://user:password@host:port/database``; add
    ``?schema=name`` to keep the tables in a schema of their own, created if missing).

    ``node_id`` names this process in the database (default: host, pid and a random part, fresh
    per process); ``lease_seconds`` is how long a claimed run stays this node's without a
    renewal; ``pool_size`` bounds the connections (plus one for :meth:`listen`).
    ``durability="normal"`` commits without waiting for the server's WAL flush
    (``synchronous_commit=off``): a server crash may lose the last commits, never corrupt."""

    shared = True

    def __init__(
        self,
        url: str,
        *,
        node_id: str | None = None,
        lease_seconds: float = 30.0,
        pool_size: int = 10,
        durability: str = "full",
    ) -> None:
        if durability not in ("full", "normal"):
            raise ConfigurationError(f"durability must be 'full' or 'normal', got {durability!r}")
        if lease_seconds <= 0:
            raise ConfigurationError(f"lease_seconds must be positive, got {lease_seconds!r}")
        if pool_size < 1:
            raise ConfigurationError(f"pool_size must be at least 1, got {pool_size!r}")
        self.url = url
        self._dsn, self.schema = _split_url(url)
        self._settings: dict[str, str] = {"application_name": "dynamic-workflows"}
        if self.schema is not None:
            self._settings["search_path"] = quote_ident(self.schema)
        if durability == "normal":
            self._settings["synchronous_commit"] = "off"
        self.node_id = node_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.lease_seconds = lease_seconds
        self.pool_size = pool_size
        self.channel = "dwf"
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._listener: Listener | None = None
        self._pending_steps: list[
            tuple[Sequence[tuple[int, int, JournalEntry]], float, asyncio.Future[list[bool]]]
        ] = []
        self._step_writer: asyncio.Task[None] | None = None
        self._round_trips = 0
        self._commits = 0
        self._operations = 0

    # -- plumbing -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, and create or migrate the schema."""
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self.pool_size,
                server_settings=self._settings,
                init=_learn_types,
            )
        except _FAILED as exc:
            raise StorageError(
                f"cannot connect to PostgreSQL at {_redact(self.url)}: {exc}"
            ) from exc
        try:
            async with pool.acquire() as conn:
                await migrate(conn, schema=self.schema)  # type: ignore[arg-type]
                schema = await conn.fetchval("SELECT current_schema()")
        except StorageError:
            await pool.close()
            raise
        except _FAILED as exc:
            await pool.close()
            raise StorageError(f"cannot migrate PostgreSQL at {_redact(self.url)}: {exc}") from exc
        # Schemas of one database are separate deployments: their nodes must not hear each other.
        self.channel = "dwf" if schema in (None, "public") else f"dwf.{schema}"
        self._pool = pool

    async def migrate(self, target: int | None = None) -> tuple[list[Migration], int]:
        """Migrate the schema (to ``target``, default the latest) over one connection of its
        own, without opening the storage: the migrations applied, and the version now."""
        try:
            conn = await self._connect_one()
        except _FAILED as exc:
            raise StorageError(
                f"cannot connect to PostgreSQL at {_redact(self.url)}: {exc}"
            ) from exc
        try:
            applied = await migrate(conn, schema=self.schema, target=target)
            return applied, await current_version(conn)
        except _FAILED as exc:
            raise StorageError(f"cannot migrate PostgreSQL at {_redact(self.url)}: {exc}") from exc
        finally:
            await conn.close()

    async def close(self) -> None:
        """Finish the writes in flight, stop listening, close the connections."""
        writer = self._step_writer
        if writer is not None:
            await asyncio.gather(writer, return_exceptions=True)
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=10.0)
            except TimeoutError:
                pool.terminate()

    @property
    def stats(self) -> dict[str, int]:
        """Commits, operations (storage calls) and round trips to the server so far."""
        return {
            "commits": self._commits,
            "operations": self._operations,
            "round_trips": self._round_trips,
        }

    def _lost(self, op: str, exc: BaseException, *, unknown: bool) -> StorageError:
        what = "its outcome is unknown" if unknown else "gave up after retrying"
        return StorageError(f"PostgreSQL connection lost during {op} ({what}): {exc}")

    async def _run(
        self,
        op: str,
        fn: Callable[[_Counted], Awaitable[T]],
        *,
        write: bool,
        transaction: bool = False,
        idempotent: bool = False,
    ) -> T:
        """Run ``fn`` on a pooled connection: in a transaction if asked (``BEGIN``/``COMMIT``),
        else as it is (each statement commits by itself; a write must then be one statement).
        Retries what may run again: reads, idempotent writes, a transaction that failed before
        its commit, and anything the server rolled back as a whole."""
        pool = self._pool
        if pool is None:
            raise StorageError(f"{op}: the PostgreSQL storage is not open")
        self._operations += 1
        retry_lost = not write or idempotent or transaction
        for attempt in range(_RETRIES):
            committing = False
            try:
                async with pool.acquire() as conn:
                    c = _Counted(conn, self)
                    if not transaction:
                        result = await fn(c)
                    else:
                        tx = conn.transaction()
                        self._round_trips += 1
                        await tx.start()
                        try:
                            result = await fn(c)
                        except BaseException:
                            if not conn.is_closed():
                                self._round_trips += 1
                                with contextlib.suppress(Exception):  # the first error tells
                                    await tx.rollback()
                            raise
                        committing = True
                        self._round_trips += 1
                        await tx.commit()
                if write:
                    self._commits += 1
                return result
            except _ROLLED_BACK as exc:
                if attempt + 1 == _RETRIES:
                    raise StorageError(f"PostgreSQL: {op} failed: {exc}") from exc
            except _LOST as exc:
                if committing or not retry_lost:
                    raise self._lost(op, exc, unknown=True) from exc
                if attempt + 1 == _RETRIES:
                    raise self._lost(op, exc, unknown=False) from exc
            except asyncpg.PostgresError as exc:
                raise StorageError(f"PostgreSQL: {op} failed: {exc}") from exc
            await asyncio.sleep(_RETRY_DELAY * 2**attempt)
        raise AssertionError("unreachable")

    async def _read(self, op: str, fn: Callable[[_Counted], Awaitable[T]]) -> T:
        return await self._run(op, fn, write=False)

    async def _transition(self, op: str, fn: Callable[[_Counted], Awaitable[T]]) -> T:
        return await self._run(op, fn, write=True, transaction=True)

    def _mine(self, held: _Held | None) -> _Held | None:
        """``held`` if this node holds it: for another node's (or nobody's) row, a live-run
        action of this node is stale."""
        return held if held is not None and held.owner == self.node_id else None

    async def _apply(
        self,
        c: _Counted,
        pk: int,
        change: Change,
        *,
        keep_holder: bool = False,
        lease: float | None = None,
        notify: str | None = None,
    ) -> None:
        """Write a transition's ``change`` to the row (locked by this transaction). Leaving
        the active statuses lets go of the row's holder unless ``keep_holder``; ``lease`` sets
        a new lease end; ``notify`` is announced at commit."""
        updates = change.updates()
        sets: list[str] = []
        args: list[Any] = [pk]

        def put(column: str, value: Any) -> None:
            args.append(value)
            sets.append(f"{column} = ${len(args)}")

        for name, value in updates.items():
            if name == "error":
                put("error_name", None if value is None else value.name)
                put("error_message", None if value is None else value.message)
            else:
                put(name, value)
        status = updates.get("status")
        if not keep_holder and status is not None and status not in ACTIVE_STATUSES:
            sets += ["owner = NULL", "lease_until = NULL"]
        if lease is not None:
            put("lease_until", lease)
        if not sets:
            if notify is not None:
                await c.fetchval(Q["notify"], self.channel, notify)
            return
        sql = f"UPDATE instances SET {', '.join(sets)} WHERE pk = $1"
        if notify is None:
            await c.execute(sql, *args)
        else:
            args += [self.channel, notify]
            await c.fetchval(f"{sql} RETURNING pg_notify(${len(args) - 1}, ${len(args)})", *args)

    # -- instances --------------------------------------------------------------------------

    async def create_instances(
        self, items: Sequence[NewInstance], now: float
    ) -> list[InstanceRow | None]:
        first: dict[tuple[str, str, str], int] = {}
        for i, it in enumerate(items):
            first.setdefault((it.workflow, it.scope, it.id), i)
        unique = [items[i] for i in sorted(first.values())]
        if not unique:
            return []

        async def op(c: _Counted) -> list[asyncpg.Record]:
            return await c.fetch(
                Q["create_instances"],
                [it.workflow for it in unique],
                [it.scope for it in unique],
                [it.id for it in unique],
                [it.params for it in unique],
                tr.INITIAL_STATUS,
                now,
                self.channel,
            )

        created = {(r[1], r[2], r[3]): r[0] for r in await self._run("create", op, write=True)}
        out: list[InstanceRow | None] = []
        for i, it in enumerate(items):
            key = (it.workflow, it.scope, it.id)
            pk = created.get(key)
            if pk is None or first[key] != i:
                out.append(None)
                continue
            out.append(
                InstanceRow(
                    pk=pk,
                    workflow=it.workflow,
                    scope=it.scope,
                    id=it.id,
                    status=tr.INITIAL_STATUS,
                    params=it.params,
                    generation=0,
                    created_at=now,
                    updated_at=now,
                    wake_at=now,
                )
            )
        return out

    async def get_instance(self, workflow: str, scope: str, id: str) -> InstanceRow | None:
        r = await self._read(
            "get_instance", lambda c: c.fetchrow(Q["get_instance"], workflow, scope, id)
        )
        return None if r is None else _row(r)

    async def get_instance_by_pk(self, pk: int) -> InstanceRow | None:
        r = await self._read("get_instance", lambda c: c.fetchrow(Q["get_instance_by_pk"], pk))
        return None if r is None else _row(r)

    @staticmethod
    def _filters(**filters: str | None) -> tuple[str, list[Any]]:
        where, args = [], []
        for column, value in filters.items():
            if value is not None:
                args.append(value)
                where.append(f"{column} = ${len(args)}")
        return (f"WHERE {' AND '.join(where)}" if where else ""), args

    async def list_instances(
        self,
        workflow: str | None,
        *,
        scope: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[InstanceRow]:
        clause, args = self._filters(workflow=workflow, scope=scope, status=status)
        n = len(args)
        sql = (
            f"SELECT {_INSTANCE_COLUMNS} FROM instances {clause} "
            f"ORDER BY created_at DESC, pk DESC LIMIT ${n + 1} OFFSET ${n + 2}"
        )
        rows = await self._read("list_instances", lambda c: c.fetch(sql, *args, limit, offset))
        return [_row(r) for r in rows]

    async def count_instances(
        self, workflow: str | None = None, *, scope: str | None = None
    ) -> dict[str, int]:
        clause, args = self._filters(workflow=workflow, scope=scope)
        sql = f"SELECT status, count(*) FROM instances {clause} GROUP BY status"
        rows = await self._read("count_instances", lambda c: c.fetch(sql, *args))
        return {r[0]: r[1] for r in rows}

    async def find_instances(self, workflow: str, id: str) -> list[InstanceRow]:
        rows = await self._read(
            "find_instances", lambda c: c.fetch(Q["find_instances"], workflow, id)
        )
        return [_row(r) for r in rows]

    async def load_journal(self, pk: int) -> list[JournalEntry]:
        rows = await self._read("load_journal", lambda c: c.fetch(Q["load_journal"], pk))
        return [_entry(r) for r in rows]

    # -- scheduling -------------------------------------------------------------------------

    async def claim_due(self, now: float, limit: int) -> list[Claim]:
        # The claim and the journals in one transaction: a failure before the commit leaves
        # nothing claimed (a claim the engine never heard of would stay this node's).
        async def op(c: _Counted) -> list[Claim]:
            rows = await c.fetch(
                Q["claim_due"],
                now,
                limit,
                _CLAIMABLE,
                self.node_id,
                _ACTIVE,
                Status.WAITING_FOR_PAUSE,
                Status.PAUSED,
                Status.RUNNING,
                self.lease_seconds,
            )
            claimed = sorted(
                (r for r in rows if r[4] == Status.RUNNING), key=lambda r: (r[-1], r[0])
            )
            if not claimed:
                return []
            journals: dict[int, list[JournalEntry]] = {r[0]: [] for r in claimed}
            for s in await c.fetch(Q["load_journals"], list(journals)):
                journals[s[0]].append(_entry(s, 1))
            return [Claim(_row(r), journals[r[0]]) for r in claimed]

        if limit <= 0:
            return []
        return await self._transition("claim_due", op)

    async def next_due(self) -> float | None:
        value = await self._read(
            "next_due", lambda c: c.fetchval(Q["next_due"], self.node_id, _CLAIMABLE, _ACTIVE)
        )
        return None if value is None else float(value)

    # -- live runs --------------------------------------------------------------------------

    async def record_steps(
        self, writes: Sequence[tuple[int, int, JournalEntry]], now: float
    ) -> list[bool]:
        """One statement per call at most: calls made while one is in flight are merged into
        the next."""
        if not writes:
            return []
        if self._pool is None:
            raise StorageError("record_steps: the PostgreSQL storage is not open")
        fut: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        self._pending_steps.append((writes, now, fut))
        if self._step_writer is None or self._step_writer.done():
            self._step_writer = asyncio.create_task(self._write_steps(), name="dwf-pg-steps")
        return await fut

    async def _write_steps(self) -> None:
        while self._pending_steps:
            batch, self._pending_steps = self._pending_steps, []
            try:
                results = await self._record([(w, now) for w, now, _ in batch])
            except StorageError as exc:
                if len(batch) == 1 or "connection lost" in str(exc):
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                # One call's writes failed the merged statement: each alone, so only it fails.
                for writes, now, fut in batch:
                    try:
                        (result,) = await self._record([(writes, now)])
                    except StorageError as one:
                        if not fut.done():
                            fut.set_exception(one)
                    else:
                        if not fut.done():
                            fut.set_result(result)
                continue
            for (_, _, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)

    async def _record(
        self, calls: list[tuple[Sequence[tuple[int, int, JournalEntry]], float]]
    ) -> list[list[bool]]:
        # One row per (pk, generation, name, count): an upsert may not touch a row twice. The
        # last write wins, with the time of the first (recorded_at orders the journal).
        rows: dict[tuple[int, int, str, int], tuple[Any, ...]] = {}
        for writes, now in calls:
            for pk, generation, e in writes:
                key = (pk, generation, e.name, e.count)
                at = rows[key][-1] if key in rows else now
                rows[key] = (pk, generation, *_step_args(pk, e, at)[1:])
        columns = list(zip(*rows.values(), strict=True))

        async def op(c: _Counted) -> list[asyncpg.Record]:
            return await c.fetch(
                Q["record_steps"],
                *(list(col) for col in columns),
                self.node_id,
                _ACTIVE,
            )

        live = {(r[0], r[1]) for r in await self._run("record_steps", op, write=True)}
        return [[(pk, g) in live for pk, g, _ in writes] for writes, _ in calls]

    async def register_wait(
        self,
        pk: int,
        generation: int,
        name: str,
        count: int,
        event_type: str,
        deadline: float,
        now: float,
    ) -> WaitResult | None:
        async def op(c: _Counted) -> WaitResult | None:
            r = await c.fetchrow(Q["lock_instance_with_event"], pk, event_type)
            state = None if r is None else self._mine(_held(r))
            buffered = [] if r is None or r[6] is None else [BufferedEvent(r[6], r[7], r[8], r[9])]
            outcome = tr.register_wait(
                state, generation, name, count, event_type, deadline, buffered
            )
            if outcome is None:
                return None
            seq = None if outcome.consumed is None else outcome.consumed.seq
            await c.execute(Q["put_step"], *_step_args(pk, outcome.entry, now), seq)
            return outcome.result

        return await self._transition("register_wait", op)

    async def expire_wait(
        self, pk: int, generation: int, name: str, count: int, error: ErrorInfo, now: float
    ) -> tuple[bool, bytes | None] | None:
        async def op(c: _Counted) -> tuple[bool, bytes | None] | None:
            r = await c.fetchrow(Q["lock_instance_with_step"], pk, name, count)
            state = None if r is None else self._mine(_held(r))
            entry = None if r is None or r[6] is None else _entry(r, 6)
            outcome = tr.expire_wait(state, generation, entry, error)
            if outcome is None:
                return None
            if outcome.step is not None:
                await self._update_step(c, pk, outcome.step)
            return (outcome.timed_out, outcome.value)

        return await self._transition("expire_wait", op)

    @staticmethod
    async def _update_step(c: _Counted, pk: int, step: tr.StepUpdate) -> None:
        changes = step.updates()
        error = changes.get("error")
        await c.execute(
            Q["update_step"],
            pk,
            step.name,
            step.count,
            step.state,
            "value" in changes,
            changes.get("value"),
            "error" in changes,
            None if error is None else error.name,
            None if error is None else error.message,
        )

    async def add_event(
        self, pk: int, event_type: str, payload: bytes, now: float
    ) -> EventDelivery | None:
        async def op(c: _Counted) -> EventDelivery | None:
            r = await c.fetchrow(Q["lock_instance"], pk)
            if r is None:
                return None
            steps = [_entry(s) for s in await c.fetch(Q["waiting_steps"], pk, event_type)]
            outcome = tr.add_event(_held(r), event_type, payload, now, steps)
            await c.fetchval(
                Q["add_event"],
                pk,
                event_type,
                payload,
                now,
                outcome.delivery is not None,
                self.channel,
            )
            if outcome.step is not None:
                await self._update_step(c, pk, outcome.step)
            # A parked run's holder keeps it: told of the event, it resumes the run warm.
            await self._apply(c, pk, outcome.change, keep_holder=True)
            return outcome.delivery

        return await self._transition("add_event", op)

    async def finish_run(
        self,
        pk: int,
        generation: int,
        status: str,
        output: bytes | None,
        error: ErrorInfo | None,
        now: float,
    ) -> bool:
        async def op(c: _Counted) -> bool:
            state = await self._lock_mine(c, pk)
            change = tr.finish_run(state, generation, status, output, error, now)
            if change is None:
                return False
            await self._apply(c, pk, change)
            return True

        return await self._transition("finish_run", op)

    async def _lock_mine(self, c: _Counted, pk: int) -> _Held | None:
        r = await c.fetchrow(Q["lock_instance"], pk)
        return None if r is None else self._mine(_held(r))

    async def suspend_run(
        self, pk: int, generation: int, wake_at: float | None, held_by_pause: bool, now: float
    ) -> str | None:
        async def op(c: _Counted) -> str | None:
            state = await self._lock_mine(c, pk)
            outcome = tr.suspend_run(state, generation, wake_at, held_by_pause, now)
            if outcome is None:
                return None
            wake = outcome.change.wake_at
            soon = isinstance(wake, float | int) and wake <= now + _DUE_SOON
            await self._apply(c, pk, outcome.change, notify=f"due:{pk}" if soon else None)
            return outcome.status

        return await self._transition("suspend_run", op)

    async def release_run(self, pk: int, generation: int, now: float) -> bool:
        async def op(c: _Counted) -> bool:
            change = tr.release_run(await self._lock_mine(c, pk), generation, now)
            if change is None:
                return False
            due = change.status == Status.QUEUED
            await self._apply(c, pk, change, notify=f"due:{pk}" if due else None)
            return True

        return await self._transition("release_run", op)

    async def control(
        self, pk: int, action: str, now: float, *, restart_from: tuple[str, int] | None = None
    ) -> ControlResult | None:
        tr.check_control_action(action)

        async def op(c: _Counted) -> ControlResult | None:
            r = await c.fetchrow(Q["lock_instance"], pk)
            if r is None:
                return None
            cutoff = None
            if action == "restart" and restart_from is not None:
                cutoff = await c.fetchval(Q["step_recorded_at"], pk, *restart_from)
            outcome = tr.control(
                _held(r), action, now, restart_from=restart_from, step_recorded=cutoff is not None
            )
            if outcome.truncate is not None:
                if outcome.truncate.from_step is None or cutoff is None:
                    await c.execute(Q["truncate_journal"], pk)
                else:
                    await c.execute(Q["truncate_journal_from"], pk, cutoff)
            if outcome.drop_consumed_events:
                await c.execute(Q["drop_consumed_events"], pk)
            if outcome.change.updates():
                await self._apply(c, pk, outcome.change, notify=f"control:{pk}")
            return outcome.result

        return await self._transition("control", op)

    async def delete_instance(self, pk: int) -> bool:
        async def op(c: _Counted) -> list[asyncpg.Record]:
            return await c.fetch(Q["delete_instance"], pk, self.channel)

        return bool(await self._run("delete_instance", op, write=True))

    async def recover(self, now: float) -> int:
        """Let go of the rows this node holds (a node id is fresh per process, so normally
        none): its runs are requeued (or paused), its parked rows released as they are.
        Other nodes' runs are never touched here: lapsed leases are ``claim_due``'s."""

        async def op(c: _Counted) -> int:
            requeued = 0
            for bulk in tr.recover_plan(now):
                sets, args = self._bulk_sets(bulk.change)
                n = len(args)
                done = await c.fetch(
                    f"UPDATE instances SET {sets}, owner = NULL, lease_until = NULL "
                    f"WHERE status = ${n + 1} AND owner = ${n + 2} RETURNING pk",
                    *args,
                    bulk.status,
                    self.node_id,
                )
                if bulk.requeued:
                    requeued += len(done)
            await c.execute(Q["release_held"], self.node_id)
            if requeued:
                await c.fetchval(Q["notify"], self.channel, "due:")
            return requeued

        return await self._transition("recover", op)

    @staticmethod
    def _bulk_sets(change: Change) -> tuple[str, list[Any]]:
        sets, args = [], []
        for name, value in change.updates().items():
            if name == "error":
                args += [None if value is None else value.name]
                sets.append(f"error_name = ${len(args)}")
                args += [None if value is None else value.message]
                sets.append(f"error_message = ${len(args)}")
            else:
                args.append(value)
                sets.append(f"{name} = ${len(args)}")
        return ", ".join(sets), args

    # -- several nodes ----------------------------------------------------------------------

    async def heartbeat(self, now: float) -> None:
        async def op(c: _Counted) -> None:
            await c.execute(Q["heartbeat"], self.node_id, now, socket.gethostname(), os.getpid())

        await self._run("heartbeat", op, write=True, idempotent=True)

    async def renew_leases(self, pks: Sequence[int], now: float) -> set[int]:
        if not pks:
            return set()
        wanted = sorted(set(pks))

        async def op(c: _Counted) -> list[asyncpg.Record]:
            return await c.fetch(Q["renew_leases"], wanted, self.node_id, now + self.lease_seconds)

        # Idempotent: extending a lease to the same end twice is extending it once.
        rows = await self._run("renew_leases", op, write=True, idempotent=True)
        return set(wanted) - {r[0] for r in rows}

    async def park_run(self, pk: int, generation: int, wake_at: float | None, now: float) -> bool:
        async def op(c: _Counted) -> bool:
            # A park is a suspension that keeps its holder: suspend_run's rules, status waiting.
            outcome = tr.suspend_run(await self._lock_mine(c, pk), generation, wake_at, False, now)
            if outcome is None or outcome.status != Status.WAITING:
                return False  # stale, or a pause is pending: the run must suspend instead
            lease = now + self.lease_seconds
            await self._apply(c, pk, outcome.change, keep_holder=True, lease=lease)
            return True

        return await self._transition("park_run", op)

    async def unpark_run(self, pk: int, generation: int, now: float) -> bool:
        async def op(c: _Counted) -> bool:
            state = await self._lock_mine(c, pk)
            if state is None or state.generation != generation:
                return False
            if state.status in ACTIVE_STATUSES:
                return True  # never parked, or unparked already
            # Resuming a parked run is claiming it again (it is this node's already).
            change = tr.claim(state, now)
            if change is None:
                return False
            lease = now + self.lease_seconds
            await self._apply(c, pk, change, keep_holder=True, lease=lease)
            return True

        return await self._transition("unpark_run", op)

    async def listen(self, callback: Callable[[str, str], None]) -> None:
        if self._pool is None:
            raise StorageError("listen: the PostgreSQL storage is not open")
        if self._listener is None:
            self._listener = Listener(self._connect_one, self.channel)
        try:
            await self._listener.add(callback)
        except _FAILED as exc:
            raise StorageError(
                f"cannot listen on PostgreSQL at {_redact(self.url)}: {exc}"
            ) from exc

    async def _connect_one(self) -> asyncpg.Connection:
        return await asyncpg.connect(self._dsn, server_settings=self._settings)
