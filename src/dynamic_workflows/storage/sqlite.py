"""The embedded backend: SQLite in WAL mode behind one writer thread with group commit.

Every operation is a function run on the writer thread. The thread takes every operation queued
while it was busy and runs them in one transaction with one fsync, so many instances' step
results cost one commit; each caller's future is resolved only after that commit. Reads go
through the same thread, so they see exactly what was acknowledged.

Durability: ``synchronous=FULL`` by default (a committed step survives power loss);
``durability="normal"`` trades the last few commits on power loss (never on a process crash)
for speed.

Creates (*ingest*) are committed apart from run work (claims, step results, run ends, events,
reads): run work in its own group commits, creates in transactions of their own, each tenant's
within its share of the writer's time while other tenants run (:mod:`..core.ingest`), so that one
tenant's flood of creates does not slow every step of the others'.

State changes are :mod:`~dynamic_workflows.core.transitions`'s: an operation loads the columns
a transition reads, calls it, and writes the change it returns (:func:`_apply`).

One process owns a database file at a time (:mod:`.filelock`): a second engine on the same file
would claim the first one's live runs as its own.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from ..core import tenancy
from ..core import transitions as t
from ..core.ingest import IngestGate
from ..core.journal import ErrorInfo, JournalEntry, RollbackOutcome
from ..core.logs import LogLine
from ..core.tenancy import TenantPolicy, TenantState
from ..errors import ConfigurationError, StorageError, TenantLimitError
from .base import (
    Claim,
    ControlResult,
    EventDelivery,
    InstanceRow,
    LogWrite,
    NewInstance,
    ScopeUsagePage,
    WaitResult,
    new_row,
    rollback_outcome,
    rollback_text,
    step_values,
)
from .filelock import FileLock
from .usage_sql import scope_usage_page, scope_usage_sql

__all__ = ["SQLiteStorage", "migrations"]

T = TypeVar("T")
_MAX_BATCH = 1024
_Op = Callable[[sqlite3.Connection], Any]
_Item = tuple[_Op, asyncio.Future[Any], asyncio.AbstractEventLoop]


class _Ingest:
    """An ingest-class operation (:meth:`SQLiteStorage._submit` with ``scopes``): the tenants
    whose instances it creates."""

    __slots__ = ("op", "scopes")

    def __init__(self, op: _Op, scopes: tuple[str, ...]) -> None:
        self.op = op
        self.scopes = scopes

    def __call__(self, conn: sqlite3.Connection) -> Any:
        return self.op(conn)


_INSTANCE_COLUMNS = (
    "pk, workflow, scope, id, status, params, generation, created_at, updated_at, output, "
    "error_name, error_message, wake_at, started_at, ended_at, error_traceback, log_bytes, "
    "log_dropped, rollback, schedule, success_retention, error_retention"
)
_STEP_COLUMNS = (
    "name, count, kind, state, value, error_name, error_message, attempt, wake_at, event_type, "
    "started_at, ended_at, attempts, error_traceback, rollback, sensitive"
)
_STATE_COLUMNS = "status, generation, wake_at, started_at"
_CLAIMABLE = ", ".join(f"'{status}'" for status in sorted(t.CLAIMABLE_STATUSES))
_ACTIVE = ", ".join(f"'{status}'" for status in sorted(t.ACTIVE_STATUSES))
_UNFINISHED = ", ".join(
    f"'{status}'" for status in sorted(set(t.Status.ALL) - t.FINITE_STATUSES - {t.Status.UNKNOWN})
)
_TENANT_COLUMNS = (
    "scope, weight, max_running, max_live, create_rate, create_burst, tokens, tokens_at"
)


def _tenant(r: Sequence[Any]) -> TenantState:
    policy = TenantPolicy(
        max_running=r[2], max_live=r[3], create_rate=r[4], create_burst=r[5], weight=r[1]
    )
    return TenantState(r[0], policy, r[6], r[7])


def _admit_creates(
    conn: sqlite3.Connection,
    counts: Mapping[str, int],
    tenants: Mapping[str, TenantPolicy],
    now: float,
) -> TenantLimitError | None:
    """Store each scope's policy and take its tokens (the writer thread serialises this with
    every claim); a refused scope is answered, not raised (raising would fail the whole group
    commit), before anything is written."""
    buckets: list[tuple[str, TenantPolicy, tenancy.Bucket | None]] = []
    for scope, n in counts.items():
        policy = tenants.get(scope)
        if policy is None:
            continue
        r = conn.execute("SELECT tokens, tokens_at FROM tenants WHERE scope=?", (scope,)).fetchone()
        try:
            if policy.max_live is not None:
                live = conn.execute(
                    f"SELECT count(*) FROM instances WHERE scope=? AND status IN ({_UNFINISHED})",
                    (scope,),
                ).fetchone()[0]
                tenancy.check_live(policy, scope, live, n)
            bucket = tenancy.take_tokens(
                policy, scope, None if r is None else r[0], None if r is None else r[1], n, now
            )
        except TenantLimitError as exc:
            return exc
        buckets.append((scope, policy, bucket))
    for scope, policy, bucket in buckets:
        conn.execute(
            "INSERT INTO tenants (scope, weight, max_running, max_live, create_rate, "
            "create_burst, tokens, tokens_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (scope) DO UPDATE SET weight=excluded.weight, "
            "max_running=excluded.max_running, max_live=excluded.max_live, "
            "create_rate=excluded.create_rate, create_burst=excluded.create_burst, "
            "tokens=excluded.tokens, tokens_at=excluded.tokens_at, updated_at=excluded.updated_at",
            (
                scope,
                policy.weight,
                policy.max_running,
                policy.max_live,
                policy.create_rate,
                policy.create_burst,
                None if bucket is None else bucket.tokens,
                None if bucket is None else bucket.at,
                now,
            ),
        )
    return None


_INSTANCE_TABLES = (
    ("instances", "pk"),
    ("steps", "instance_pk"),
    ("events", "instance_pk"),
    ("logs", "instance_pk"),
)
"""What an instance is made of: deleting it deletes its rows of each."""
_RETAIN_UNTIL = """(
    CASE status
        WHEN 'complete' THEN ended_at + success_retention
        WHEN 'errored' THEN ended_at + error_retention
        WHEN 'terminated' THEN ended_at + error_retention
    END
)"""
"""core.retention.retain_until in SQL: the expression of the index instances_retained (0008),
repeated as it is there so that the planner uses the index."""


def migrations() -> list[tuple[int, str]]:
    """The schema migrations, ``(version, sql)``, in order."""
    folder = resources.files("dynamic_workflows.storage").joinpath("sql/sqlite")
    out = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            out.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(out)


def _row(r: Sequence[Any]) -> InstanceRow:
    return InstanceRow(
        pk=r[0],
        workflow=r[1],
        scope=r[2],
        id=r[3],
        status=r[4],
        params=bytes(r[5]),
        generation=r[6],
        created_at=r[7],
        updated_at=r[8],
        output=None if r[9] is None else bytes(r[9]),
        error=None if r[10] is None else ErrorInfo(r[10], r[11] or "", r[15]),
        wake_at=r[12],
        started_at=r[13],
        ended_at=r[14],
        log_bytes=r[16],
        log_dropped=r[17],
        rollback=rollback_outcome(r[18]),
        schedule=None if r[19] is None else bytes(r[19]),
        success_retention=r[20],
        error_retention=r[21],
    )


def _entry(r: Sequence[Any]) -> JournalEntry:
    return JournalEntry(
        name=r[0],
        count=r[1],
        kind=r[2],
        state=r[3],
        value=None if r[4] is None else bytes(r[4]),
        error=None if r[5] is None else ErrorInfo(r[5], r[6] or "", r[13] if len(r) > 13 else None),
        attempt=r[7],
        wake_at=r[8],
        event_type=r[9],
        # (absent from a query that reads only what a transition needs)
        started_at=r[10] if len(r) > 10 else None,
        ended_at=r[11] if len(r) > 11 else None,
        attempts=None if len(r) <= 12 or r[12] is None else bytes(r[12]),
        rollback=len(r) > 14 and bool(r[14]),
        sensitive=len(r) > 15 and bool(r[15]),
    )


def _journal(conn: sqlite3.Connection, pk: int) -> list[JournalEntry]:
    rows = conn.execute(
        f"SELECT {_STEP_COLUMNS} FROM steps WHERE instance_pk = ? "
        "ORDER BY recorded_at, name, count",
        (pk,),
    )
    return [_entry(r) for r in rows]


def _state(conn: sqlite3.Connection, pk: int) -> t.State | None:
    r = conn.execute(f"SELECT {_STATE_COLUMNS} FROM instances WHERE pk = ?", (pk,)).fetchone()
    return None if r is None else t.State(*r)


@functools.lru_cache(maxsize=64)
def _set_clause(names: tuple[str, ...]) -> str:
    # A handful of shapes of change, each built once (and one statement in sqlite3's cache).
    return ", ".join(
        "error_name=?, error_message=?, error_traceback=?" if name == "error" else f"{name}=?"
        for name in names
    )


def _assignments(updates: dict[str, Any]) -> tuple[str, list[Any]]:
    """``SET`` assignments for the fields of a Change or StepUpdate (the fields are the columns,
    but for ``error``: three columns)."""
    names = tuple(updates)
    args = list(updates.values())
    if "rollback" in updates:
        at = names.index("rollback")
        args[at] = rollback_text(args[at])
    if "error" in updates:
        at = names.index("error")
        error = args[at]
        args[at : at + 1] = (
            (None, None, None) if error is None else (error.name, error.message, error.traceback)
        )
    return _set_clause(names), args


def _apply(conn: sqlite3.Connection, pk: int, change: t.Change) -> dict[str, Any]:
    """Write ``change`` to the instance ``pk``; returns the fields written."""
    updates = change.updates()
    if updates:
        sets, args = _assignments(updates)
        conn.execute(f"UPDATE instances SET {sets} WHERE pk=?", (*args, pk))
    return updates


def _update_step(conn: sqlite3.Connection, pk: int, update: t.StepUpdate) -> None:
    sets, args = _assignments(update.updates())
    conn.execute(
        f"UPDATE steps SET {sets} WHERE instance_pk=? AND name=? AND count=?",
        (*args, pk, update.name, update.count),
    )


_UPSERT_STEP = (
    # An upsert, not INSERT OR REPLACE: recorded_at keeps the time the step was first seen.
    "INSERT INTO steps (instance_pk, name, count, kind, state, value, error_name, "
    "error_message, attempt, wake_at, event_type, recorded_at, started_at, ended_at, attempts, "
    "error_traceback, rollback, sensitive) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (instance_pk, name, count) DO UPDATE SET "
    "kind=excluded.kind, state=excluded.state, value=excluded.value, "
    "error_name=excluded.error_name, error_message=excluded.error_message, "
    "attempt=excluded.attempt, wake_at=excluded.wake_at, event_type=excluded.event_type, "
    "started_at=excluded.started_at, ended_at=excluded.ended_at, attempts=excluded.attempts, "
    "error_traceback=excluded.error_traceback, rollback=excluded.rollback, "
    "sensitive=excluded.sensitive"
)

_INSERT_LOG = (
    "INSERT INTO logs (instance_pk, at, stream, text, step_name, step_count, attempt, dropped) "
    "VALUES (?,?,?,?,?,?,?,?)"
)

_RAISE_NEXT_WAKE = (
    # A scope's next_wake from its instances again (0011): the earliest wake_at it has left.
    "UPDATE tenants SET next_wake = (SELECT min(wake_at) FROM instances "
    "WHERE instances.scope = tenants.scope AND wake_at IS NOT NULL) WHERE scope = ?"
)

_IN_CHUNK = 500
"""Host parameters per ``IN (...)`` list (SQLite allows 32,766 since 3.32; older, 999)."""


def _step_row(pk: int, e: JournalEntry, now: float) -> tuple[object, ...]:
    return (
        *step_values(pk, e, now),
        None if e.error is None else e.error.traceback,
        int(e.rollback),
        e.sensitive,
    )


def _put_step(conn: sqlite3.Connection, pk: int, e: JournalEntry, now: float) -> None:
    conn.execute(_UPSERT_STEP, _step_row(pk, e, now))


def _put_logs(
    conn: sqlite3.Connection, found: dict[int, tuple[str, int]], logs: Sequence[LogWrite]
) -> None:
    """Append the lines of the live runs among ``logs`` and count them on their rows."""
    live = [
        w
        for w in logs
        if (state := found.get(w.pk)) is not None and t.is_live(*state, w.generation)
    ]
    conn.executemany(
        _INSERT_LOG,
        [
            (
                w.pk,
                line.at,
                line.stream,
                line.text,
                line.step,
                line.count,
                line.attempt,
                line.dropped,
            )
            for w in live
            for line in w.lines
        ],
    )
    conn.executemany(
        "UPDATE instances SET log_bytes = log_bytes + ?, log_dropped = log_dropped + ? "
        "WHERE pk = ?",
        [(w.bytes, w.dropped, w.pk) for w in live if w.bytes or w.dropped],
    )


def _insert(conn: sqlite3.Connection, it: NewInstance, now: float) -> InstanceRow | None:
    cur = conn.execute(
        "INSERT INTO instances (workflow, scope, id, status, params, created_at, updated_at, "
        "wake_at, schedule, success_retention, error_retention) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
        "ON CONFLICT (workflow, scope, id) DO NOTHING",
        (
            it.workflow,
            it.scope,
            it.id,
            t.INITIAL_STATUS,
            it.params,
            now,
            now,
            now,
            it.schedule,
            it.success_retention,
            it.error_retention,
        ),
    )
    if cur.rowcount == 0:
        return None
    return new_row(cur.lastrowid or 0, it, now)


def _statuses(conn: sqlite3.Connection, pks: Sequence[int]) -> dict[int, tuple[str, int]]:
    """The status and generation of each of ``pks`` that exists, in one query per chunk."""
    found: dict[int, tuple[str, int]] = {}
    for i in range(0, len(pks), _IN_CHUNK):
        chunk = pks[i : i + _IN_CHUNK]
        rows = conn.execute(
            "SELECT pk, status, generation FROM instances WHERE pk IN "
            f"({','.join('?' * len(chunk))})",
            chunk,
        )
        for pk, status, generation in rows:
            found[pk] = (status, generation)
    return found


def _scopes(item: _Item) -> tuple[str, ...]:
    op = item[0]
    return op.scopes if isinstance(op, _Ingest) else ()


class _Writer(threading.Thread):
    """Owns the connection; runs queued operations in group-committed transactions."""

    def __init__(self, path: str, synchronous: str) -> None:
        super().__init__(name="dwf-sqlite-writer", daemon=True)
        self._path = path
        self._synchronous = synchronous
        self.queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self.ready = threading.Event()
        self.startup_error: BaseException | None = None
        self.commits = 0
        self.operations = 0
        self.gate = IngestGate()

    def run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA foreign_keys=OFF")
            conn.execute("PRAGMA cache_size=-65536")
            self._migrate(conn)
        except BaseException as exc:
            self.startup_error = exc
            self.ready.set()
            return
        self.ready.set()
        try:
            self._loop(conn)
        finally:
            conn.close()

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        for version, sql in migrations():
            if version > current:
                conn.executescript(
                    f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version={version};\nCOMMIT;"
                )

    def _loop(self, conn: sqlite3.Connection) -> None:
        """Run work in group commits; creates in their own, within their shares (module
        docstring)."""
        run: list[_Item] = []
        ingest: list[_Item] = []
        gate = self.gate
        stopping = False

        def sort_in(item: _Item) -> None:
            (ingest if type(item[0]) is _Ingest else run).append(item)

        while True:
            if not (run or ingest or stopping):
                item = self.queue.get()
                if item is None:
                    return
                sort_in(item)
            while not stopping and len(run) < _MAX_BATCH:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                sort_in(nxt)
            ready: list[_Item] = []
            wait = math.inf
            contenders = 0
            if ingest:
                held: list[_Item] = []
                creating = {scope for it in ingest for scope in _scopes(it)}
                contenders = len(creating)
                gate.claimed(creating)  # a tenant creating is about to run: it counts as active
                for it in ingest:
                    w = 0.0 if stopping else gate.wait(_scopes(it), contenders)
                    if w <= 0 and len(ready) < _MAX_BATCH:
                        ready.append(it)
                    else:
                        held.append(it)
                        wait = min(wait, w)
                ingest = held
            if ready:
                t0 = time.perf_counter()
                self._run_batch(conn, ready)
                share = (time.perf_counter() - t0) / len(ready)  # the transaction's time
                for it in ready:
                    gate.spent(_scopes(it), share, contenders)
            elif run:
                batch, run = run, []
                self._run_batch(conn, batch)
            elif ingest:  # only creates, over their shares while other tenants run
                try:
                    nxt = self.queue.get(timeout=wait)
                except queue.Empty:
                    continue
                if nxt is None:
                    stopping = True
                else:
                    sort_in(nxt)
            elif stopping:
                return

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Item]) -> None:
        results: list[tuple[_Item, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for item in batch:
                results.append((item, item[0](conn), None))
            conn.execute("COMMIT")
            self.commits += 1
            self.operations += len(batch)
        except Exception:
            # One operation failed (or the commit did): nothing of this batch was kept. Run each
            # operation alone so that only the one at fault fails.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            results = [self._run_alone(conn, item) for item in batch]
        _resolve(results)

    def _run_alone(
        self, conn: sqlite3.Connection, item: _Item
    ) -> tuple[_Item, Any, BaseException | None]:
        try:
            conn.execute("BEGIN IMMEDIATE")
            value = item[0](conn)
            conn.execute("COMMIT")
            self.commits += 1
            self.operations += 1
            return (item, value, None)
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            err = exc if isinstance(exc, StorageError) else StorageError(f"SQLite: {exc}")
            return (item, None, err)


def _resolve(results: list[tuple[_Item, Any, BaseException | None]]) -> None:
    by_loop: dict[
        asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]
    ] = {}
    for (_, fut, loop), value, exc in results:
        by_loop.setdefault(loop, []).append((fut, value, exc))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_set_all, items)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


def _set_all(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, value, exc in items:
        if fut.done():
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)


class _Reader:
    """A read-only connection for the long reads (``scope_usage``), made on first use. In WAL
    mode it reads the last commit without holding up the writer; every acknowledged write is
    committed, so it sees them all. One read at a time."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._guard = threading.Lock()

    def run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        with self._guard:
            if self._conn is None:
                self._conn = sqlite3.connect(
                    self._path, isolation_level=None, check_same_thread=False
                )
                self._conn.execute("PRAGMA query_only=1")
                self._conn.execute("PRAGMA busy_timeout=10000")
            try:
                self._conn.execute("BEGIN")
                try:
                    return op(self._conn)
                finally:
                    self._conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                raise StorageError(f"SQLite: {exc}") from exc

    def close(self) -> None:
        with self._guard:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()


class SQLiteStorage:
    """SQLite at ``path`` (created if missing). ``durability``: ``"full"`` (default) or
    ``"normal"``."""

    def __init__(self, path: str | os.PathLike[str], *, durability: str = "full") -> None:
        if durability not in ("full", "normal"):
            raise ConfigurationError(f"durability must be 'full' or 'normal', got {durability!r}")
        self.path = Path(path)
        self._synchronous = durability.upper()
        self._writer: _Writer | None = None
        self._lock = FileLock(self.path)
        self._reader = _Reader(self.path)
        self._share = tenancy.FairShare()  # used on the writer thread only

    # -- plumbing -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Take the database for this process (StorageError if another storage holds it, in
        this process or another), then create or migrate the schema."""
        if self._writer is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            writer = _Writer(str(self.path), self._synchronous)
            writer.start()
            await asyncio.get_running_loop().run_in_executor(None, writer.ready.wait)
            if writer.startup_error is not None:
                raise StorageError(
                    f"cannot open SQLite database {self.path}: {writer.startup_error}"
                ) from writer.startup_error
        except BaseException:
            self._lock.release()
            raise
        self._writer = writer

    async def close(self) -> None:
        """Finish the queued operations, close the database and let another process have it."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        await asyncio.to_thread(self._reader.close)
        try:
            writer.queue.put(None)
            await asyncio.get_running_loop().run_in_executor(None, writer.join)
        finally:
            self._lock.release()

    @property
    def stats(self) -> dict[str, int]:
        """Commits and operations so far (operations / commits = the group-commit factor)."""
        w = self._writer
        return {"commits": w.commits if w else 0, "operations": w.operations if w else 0}

    def _submit(
        self, op: Callable[[sqlite3.Connection], T], *, scopes: tuple[str, ...] | None = None
    ) -> asyncio.Future[T]:
        """Queue ``op`` for the writer thread; with ``scopes``, as ingest (creates for those
        tenants: see the module docstring)."""
        writer = self._writer
        if writer is None:
            raise StorageError("the SQLite storage is not open")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        writer.queue.put((op if scopes is None else _Ingest(op, scopes), fut, loop))
        return fut

    # -- instances --------------------------------------------------------------------------

    async def create_instances(
        self,
        items: Sequence[NewInstance],
        now: float,
        *,
        tenants: Mapping[str, TenantPolicy] | None = None,
    ) -> list[InstanceRow | None]:
        counts: dict[str, int] = {}
        for it in items:
            counts[it.scope] = counts.get(it.scope, 0) + 1

        def op(conn: sqlite3.Connection) -> list[InstanceRow | None] | TenantLimitError:
            refused = _admit_creates(conn, counts, tenants or {}, now)
            if refused is not None:
                return refused
            conn.executemany(
                "INSERT INTO tenants (scope) VALUES (?) ON CONFLICT (scope) DO NOTHING",
                [(scope,) for scope in counts],
            )
            out: list[InstanceRow | None] = []
            for it in items:
                out.append(_insert(conn, it, now))
            return out

        answer = await self._submit(op, scopes=tuple(counts))
        if isinstance(answer, TenantLimitError):
            raise answer
        return answer

    async def get_tenant(self, scope: str) -> TenantState | None:
        def op(conn: sqlite3.Connection) -> TenantState | None:
            r = conn.execute(
                f"SELECT {_TENANT_COLUMNS} FROM tenants WHERE scope=?", (scope,)
            ).fetchone()
            return None if r is None else _tenant(r)

        return await self._submit(op)

    async def list_tenants(self) -> list[TenantState]:
        def op(conn: sqlite3.Connection) -> list[TenantState]:
            rows = conn.execute(f"SELECT {_TENANT_COLUMNS} FROM tenants ORDER BY scope")
            return [_tenant(r) for r in rows]

        return await self._submit(op)

    async def get_instance(self, workflow: str, scope: str, id: str) -> InstanceRow | None:
        def op(conn: sqlite3.Connection) -> InstanceRow | None:
            r = conn.execute(
                f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE workflow=? AND scope=? AND id=?",
                (workflow, scope, id),
            ).fetchone()
            return None if r is None else _row(r)

        return await self._submit(op)

    async def get_instance_by_pk(self, pk: int) -> InstanceRow | None:
        def op(conn: sqlite3.Connection) -> InstanceRow | None:
            r = conn.execute(
                f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE pk=?", (pk,)
            ).fetchone()
            return None if r is None else _row(r)

        return await self._submit(op)

    async def list_instances(
        self,
        workflow: str | None,
        *,
        scope: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[InstanceRow]:
        where, args = [], []
        for column, value in (("workflow", workflow), ("scope", scope), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""

        def op(conn: sqlite3.Connection) -> list[InstanceRow]:
            rows = conn.execute(
                f"SELECT {_INSTANCE_COLUMNS} FROM instances {clause} "
                "ORDER BY created_at DESC, pk DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
            )
            return [_row(r) for r in rows]

        return await self._submit(op)

    async def count_instances(
        self, workflow: str | None = None, *, scope: str | None = None
    ) -> dict[str, int]:
        where, args = [], []
        for column, value in (("workflow", workflow), ("scope", scope)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""

        def op(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                f"SELECT status, count(*) FROM instances {clause} GROUP BY status", args
            )
            return {r[0]: r[1] for r in rows}

        return await self._submit(op)

    async def scope_usage(
        self,
        workflow: str | None = None,
        *,
        order: str = "live",
        limit: int = 100,
        offset: int = 0,
        unscoped: bool = True,
        steps: bool = True,
    ) -> ScopeUsagePage:
        sql, args = scope_usage_sql(workflow, order, unscoped, steps, lambda n: f"?{n}")

        def op(conn: sqlite3.Connection) -> ScopeUsagePage:
            page = scope_usage_page(conn.execute(sql, (*args, limit, offset)).fetchall())
            if page.scopes or not offset:
                return page
            # Past the last scope: the totals are the first row's.
            first = scope_usage_page(conn.execute(sql, (*args, 1, 0)).fetchall())
            return ScopeUsagePage([], first.total, first.by_status, first.steps)

        if self._writer is None:
            raise StorageError("the SQLite storage is not open")
        # A long read (a second at 200,000 instances with their steps): on a connection of its
        # own, in one read transaction, so that the writer's group commits go on meanwhile.
        return await asyncio.to_thread(self._reader.run, op)

    async def find_instances(self, workflow: str, id: str) -> list[InstanceRow]:
        def op(conn: sqlite3.Connection) -> list[InstanceRow]:
            rows = conn.execute(
                f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE workflow=? AND id=? "
                "ORDER BY created_at, pk",
                (workflow, id),
            )
            return [_row(r) for r in rows]

        return await self._submit(op)

    async def load_journal(self, pk: int) -> list[JournalEntry]:
        return await self._submit(lambda conn: _journal(conn, pk))

    # -- scheduling -------------------------------------------------------------------------

    async def claim_due(
        self,
        now: float,
        limit: int,
        *,
        ahead: float = 0.0,
        fair: bool = True,
        workflow_limits: Mapping[str, int] | None = None,
    ) -> list[Claim]:
        # One owner: no lease to judge. Due within ``ahead`` is claimed; the claim itself (its
        # started_at, updated_at) happens now, not at the horizon.
        due = now + ahead
        wl = dict(workflow_limits or {})
        if limit <= 0:
            return []

        def op(conn: sqlite3.Connection) -> list[Claim]:
            exhausted: list[str] = []
            writer = self._writer
            if not fair and not wl and not self._caps(conn):
                rows = conn.execute(  # first come, no cap anywhere: one statement
                    f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE wake_at <= ? "
                    f"AND status IN ({_CLAIMABLE}) ORDER BY wake_at LIMIT ?",
                    (due, limit),
                ).fetchall()
            else:
                rows, exhausted, backlogged = self._choose(conn, due, limit, fair, wl)
                if writer is not None:  # creates of a tenant with due work left yield
                    writer.gate.backlogged = backlogged
            claimed = []
            writes: dict[str, list[list[Any]]] = {}  # one executemany per shape of change
            for r in rows:
                row = _row(r)
                change = t.claim(row, now)
                if change is None:
                    continue
                updates = change.updates()
                sets, args = _assignments(updates)
                args.append(row.pk)
                writes.setdefault(sets, []).append(args)
                claimed.append(msgspec.structs.replace(row, **updates))
            for sets, batch in writes.items():
                conn.executemany(f"UPDATE instances SET {sets} WHERE pk=?", batch)
            if exhausted:  # their last due instances were taken: their hint rises again
                conn.executemany(_RAISE_NEXT_WAKE, [(scope,) for scope in exhausted])
            if claimed and writer is not None:  # their runs go on (core/ingest.py)
                writer.gate.claimed({row.scope for row in claimed})
            return [Claim(row, _journal(conn, row.pk)) for row in claimed]

        return await self._submit(op)

    @staticmethod
    def _caps(conn: sqlite3.Connection) -> bool:
        return (
            conn.execute("SELECT 1 FROM tenants WHERE max_running IS NOT NULL LIMIT 1").fetchone()
            is not None
        )

    def _choose(
        self, conn: sqlite3.Connection, now: float, limit: int, fair: bool, wl: dict[str, int]
    ) -> tuple[list[Any], list[str], set[str]]:
        """The rows a fair (or capped) claim takes: each scope's earliest due instances
        (through ``instances_scope_due``), then :func:`~..core.tenancy.choose`; the scopes
        whose due instances were all read (their ``next_wake`` is raised after the claim); and
        those that have due instances left after it (:mod:`..core.ingest`'s backlog). Only
        scopes whose ``tenants.next_wake`` has come are read (migration 0011). The writer
        thread runs one operation at a time: the counts cannot change under it."""
        weights: dict[str, int] = {}
        max_running: dict[str, int | None] = {}
        rows: dict[str, list[Any]] = {}
        exhausted: list[str] = []
        tenants = conn.execute(
            "SELECT scope, weight, max_running FROM tenants WHERE next_wake <= ?", (now,)
        ).fetchall()
        for scope, weight, cap in tenants:
            found = conn.execute(
                f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE scope=? AND wake_at <= ? "
                f"AND status IN ({_CLAIMABLE}) ORDER BY wake_at LIMIT ?",
                (scope, now, limit + 1),  # one more: whether any is left
            ).fetchall()
            if len(found) <= limit:
                exhausted.append(scope)
            if found:
                rows[scope] = found
                weights[scope] = weight
                max_running[scope] = cap
        if len(rows) == 1 and not wl and not any(max_running.values()):
            # One tenant has due work, uncapped: as much as there is room for.
            scope, found = next(iter(rows.items()))
            return found[:limit], exhausted, {scope} if len(found) > limit else set()
        # (_INSTANCE_COLUMNS: pk first, workflow second, wake_at 13th.)
        candidates = {
            scope: [tenancy.Candidate(r[0], scope, r[1], r[12]) for r in found]
            for scope, found in rows.items()
        }
        scopes, workflows = tenancy.capped(candidates, max_running, wl)
        admission = None
        if scopes or workflows:
            by_scope: dict[str, int] = {}
            by_workflow: dict[str, int] = {}
            for scope, workflow, n in conn.execute(
                "SELECT scope, workflow, count(*) FROM instances "
                f"WHERE status IN ({_ACTIVE}) GROUP BY scope, workflow"
            ):
                by_scope[scope] = by_scope.get(scope, 0) + n
                by_workflow[workflow] = by_workflow.get(workflow, 0) + n
            admission = tenancy.Admission(max_running, wl, by_scope, by_workflow)
        picked = tenancy.choose(
            self._share if fair else None, candidates, weights, limit, admission
        )
        by_pk = {r[0]: r for found in rows.values() for r in found}
        return [by_pk[c.pk] for c in picked], exhausted, tenancy.left_over(rows, picked)

    async def next_due(self) -> float | None:
        def op(conn: sqlite3.Connection) -> float | None:
            r = conn.execute(
                "SELECT min(wake_at) FROM instances WHERE wake_at IS NOT NULL "
                f"AND status IN ({_CLAIMABLE})"
            ).fetchone()
            return None if r is None else r[0]

        return await self._submit(op)

    # -- live runs --------------------------------------------------------------------------

    async def record_steps(
        self,
        writes: Sequence[tuple[int, int, JournalEntry]],
        now: float,
        *,
        logs: Sequence[LogWrite] = (),
    ) -> list[bool]:
        def op(conn: sqlite3.Connection) -> list[bool]:
            # One query for the liveness of every run and one executemany for the rows: this
            # runs in the writer thread, and per-row execute() calls held the GIL long enough
            # to slow down the event loop during a burst of steps.
            pks = {pk for pk, _, _ in writes}
            if logs:
                pks.update(w.pk for w in logs)
            found = _statuses(conn, list(pks))
            if logs:
                _put_logs(conn, found, logs)
            kept = [
                (state := found.get(pk)) is not None and t.is_live(*state, generation)
                for pk, generation, _ in writes
            ]
            conn.executemany(
                _UPSERT_STEP,
                [
                    _step_row(pk, entry, now)
                    for (pk, _, entry), ok in zip(writes, kept, strict=True)
                    if ok
                ],
            )
            return kept

        return await self._submit(op)

    async def load_logs(
        self,
        pk: int,
        *,
        after: int = 0,
        limit: int = 1000,
        step: tuple[str, int] | None = None,
        attempt: int | None = None,
    ) -> list[tuple[int, LogLine]]:
        where = ["instance_pk = ?", "seq > ?"]
        args: list[Any] = [pk, after]
        if step is not None:
            where.append("step_name = ? AND step_count = ?")
            args += step
        if attempt is not None:
            where.append("attempt = ?")
            args.append(attempt)
        sql = (
            "SELECT seq, at, stream, text, step_name, step_count, attempt, dropped FROM logs "
            f"WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
        )

        def op(conn: sqlite3.Connection) -> list[tuple[int, LogLine]]:
            return [
                (r[0], LogLine(r[1], r[2], r[3], r[4], r[5], r[6], r[7]))
                for r in conn.execute(sql, (*args, limit))
            ]

        return await self._submit(op)

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
        def oldest(conn: sqlite3.Connection) -> Iterator[t.BufferedEvent]:
            # A generator: the query runs only if the transition asks (not for a stale run).
            ev = conn.execute(
                "SELECT seq, type, payload, created_at FROM events WHERE instance_pk=? AND "
                "type=? AND consumed=0 ORDER BY seq LIMIT 1",
                (pk, event_type),
            ).fetchone()
            if ev is not None:
                yield t.BufferedEvent(ev[0], ev[1], bytes(ev[2]), ev[3])

        def op(conn: sqlite3.Connection) -> WaitResult | None:
            outcome = t.register_wait(
                _state(conn, pk), generation, name, count, event_type, deadline, oldest(conn)
            )
            if outcome is None:
                return None
            if outcome.consumed is not None:
                conn.execute("UPDATE events SET consumed=1 WHERE seq=?", (outcome.consumed.seq,))
            _put_step(conn, pk, msgspec.structs.replace(outcome.entry, started_at=now), now)
            return outcome.result

        return await self._submit(op)

    async def expire_wait(
        self, pk: int, generation: int, name: str, count: int, error: ErrorInfo, now: float
    ) -> tuple[bool, bytes | None] | None:
        def op(conn: sqlite3.Connection) -> tuple[bool, bytes | None] | None:
            # The instance and the wait's entry in one query.
            r = conn.execute(
                "SELECT i.status, i.generation, i.wake_at, i.started_at, s.name, s.count, "
                "s.kind, s.state, s.value, s.error_name, s.error_message, s.attempt, "
                "s.wake_at, s.event_type FROM instances i LEFT JOIN steps s "
                "ON s.instance_pk = i.pk AND s.name=? AND s.count=? WHERE i.pk=?",
                (name, count, pk),
            ).fetchone()
            if r is None:
                return None
            entry = None if r[4] is None else _entry(r[4:])
            outcome = t.expire_wait(t.State(*r[:4]), generation, entry, error)
            if outcome is None:
                return None
            if outcome.step is not None:
                _update_step(conn, pk, outcome.step)
            return (outcome.timed_out, outcome.value)

        return await self._submit(op)

    async def add_event(
        self, pk: int, event_type: str, payload: bytes, now: float
    ) -> EventDelivery | None:
        def waiting(conn: sqlite3.Connection) -> Iterator[JournalEntry]:
            # A generator: the query runs only if the transition asks (not for a finished
            # instance). The literal 'waiting' lets SQLite use the partial index steps_waiting.
            rows = conn.execute(
                f"SELECT {_STEP_COLUMNS} FROM steps WHERE instance_pk=? AND state='waiting' "
                "AND event_type=?",
                (pk, event_type),
            )
            for r in rows:
                yield _entry(r)

        def op(conn: sqlite3.Connection) -> EventDelivery | None:
            state = _state(conn, pk)
            if state is None:
                return None
            outcome = t.add_event(state, event_type, payload, now, waiting(conn))
            conn.execute(
                "INSERT INTO events (instance_pk, type, payload, created_at, consumed) "
                "VALUES (?,?,?,?,?)",
                (pk, event_type, payload, now, 0 if outcome.delivery is None else 1),
            )
            if outcome.step is not None:
                _update_step(conn, pk, outcome.step)
            _apply(conn, pk, outcome.change)
            return outcome.delivery

        return await self._submit(op)

    async def finish_run(
        self,
        pk: int,
        generation: int,
        status: str,
        output: bytes | None,
        error: ErrorInfo | None,
        now: float,
        *,
        rollback: RollbackOutcome | None = None,
    ) -> bool:
        return await self._transition(
            pk, lambda state: t.finish_run(state, generation, status, output, error, now, rollback)
        )

    async def begin_rollback(self, pk: int, generation: int, now: float) -> bool:
        return await self._transition(pk, lambda state: t.begin_rollback(state, generation, now))

    async def suspend_run(
        self, pk: int, generation: int, wake_at: float | None, held_by_pause: bool, now: float
    ) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            outcome = t.suspend_run(_state(conn, pk), generation, wake_at, held_by_pause, now)
            if outcome is None:
                return None
            _apply(conn, pk, outcome.change)
            return outcome.status

        return await self._submit(op)

    async def release_run(self, pk: int, generation: int, now: float) -> bool:
        return await self._transition(pk, lambda state: t.release_run(state, generation, now))

    async def _transition(
        self, pk: int, decide: Callable[[t.State | None], t.Change | None]
    ) -> bool:
        """Apply to row ``pk`` the change ``decide`` makes of its state; False if it makes none
        (the run is stale, the row gone)."""

        def op(conn: sqlite3.Connection) -> bool:
            change = decide(_state(conn, pk))
            if change is None:
                return False
            _apply(conn, pk, change)
            return True

        return await self._submit(op)

    async def control(
        self, pk: int, action: str, now: float, *, restart_from: tuple[str, int] | None = None
    ) -> ControlResult | None:
        t.check_control_action(action)  # here: raised in the writer, it would be a StorageError

        def op(conn: sqlite3.Connection) -> ControlResult | None:
            state = _state(conn, pk)
            if state is None:
                return None
            cutoff = None
            if restart_from is not None:
                r = conn.execute(
                    "SELECT recorded_at FROM steps WHERE instance_pk=? AND name=? AND count=?",
                    (pk, *restart_from),
                ).fetchone()
                cutoff = None if r is None else r[0]
            rollback = None
            if action == "terminate":  # (it stops a rollback phase that is on)
                r = conn.execute("SELECT rollback FROM instances WHERE pk=?", (pk,)).fetchone()
                rollback = rollback_outcome(r[0])
            outcome = t.control(
                state,
                action,
                now,
                restart_from=restart_from,
                step_recorded=cutoff is not None,
                rollback=rollback,
            )
            if outcome.truncate is not None:
                if outcome.truncate.from_step is None:
                    conn.execute("DELETE FROM steps WHERE instance_pk=?", (pk,))
                else:
                    # Steps recorded at the very same instant as the cutoff go too.
                    conn.execute(
                        "DELETE FROM steps WHERE instance_pk=? AND "
                        "(recorded_at IS NULL OR recorded_at >= ?)",
                        (pk, cutoff),
                    )
            if outcome.drop_consumed_events:
                conn.execute("DELETE FROM events WHERE instance_pk=? AND consumed=1", (pk,))
            _apply(conn, pk, outcome.change)
            return outcome.result

        return await self._submit(op)

    async def delete_instance(self, pk: int) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM instances WHERE pk=?", (pk,))
            conn.execute("DELETE FROM steps WHERE instance_pk=?", (pk,))
            conn.execute("DELETE FROM events WHERE instance_pk=?", (pk,))
            conn.execute("DELETE FROM logs WHERE instance_pk=?", (pk,))
            return cur.rowcount > 0

        return await self._submit(op)

    async def fire_schedule(
        self, workflow: str, cron: str, tick: float, item: NewInstance, now: float
    ) -> InstanceRow | None:
        def op(conn: sqlite3.Connection) -> InstanceRow | None:
            first = conn.execute(
                "INSERT INTO schedule_ticks (workflow, cron, last_tick) VALUES (?,?,?) "
                "ON CONFLICT (workflow, cron) DO NOTHING",
                (workflow, cron, now),
            )
            if first.rowcount:
                return None
            moved = conn.execute(
                "UPDATE schedule_ticks SET last_tick=? "
                "WHERE workflow=? AND cron=? AND last_tick < ?",
                (tick, workflow, cron, tick),
            )
            if not moved.rowcount:
                return None
            # Its scope's row, as create_instances makes: fair and capped claims pick due work
            # scope by scope from the tenants table, so without it the tick's instance would
            # stay queued for good.
            conn.execute(
                "INSERT INTO tenants (scope) VALUES (?) ON CONFLICT (scope) DO NOTHING",
                (item.scope,),
            )
            return _insert(conn, item, now)

        return await self._submit(op)

    async def delete_retained(self, now: float, limit: int) -> int:
        def op(conn: sqlite3.Connection) -> int:
            pks = [
                r[0]
                for r in conn.execute(
                    "SELECT pk FROM instances WHERE (success_retention IS NOT NULL OR "
                    f"error_retention IS NOT NULL) AND {_RETAIN_UNTIL} <= ? "
                    f"ORDER BY {_RETAIN_UNTIL} LIMIT ?",
                    (now, limit),
                )
            ]
            if pks:
                marks = ",".join("?" * len(pks))
                for table, column in _INSTANCE_TABLES:
                    conn.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", pks)
            return len(pks)

        return await self._submit(op)

    async def recover(self, now: float) -> int:
        def op(conn: sqlite3.Connection) -> int:
            requeued = 0
            for bulk in t.recover_plan(now):
                sets, args = _assignments(bulk.change.updates())
                cur = conn.execute(
                    f"UPDATE instances SET {sets} WHERE status=?", (*args, bulk.status)
                )
                if bulk.requeued:
                    requeued += cur.rowcount
            return requeued

        return await self._submit(op)

    # -- several nodes: one process owns the file --------------------------------------------

    shared = False
    node_id = "local"

    async def heartbeat(self, now: float) -> None:
        return None

    async def renew_leases(self, pks: Sequence[int], now: float) -> set[int]:
        def op(conn: sqlite3.Connection) -> set[int]:
            found = _statuses(conn, list(set(pks)))
            return {pk for pk in pks if (s := found.get(pk)) is None or not t.is_held(s[0])}

        return await self._submit(op)

    async def park_run(self, pk: int, generation: int, wake_at: float | None, now: float) -> bool:
        def op(conn: sqlite3.Connection) -> bool:  # nobody else claims: the row stays running
            state = _state(conn, pk)
            return state is not None and t.may_park(state.status, state.generation, generation)

        return await self._submit(op)

    async def unpark_run(self, pk: int, generation: int, now: float) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            state = _state(conn, pk)
            return state is not None and t.is_live(state.status, state.generation, generation)

        return await self._submit(op)

    async def listen(self, callback: Callable[[str, str], None]) -> None:
        return None  # every change is made by this process's engine, which knows of it
