"""What the engine can tell about its instances: the one read path for the admin API, the
metrics, the dashboard (through the API) and the CLI. Nothing above this layer reads storage.

Reached as ``engine.queries`` (one :class:`Queries` per engine)::

    page = await engine.queries.list_instances("orders", status="waiting", limit=25)
    for view in page.instances:                      # InstanceView: decoded, status as reported
        print(view.id, view.status, view.params)
    details = await engine.queries.describe(page.instances[0])     # + its journal (StepView)
    counts = await engine.queries.count_instances("orders")        # StatusCounts
    logs = await engine.queries.logs(page.instances[0], after=0)   # what its runs printed
    tenants = await engine.queries.tenant_usage(order="live", limit=20)   # TenantUsagePage

A step declared ``sensitive: "output"`` (Cloudflare's step option) is redacted here, once for
every reader: its view's ``value`` is :data:`~dynamic_workflows.core.stepconfig.REDACTED`
(``"[REDACTED]"``, Cloudflare's form) and ``sensitive`` is set; the stored value is never
decoded on this side. The run itself reads its journal from storage, unredacted.

Statuses here are the ones users see (:meth:`Engine.reported_status`): a run kept live and
*parked* for a near wake-up is ``running`` in storage but ``waiting`` here, in views, in counts
and in the ``status`` filter alike. A sleep whose time has come reads as ``done``.

Views are read-only snapshots. Acting on an instance stays with the engine (``engine.control``,
``engine.send_event``, ``engine.delete``): a view's ``row`` is the handle those take.

:func:`wait_for_status` is the one status-polling loop (``dwf run``, ``WorkflowTestEnv.wait_for``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from .core.attempts import attempts_of
from .core.codec import decode
from .core.journal import ErrorInfo, JournalEntry, StepKind, StepState
from .core.logs import LogLine
from .core.retention import retain_until
from .core.stepconfig import REDACTED
from .errors import InvalidQueryError
from .storage.base import FINITE_STATUSES, SCOPE_ORDERS, InstanceRow, Status, TenantState
from .tenant_usage import TenantPolicy, TenantUsagePage, read_tenant_usage

if TYPE_CHECKING:
    from .binding import Instance
    from .engine import Engine

__all__ = [
    "MAX_LIMIT",
    "AttemptView",
    "InstanceDetails",
    "InstancePage",
    "InstanceView",
    "LogPage",
    "LogView",
    "Queries",
    "StatusCounts",
    "StepView",
    "wait_for_status",
]

MAX_LIMIT = 1000
"""The most instances one page may hold."""

_SCAN_CHUNK = 1000
"""Rows read from storage at a time when a listing is filtered here rather than by storage."""

_COUNTED = tuple(s for s in Status.ALL if s != Status.UNKNOWN)
"""Statuses every :class:`StatusCounts` holds, zero or not (``unknown`` only when present)."""


class InstanceView(msgspec.Struct, frozen=True):
    """One instance as users see it. ``status`` is the reported one (parked runs are
    ``waiting``); ``params``/``output`` decode the stored JSON on access (a listing never
    pays for them); times are epoch seconds."""

    workflow: str
    scope: str
    id: str
    status: str
    created_at: float
    updated_at: float
    started_at: float | None
    ended_at: float | None
    wake_at: float | None
    """When the instance is due to run next (a timer, a retry, an event deadline), if ever."""
    error: ErrorInfo | None
    params_json: bytes
    output_json: bytes | None
    row: InstanceRow
    """The stored row: the handle ``engine.control``/``send_event``/``delete`` take."""

    @property
    def log_bytes(self) -> int:
        """Bytes of the lines its runs printed that are stored."""
        return self.row.log_bytes

    @property
    def rollback(self) -> dict[str, Any] | None:
        """How its rollback phase went, Cloudflare's ``{"outcome", "error"?}`` (``outcome``
        ``running`` while the handlers run); None if none ran."""
        outcome = self.row.rollback
        return None if outcome is None else outcome.as_dict()

    @property
    def log_dropped(self) -> int:
        """Lines its runs printed that were dropped (over the limits)."""
        return self.row.log_dropped

    @property
    def schedule(self) -> Any:
        """``{"cron", "scheduledTime"}`` of the cron tick that created it; None otherwise."""
        return None if self.row.schedule is None else decode(self.row.schedule)

    @property
    def retain_until(self) -> float | None:
        """When the retention sweeper may delete it (None: kept, or not finished)."""
        r = self.row
        return retain_until(self.status, r.ended_at, r.success_retention, r.error_retention)

    @property
    def params(self) -> Any:
        """The params, decoded (``None`` when created without)."""
        return decode(self.params_json)

    @property
    def output(self) -> Any:
        """The output, decoded; ``None`` until the instance completes."""
        return None if self.output_json is None else decode(self.output_json)


class AttemptView(msgspec.Struct, frozen=True):
    """One attempt of a ``do`` step; times are epoch seconds."""

    attempt: int
    """Its number: 1 for the first try."""
    started_at: float | None
    ended_at: float | None
    success: bool
    error: ErrorInfo | None
    delay: float | None
    """Seconds waited after it before the next attempt (None after the last)."""

    @property
    def duration(self) -> float | None:
        """Seconds it ran, when both ends are known."""
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


class StepView(msgspec.Struct, frozen=True):
    """One journal entry: a step occurrence ``(name, count)``. ``state`` is as reported: a
    sleep whose ``wake_at`` has passed is ``done`` (the journal keeps it ``sleeping``)."""

    name: str
    count: int
    kind: str
    """``do``, ``sleep``, ``wait`` or ``rollback`` (a step's rollback handler, its ``count``
    the negated step's: :class:`~dynamic_workflows.core.journal.StepKind`)."""
    state: str
    """:class:`~dynamic_workflows.core.journal.StepState`."""
    value: Any
    """The result (``do``) or the received event (``wait``), decoded; ``None`` otherwise;
    ``"[REDACTED]"`` for the result of a :attr:`sensitive` step."""
    error: ErrorInfo | None
    attempt: int
    wake_at: float | None
    """A sleep's end, a retry's next attempt, or an event wait's deadline."""
    event_type: str | None
    started_at: float | None = None
    """When the step began: its first attempt, its sleep or its wait (None if not recorded)."""
    ended_at: float | None = None
    """When it ended: its last attempt, the end of its sleep, its event or its timeout (None
    while it goes on)."""
    attempts: list[AttemptView] = msgspec.field(default_factory=list)
    """A ``do`` step's attempts in order, bounded (the first and last ones of a long history:
    ``attempts_omitted`` are left out in between)."""
    attempts_total: int = 0
    """How many attempts the step made (``do``)."""
    has_rollback: bool = False
    """The step registered a rollback handler (``do``)."""
    sensitive: bool = False
    """Declared with ``config={"sensitive": "output"}``: :attr:`value` is redacted."""

    @property
    def attempts_omitted(self) -> int:
        """Attempts made but not in :attr:`attempts` (the middle of a long history)."""
        return self.attempts_total - len(self.attempts)

    @property
    def duration(self) -> float | None:
        """Seconds from its start to its end, when both are known."""
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


class InstanceDetails(msgspec.Struct, frozen=True):
    """An instance and its journal, in the order the steps were recorded."""

    instance: InstanceView
    steps: list[StepView]


class LogView(msgspec.Struct, frozen=True):
    """One line an instance's run printed or logged."""

    seq: int
    """Its number: lines are numbered in the order they were written, and a reader that
    follows them asks for what comes after the last number it saw."""
    at: float
    """When (epoch seconds)."""
    stream: str
    """``stdout``, ``stderr``, a logging level (``INFO``...), or ``dwf``: a note of ours
    (``dropped`` lines were dropped here, over the limits)."""
    text: str
    step: str | None
    """The step it belongs to; None: ``run()``'s own code, between steps."""
    count: int
    """The step's occurrence (0 without a step)."""
    attempt: int
    """The step's attempt (0 without a step)."""
    dropped: int = 0


class LogPage(msgspec.Struct, frozen=True):
    """A page of an instance's lines, oldest first. ``cursor``: the number to ask for what
    comes after (the last line's, or the ``after`` asked with when there is none);
    ``more``: the page is full (more lines may follow at once)."""

    lines: list[LogView]
    cursor: int
    more: bool
    bytes: int
    """Bytes the instance's lines take in all (against ``Limits.log_bytes_per_instance``)."""
    dropped: int
    """Lines dropped in all."""
    status: str
    """The instance's status now (a follower stops once it is final and the page is not
    full)."""


class StatusCounts(msgspec.Struct, frozen=True):
    """Instances per reported status: every status is present (zero included), in
    :attr:`Status.ALL` order; ``unknown`` only when some instance has it."""

    by_status: dict[str, int]

    def get(self, status: str) -> int:
        """How many instances are ``status``."""
        return self.by_status.get(status, 0)

    @property
    def total(self) -> int:
        """How many instances in all."""
        return sum(self.by_status.values())


class InstancePage(msgspec.Struct, frozen=True):
    """One page of a listing, newest first; ``total`` counts every match, not this page."""

    instances: list[InstanceView]
    total: int
    offset: int
    limit: int


def _check_paging(limit: object, offset: object) -> tuple[int, int]:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidQueryError(f"limit: must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidQueryError(f"offset: must be an integer >= 0, got {offset!r}")
    return limit, offset


def _check_status(status: str | None) -> None:
    if status is not None and status not in Status.ALL:
        raise InvalidQueryError(f"status: {status!r} is not one of {', '.join(Status.ALL)}")


def _creation_order(row: InstanceRow) -> tuple[float, int]:
    """The storage protocol's listing order (which lists it reversed: newest first)."""
    return (row.created_at, row.pk)


class EnginePolicy:
    """The per-tenant policy as the read side sees it (:class:`~.tenant_usage.TenantPolicy`),
    over the engine: a scope's caps and weight as stored by its last create
    (:mod:`.core.tenancy`), and the creates refused since the engine started."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def limits(self, scope: str) -> dict[str, Any] | None:
        state = await self.engine.storage.get_tenant(scope)
        if state is None:
            return None
        given = {k: v for k, v in state.policy.as_dict().items() if v is not None}
        if given.get("weight") == 1 and len(given) == 1:
            return None  # the default: no cap, weight 1
        return given

    async def throttled(self) -> dict[str, int]:
        return dict(self.engine.counters.throttled_by_scope)


class Queries:
    """The read side of one :class:`~dynamic_workflows.engine.Engine` (``engine.queries``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.tenant_policy: TenantPolicy | None = EnginePolicy(engine)
        """Where tenants' limits and throttled creates are read: by default the engine's own
        (each scope's stored policy, and the creates it refused); None: no limits and nothing
        throttled (see :mod:`.tenant_usage`)."""

    # -- views ------------------------------------------------------------------------------

    def view(self, row: InstanceRow) -> InstanceView:
        """The view of a stored row, its status as reported now."""
        return InstanceView(
            workflow=row.workflow,
            scope=row.scope,
            id=row.id,
            status=self.engine.reported_status(row),
            created_at=row.created_at,
            updated_at=row.updated_at,
            started_at=row.started_at,
            ended_at=row.ended_at,
            wake_at=row.wake_at,
            error=row.error,
            params_json=row.params,
            output_json=row.output,
            row=row,
        )

    def step_view(self, entry: JournalEntry, now: float | None = None) -> StepView:
        """The view of a journal entry (``now``: when to judge whether a sleep is over)."""
        if now is None:
            now = self.engine.clock.now()
        slept = (
            entry.kind == StepKind.SLEEP
            and entry.state == StepState.SLEEPING
            and entry.wake_at is not None
            and entry.wake_at <= now
        )
        if entry.value is None:
            value = None
        elif entry.sensitive:
            value = REDACTED  # (never decoded here: no view of it can leak)
        else:
            value = decode(entry.value)
        attempts: list[AttemptView] = []
        total = 0
        started_at = entry.started_at
        ended_at: float | None = None
        if entry.kind in (StepKind.DO, StepKind.ROLLBACK):
            known = attempts_of(entry)
            attempts = [
                AttemptView(a.attempt, a.start, a.end, a.success, a.error, a.delay)
                for a in known.kept
            ]
            total = known.total
            if attempts:
                started_at = attempts[0].started_at
            if entry.state in (StepState.DONE, StepState.FAILED):
                ended_at = entry.ended_at
        elif slept or (entry.kind == StepKind.SLEEP and entry.state == StepState.DONE):
            ended_at = entry.wake_at
        elif entry.kind == StepKind.WAIT and entry.state == StepState.DONE:
            stamp = value.get("timestamp") if isinstance(value, dict) else None
            ended_at = stamp if isinstance(stamp, int | float) else None
        elif entry.kind == StepKind.WAIT and entry.state == StepState.FAILED:
            ended_at = entry.wake_at  # its deadline
        return StepView(
            name=entry.name,
            count=entry.count,
            kind=entry.kind,
            state=StepState.DONE if slept else entry.state,
            value=value,
            error=entry.error,
            attempt=entry.attempt,
            wake_at=entry.wake_at,
            event_type=entry.event_type,
            started_at=started_at,
            ended_at=ended_at,
            attempts=attempts,
            attempts_total=total,
            has_rollback=entry.rollback,
            sensitive=entry.sensitive,
        )

    # -- tenants ------------------------------------------------------------------------------

    async def tenant(self, scope: str) -> TenantState | None:
        """A scope's stored row: its policy as last resolved by a create (``policy``) and its
        create bucket (``tokens`` at ``tokens_at``; None: full). None for a scope that never
        created an instance."""
        return await self.engine.storage.get_tenant(scope)

    async def tenants(self) -> list[TenantState]:
        """Every scope's row, by scope (see :meth:`tenant`). Creates refused per scope since
        the engine started are ``engine.counters.throttled_by_scope``."""
        return await self.engine.storage.list_tenants()

    # -- single instances -------------------------------------------------------------------

    async def get_instance(self, workflow: str, scope: str, id: str) -> InstanceView | None:
        """The instance ``id`` of ``workflow`` in ``scope``, or None."""
        row = await self.engine.storage.get_instance(workflow, scope, id)
        return None if row is None else self.view(row)

    async def find_instances(self, workflow: str, id: str) -> list[InstanceView]:
        """The instances of ``workflow`` with this ``id`` in every scope, oldest first (tenants
        may reuse an id; a trusted caller such as the admin API sees them all)."""
        return [self.view(r) for r in await self.engine.storage.find_instances(workflow, id)]

    async def journal(self, instance: InstanceView) -> list[StepView]:
        """The steps ``instance`` recorded, in recording order."""
        entries = await self.engine.storage.load_journal(instance.row.pk)
        now = self.engine.clock.now()
        return [self.step_view(e, now) for e in entries]

    async def describe(self, instance: InstanceView) -> InstanceDetails:
        """``instance`` with its journal."""
        return InstanceDetails(instance, await self.journal(instance))

    async def logs(
        self,
        instance: InstanceView,
        *,
        after: int = 0,
        step: tuple[str, int] | None = None,
        attempt: int | None = None,
        limit: int = 500,
    ) -> LogPage:
        """What ``instance``'s runs printed or logged, after the line numbered ``after`` (0:
        from the first), of one step ``(name, count)`` and/or one ``attempt`` when given; at
        most ``limit`` lines (1 to :data:`MAX_LIMIT`). ``after`` is the ``cursor`` of the
        previous page, which a follower asks again with until the instance ends."""
        limit, _ = _check_paging(limit, 0)
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise InvalidQueryError(f"after: must be an integer >= 0, got {after!r}")
        if attempt is not None and (isinstance(attempt, bool) or not isinstance(attempt, int)):
            raise InvalidQueryError(f"attempt: must be an integer, got {attempt!r}")
        rows = await self.engine.storage.load_logs(
            instance.row.pk, after=after, limit=limit, step=step, attempt=attempt
        )
        # The totals as of now: the row the view was made from may be older than these lines.
        current = await self.engine.storage.get_instance_by_pk(instance.row.pk)
        row = current if current is not None else instance.row
        return LogPage(
            [_log_view(seq, line) for seq, line in rows],
            rows[-1][0] if rows else after,
            len(rows) >= limit,
            row.log_bytes,
            row.log_dropped,
            self.engine.reported_status(row),
        )

    # -- counts and listings ----------------------------------------------------------------

    async def _counts(
        self, workflow: str | None, scope: str | None
    ) -> tuple[dict[str, int], list[InstanceRow] | None]:
        """Reported counts, and the stored ``running`` rows when some of them are parked runs
        (reported ``waiting``), else None."""
        for _ in range(3):
            stored = await self.engine.storage.count_instances(workflow, scope=scope)
            counts = {s: stored.get(s, 0) for s in _COUNTED}
            for status, n in stored.items():
                counts.setdefault(status, n)
            running = counts[Status.RUNNING]
            if not running or not self.engine.parked_runs():
                return counts, None
            # Running rows are live runs: few (at most concurrency + max_warm per engine).
            rows = await self.engine.storage.list_instances(
                workflow, scope=scope, status=Status.RUNNING, limit=running + 1
            )
            if len(rows) == running:
                break
            # A run moved between the two reads (on a shared database a parked run's row turns
            # `waiting` when its park commits): count again, or it would be counted twice.
        parked = sum(1 for r in rows if self.engine.reported_status(r) == Status.WAITING)
        if not parked:
            return counts, None
        counts[Status.RUNNING] -= parked
        counts[Status.WAITING] += parked
        return counts, rows

    async def count_instances(
        self, workflow: str | None = None, *, scope: str | None = None
    ) -> StatusCounts:
        """Instances per reported status, of one workflow and/or scope when given."""
        counts, _ = await self._counts(workflow, scope)
        return StatusCounts(counts)

    async def list_instances(
        self,
        workflow: str | None,
        *,
        scope: str | None = None,
        status: str | None = None,
        created_since: float | None = None,
        created_until: float | None = None,
        limit: int = 25,
        offset: int = 0,
    ) -> InstancePage:
        """A page of instances, newest first, filtered by scope, reported status and creation
        time (``created_since``/``created_until``: epoch seconds, inclusive).

        ``limit`` is 1 to :data:`MAX_LIMIT`, ``offset`` at least 0 (else InvalidQueryError); an
        offset past the last match gives an empty page, however large it is."""
        limit, offset = _check_paging(limit, offset)
        _check_status(status)
        counts, running = await self._counts(workflow, scope)
        dated = created_since is not None or created_until is not None
        if not dated and (running is None or status not in (Status.RUNNING, Status.WAITING)):
            total = counts.get(status, 0) if status is not None else sum(counts.values())
            if offset >= total:  # also keeps offsets storage cannot represent away from it
                return InstancePage([], total, offset, limit)
            rows = await self.engine.storage.list_instances(
                workflow, scope=scope, status=status, limit=limit, offset=offset
            )
            return InstancePage([self.view(r) for r in rows], total, offset, limit)
        # Storage cannot filter by date, nor by reported status while runs are parked: read
        # the candidates and filter here.
        matching = []
        for row in await self._candidates(workflow, scope, status, running):
            if (created_since is not None and row.created_at < created_since) or (
                created_until is not None and row.created_at > created_until
            ):
                continue
            view = self.view(row)
            if status is None or view.status == status:
                matching.append(view)
        return InstancePage(matching[offset : offset + limit], len(matching), offset, limit)

    # -- tenants ------------------------------------------------------------------------------

    async def tenant_limits(self, scope: str) -> dict[str, Any] | None:
        """The limits of the tenant ``scope``, or None (none set, or no policy)."""
        policy = self.tenant_policy
        return None if policy is None else await policy.limits(scope)

    async def throttled_by_scope(self) -> dict[str, int]:
        """Creates refused or delayed by a tenant's caps, per scope (empty without a policy)."""
        policy = self.tenant_policy
        return {} if policy is None else dict(await policy.throttled())

    async def tenant_usage(
        self,
        workflow: str | None = None,
        *,
        order: str = "live",
        limit: int = 100,
        offset: int = 0,
        unscoped: bool = True,
        steps: bool = True,
    ) -> TenantUsagePage:
        """Tenants (scopes) with their instances by reported status and their steps, of one
        workflow or of all (a tenant's instances of every workflow together), in one storage
        read however many instances there are: the page ``offset``/``limit`` (1 to
        :data:`MAX_LIMIT`) in ``order`` (``live``, ``instances``, ``steps`` or ``recent``:
        :data:`~.storage.base.SCOPE_ORDERS`), with this engine's counters and the tenants'
        policy. ``unscoped=False`` leaves out the instances created without a dispatcher;
        ``steps=False`` does not count steps (the costly part of the read)."""
        limit, offset = _check_paging(limit, offset)
        if order not in SCOPE_ORDERS:
            raise InvalidQueryError(f"order: {order!r} is not one of {', '.join(SCOPE_ORDERS)}")
        if order == "steps" and not steps:
            raise InvalidQueryError("order: 'steps' needs the steps counted")
        return await read_tenant_usage(
            self.engine,
            workflow,
            order=order,
            limit=limit,
            offset=offset,
            unscoped=unscoped,
            steps=steps,
            limits=self.tenant_limits,
            throttled=await self.throttled_by_scope(),
        )

    async def _candidates(
        self,
        workflow: str | None,
        scope: str | None,
        status: str | None,
        running: list[InstanceRow] | None,
    ) -> list[InstanceRow]:
        """Every stored row that may be reported as ``status``, newest first (``running``: the
        stored running rows, when some are parked runs)."""
        if running is not None and status == Status.RUNNING:
            return running
        if running is not None and status == Status.WAITING:
            rows = running + await self._scan(workflow, scope, Status.WAITING)
            rows.sort(key=_creation_order, reverse=True)
            return rows
        return await self._scan(workflow, scope, status)

    async def _scan(
        self, workflow: str | None, scope: str | None, status: str | None
    ) -> list[InstanceRow]:
        """Every stored row of ``status`` (None: any), newest first, read in chunks."""
        rows: list[InstanceRow] = []
        while True:
            chunk = await self.engine.storage.list_instances(
                workflow, scope=scope, status=status, limit=_SCAN_CHUNK, offset=len(rows)
            )
            rows.extend(chunk)
            if len(chunk) < _SCAN_CHUNK:
                return rows


def _log_view(seq: int, line: LogLine) -> LogView:
    return LogView(
        seq, line.at, line.stream, line.text, line.step, line.count, line.attempt, line.dropped
    )


async def wait_for_status(
    instance: Instance,
    statuses: str | Iterable[str] = FINITE_STATUSES,
    *,
    timeout: float | None = None,
    interval: float = 0.05,
    on_change: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Poll ``instance.status()`` until its status is one of ``statuses`` (default: a finite
    one: complete, errored, terminated); returns that status dict.

    ``timeout`` is in real seconds (TimeoutError after it; None waits for ever), whatever the
    engine's clock does; ``on_change`` is called with each status seen, once per change."""
    wanted = {statuses} if isinstance(statuses, str) else set(statuses)
    deadline = None if timeout is None else time.monotonic() + timeout
    last: str | None = None
    while True:
        status = await instance.status()
        current = str(status["status"])
        if on_change is not None and current != last:
            on_change(current)
        last = current
        if current in wanted:
            return status
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(
                f"instance {instance.id} is {current!r} after {timeout} s; "
                f"expected one of {sorted(wanted)}"
            )
        await asyncio.sleep(interval)
