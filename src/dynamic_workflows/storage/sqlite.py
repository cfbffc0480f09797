"""The embedded backend: SQLite in WAL mode behind one writer thread with group commit.

Every operation is a function run on the writer thread. The thread takes every operation queued
while it was busy and runs them in one transaction with one fsync, so many instances' step
results cost one commit; each caller's future is resolved only after that commit. Reads go
through the same thread, so they see exactly what was acknowledged.

Durability: ``synchronous=FULL`` by default (a committed step survives power loss);
``durability="normal"`` trades the last few commits on power loss (never on a process crash)
for speed.
"""

from __future__ import annotations

import asyncio
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from ..core.journal import ErrorInfo, JournalEntry, StepKind, StepState
from ..errors import ConfigurationError, StorageError
from .base import (
    FINITE_STATUSES,
    Claim,
    ControlResult,
    EventDelivery,
    InstanceRow,
    NewInstance,
    Status,
    WaitResult,
)
from ..core.transitions import event_value

__all__ = ["SQLiteStorage", "migrations"]

T = TypeVar("T")
_MAX_BATCH = 1024
_Op = Callable[[sqlite3.Connection], Any]
_Item = tuple[_Op, asyncio.Future[Any], asyncio.AbstractEventLoop]

_INSTANCE_COLUMNS = (
    "pk, workflow, scope, id, status, params, generation, created_at, updated_at, output, "
    "error_name, error_message, wake_at, started_at, ended_at"
)
_STEP_COLUMNS = (
    "name, count, kind, state, value, error_name, error_message, attempt, wake_at, event_type"
)
_ACTIVE = (Status.RUNNING, Status.WAITING_FOR_PAUSE)


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
        error=None if r[10] is None else ErrorInfo(r[10], r[11] or ""),
        wake_at=r[12],
        started_at=r[13],
        ended_at=r[14],
    )


def _entry(r: Sequence[Any]) -> JournalEntry:
    return JournalEntry(
        name=r[0],
        count=r[1],
        kind=r[2],
        state=r[3],
        value=None if r[4] is None else bytes(r[4]),
        error=None if r[5] is None else ErrorInfo(r[5], r[6] or ""),
        attempt=r[7],
        wake_at=r[8],
        event_type=r[9],
    )


def _journal(conn: sqlite3.Connection, pk: int) -> list[JournalEntry]:
    rows = conn.execute(
        f"SELECT {_STEP_COLUMNS} FROM steps WHERE instance_pk = ? "
        "ORDER BY recorded_at, name, count",
        (pk,),
    )
    return [_entry(r) for r in rows]


def _live(conn: sqlite3.Connection, pk: int, generation: int) -> bool:
    r = conn.execute("SELECT status, generation FROM instances WHERE pk = ?", (pk,)).fetchone()
    return r is not None and r[1] == generation and r[0] in _ACTIVE


_UPSERT_STEP = (
    # An upsert, not INSERT OR REPLACE: recorded_at keeps the time the step was first seen.
    "INSERT INTO steps (instance_pk, name, count, kind, state, value, error_name, "
    "error_message, attempt, wake_at, event_type, recorded_at) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (instance_pk, name, count) DO UPDATE SET "
    "kind=excluded.kind, state=excluded.state, value=excluded.value, "
    "error_name=excluded.error_name, error_message=excluded.error_message, "
    "attempt=excluded.attempt, wake_at=excluded.wake_at, event_type=excluded.event_type"
)

_IN_CHUNK = 500
"""Host parameters per ``IN (...)`` list (SQLite allows 32,766 since 3.32; older, 999)."""


def _step_row(pk: int, e: JournalEntry, now: float) -> tuple[Any, ...]:
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


def _put_step(conn: sqlite3.Connection, pk: int, e: JournalEntry, now: float) -> None:
    conn.execute(_UPSERT_STEP, _step_row(pk, e, now))


def _live_generations(conn: sqlite3.Connection, pks: Sequence[int]) -> dict[int, int]:
    """The generation of each of ``pks`` that is live (running or pausing)."""
    live: dict[int, int] = {}
    for i in range(0, len(pks), _IN_CHUNK):
        chunk = pks[i : i + _IN_CHUNK]
        rows = conn.execute(
            "SELECT pk, status, generation FROM instances WHERE pk IN "
            f"({','.join('?' * len(chunk))})",
            chunk,
        )
        for pk, status, generation in rows:
            if status in _ACTIVE:
                live[pk] = generation
    return live


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
        while True:
            item = self.queue.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < _MAX_BATCH:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._run_batch(conn, batch)
            if stop:
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


class SQLiteStorage:
    """SQLite at ``path`` (created if missing). ``durability``: ``"full"`` (default) or
    ``"normal"``."""

    def __init__(self, path: str | os.PathLike[str], *, durability: str = "full") -> None:
        if durability not in ("full", "normal"):
            raise ConfigurationError(f"durability must be 'full' or 'normal', got {durability!r}")
        self.path = Path(path)
        self._synchronous = durability.upper()
        self._writer: _Writer | None = None

    # -- plumbing -----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = _Writer(str(self.path), self._synchronous)
        writer.start()
        await asyncio.get_running_loop().run_in_executor(None, writer.ready.wait)
        if writer.startup_error is not None:
            raise StorageError(
                f"cannot open SQLite database {self.path}: {writer.startup_error}"
            ) from writer.startup_error
        self._writer = writer

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        writer.queue.put(None)
        await asyncio.get_running_loop().run_in_executor(None, writer.join)

    @property
    def stats(self) -> dict[str, int]:
        """Commits and operations so far (operations / commits = the group-commit factor)."""
        w = self._writer
        return {"commits": w.commits if w else 0, "operations": w.operations if w else 0}

    def _submit(self, op: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        writer = self._writer
        if writer is None:
            raise StorageError("the SQLite storage is not open")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        writer.queue.put((op, fut, loop))
        return fut

    # -- instances --------------------------------------------------------------------------

    async def create_instances(
        self, items: Sequence[NewInstance], now: float
    ) -> list[InstanceRow | None]:
        def op(conn: sqlite3.Connection) -> list[InstanceRow | None]:
            out: list[InstanceRow | None] = []
            for it in items:
                cur = conn.execute(
                    "INSERT INTO instances (workflow, scope, id, status, params, created_at, "
                    "updated_at, wake_at) VALUES (?,?,?,?,?,?,?,?) "
                    "ON CONFLICT (workflow, scope, id) DO NOTHING",
                    (it.workflow, it.scope, it.id, Status.QUEUED, it.params, now, now, now),
                )
                if cur.rowcount == 0:
                    out.append(None)
                    continue
                out.append(
                    InstanceRow(
                        pk=cur.lastrowid or 0,
                        workflow=it.workflow,
                        scope=it.scope,
                        id=it.id,
                        status=Status.QUEUED,
                        params=it.params,
                        generation=0,
                        created_at=now,
                        updated_at=now,
                        wake_at=now,
                    )
                )
            return out

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

    async def claim_due(self, now: float, limit: int) -> list[Claim]:
        def op(conn: sqlite3.Connection) -> list[Claim]:
            rows = conn.execute(
                f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE wake_at <= ? "
                "AND status IN ('queued', 'waiting') ORDER BY wake_at LIMIT ?",
                (now, limit),
            ).fetchall()
            claims = []
            for r in rows:
                row = _row(r)
                conn.execute(
                    "UPDATE instances SET status='running', wake_at=NULL, updated_at=?, "
                    "started_at=coalesce(started_at, ?) WHERE pk=?",
                    (now, now, row.pk),
                )
                row = InstanceRow(
                    pk=row.pk,
                    workflow=row.workflow,
                    scope=row.scope,
                    id=row.id,
                    status=Status.RUNNING,
                    params=row.params,
                    generation=row.generation,
                    created_at=row.created_at,
                    updated_at=now,
                    output=row.output,
                    error=row.error,
                    wake_at=None,
                    started_at=row.started_at or now,
                    ended_at=row.ended_at,
                )
                claims.append(Claim(row, _journal(conn, row.pk)))
            return claims

        return await self._submit(op)

    async def next_due(self) -> float | None:
        def op(conn: sqlite3.Connection) -> float | None:
            r = conn.execute(
                "SELECT min(wake_at) FROM instances WHERE wake_at IS NOT NULL "
                "AND status IN ('queued', 'waiting')"
            ).fetchone()
            return None if r is None else r[0]

        return await self._submit(op)

    # -- live runs --------------------------------------------------------------------------

    async def record_steps(
        self, writes: Sequence[tuple[int, int, JournalEntry]], now: float
    ) -> list[bool]:
        def op(conn: sqlite3.Connection) -> list[bool]:
            # One query for the liveness of every run and one executemany for the rows: this
            # runs in the writer thread, and per-row execute() calls held the GIL long enough
            # to slow down the event loop during a burst of steps.
            live = _live_generations(conn, list({pk for pk, _, _ in writes}))
            kept = [live.get(pk) == generation for pk, generation, _ in writes]
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
        def op(conn: sqlite3.Connection) -> WaitResult | None:
            if not _live(conn, pk, generation):
                return None
            ev = conn.execute(
                "SELECT seq, payload, created_at FROM events WHERE instance_pk=? AND type=? "
                "AND consumed=0 ORDER BY seq LIMIT 1",
                (pk, event_type),
            ).fetchone()
            if ev is None:
                _put_step(
                    conn,
                    pk,
                    JournalEntry(
                        name,
                        count,
                        StepKind.WAIT,
                        StepState.WAITING,
                        wake_at=deadline,
                        event_type=event_type,
                    ),
                    now,
                )
                return WaitResult(deadline, None)
            conn.execute("UPDATE events SET consumed=1 WHERE seq=?", (ev[0],))
            value = event_value(event_type, bytes(ev[1]), ev[2])
            _put_step(
                conn,
                pk,
                JournalEntry(
                    name,
                    count,
                    StepKind.WAIT,
                    StepState.DONE,
                    value=value,
                    wake_at=deadline,
                    event_type=event_type,
                ),
                now,
            )
            return WaitResult(deadline, value)

        return await self._submit(op)

    async def expire_wait(
        self, pk: int, generation: int, name: str, count: int, error: ErrorInfo, now: float
    ) -> tuple[bool, bytes | None] | None:
        def op(conn: sqlite3.Connection) -> tuple[bool, bytes | None] | None:
            if not _live(conn, pk, generation):
                return None
            r = conn.execute(
                "SELECT state, value FROM steps WHERE instance_pk=? AND name=? AND count=?",
                (pk, name, count),
            ).fetchone()
            if r is None:
                return None
            if r[0] == StepState.DONE:
                return (False, None if r[1] is None else bytes(r[1]))
            if r[0] == StepState.WAITING:
                conn.execute(
                    "UPDATE steps SET state='failed', error_name=?, error_message=? "
                    "WHERE instance_pk=? AND name=? AND count=?",
                    (error.name, error.message, pk, name, count),
                )
            return (True, None)

        return await self._submit(op)

    async def add_event(
        self, pk: int, event_type: str, payload: bytes, now: float
    ) -> EventDelivery | None:
        def op(conn: sqlite3.Connection) -> EventDelivery | None:
            inst = conn.execute("SELECT status FROM instances WHERE pk=?", (pk,)).fetchone()
            if inst is None:
                return None
            waiting = None
            if inst[0] not in FINITE_STATUSES:
                waiting = conn.execute(
                    "SELECT name, count FROM steps WHERE instance_pk=? AND state='waiting' "
                    "AND event_type=? AND (wake_at IS NULL OR wake_at > ?) "
                    "ORDER BY wake_at, name, count LIMIT 1",
                    (pk, event_type, now),
                ).fetchone()
            conn.execute(
                "INSERT INTO events (instance_pk, type, payload, created_at, consumed) "
                "VALUES (?,?,?,?,?)",
                (pk, event_type, payload, now, 0 if waiting is None else 1),
            )
            if waiting is None:
                return None
            value = event_value(event_type, payload, now)
            conn.execute(
                "UPDATE steps SET state='done', value=? WHERE instance_pk=? AND name=? AND count=?",
                (value, pk, waiting[0], waiting[1]),
            )
            if inst[0] == Status.WAITING:
                conn.execute(
                    "UPDATE instances SET status='queued', wake_at=?, updated_at=? WHERE pk=?",
                    (now, now, pk),
                )
            elif inst[0] in _ACTIVE:
                conn.execute("UPDATE instances SET wake_at=? WHERE pk=?", (now, pk))
            return EventDelivery(waiting[0], waiting[1], value)

        return await self._submit(op)

    async def finish_run(
        self,
        pk: int,
        generation: int,
        status: str,
        output: bytes | None,
        error: ErrorInfo | None,
        now: float,
    ) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            if not _live(conn, pk, generation):
                return False
            conn.execute(
                "UPDATE instances SET status=?, output=?, error_name=?, error_message=?, "
                "wake_at=NULL, updated_at=?, ended_at=? WHERE pk=?",
                (
                    status,
                    output,
                    None if error is None else error.name,
                    None if error is None else error.message,
                    now,
                    now,
                    pk,
                ),
            )
            return True

        return await self._submit(op)

    async def suspend_run(
        self, pk: int, generation: int, wake_at: float | None, held_by_pause: bool, now: float
    ) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            r = conn.execute(
                "SELECT status, generation, wake_at FROM instances WHERE pk=?", (pk,)
            ).fetchone()
            if r is None or r[1] != generation or r[0] not in _ACTIVE:
                return None
            if r[0] == Status.WAITING_FOR_PAUSE:
                conn.execute(
                    "UPDATE instances SET status='paused', wake_at=NULL, updated_at=? WHERE pk=?",
                    (now, pk),
                )
                return Status.PAUSED
            wake = now if held_by_pause else wake_at
            if r[2] is not None:
                wake = r[2] if wake is None else min(wake, r[2])
            conn.execute(
                "UPDATE instances SET status='waiting', wake_at=?, updated_at=? WHERE pk=?",
                (wake, now, pk),
            )
            return Status.WAITING

        return await self._submit(op)

    async def release_run(self, pk: int, generation: int, now: float) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            r = conn.execute(
                "SELECT status, generation FROM instances WHERE pk=?", (pk,)
            ).fetchone()
            if r is None or r[1] != generation or r[0] not in _ACTIVE:
                return False
            if r[0] == Status.WAITING_FOR_PAUSE:
                conn.execute(
                    "UPDATE instances SET status='paused', wake_at=NULL, updated_at=? WHERE pk=?",
                    (now, pk),
                )
            else:
                conn.execute(
                    "UPDATE instances SET status='queued', wake_at=?, updated_at=? WHERE pk=?",
                    (now, now, pk),
                )
            return True

        return await self._submit(op)

    async def control(
        self, pk: int, action: str, now: float, *, restart_from: tuple[str, int] | None = None
    ) -> ControlResult | None:
        if action not in ("pause", "resume", "terminate", "restart"):
            raise ValueError(f"unknown control action {action!r}")

        def op(conn: sqlite3.Connection) -> ControlResult | None:
            r = conn.execute(
                "SELECT status, generation FROM instances WHERE pk=?", (pk,)
            ).fetchone()
            if r is None:
                return None
            before, gen = r[0], r[1]
            after = before
            if action == "pause":
                if before in (Status.QUEUED, Status.WAITING):
                    after = Status.PAUSED
                    conn.execute(
                        "UPDATE instances SET status=?, wake_at=NULL, updated_at=? WHERE pk=?",
                        (after, now, pk),
                    )
                elif before == Status.RUNNING:
                    after = Status.WAITING_FOR_PAUSE
                    conn.execute(
                        "UPDATE instances SET status=?, updated_at=? WHERE pk=?", (after, now, pk)
                    )
            elif action == "resume":
                if before == Status.PAUSED:
                    after = Status.QUEUED
                    conn.execute(
                        "UPDATE instances SET status=?, wake_at=?, updated_at=? WHERE pk=?",
                        (after, now, now, pk),
                    )
                elif before == Status.WAITING_FOR_PAUSE:
                    after = Status.RUNNING
                    conn.execute(
                        "UPDATE instances SET status=?, updated_at=? WHERE pk=?", (after, now, pk)
                    )
            elif action == "terminate":
                if before not in FINITE_STATUSES:
                    after = Status.TERMINATED
                    gen += 1
                    conn.execute(
                        "UPDATE instances SET status=?, wake_at=NULL, generation=?, "
                        "updated_at=?, ended_at=? WHERE pk=?",
                        (after, gen, now, now, pk),
                    )
            else:  # restart
                after = Status.QUEUED
                gen += 1
                cutoff = None
                if restart_from is not None:
                    cutoff = conn.execute(
                        "SELECT recorded_at FROM steps WHERE instance_pk=? AND name=? AND count=?",
                        (pk, *restart_from),
                    ).fetchone()
                if cutoff is not None and cutoff[0] is not None:
                    # Steps recorded at the very same instant as the cutoff run again too.
                    conn.execute(
                        "DELETE FROM steps WHERE instance_pk=? AND "
                        "(recorded_at IS NULL OR recorded_at >= ?)",
                        (pk, cutoff[0]),
                    )
                else:
                    conn.execute("DELETE FROM steps WHERE instance_pk=?", (pk,))
                    conn.execute("DELETE FROM events WHERE instance_pk=? AND consumed=1", (pk,))
                conn.execute(
                    "UPDATE instances SET status=?, wake_at=?, generation=?, output=NULL, "
                    "error_name=NULL, error_message=NULL, updated_at=?, started_at=NULL, "
                    "ended_at=NULL WHERE pk=?",
                    (after, now, gen, now, pk),
                )
            return ControlResult(before, after, gen)

        return await self._submit(op)

    async def delete_instance(self, pk: int) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM instances WHERE pk=?", (pk,))
            conn.execute("DELETE FROM steps WHERE instance_pk=?", (pk,))
            conn.execute("DELETE FROM events WHERE instance_pk=?", (pk,))
            return cur.rowcount > 0

        return await self._submit(op)

    async def recover(self, now: float) -> int:
        def op(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE instances SET status='queued', wake_at=?, updated_at=? "
                "WHERE status='running'",
                (now, now),
            )
            conn.execute(
                "UPDATE instances SET status='paused', wake_at=NULL, updated_at=? "
                "WHERE status='waitingForPause'",
                (now,),
            )
            return cur.rowcount

        return await self._submit(op)

    # -- several nodes: one process owns the file --------------------------------------------

    shared = False
    node_id = "local"

    async def heartbeat(self, now: float) -> None:
        return None

    async def renew_leases(self, pks: Sequence[int], now: float) -> set[int]:
        def op(conn: sqlite3.Connection) -> set[int]:
            return set(pks) - set(_live_generations(conn, list(set(pks))))

        return await self._submit(op)

    async def park_run(self, pk: int, generation: int, wake_at: float | None, now: float) -> bool:
        def op(conn: sqlite3.Connection) -> bool:  # nobody else claims: the row stays running
            r = conn.execute(
                "SELECT status, generation FROM instances WHERE pk=?", (pk,)
            ).fetchone()
            return r is not None and r[1] == generation and r[0] == Status.RUNNING

        return await self._submit(op)

    async def unpark_run(self, pk: int, generation: int, now: float) -> bool:
        return await self._submit(lambda conn: _live(conn, pk, generation))

    async def listen(self, callback: Callable[[str, str], None]) -> None:
        return None  # every change is made by this process's engine, which knows of it
