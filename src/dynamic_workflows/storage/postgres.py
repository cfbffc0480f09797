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
* **Fair claims visit only scopes with due work.** ``tenants.next_wake`` is a lower bound of
  the earliest ``wake_at`` of the scope's claimable instances (NULL: none), and a fair claim
  reads only the scopes whose bound has come (``claim_candidates``): its cost follows the
  tenants with due work, not all of them. Triggers on ``instances`` lower the bound in every
  writer's own transaction; a claim that visits a scope for nothing (its bound has come, its
  earliest claimable instance has not) raises it after its commit, in a statement of its own
  (:meth:`_raise_next_wake`), under advisory locks that keep it from passing an instance a
  writer has not committed yet. Why it is safe, and why it never waits:
  ``sql/postgres/0009_tenant_next_wake.sql``.

The state machine is :mod:`dynamic_workflows.core.transitions`: a transition locks the row
(``FOR UPDATE``), asks the function named for it, and writes the answer. The hot paths are
single statements: ``create_instances``, ``record_steps`` (one statement for many runs' writes)
and the claim. The ends of runs (``finish_run``, ``suspend_run``, ``release_run``) are batched
too, two statements for many runs: their rows are read, each run's transition computes its
change, and one statement writes the changes of the rows that still read as they were (compare
and set; a row changed in between ends the locked way, alone). Calls of both kinds made while
one batch is in flight are merged into the next (:mod:`.postgres_batch`), as SQLite's group
commit does. ``stats`` counts round trips for the benchmarks.

The connections, the retry policy and the error boundary (driver errors become
:class:`~dynamic_workflows.errors.StorageError` there and nowhere else) are in
:mod:`.postgres_db`; the statements in ``sql/postgres/queries.sql``, read by :mod:`.postgres_sql`;
the schema and its migrations in :mod:`.postgres_schema`; LISTEN in :mod:`.postgres_listen`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import asyncpg
import msgspec

from ..core import tenancy
from ..core import transitions as tr
from ..core.ingest import IngestGate
from ..core.journal import ErrorInfo, JournalEntry, RollbackOutcome
from ..core.logs import LogLine
from ..core.tenancy import TenantPolicy, TenantState
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
from ..errors import ConfigurationError, StorageError, TenantLimitError
from .base import (
    Claim,
    InstanceRow,
    LogWrite,
    NewInstance,
    ScopeUsagePage,
    new_row,
    rollback_outcome,
)
from .postgres_batch import GroupWriter
from .postgres_db import FAILED, Database, Session, redact
from .postgres_listen import Listener
from .postgres_logs import LogWriter, load_logs
from .postgres_schema import Migration
from .postgres_sql import (
    INSTANCE_COLUMNS,
    RECORDED_AT,
    Held,
    Q,
    change_sets,
    end_args,
    end_rollbacks,
    end_tracebacks,
    entry,
    held,
    row,
    step_args,
)
from .usage_sql import scope_usage_page, scope_usage_sql

__all__ = ["PostgresStorage"]

log = logging.getLogger("dynamic_workflows.storage")


def _tenant(r: asyncpg.Record) -> TenantState:
    policy = TenantPolicy(
        max_running=r[2], max_live=r[3], create_rate=r[4], create_burst=r[5], weight=r[1]
    )
    return TenantState(r[0], policy, r[6], r[7])


T = TypeVar("T")

_ACTIVE = sorted(ACTIVE_STATUSES)
_CLAIMABLE = sorted(CLAIMABLE_STATUSES)
_HELD = sorted(ACTIVE_STATUSES | CLAIMABLE_STATUSES)
"""A row this node holds in one of these is its live run's: active, or parked (see _live_view)."""
_StepCall = tuple[Sequence[tuple[int, int, JournalEntry]], float]
"""A ``record_steps`` call: its writes and its time."""
_DUE_SOON = 5.0
"""A run suspended to wake within this many seconds is announced (``due``): other nodes may
be sleeping until a later time they knew of."""
_RAISE_MARGIN = 1.0
"""A scope's hint is raised past a wake-up time only if that is more than this many seconds
beyond the claim's horizon: a run sleeping less (parked warm, woken again and again) would
bring its scope back within a round trip's worth of visits, each an index probe."""

_Answer = bool | str | None


class _Decision(NamedTuple):
    """What a run's end writes (a transition's change), what to announce, and its answer."""

    change: Change
    notify: str | None
    answer: _Answer


class _End(NamedTuple):
    """A run's end (``op``: finish_run, suspend_run or release_run) waiting for the writer:
    ``decide`` calls the transition on the row as the live run sees it (None: the row is gone);
    None from it means the run is stale, and ``stale`` is the answer."""

    op: str
    pk: int
    decide: Callable[[Held | None], _Decision | None]
    stale: _Answer


class _Choice(NamedTuple):
    """What a fair (or capped) claim picked (``pks``), and the scopes it visited for nothing
    (``stale``: their hint has come, but their earliest claimable instance has not)."""

    pks: list[int]
    stale: list[str]


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
        if lease_seconds <= 0:
            raise ConfigurationError(f"lease_seconds must be positive, got {lease_seconds!r}")
        self.url = url
        self._db = Database(url, pool_size=pool_size, durability=durability)
        self.schema = self._db.schema
        self.node_id = node_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.lease_seconds = lease_seconds
        self.channel = "dwf"
        self._listener: Listener | None = None
        self._log_writer = LogWriter(self._db)
        self._steps: GroupWriter[_StepCall, list[bool]] = GroupWriter("record_steps", self._record)
        self._ends: GroupWriter[_End, _Answer] = GroupWriter("end_runs", self._end_runs)
        self._share = tenancy.FairShare()
        self._ingest = IngestGate()  # creates yield to run work (core/ingest.py)
        self._creating: dict[str, int] = {}  # scope: its creates in flight
        """This node's turns across scopes: each node claims fairly; all nodes together
        claim in about the same shares (each serves every backlogged scope in turn)."""

    # -- plumbing -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, and create or migrate the schema."""
        await self._db.open()
        schema = self._db.current_schema
        # Schemas of one database are separate deployments: their nodes must not hear each other.
        self.channel = "dwf" if schema in (None, "public") else f"dwf.{schema}"

    async def migrate(self, target: int | None = None) -> tuple[list[Migration], int]:
        """Migrate the schema (to ``target``, default the latest) over one connection of its
        own, without opening the storage: the migrations applied, and the version now."""
        return await self._db.migrate(target)

    async def close(self) -> None:
        """Finish the writes in flight, stop listening, close the connections."""
        await asyncio.gather(self._steps.drain(), self._ends.drain())
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()
        await self._db.close()

    @property
    def stats(self) -> dict[str, int]:
        """Commits, operations (storage calls) and round trips to the server so far."""
        return self._db.stats

    async def _read(self, op: str, fn: Callable[[Session], Awaitable[T]]) -> T:
        return await self._db.run(op, fn, write=False)

    async def _transition(self, op: str, fn: Callable[[Session], Awaitable[T]]) -> T:
        return await self._db.run(op, fn, write=True, transaction=True)

    def _mine(self, state: Held | None) -> Held | None:
        """``state`` if this node holds the row: on another node's (or nobody's) row, a
        live-run action of this node is stale."""
        return state if state is not None and state.owner == self.node_id else None

    def _live_view(self, state: Held | None) -> Held | None:
        """What a live run's action sees of the row this node holds: a parked row (``waiting``,
        or ``queued`` once an event came for it, still held) is its run's, which is live in this
        process and may write before its unpark is committed (the two are separate
        transactions); the transitions see it ``running``. A pending wake-up is kept only when
        an event is waiting to be seen (``queued``): a parked row's own ``wake_at`` is the park's,
        not news for the run."""
        state = self._mine(state)
        if state is None or state.status not in CLAIMABLE_STATUSES:
            return state
        wake_at = state.wake_at if state.status == Status.QUEUED else None
        return msgspec.structs.replace(state, status=Status.RUNNING, wake_at=wake_at)

    @staticmethod
    def _lets_go(change: Change) -> bool:
        """Whether ``change`` lets go of the row's holder: it leaves the active statuses."""
        status = change.updates().get("status")
        return status is not None and status not in ACTIVE_STATUSES

    async def _apply(
        self,
        c: Session,
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
        args: list[Any] = [pk]
        sets = change_sets(change, args)
        if not keep_holder and self._lets_go(change):
            sets += ["owner = NULL", "lease_until = NULL"]
        if lease is not None:
            args.append(lease)
            sets.append(f"lease_until = ${len(args)}")
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
        self,
        items: Sequence[NewInstance],
        now: float,
        *,
        tenants: Mapping[str, TenantPolicy] | None = None,
    ) -> list[InstanceRow | None]:
        first: dict[tuple[str, str, str], int] = {}
        for i, it in enumerate(items):
            first.setdefault((it.workflow, it.scope, it.id), i)
        unique = [items[i] for i in sorted(first.values())]
        if not unique:
            return []
        counts: dict[str, int] = {}
        for it in items:
            counts[it.scope] = counts.get(it.scope, 0) + 1
        policies = {s: p for s, p in (tenants or {}).items() if s in counts}

        async def insert(c: Session) -> list[asyncpg.Record]:
            return await self._insert(c, unique, now)

        async def admitted(c: Session) -> list[asyncpg.Record] | TenantLimitError:
            for scope in sorted(policies):  # rows locked in one order: no deadlock
                p = policies[scope]
                bucket_row = await c.fetchrow(
                    Q["lock_tenant"],
                    scope,
                    p.weight,
                    p.max_running,
                    p.max_live,
                    p.create_rate,
                    p.create_burst,
                    now,
                )
                assert bucket_row is not None
                try:
                    if p.max_live is not None:
                        live = await c.fetchval(Q["count_live"], scope)
                        tenancy.check_live(p, scope, int(live), counts[scope])
                    bucket = tenancy.take_tokens(
                        p, scope, bucket_row[0], bucket_row[1], counts[scope], now
                    )
                except TenantLimitError as exc:
                    return exc  # the transaction commits the policy, nothing else
                await c.execute(
                    Q["set_tokens"],
                    scope,
                    None if bucket is None else bucket.tokens,
                    None if bucket is None else bucket.at,
                )
            return await insert(c)

        scopes = tuple(counts)
        self._ingest.claimed(scopes)  # a tenant creating is about to run: it counts as active
        waiting = self._creating
        for scope in scopes:
            waiting[scope] = waiting.get(scope, 0) + 1
        try:
            wait = self._ingest.wait(scopes, len(waiting))  # within its share (core/ingest.py)
            if wait > 0:
                await asyncio.sleep(wait)
        finally:
            for scope in scopes:
                if waiting[scope] == 1:
                    del waiting[scope]
                else:
                    waiting[scope] -= 1
        started = time.perf_counter()
        try:
            if policies:
                answer = await self._transition("create", admitted)
                if isinstance(answer, TenantLimitError):
                    raise answer
                records = answer
            else:
                records = await self._db.run("create", insert, write=True)
        finally:
            self._ingest.spent(scopes, time.perf_counter() - started, len(waiting) + 1)
        created = {(r[1], r[2], r[3]): r[0] for r in records}
        out: list[InstanceRow | None] = []
        for i, it in enumerate(items):
            key = (it.workflow, it.scope, it.id)
            pk = created.get(key)
            if pk is None or first[key] != i:
                out.append(None)
                continue
            out.append(new_row(pk, it, now))
        return out

    async def get_tenant(self, scope: str) -> TenantState | None:
        r = await self._read("get_tenant", lambda c: c.fetchrow(Q["get_tenant"], scope))
        return None if r is None else _tenant(r)

    async def list_tenants(self) -> list[TenantState]:
        rows = await self._read("list_tenants", lambda c: c.fetch(Q["list_tenants"]))
        return [_tenant(r) for r in rows]

    async def _insert(self, c: Session, items: Sequence[NewInstance], now: float) -> list[Any]:
        return await c.fetch(
            Q["create_instances"],
            [it.workflow for it in items],
            [it.scope for it in items],
            [it.id for it in items],
            [it.params for it in items],
            tr.INITIAL_STATUS,
            now,
            self.channel,
            [it.schedule for it in items],
            [it.success_retention for it in items],
            [it.error_retention for it in items],
        )

    async def get_instance(self, workflow: str, scope: str, id: str) -> InstanceRow | None:
        r = await self._read(
            "get_instance", lambda c: c.fetchrow(Q["get_instance"], workflow, scope, id)
        )
        return None if r is None else row(r)

    async def get_instance_by_pk(self, pk: int) -> InstanceRow | None:
        r = await self._read("get_instance", lambda c: c.fetchrow(Q["get_instance_by_pk"], pk))
        return None if r is None else row(r)

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
            f"SELECT {INSTANCE_COLUMNS} FROM instances {clause} "
            f"ORDER BY created_at DESC, pk DESC LIMIT ${n + 1} OFFSET ${n + 2}"
        )
        rows = await self._read("list_instances", lambda c: c.fetch(sql, *args, limit, offset))
        return [row(r) for r in rows]

    async def count_instances(
        self, workflow: str | None = None, *, scope: str | None = None
    ) -> dict[str, int]:
        clause, args = self._filters(workflow=workflow, scope=scope)
        sql = f"SELECT status, count(*) FROM instances {clause} GROUP BY status"
        rows = await self._read("count_instances", lambda c: c.fetch(sql, *args))
        return {r[0]: r[1] for r in rows}

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
        sql, args = scope_usage_sql(
            workflow, order, unscoped, steps, lambda n: f"${n}", collate=' COLLATE "C"'
        )

        async def op(c: Session) -> ScopeUsagePage:
            page = scope_usage_page(await c.fetch(sql, *args, limit, offset))
            if page.scopes or not offset:
                return page
            # Past the last scope: the totals are the first row's.
            first = scope_usage_page(await c.fetch(sql, *args, 1, 0))
            return ScopeUsagePage([], first.total, first.by_status, first.steps)

        return await self._read("scope_usage", op)

    async def find_instances(self, workflow: str, id: str) -> list[InstanceRow]:
        rows = await self._read(
            "find_instances", lambda c: c.fetch(Q["find_instances"], workflow, id)
        )
        return [row(r) for r in rows]

    async def load_journal(self, pk: int) -> list[JournalEntry]:
        rows = await self._read("load_journal", lambda c: c.fetch(Q["load_journal"], pk))
        return [entry(r) for r in rows]

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
        wl = dict(workflow_limits or {})
        args = (
            now,
            limit,
            _CLAIMABLE,
            self.node_id,
            _ACTIVE,
            Status.WAITING_FOR_PAUSE,
            Status.PAUSED,
            Status.RUNNING,
            self.lease_seconds,
            ahead,
        )

        stale: list[str] = []

        # The claim and the journals in one transaction: a failure before the commit leaves
        # nothing claimed (a claim the engine never heard of would stay this node's).
        async def op(c: Session) -> list[Claim]:
            stale.clear()
            if not fair and not wl and not await c.fetchval(Q["any_caps"]):
                rows = await c.fetch(Q["claim_due"], *args)  # first come, no cap: one statement
            else:
                choice = await self._choose(c, now, limit, ahead, fair, wl)
                rows = await c.fetch(Q["claim_picked"], *args, choice.pks)
                stale.extend(choice.stale)
            claimed = sorted(
                (r for r in rows if r[4] == Status.RUNNING), key=lambda r: (r[-1], r[0])
            )
            if not claimed:
                return []
            journals: dict[int, list[JournalEntry]] = {r[0]: [] for r in claimed}
            for s in await c.fetch(Q["load_journals"], list(journals)):
                journals[s[0]].append(entry(s, 1))
            return [Claim(row(r), journals[r[0]]) for r in claimed]

        if limit <= 0:
            return []
        claims = await self._transition("claim_due", op)
        if claims:  # their runs go on: other tenants' backlogged creates yield (core/ingest.py)
            self._ingest.claimed({c.instance.scope for c in claims})
        if stale:
            await self._raise_next_wake(stale)
        return claims

    async def _raise_next_wake(self, scopes: list[str]) -> None:
        """Raise the hints (``tenants.next_wake``) of ``scopes``, which the claim just visited
        for nothing (``claim_candidates``), so that the next claims do not visit them again. A
        statement of its own, after the claim's commit: it takes the scopes' locks only to let
        them go at once, and holds no row of the claim's (``dwf_raise_next_wake``, 0009, says
        why it is safe). Only a scope whose earliest claimable instance is beyond the claim's
        horizon (by :data:`_RAISE_MARGIN`) is raised: the raise then always changes something,
        and a claim that visits only scopes with due work (a steady backlog) makes no such
        round trip. A scope emptied by a claim is raised by the next one that visits it. A
        failure is only a hint left low: the next claim visits the scope and tries again."""

        async def op(c: Session) -> int:
            return int(await c.fetchval(Q["raise_next_wake"], sorted(scopes), _CLAIMABLE))

        try:
            await self._db.run("raise_next_wake", op, write=True, idempotent=True)
        except StorageError as exc:  # the claims are committed: they must reach the engine
            log.warning("tenant hints of %d scope(s) not raised: %s", len(scopes), exc)

    async def _choose(
        self, c: Session, now: float, limit: int, ahead: float, fair: bool, wl: dict[str, int]
    ) -> _Choice:
        """The pks a fair (or capped) claim takes (``claim_picked`` re-checks them under their
        row locks, and takes lapsed leases over besides). Capped scopes and workflows are
        locked (``lock_caps``) before their slots are counted, so no two nodes' claims can both
        take a cap's last slot."""
        weights: dict[str, int] = {}
        max_running: dict[str, int | None] = {}
        candidates: dict[str, list[tenancy.Candidate]] = {}
        stale: list[str] = []
        # One candidate more than room per scope: whether any is left after the claim.
        rows = await c.fetch(Q["claim_candidates"], now, _CLAIMABLE, self.node_id, limit + 1, ahead)
        for r in rows:
            scope = r[0]
            if r[3] is None:  # visited, nothing due: r[6] is when something is
                if r[6] is None or r[6] > now + ahead + _RAISE_MARGIN:
                    stale.append(scope)
                continue
            weights[scope] = r[1]
            max_running[scope] = r[2]
            candidates.setdefault(scope, []).append(tenancy.Candidate(r[3], scope, r[4], r[5]))
        scopes, workflows = tenancy.capped(candidates, max_running, wl)
        admission = None
        if scopes or workflows:
            keys = [self._lock_key("scope", s) for s in scopes]
            keys += [self._lock_key("workflow", w) for w in workflows]
            await c.fetchval(Q["lock_caps"], keys)
            by_scope: dict[str, int] = {}
            by_workflow: dict[str, int] = {}
            for kind, name, n in await c.fetch(Q["held_counts"], scopes, workflows):
                (by_scope if kind == "s" else by_workflow)[name] = n
            admission = tenancy.Admission(max_running, wl, by_scope, by_workflow)
        picked = tenancy.choose(
            self._share if fair else None, candidates, weights, limit, admission
        )
        # Creates of a tenant with due work left yield to running work (core/ingest.py).
        self._ingest.backlogged = tenancy.left_over(candidates, picked)
        return _Choice([p.pk for p in picked], stale)

    def _lock_key(self, kind: str, name: str) -> int:
        """The advisory lock of a capped scope or workflow: 64 bits of a hash of the schema,
        the kind and the name (a collision only makes two claims wait for each other)."""
        digest = hashlib.blake2b(
            f"dwf\0{self.schema or ''}\0{kind}\0{name}".encode(), digest_size=8
        ).digest()
        return int.from_bytes(digest, "big", signed=True)

    async def next_due(self) -> float | None:
        value = await self._read(
            "next_due", lambda c: c.fetchval(Q["next_due"], self.node_id, _CLAIMABLE, _ACTIVE)
        )
        return None if value is None else float(value)

    # -- live runs --------------------------------------------------------------------------

    async def record_steps(
        self,
        writes: Sequence[tuple[int, int, JournalEntry]],
        now: float,
        *,
        logs: Sequence[LogWrite] = (),
    ) -> list[bool]:
        """One statement per call at most: calls made while one is in flight are merged into
        the next. ``logs``: in a statement of their own, after the steps (:mod:`.postgres_logs`)."""
        if logs:
            kept = await self.record_steps(writes, now) if writes else []
            await self._log_writer.write(logs, self.node_id, _HELD)
            return kept
        if not writes:
            return []
        if not self._db.is_open:
            raise StorageError("record_steps: the PostgreSQL storage is not open")
        return await self._steps.submit((writes, now))

    async def _record(self, calls: list[_StepCall]) -> list[list[bool] | Exception]:
        # One row per (pk, generation, name, count): an upsert may not touch a row twice. The
        # last write wins, with the time of the first (recorded_at orders the journal).
        rows: dict[tuple[int, int, str, int], tuple[Any, ...]] = {}
        tracebacks: dict[tuple[int, int, str, int], str | None] = {}  # ($19, in rows' order)
        flags: dict[tuple[int, int, str, int], bool] = {}  # ($20: registered a rollback)
        sensitive: dict[tuple[int, int, str, int], bool] = {}  # ($21, in rows' order)
        for writes, now in calls:
            for pk, generation, e in writes:
                key = (pk, generation, e.name, e.count)
                at = rows[key][1 + RECORDED_AT] if key in rows else now
                rows[key] = (pk, generation, *step_args(pk, e, at)[1:])
                tracebacks[key] = None if e.error is None else e.error.traceback
                flags[key] = e.rollback
                sensitive[key] = e.sensitive
        columns = list(zip(*rows.values(), strict=True))

        async def op(c: Session) -> list[asyncpg.Record]:
            return await c.fetch(
                Q["record_steps"],
                *(list(col) for col in columns),
                self.node_id,
                _HELD,
                list(tracebacks.values()),
                list(flags.values()),
                list(sensitive.values()),
            )

        live = {(r[0], r[1]) for r in await self._db.run("record_steps", op, write=True)}
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
        async def op(c: Session) -> WaitResult | None:
            r = await c.fetchrow(Q["lock_instance"], pk)
            state = None if r is None else self._live_view(held(r))
            e = None if state is None else await c.fetchrow(Q["oldest_event"], pk, event_type)
            buffered = [] if e is None else [BufferedEvent(e[0], e[1], e[2], e[3])]
            outcome = tr.register_wait(
                state, generation, name, count, event_type, deadline, buffered
            )
            if outcome is None:
                return None
            seq = None if outcome.consumed is None else outcome.consumed.seq
            stamped = msgspec.structs.replace(outcome.entry, started_at=now)  # the wait began
            await c.execute(Q["put_step"], *step_args(pk, stamped, now), seq)
            return outcome.result

        return await self._transition("register_wait", op)

    async def expire_wait(
        self, pk: int, generation: int, name: str, count: int, error: ErrorInfo, now: float
    ) -> tuple[bool, bytes | None] | None:
        async def op(c: Session) -> tuple[bool, bytes | None] | None:
            r = await c.fetchrow(Q["lock_instance"], pk)
            state = None if r is None else self._live_view(held(r))
            s = None if state is None else await c.fetchrow(Q["journal_entry"], pk, name, count)
            wait = None if s is None else entry(s)
            outcome = tr.expire_wait(state, generation, wait, error)
            if outcome is None:
                return None
            if outcome.step is not None:
                await self._update_step(c, pk, outcome.step)
            return (outcome.timed_out, outcome.value)

        return await self._transition("expire_wait", op)

    @staticmethod
    async def _update_step(c: Session, pk: int, step: tr.StepUpdate) -> None:
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
            None if error is None else error.traceback,
        )

    async def add_event(
        self, pk: int, event_type: str, payload: bytes, now: float
    ) -> EventDelivery | None:
        async def op(c: Session) -> EventDelivery | None:
            r = await c.fetchrow(Q["lock_instance"], pk)
            if r is None:
                return None
            steps = [entry(s) for s in await c.fetch(Q["waiting_steps"], pk, event_type)]
            outcome = tr.add_event(held(r), event_type, payload, now, steps)
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
        *,
        rollback: RollbackOutcome | None = None,
    ) -> bool:
        def decide(state: Held | None) -> _Decision | None:
            change = tr.finish_run(state, generation, status, output, error, now, rollback)
            return None if change is None else _Decision(change, None, True)

        return await self._end(_End("finish_run", pk, decide, False)) is True

    async def begin_rollback(self, pk: int, generation: int, now: float) -> bool:
        async def op(c: Session) -> bool:
            change = tr.begin_rollback(await self._lock_live(c, pk), generation, now)
            if change is None:
                return False
            await self._apply(c, pk, change, keep_holder=True)
            return True

        return await self._transition("begin_rollback", op)

    async def suspend_run(
        self, pk: int, generation: int, wake_at: float | None, held_by_pause: bool, now: float
    ) -> str | None:
        def decide(state: Held | None) -> _Decision | None:
            outcome = tr.suspend_run(state, generation, wake_at, held_by_pause, now)
            if outcome is None:
                return None
            wake = outcome.change.wake_at
            soon = isinstance(wake, float | int) and wake <= now + _DUE_SOON
            return _Decision(outcome.change, f"due:{pk}" if soon else None, outcome.status)

        answer = await self._end(_End("suspend_run", pk, decide, None))
        return answer if isinstance(answer, str) else None

    async def release_run(self, pk: int, generation: int, now: float) -> bool:
        def decide(state: Held | None) -> _Decision | None:
            change = tr.release_run(state, generation, now)
            if change is None:
                return None
            return _Decision(change, f"due:{pk}" if change.status == Status.QUEUED else None, True)

        return await self._end(_End("release_run", pk, decide, False)) is True

    async def _end(self, end: _End) -> _Answer:
        if not self._db.is_open:
            raise StorageError(f"{end.op}: the PostgreSQL storage is not open")
        return await self._ends.submit(end)

    async def _end_runs(self, ends: list[_End]) -> list[_Answer | Exception]:
        """A batch of runs' ends: one read of their rows, each run's transition, one write of
        every change (compare and set, see ``end_runs``); an end whose row changed in between
        is made again the locked way, as is a second end of one row in the batch (a statement
        may change a row once)."""
        first: dict[int, int] = {}
        for i, end in enumerate(ends):
            first.setdefault(end.pk, i)
        rows = await self._read("end_runs", lambda c: c.fetch(Q["read_held"], sorted(first)))
        states = {r[0]: held(r, 1) for r in rows}
        answers: dict[int, _Answer | Exception] = {}
        writes: list[tuple[int, Held, Change, bool, str | None]] = []
        decided: dict[int, tuple[int, _Answer]] = {}
        for pk, i in first.items():
            state = states.get(pk)
            decision = ends[i].decide(self._live_view(state))
            if decision is None or state is None:
                answers[i] = ends[i].stale
                continue
            writes.append(
                (pk, state, decision.change, self._lets_go(decision.change), decision.notify)
            )
            decided[pk] = (i, decision.answer)
        if writes:
            args = end_args(writes)

            async def op(c: Session) -> list[asyncpg.Record]:
                return await c.fetch(
                    Q["end_runs"],
                    *args,
                    self.node_id,
                    self.channel,
                    end_tracebacks(writes),
                    *end_rollbacks(writes),
                )

            for r in await self._db.run("end_runs", op, write=True):
                i, answer = decided[r[0]]
                answers[i] = answer
        rest = [i for i in range(len(ends)) if i not in answers]
        if rest:
            done = await asyncio.gather(
                *(self._end_locked(ends[i]) for i in rest), return_exceptions=True
            )
            for i, outcome in zip(rest, done, strict=True):
                if not isinstance(outcome, Exception) and isinstance(outcome, BaseException):
                    raise outcome
                answers[i] = outcome
        return [answers[i] for i in range(len(ends))]

    async def _end_locked(self, end: _End) -> _Answer:
        """One run's end in a transaction of its own, its row locked."""

        async def op(c: Session) -> _Answer:
            decision = end.decide(await self._lock_live(c, end.pk))
            if decision is None:
                return end.stale
            await self._apply(c, end.pk, decision.change, notify=decision.notify)
            return decision.answer

        return await self._transition(end.op, op)

    async def _lock_mine(self, c: Session, pk: int) -> Held | None:
        r = await c.fetchrow(Q["lock_instance"], pk)
        return None if r is None else self._mine(held(r))

    async def _lock_live(self, c: Session, pk: int) -> Held | None:
        r = await c.fetchrow(Q["lock_instance"], pk)
        return None if r is None else self._live_view(held(r))

    async def control(
        self, pk: int, action: str, now: float, *, restart_from: tuple[str, int] | None = None
    ) -> ControlResult | None:
        tr.check_control_action(action)

        async def op(c: Session) -> ControlResult | None:
            r = await c.fetchrow(Q["lock_instance"], pk)
            if r is None:
                return None
            cutoff = None
            if action == "restart" and restart_from is not None:
                cutoff = await c.fetchval(Q["step_recorded_at"], pk, *restart_from)
            rollback = None
            if action == "terminate":  # (it stops a rollback phase that is on)
                rollback = rollback_outcome(await c.fetchval(Q["instance_rollback"], pk))
            outcome = tr.control(
                held(r),
                action,
                now,
                restart_from=restart_from,
                step_recorded=cutoff is not None,
                rollback=rollback,
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
        # The row first: a journal write in flight (record_steps holds it FOR SHARE) either
        # commits before, and its steps go too, or finds the row gone; none is left behind.
        async def op(c: Session) -> bool:
            if await c.fetchrow(Q["lock_instance"], pk) is None:
                return False
            await c.execute(Q["delete_instance"], pk, self.channel)
            return True

        return await self._transition("delete_instance", op)

    async def fire_schedule(
        self, workflow: str, cron: str, tick: float, item: NewInstance, now: float
    ) -> InstanceRow | None:
        async def op(c: Session) -> InstanceRow | None:
            if await c.fetchrow(Q["first_tick"], workflow, cron, now) is not None:
                return None
            if await c.fetchrow(Q["move_tick"], workflow, cron, tick) is None:
                return None
            created = await self._insert(c, [item], now)
            return new_row(created[0][0], item, now) if created else None

        # Retried after a lost connection: the tick then stands where the lost commit left it,
        # so a retry never fires it twice (at worst it reports None for an instance created).
        return await self._db.run("fire_schedule", op, write=True, transaction=True)

    async def delete_retained(self, now: float, limit: int) -> int:
        async def op(c: Session) -> int:
            return int(await c.fetchval(Q["delete_retained"], now, limit))

        return await self._db.run("delete_retained", op, write=True, idempotent=True)

    async def recover(self, now: float) -> int:
        """Let go of the rows this node holds (a node id is fresh per process, so normally
        none): its runs are requeued (or paused), its parked rows released as they are.
        Other nodes' runs are never touched here: lapsed leases are ``claim_due``'s."""

        async def op(c: Session) -> int:
            requeued = 0
            for bulk in tr.recover_plan(now):
                args: list[Any] = []
                sets = ", ".join(change_sets(bulk.change, args))
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

    # -- several nodes ----------------------------------------------------------------------

    async def heartbeat(self, now: float) -> None:
        async def op(c: Session) -> None:
            await c.execute(Q["heartbeat"], self.node_id, now, socket.gethostname(), os.getpid())

        await self._db.run("heartbeat", op, write=True, idempotent=True)

    async def renew_leases(self, pks: Sequence[int], now: float) -> set[int]:
        if not pks:
            return set()
        wanted = sorted(set(pks))

        async def op(c: Session) -> list[asyncpg.Record]:
            return await c.fetch(Q["renew_leases"], wanted, self.node_id, now + self.lease_seconds)

        # Idempotent: extending a lease to the same end twice is extending it once.
        rows = await self._db.run("renew_leases", op, write=True, idempotent=True)
        return set(wanted) - {r[0] for r in rows}

    async def park_run(self, pk: int, generation: int, wake_at: float | None, now: float) -> bool:
        async def op(c: Session) -> bool:
            # A park is a suspension that keeps its holder: suspend_run's rules, status waiting.
            outcome = tr.suspend_run(await self._lock_mine(c, pk), generation, wake_at, False, now)
            if outcome is None or outcome.status != Status.WAITING:
                return False  # stale, or a pause is pending: the run must suspend instead
            lease = now + self.lease_seconds
            await self._apply(c, pk, outcome.change, keep_holder=True, lease=lease)
            return True

        return await self._transition("park_run", op)

    async def unpark_run(self, pk: int, generation: int, now: float) -> bool:
        async def op(c: Session) -> bool:
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

    async def load_logs(
        self,
        pk: int,
        *,
        after: int = 0,
        limit: int = 1000,
        step: tuple[str, int] | None = None,
        attempt: int | None = None,
    ) -> list[tuple[int, LogLine]]:
        return await load_logs(self._db, pk, after, limit, step, attempt)

    async def listen(self, callback: Callable[[str, str], None]) -> None:
        if not self._db.is_open:
            raise StorageError("listen: the PostgreSQL storage is not open")
        if self._listener is None:
            self._listener = Listener(self._db.connect_one, self.channel)
        try:
            await self._listener.add(callback)
        except FAILED as exc:
            raise StorageError(f"cannot listen on PostgreSQL at {redact(self.url)}: {exc}") from exc
