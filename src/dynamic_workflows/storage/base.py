"""The storage protocol: everything the engine persists goes through these methods.

Each method is one atomic transaction. Methods that act for a live run take its ``generation``
and do nothing (returning False/None) when the instance moved on (terminated, restarted,
deleted), so a stale run can never write over a newer one.

``wake_at`` on an instance row means "claim me at this time": it is set for ``queued`` (ready
now) and ``waiting`` (a timer) instances, and for running ones when an event arrived during the
run (so the hibernation that follows does not miss it). Claiming clears it.

Which status goes where is decided in :mod:`dynamic_workflows.core.transitions`, once for every
backend: a backend loads the state an action needs, calls the transition and applies the change
it returns in the method's transaction. The statuses and the answers (``ControlResult``,
``WaitResult``, ``EventDelivery``) are defined there and re-exported here.

Several nodes may share one database (PostgreSQL, ``shared`` is True): a claimed run's row then
names its ``owner`` (the claiming node's ``node_id``) until a lease time, which the owner renews
(``renew_leases``); a row whose lease ran out is taken over by the next node that claims it, with
its generation bumped so that the old owner's writes are refused. The single-node backends
(memory, SQLite) have one owner, always; for them the lease methods are trivial.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import msgspec

from ..core.journal import ErrorInfo, JournalEntry, RollbackOutcome
from ..core.logs import LogLine
from ..core.tenancy import TenantPolicy, TenantState
from ..core.transitions import (
    ACTIVE_STATUSES,
    FINITE_STATUSES,
    INITIAL_STATUS,
    ControlResult,
    EventDelivery,
    Status,
    WaitResult,
)

__all__ = [
    "ACTIVE_STATUSES",
    "FINITE_STATUSES",
    "SCOPE_ORDERS",
    "Claim",
    "ControlResult",
    "EventDelivery",
    "InstanceRow",
    "LogWrite",
    "NewInstance",
    "ScopeUsage",
    "ScopeUsagePage",
    "Status",
    "Storage",
    "TenantPolicy",
    "TenantState",
    "WaitResult",
    "check_scope_order",
    "live_count",
    "new_row",
    "rollback_outcome",
    "rollback_text",
    "scope_rank",
    "step_values",
]


class NewInstance(msgspec.Struct, frozen=True):
    workflow: str
    scope: str
    id: str
    params: bytes
    """JSON of the params (``null`` when absent)."""
    schedule: bytes | None = None
    """JSON of the cron tick that created it, ``{"cron", "scheduledTime"}`` (its event's
    ``schedule``); None for an instance created by a call."""
    success_retention: float | None = None
    """Seconds it is kept once it ended ``complete`` (None: forever; see core/retention.py)."""
    error_retention: float | None = None
    """Seconds it is kept once it ended ``errored`` or ``terminated`` (None: forever)."""


class InstanceRow(msgspec.Struct, frozen=True):
    pk: int
    workflow: str
    scope: str
    id: str
    status: str
    params: bytes
    generation: int
    created_at: float
    updated_at: float
    output: bytes | None = None
    error: ErrorInfo | None = None
    wake_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    log_bytes: int = 0
    """Bytes of the lines its runs printed that are stored (see :mod:`..core.logs`)."""
    log_dropped: int = 0
    """Lines its runs printed that were dropped (over the limits), counted."""
    rollback: RollbackOutcome | None = None
    """How its rollback phase ended (None: no rollback ran; see :mod:`..core.rollback`)."""
    schedule: bytes | None = None
    """JSON ``{"cron", "scheduledTime"}`` of the cron tick that created it (NewInstance's)."""
    success_retention: float | None = None
    """Seconds kept after ending ``complete``; None: forever (core/retention.py)."""
    error_retention: float | None = None
    """Seconds kept after ending ``errored``/``terminated``; None: forever."""


class LogWrite(msgspec.Struct, frozen=True):
    """Lines a live run printed (``record_steps(..., logs=)``), fenced by its generation as
    its journal writes are; ``bytes`` and ``dropped`` are added to the instance's
    ``log_bytes`` and ``log_dropped``."""

    pk: int
    generation: int
    lines: list[LogLine]
    bytes: int
    dropped: int


SCOPE_ORDERS = ("live", "instances", "steps", "recent")
"""How :meth:`Storage.scope_usage` may order scopes, most first: ``live`` (instances not
finished), ``instances`` (in all), ``steps`` (recorded), ``recent`` (the latest change to one
of its instances). Ties go to the next figure (instances, then the latest change), then to the
scope in ascending order, so that pages never overlap."""


class ScopeUsage(msgspec.Struct, frozen=True):
    """One scope's instances and steps, as stored (``Storage.scope_usage``)."""

    scope: str
    by_status: dict[str, int]
    """Instances per stored status (statuses with none are absent)."""
    steps: int
    """Journal entries (step occurrences) its instances have recorded."""
    last_created_at: float
    """When its newest instance was created."""
    last_updated_at: float
    """The latest change to one of its instances."""
    sample_params: bytes
    """The params of its newest instance: the dispatch envelope names the tenant (the storage
    does not read it)."""

    @property
    def instances(self) -> int:
        """Its instances in all."""
        return sum(self.by_status.values())


class ScopeUsagePage(msgspec.Struct, frozen=True):
    """A page of :class:`ScopeUsage`, and what every matching scope adds up to."""

    scopes: list[ScopeUsage]
    total: int
    """Scopes matching in all (not only this page)."""
    by_status: dict[str, int]
    """Instances per stored status of every matching scope together."""
    steps: int
    """Steps of every matching scope together."""


def check_scope_order(order: str, *, steps: bool = True) -> None:
    """ValueError unless ``order`` is one of :data:`SCOPE_ORDERS` (and not ``steps`` when the
    steps are not counted)."""
    if order not in SCOPE_ORDERS:
        raise ValueError(f"order: {order!r} is not one of {', '.join(SCOPE_ORDERS)}")
    if order == "steps" and not steps:
        raise ValueError("order: 'steps' needs the steps counted (steps=True)")


def live_count(by_status: dict[str, int]) -> int:
    """Instances not finished (any status but complete, errored, terminated)."""
    return sum(n for status, n in by_status.items() if status not in FINITE_STATUSES)


def scope_rank(order: str, usage: ScopeUsage) -> tuple[float | str, ...]:
    """The sort key of ``usage`` under ``order`` (one of :data:`SCOPE_ORDERS`), smallest
    first: what every backend's ``ORDER BY`` does (the memory backend sorts with it)."""
    first = {
        "live": live_count(usage.by_status),
        "instances": usage.instances,
        "steps": usage.steps,
        "recent": usage.last_updated_at,
    }[order]
    return (-first, -usage.instances, -usage.last_updated_at, usage.scope)


def new_row(pk: int, item: NewInstance, now: float) -> InstanceRow:
    """The row of an instance just created (every backend answers ``create_instances`` with
    it): queued, generation 0, due now."""
    return InstanceRow(
        pk=pk,
        workflow=item.workflow,
        scope=item.scope,
        id=item.id,
        status=INITIAL_STATUS,
        params=item.params,
        generation=0,
        created_at=now,
        updated_at=now,
        wake_at=now,
        schedule=item.schedule,
        success_retention=item.success_retention,
        error_retention=item.error_retention,
    )


def step_values(pk: int, e: JournalEntry, recorded_at: float) -> tuple[object, ...]:
    """A journal entry as the SQL backends' ``steps`` row, column by column: ``instance_pk,
    name, count, kind, state, value, error_name, error_message, attempt, wake_at, event_type,
    recorded_at, started_at, ended_at, attempts``."""
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
        recorded_at,
        e.started_at,
        e.ended_at,
        e.attempts,
    )


_OUTCOME_DECODER = msgspec.json.Decoder(RollbackOutcome)


def rollback_text(outcome: RollbackOutcome | None) -> str | None:
    """An instance's ``rollback`` as the SQL backends store it (JSON text)."""
    return None if outcome is None else msgspec.json.encode(outcome).decode()


def rollback_outcome(text: str | None) -> RollbackOutcome | None:
    """An instance's ``rollback`` from its stored JSON text."""
    return None if text is None else _OUTCOME_DECODER.decode(text)


class Claim(msgspec.Struct, frozen=True):
    """An instance claimed for a run, with its journal."""

    instance: InstanceRow
    journal: list[JournalEntry]


class Storage(Protocol):
    """One backend (memory, SQLite, PostgreSQL). Every method is one transaction."""

    async def open(self) -> None:
        """Create or migrate the schema and get ready."""
        ...

    async def close(self) -> None:
        """Flush and release everything."""
        ...

    async def create_instances(
        self,
        items: Sequence[NewInstance],
        now: float,
        *,
        tenants: Mapping[str, TenantPolicy] | None = None,
    ) -> list[InstanceRow | None]:
        """Insert ``queued`` instances; an id that exists already (or earlier in ``items``)
        gives None in its place. Every scope of ``items`` gets a tenant row if it has none.
        ``tenants``: the policy resolved for (some of) the scopes: stored on the scope's row and
        enforced in the same transaction, under a lock of that row: ``max_live`` (unfinished
        instances of the scope plus ``len`` of its items), then the create bucket (a token per
        item). A refused scope raises :class:`~dynamic_workflows.errors.TenantLimitError` and
        nothing of the call is created."""
        ...

    async def get_tenant(self, scope: str) -> TenantState | None:
        """The stored row of a scope: its policy as last resolved, its create bucket."""
        ...

    async def list_tenants(self) -> list[TenantState]:
        """Every scope's row, by scope."""
        ...

    async def get_instance(self, workflow: str, scope: str, id: str) -> InstanceRow | None: ...

    async def get_instance_by_pk(self, pk: int) -> InstanceRow | None: ...

    async def list_instances(
        self,
        workflow: str | None,
        *,
        scope: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[InstanceRow]:
        """Newest first."""
        ...

    async def count_instances(
        self, workflow: str | None = None, *, scope: str | None = None
    ) -> dict[str, int]:
        """Instances per status (of one workflow and/or scope when given)."""
        ...

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
        """Instances per scope and status, and steps per scope, of one workflow (None: all of
        them, a scope counting its instances of every workflow), in one read: the page
        ``offset``/``limit`` of the scopes in ``order`` (one of :data:`SCOPE_ORDERS`; see
        :func:`scope_rank`), with the totals of every matching scope. ``unscoped=False`` leaves
        out the scope ``""`` (instances created without a dispatcher); ``steps=False`` does not
        read the journal (the costly part: every scope's steps are then 0, and ``order`` may
        not be ``steps``). ValueError for an unknown order."""
        ...

    async def find_instances(self, workflow: str, id: str) -> list[InstanceRow]:
        """The instances of ``workflow`` with this ``id`` in every scope (the admin API addresses
        instances across tenants), oldest first."""
        ...

    async def load_journal(self, pk: int) -> list[JournalEntry]: ...

    async def claim_due(
        self,
        now: float,
        limit: int,
        *,
        ahead: float = 0.0,
        fair: bool = True,
        workflow_limits: Mapping[str, int] | None = None,
    ) -> list[Claim]:
        """Mark up to ``limit`` queued/waiting instances whose ``wake_at <= now + ahead``
        running and return them with their journals. ``ahead`` claims what is due soon (the
        engine replays it and parks it until due); leases are judged at ``now``, never at the
        later time, or a node would take over other nodes' live runs.

        Which: ``fair``, in weighted turns across scopes (:class:`~dynamic_workflows.core.
        tenancy.FairShare`, each scope earliest first); otherwise earliest first. Never one
        over a cap: a scope's ``max_running`` (its stored policy) and ``workflow_limits``
        (runs of a workflow at once), counting the runs that hold a slot (active, or parked
        warm), exactly, also against other nodes' claims."""
        ...

    async def next_due(self) -> float | None:
        """The earliest ``wake_at`` of a claimable instance."""
        ...

    async def record_steps(
        self,
        writes: Sequence[tuple[int, int, JournalEntry]],
        now: float,
        *,
        logs: Sequence[LogWrite] = (),
    ) -> list[bool]:
        """Upsert journal entries of live runs, each ``(pk, generation, entry)``, in one
        transaction; per write, False if its run is stale (that write is skipped). ``logs``:
        lines of live runs to append (in order, numbered by a sequence that only grows), and
        count in their instances' ``log_bytes``/``log_dropped``; a stale run's are skipped.
        (In the same transaction where the backend can; never a reason to fail the call.)"""
        ...

    async def load_logs(
        self,
        pk: int,
        *,
        after: int = 0,
        limit: int = 1000,
        step: tuple[str, int] | None = None,
        attempt: int | None = None,
    ) -> list[tuple[int, LogLine]]:
        """The stored lines of the instance ``pk`` numbered after ``after``, in order, each
        with its number (``seq``): at most ``limit``, of one step ``(name, count)`` and/or one
        attempt when given."""
        ...

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
        """Record an event wait; consume the oldest buffered event of that type if there is one.
        None if the run is stale."""
        ...

    async def expire_wait(
        self, pk: int, generation: int, name: str, count: int, error: ErrorInfo, now: float
    ) -> tuple[bool, bytes | None] | None:
        """The deadline of a wait passed: mark it failed unless an event got there first.
        Returns ``(timed_out, event)``, or None if the run is stale."""
        ...

    async def add_event(
        self, pk: int, event_type: str, payload: bytes, now: float
    ) -> EventDelivery | None:
        """Store an event. If a step of the instance waits for that type (deadline not passed),
        consume it for the oldest such step and wake the instance."""
        ...

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
        """End a live run as complete, errored (or terminated, after a terminate with rollback
        ran its handlers), with how its rollback phase ended (``rollback``). False if stale."""
        ...

    async def begin_rollback(self, pk: int, generation: int, now: float) -> bool:
        """A live run's rollback phase begins because ``run()`` raised: the instance's
        ``rollback`` reads ``running`` until :meth:`finish_run` records how it ended (the
        rules are :func:`~dynamic_workflows.core.transitions.begin_rollback`'s). False if
        stale."""
        ...

    async def suspend_run(
        self, pk: int, generation: int, wake_at: float | None, held_by_pause: bool, now: float
    ) -> str | None:
        """Hibernate a live run: ``waiting`` until ``wake_at`` (or earlier if an event came),
        or ``paused`` if a pause was asked meanwhile. Returns the new status; None if stale."""
        ...

    async def release_run(self, pk: int, generation: int, now: float) -> bool:
        """Give a live run's instance back to the queue (shutdown, sandbox loss)."""
        ...

    async def control(
        self, pk: int, action: str, now: float, *, restart_from: tuple[str, int] | None = None
    ) -> ControlResult | None:
        """``pause``, ``resume``, ``terminate`` or ``restart`` (ValueError for anything else;
        the rules are :func:`~dynamic_workflows.core.transitions.control`'s).
        ``terminate`` of a finite instance changes nothing (``after == before``); of one whose
        rollback phase is on, it stops the phase and records that it did. A restart
        ``restart_from`` a step ``(name, count)`` keeps the steps recorded before it (and the
        events); otherwise it clears the journal and the consumed events."""
        ...

    async def delete_instance(self, pk: int) -> bool: ...

    async def fire_schedule(
        self, workflow: str, cron: str, tick: float, item: NewInstance, now: float
    ) -> InstanceRow | None:
        """A tick of the schedule ``(workflow, cron)``: in one transaction, move the schedule's
        last tick to ``tick`` if it stands before it, and create ``item`` (its id taken, it is
        not created, and the tick is spent all the same). Returns the row created; None when
        the schedule stood at ``tick`` or later (another node, or this one before a crash,
        fired it). A schedule never seen before is recorded as standing at ``now`` and nothing
        is created: it fires from its first tick after that. Several nodes may call it for the
        same tick at once: one creates the instance."""
        ...

    async def delete_retained(self, now: float, limit: int) -> int:
        """Delete up to ``limit`` finished instances whose retention ran out by ``now``
        (:func:`~dynamic_workflows.core.retention.retain_until`), with their steps, events and
        logs, in one short transaction; returns how many. Rows another node is deleting at the
        same moment are skipped, not waited for."""
        ...

    async def recover(self, now: float) -> int:
        """After a crash of the only node: requeue ``running``, and pause ``waitingForPause``.
        Returns how many instances were requeued."""
        ...

    # -- several nodes ---------------------------------------------------------------------------

    @property
    def shared(self) -> bool:
        """True when other processes may use the same database at once (PostgreSQL): runs are
        then held under leases that the engine must renew. False for memory and SQLite."""
        ...

    @property
    def node_id(self) -> str:
        """This process's name in the database: the ``owner`` of the runs it claimed."""
        ...

    async def heartbeat(self, now: float) -> None:
        """Say that this node is alive (its row in ``nodes``, for the operators' view)."""
        ...

    async def renew_leases(self, pks: Sequence[int], now: float) -> set[int]:
        """Extend the lease of each of ``pks`` that this node still holds, in one statement.
        Returns the pks of ``pks`` it does not hold any more (terminated, restarted, deleted or
        taken over after a lapsed lease): their runs must stop."""
        ...

    async def park_run(self, pk: int, generation: int, wake_at: float | None, now: float) -> bool:
        """Keep a live ``running`` run warm in this process until ``wake_at`` (None: until an
        event): on a shared database its row reads ``waiting`` meanwhile, still held by this node
        (no other node claims it while the lease lives). False if the run is not live and
        running (stale, or a pause is pending: suspend it instead). Single-node backends leave
        the row ``running``."""
        ...

    async def unpark_run(self, pk: int, generation: int, now: float) -> bool:
        """A parked run goes on: its row is ``running`` again (``wake_at`` cleared, as a claim
        does). False if this node does not hold it any more (its warm state must be dropped).
        An event that arrived while it was parked is in the journal already."""
        ...

    async def listen(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(kind, subject)`` for every committed change, by any node (this one
        included), that a node may need to act on: ``("new", workflow)``, ``("event", pk)``,
        ``("control", pk)``, ``("due", pk)``; and ``("reconnected", "")`` after a lost
        notification channel came back (anything may have been missed: poll). Returns once
        listening; single-node backends never call it (there is nobody else)."""
        ...
