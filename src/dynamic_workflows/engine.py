"""The engine: claims due instances, runs (replays) them, and applies what they ask for.

Flow of one wake-up::

    scheduler --claim_due--> storage          (instances whose wake_at has come, marked running)
        └─ run task: WorkflowStep(journal) + drive(entry.run(event, step))
              step results ----> LiveRun (the host's StepChannel) ----> storage (group commit)
              outcome:  Completed/Failed -> finish_run   Suspended -> suspend_run (hibernate)

A hibernating instance is a database row with ``wake_at`` set (or none, when only an event or
a resume can wake it): no task, no timer and no memory in this process.

Near wake-ups are the exception (``warm_horizon``): a run whose next wake-up is at most that far
away is kept live and *parked* instead of unwound, and instances due within it are claimed and
replayed ahead of time, so that at the due instant only the resumption is left to do. Parked
runs do not count against ``concurrency``; ``max_warm`` bounds them (the memory they hold).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import tracing
from .cluster import ClusterNode
from .core.attempts import Attempt, record_failure
from .core.clock import Clock, SystemClock, TimerHandle
from .core.codec import SerializationError, decode, encode
from .core.cron import parse_schedules, tick_instance_id
from .core.journal import (
    Cancelled,
    Completed,
    ErrorInfo,
    Failed,
    JournalEntry,
    RunOutcome,
    StepKind,
    StepState,
    Suspended,
)
from .core.limits import (
    DEFAULT_LIMITS,
    Limits,
    check_event_type,
    check_instance_id,
    check_size,
    check_step_result,
)
from .core.logs import LogBook, LogLine
from .core.replay import drive
from .core.retention import Retention, parse_retention
from .core.rollback import rollback_pending, run_with_rollback
from .core.step import RunState, WorkflowStep
from .core.tenancy import DEFAULT_POLICY, TenantPolicy
from .core.tracebacks import last_frame
from .core.transitions import ROLLING_BACK, rolling_back
from .errors import (
    CannotTerminateError,
    ConfigurationError,
    InstanceAlreadyExistsError,
    InstanceNotFoundError,
    LimitExceededError,
    RunCancelled,
    StorageError,
    TenantLimitError,
    UnknownWorkflowError,
    WorkflowError,
)
from .gcpolicy import QUIET_BEFORE_WAKE_UP
from .queries import Queries
from .schedules import CronTriggers
from .storage.base import (
    ACTIVE_STATUSES,
    FINITE_STATUSES,
    Claim,
    InstanceRow,
    LogWrite,
    NewInstance,
    Status,
    Storage,
    WaitResult,
)
from .sweeper import DEFAULT_SWEEP_BATCH, DEFAULT_SWEEP_INTERVAL, Sweeper
from .workers import ExecutionContext

if TYPE_CHECKING:
    from .binding import WorkflowBinding

__all__ = ["Engine", "WorkflowDefinition"]

log = logging.getLogger("dynamic_workflows.engine")

DEFAULT_WARM_HORIZON = 5.0
"""Seconds: a wake-up at most this far away keeps its run live (parked) rather than hibernated,
and instances due within it are replayed ahead of time."""

DEFAULT_MAX_WARM = 20_000
"""Parked runs at most (each holds its coroutines, a few KiB)."""

BLOCKED_RECHECK = 0.1
"""Seconds: how soon the scheduler claims again when due work was left unclaimed (capped)."""

RECORD_RETRY_FIRST = 0.1
RECORD_RETRY_MAX = 10.0
"""Seconds: a run's final write that failed (a full disk) is retried after the first, the delay
doubling up to the second, for as long as it fails (see ``Engine._record``)."""

EntrypointFactory = Callable[[ExecutionContext, Any], Any]


@dataclass
class WorkflowDefinition:
    """A registered workflow: the class (or factory) whose ``run`` the engine drives."""

    name: str
    factory: EntrypointFactory
    env: Any = None
    concurrency: int | None = None
    """At most this many instances of it hold a run slot at once (Cloudflare's
    ``concurrency.limit``); None: no limit but the engine's."""
    schedules: tuple[str, ...] = ()
    """Cron expressions: each tick creates an instance (schedules.py)."""
    retention: Retention | None = None
    """The workflow's default retention (a create's ``retention`` fields come first)."""


@dataclass
class _Counters:
    runs: int = 0
    steps_committed: int = 0
    completed: int = 0
    errored: int = 0
    suspended: int = 0
    runs_by_workflow: dict[str, int] = field(default_factory=dict)
    steps_by_workflow: dict[str, int] = field(default_factory=dict)
    # Per tenant scope (one entry per tenant that created or ran something since the start):
    # what /metrics' bounded per-tenant series are summed from.
    created_by_scope: dict[str, int] = field(default_factory=dict)
    steps_by_scope: dict[str, int] = field(default_factory=dict)
    throttled_by_scope: dict[str, int] = field(default_factory=dict)
    """Creates refused by a tenant's policy (:class:`TenantLimitError`), per scope."""


def _wake(fut: asyncio.Future[bytes | None]) -> None:
    if not fut.done():
        fut.set_result(None)


class StepWrites:
    """The journal writes of one loop iteration, handed to the storage as one operation.

    Every run whose step completed (or began a sleep, or failed) in the same loop iteration
    shares one storage operation, one commit and one acknowledgement: with ten thousand sleepers
    resuming at the same instant, the writes wait until they have all run their next step, rather
    than each handing the writer thread its own operation in between.

    The lines runs printed (``LogWrite``) go with them, in the same storage call: a step's
    lines are committed with its result."""

    __slots__ = ("_engine", "_futures", "_logs", "_scheduled", "_waiters", "_writes")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writes: list[tuple[int, int, JournalEntry]] = []
        self._futures: list[asyncio.Future[None]] = []
        self._logs: list[LogWrite] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._scheduled = False

    def add(
        self, pk: int, generation: int, entry: JournalEntry, logs: LogWrite | None = None
    ) -> asyncio.Future[None]:
        """Queue a write (and the run's lines, ``logs``); the future is done once it is
        committed, and raises :class:`RunCancelled` if the run was stale (its write was not
        kept)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._writes.append((pk, generation, entry))
        self._futures.append(fut)
        if logs is not None:
            self._logs.append(logs)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self.flush)
        return fut

    def add_logs(self, logs: LogWrite) -> asyncio.Future[None]:
        """Queue a write of a run's lines alone (its last ones); the future is done once the
        storage call is over, whatever came of it (lines are never worth failing a run)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._logs.append(logs)
        self._waiters.append(fut)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self.flush)
        return fut

    def flush(self) -> None:
        """Hand what is queued to the storage now."""
        self._scheduled = False
        if not self._writes and not self._logs:
            return
        writes, futures = self._writes, self._futures
        self._writes, self._futures = [], []
        logs, waiters = self._logs, self._waiters
        self._logs, self._waiters = [], []
        self._engine.spawn(self._write(writes, futures, logs, waiters))

    async def _write(
        self,
        writes: list[tuple[int, int, JournalEntry]],
        futures: list[asyncio.Future[None]],
        logs: list[LogWrite],
        waiters: list[asyncio.Future[None]],
    ) -> None:
        storage = self._engine.storage
        try:
            if logs:
                kept = await storage.record_steps(writes, self._engine.clock.now(), logs=logs)
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
            else:
                kept = await storage.record_steps(writes, self._engine.clock.now())
        except StorageError as exc:
            for waiter in waiters:  # (lines are never worth failing a run)
                if not waiter.done():
                    waiter.set_result(None)
            # Not the workflow's failure: the runs stop and their instances go back to the
            # queue (Cancelled -> release_run, retried while the storage is down); a replay
            # finds whichever of these writes did commit (the outcome of a lost connection's
            # last write is unknown).
            log.warning(
                "step writes of %d run(s) failed, their runs are handed back: %s",
                len({pk for pk, _, _ in writes}),
                exc,
            )
            for fut in futures:
                if not fut.done():
                    fut.set_exception(RunCancelled())
                    fut.exception()
            return
        except Exception as exc:
            for fut in futures:
                if not fut.done():
                    fut.set_exception(exc)
                    fut.exception()  # retrieved: a waiter that was cancelled meanwhile is gone
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            return
        except BaseException:
            for fut in futures + waiters:
                fut.cancel()
            raise
        counters = self._engine.counters
        by_workflow = counters.steps_by_workflow
        by_scope = counters.steps_by_scope
        live_runs = self._engine._live
        for fut, ok, (pk, _, entry) in zip(futures, kept, writes, strict=True):
            if ok and entry.kind == StepKind.DO and entry.state == StepState.DONE:
                counters.steps_committed += 1
                run = live_runs.get(pk)
                if run is not None:
                    name = run.row.workflow
                    by_workflow[name] = by_workflow.get(name, 0) + 1
                    scope = run.row.scope
                    by_scope[scope] = by_scope.get(scope, 0) + 1
            if fut.done():
                continue
            if ok:
                fut.set_result(None)
            else:
                fut.set_exception(RunCancelled())
                fut.exception()


class LiveRun:
    """The host side of one live run: it implements
    :class:`~dynamic_workflows.core.channel.StepChannel` over the storage, and keeps the timers and
    wake-ups of the run's blocked branches."""

    def __init__(self, engine: Engine, row: InstanceRow, journal: list[JournalEntry]) -> None:
        self.engine = engine
        self.row = row
        self.pk = row.pk
        self.generation = row.generation
        self.state = RunState()
        self.task: asyncio.Task[None] | None = None
        self.stop_reason: str | None = None
        # OpenTelemetry spans (tracing.py), only while tracing is on.
        self.span: Any = None
        self._spans: dict[tuple[str, int], Any] | None = None
        self._known = {(e.name, e.count) for e in journal}
        self._futures: dict[tuple[str, int], asyncio.Future[bytes | None]] = {}
        self._timers: list[TimerHandle] = []
        self._hold: asyncio.Future[None] | None = None
        self.control_notices = 0
        """Control notifications heard for this run (see Engine._apply_stored_control)."""
        self.terminating = row.rollback == ROLLING_BACK
        """The instance is being terminated with rollback: this run replays in terminating
        mode and ends it ``terminated`` (see core/rollback.py)."""
        self._rollback_shown = rolling_back(row.rollback)
        """The instance's status reports its rollback phase ``running`` already (a terminate
        with rollback marked it, or an earlier run of this one began it)."""
        self._closed = False
        # Attempt history (core/attempts.py): when each open attempt began, and the failed
        # attempts of the steps that have some.
        self._starts: dict[tuple[str, int], float] = {}
        self._now = engine.clock.now  # (read at every attempt's start and end)
        self._attempts: dict[tuple[str, int], bytes] = {}
        # What the run's code printed (core/logs.py), made when it first prints.
        self._book: LogBook | None = None
        # Sleeps and back-offs are armed when their step waits (see wake); event deadlines
        # now, since expiring a wait is the host's own write.
        for e in journal:
            if e.state == StepState.WAITING:
                self._arm_deadline(e.name, e.count, e.wake_at)
            elif e.attempts is not None:
                self._attempts[(e.name, e.count)] = e.attempts

    # -- plumbing -------------------------------------------------------------------------

    def _future(self, key: tuple[str, int]) -> asyncio.Future[bytes | None]:
        fut = self._futures.get(key)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._futures[key] = fut
        return fut

    def _resolve(self, name: str, count: int, value: bytes | None) -> None:
        fut = self._future((name, count))
        if not fut.done():
            fut.set_result(value)

    def _arm(self, fut: asyncio.Future[bytes | None], wake_at: float) -> None:
        if self._closed:
            return
        # The timer resolves the future itself, with no lookup when it fires: ten thousand
        # sleepers due at the same instant all fire before the first of them runs.
        self._timers.append(self.engine.clock.call_at(wake_at, functools.partial(_wake, fut)))

    def _arm_deadline(self, name: str, count: int, deadline: float | None) -> None:
        if self._closed or deadline is None:
            return

        def fire() -> None:
            if not self._closed:
                self.engine.spawn(self._expire(name, count))

        self._timers.append(self.engine.clock.call_at(deadline, fire))

    async def _expire(self, name: str, count: int) -> None:
        error = ErrorInfo("WorkflowTimeoutError", f'step.wait_for_event("{name}") timed out')
        now = self.engine.clock.now()
        try:
            result = await self.engine.storage.expire_wait(
                self.pk, self.generation, name, count, error, now
            )
        except StorageError as exc:
            log.warning(
                "expiring wait %r of instance pk %d failed, retrying: %s", name, self.pk, exc
            )
            self._arm_deadline(name, count, now + 1.0)
            return
        if result is not None:
            timed_out, value = result
            self._resolve(name, count, None if timed_out else value)

    def _new_step(self, name: str, count: int) -> None:
        key = (name, count)
        if key in self._known:
            return
        self._known.add(key)
        if len(self._known) > self.engine.limits.max_steps:
            raise LimitExceededError(
                f"step {name!r}: the instance would exceed the limit of "
                f"{self.engine.limits.max_steps:,} steps"
            )

    def _write(self, entry: JournalEntry) -> asyncio.Future[None]:
        """Queue ``entry`` (with the lines printed since the last write); the future raises
        RunCancelled if the run is stale (it must stop)."""
        book = self._book
        logs = None if book is None or not book.dirty else self._take_logs(book)
        return self.engine.writes.add(self.pk, self.generation, entry, logs)

    # -- what the run printed ---------------------------------------------------------------

    @property
    def log_room(self) -> int:
        """Bytes the instance's logs may still take."""
        if self._book is not None:
            return self._book.room
        return max(0, self.engine.limits.log_bytes_per_instance - self.row.log_bytes)

    def log(self, lines: list[LogLine]) -> None:
        """Lines the run's code printed or logged: kept within the limits (the sandbox's
        worker bounded them already; this is where it counts), stored with the next write."""
        book = self._book
        if book is None:
            limits = self.engine.limits
            book = self._book = LogBook(
                limits.log_bytes_per_attempt,
                limits.log_bytes_per_instance - self.row.log_bytes,
                limits.log_bytes_per_instance,
            )
        had_room = book.room > 0
        book.add_all(lines)
        if had_room and book.room <= 0:
            row = self.row
            log.warning(
                "instance %s of %s: its logs reached their limit of %d bytes; later lines are "
                "dropped and counted",
                row.id,
                row.workflow,
                self.engine.limits.log_bytes_per_instance,
                extra={
                    "event": "limit.hit",
                    "limit": "log_bytes_per_instance",
                    "workflow": row.workflow,
                    "scope": row.scope,
                    "instance": row.id,
                },
            )

    def _take_logs(self, book: LogBook) -> LogWrite:
        taken = book.take(time.time())  # (lines carry wall-clock times, their notes too)
        return LogWrite(self.pk, self.generation, taken.lines, taken.bytes, taken.dropped)

    async def flush_logs(self) -> None:
        """Store the lines not stored yet (the run is over: before its end is recorded)."""
        book = self._book
        if book is not None and book.dirty:
            await self.engine.writes.add_logs(self._take_logs(book))

    def deliver(self, name: str, count: int, value: bytes) -> None:
        """An event was consumed for the step ``(name, count)`` of this run."""
        self._resolve(name, count, value)

    def deliver_from(self, journal: list[JournalEntry]) -> int:
        """Deliver every event the stored ``journal`` shows consumed for a wait this run is
        blocked on (another node stored it); returns how many were delivered."""
        delivered = 0
        for e in journal:
            if e.kind != StepKind.WAIT or e.state != StepState.DONE or e.value is None:
                continue
            fut = self._futures.get((e.name, e.count))
            if fut is not None and not fut.done():
                fut.set_result(e.value)
                delivered += 1
        return delivered

    def cancel(self, reason: str) -> None:
        self.stop_reason = reason
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def hold_in_storage(self, wake_at: float | None, *, parked: bool = True) -> None:
        """Record that this run parked until ``wake_at`` (or went on, ``parked=False``) on a
        shared database. The writes are chained so they commit in the order they happened;
        the run's own writes need not wait for them (a parked row is still its run's)."""
        before = self._hold
        self._hold = asyncio.ensure_future(self._hold_write(before, wake_at, parked))
        self.engine.spawn(self._hold)

    async def _hold_write(
        self, before: asyncio.Future[None] | None, wake_at: float | None, parked: bool
    ) -> None:
        if before is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await before
        storage, now = self.engine.storage, self.engine.clock.now()
        with contextlib.suppress(Exception):  # the run's next write or suspension settles it
            if parked:
                await storage.park_run(self.pk, self.generation, wake_at, now)
            else:
                await storage.unpark_run(self.pk, self.generation, now)

    async def _begin_rollback(self) -> None:
        try:
            await self.engine.storage.begin_rollback(
                self.pk, self.generation, self.engine.clock.now()
            )
        except StorageError as exc:  # the run goes on; its end records the outcome anyway
            log.warning(
                "instance pk %d: recording that its rollback phase began failed: %s", self.pk, exc
            )

    def close(self) -> None:
        self._closed = True
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for fut in self._futures.values():
            if not fut.done():
                fut.cancel()

    # -- StepChannel ------------------------------------------------------------------------

    def complete(
        self,
        name: str,
        count: int,
        value: bytes,
        attempt: int = 1,
        rollback: bool = False,
        sensitive: bool = False,
    ) -> asyncio.Future[None]:
        # Not a coroutine: the future of the write is all there is to await (a step's hot path).
        self._new_step(name, count)
        check_step_result(value, name, self.engine.limits)
        key = (name, count)
        if self._spans is not None:
            self._end_span(key, "ok")
        return self._write(
            JournalEntry(
                name,
                count,
                StepKind.DO if count > 0 else StepKind.ROLLBACK,
                StepState.DONE,
                value=value,
                attempt=attempt,
                started_at=self._starts.pop(key, None),
                ended_at=self._now(),
                attempts=self._attempts.get(key),
                rollback=rollback,
                sensitive=sensitive,
            )
        )

    async def fail(
        self,
        name: str,
        count: int,
        attempt: int,
        error: ErrorInfo,
        retry_in: float | None,
        rollback: bool = False,
        sensitive: bool = False,
    ) -> float | None:
        self._new_step(name, count)
        key = (name, count)
        now = self.engine.clock.now()
        started = self._starts.pop(key, None)
        # The step's error keeps its traceback; its history, the error alone (20 of them).
        brief = error if error.traceback is None else ErrorInfo(error.name, error.message)
        if self._spans is not None:
            self._end_span(key, "failed" if retry_in is None else "retrying")
        history = self._attempts[key] = record_failure(
            self._attempts.get(key), Attempt(attempt, started, now, False, brief, retry_in)
        )
        wake_at = None if retry_in is None else now + retry_in
        await self._write(
            JournalEntry(
                name,
                count,
                StepKind.DO if count > 0 else StepKind.ROLLBACK,
                StepState.FAILED if retry_in is None else StepState.RETRYING,
                error=error,
                attempt=attempt,
                wake_at=wake_at,
                started_at=started,
                ended_at=now,
                attempts=history,
                rollback=rollback,
                sensitive=sensitive,
            )
        )
        return wake_at

    async def sleep(self, name: str, count: int, until: float | None, seconds: float) -> float:
        self._new_step(name, count)
        now = self.engine.clock.now()
        wake_at = until if until is not None else now + seconds
        sleeping = JournalEntry(
            name, count, StepKind.SLEEP, StepState.SLEEPING, wake_at=wake_at, started_at=now
        )
        await self._write(sleeping)
        return wake_at

    async def wait_for_event(
        self, name: str, count: int, event_type: str, timeout: float
    ) -> WaitResult:
        self._new_step(name, count)
        self._future((name, count))  # an event delivered before we return must not be lost
        now = self.engine.clock.now()
        try:
            result = await self.engine.storage.register_wait(
                self.pk, self.generation, name, count, event_type, now + timeout, now
            )
        except StorageError as exc:  # handed back, as a failed step write is (StepWrites)
            log.warning("registering wait %r of instance pk %d failed: %s", name, self.pk, exc)
            raise RunCancelled() from None
        if result is None:
            raise RunCancelled()
        if result.value is None:
            self._arm_deadline(name, count, result.deadline)
        return result

    async def wake(self, name: str, count: int, timer: float | None = None) -> bytes | None:
        key = (name, count)
        fut = self._future(key)
        if timer is not None and not fut.done():
            # A sleep's or back-off's timer is armed by its waiter, so a sandboxed run that
            # waits for its timers by itself (see Run.local_timers) costs the host none.
            self._arm(fut, timer)
        value = await fut
        # A wake-up is spent once awaited: a step that fails again in this same run (a gathered
        # branch kept it from hibernating) needs a fresh one for its next back-off, or it would
        # find this one done and retry at once.
        if self._futures.get(key) is fut:
            del self._futures[key]
        return value

    def attempt_started(
        self,
        name: str,
        count: int,
        attempt: int,
        retry_in: float | None,
        rollback: bool = False,
    ) -> None:
        # Only its start is noted, for the attempt history: in-process, an attempt cannot die
        # without the engine dying too (the crash recovery replays it); a sandboxed one that
        # dies is failed by the bridge.
        self._starts[(name, count)] = self._now()
        if count < 0 and not self._rollback_shown:
            # A rollback handler starts, and nothing marked the phase: run() raised. The status
            # says `running` from now on (the run's end records the outcome). One write per
            # run, beside the run's own: it only shows what is going on, so it is not awaited.
            self._rollback_shown = True
            self.engine.spawn(self._begin_rollback())
        tracer = tracing.TRACER
        if tracer is not None:
            if self._spans is None:
                self._spans = {}
            row = self.row
            self._spans[(name, count)] = tracer.start_attempt(
                self.span, row.scope, row.workflow, row.id, name, count, attempt
            )

    def _end_span(self, key: tuple[str, int], outcome: str) -> None:
        assert self._spans is not None
        span = self._spans.pop(key, None)
        if span is not None:
            tracing.RunTracer.end(span, outcome)


class Engine:
    """Durable execution of registered workflows over one :class:`Storage`.

    Use as ``async with Engine(storage) as engine:`` (or ``start()``/``stop()``).
    """

    def __init__(
        self,
        storage: Storage,
        *,
        clock: Clock | None = None,
        limits: Limits = DEFAULT_LIMITS,
        concurrency: int = 256,
        id_factory: Callable[[], str] | None = None,
        warm_horizon: float = DEFAULT_WARM_HORIZON,
        max_warm: int = DEFAULT_MAX_WARM,
        tenant_defaults: TenantPolicy = DEFAULT_POLICY,
        fair: bool = True,
        retention: Retention | dict[str, Any] | None = None,
        sweep_interval: float = DEFAULT_SWEEP_INTERVAL,
        sweep_batch: int = DEFAULT_SWEEP_BATCH,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if warm_horizon < 0 or max_warm < 0:
            raise ValueError("warm_horizon and max_warm cannot be negative")
        self.warm_horizon = float(warm_horizon)
        self.max_warm = max_warm
        self.storage = storage
        self.clock: Clock = clock or SystemClock()
        self.limits = limits
        self.concurrency = concurrency
        self.tenant_defaults = tenant_defaults
        """The policy of a scope whose binding brings none (``with_scope(scope, limits=)``
        merges over it): the project's ``dynamic_workflows.tenants``."""
        self.fair = fair
        """Claim across scopes in weighted turns (True), or first come first claimed."""
        self._stored_policy: dict[str, TenantPolicy] = {}
        self.counters = _Counters()
        self._id_factory = id_factory or (lambda: str(uuid.uuid4()))
        self._workflows: dict[str, WorkflowDefinition] = {}
        self._live: dict[int, LiveRun] = {}
        self._parked: set[int] = set()
        # Set when a run whose wake-up was near hibernated all the same (its sandbox had no room
        # to keep it, or max_warm was reached): claiming ahead again would replay it in a loop.
        self._no_claims_ahead_until = 0.0
        self._background: set[asyncio.Task[Any]] = set()
        self._poke = asyncio.Event()
        self.writes = StepWrites(self)
        self.queries = Queries(self)
        """The read side: listings, counts, views and journals (:mod:`dynamic_workflows.queries`);
        the admin API, metrics and CLI read through it, never from ``storage``."""
        self._scheduler: asyncio.Task[None] | None = None
        self._stopping = False
        if not isinstance(retention, Retention):
            retention = parse_retention(retention)
        self.retention: Retention | None = retention
        """The project's default retention, ``{"successRetention", "errorRetention"}`` or a
        Retention (None: finished instances are kept forever)."""
        self.triggers = CronTriggers(
            storage, self.clock, make=self._tick_instance, fired=self._fired
        )
        """The workflows' cron schedules (schedules.py)."""
        self.sweeper = Sweeper(storage, self.clock, interval=sweep_interval, batch=sweep_batch)
        """Deletes finished instances whose retention ran out (sweeper.py)."""
        self.cluster: ClusterNode | None = None
        """This node's leases and notifications, on a shared database (PostgreSQL)."""
        if getattr(storage, "shared", False):  # a test's storage wrapper may not say
            self.cluster = ClusterNode(
                storage,
                self.clock,
                live=self._live.keys,
                on_lost=self._lease_lost,
                on_event=self._event_elsewhere,
                on_control=self._control_elsewhere,
                poke=self.poke,
            )

    # -- registration ---------------------------------------------------------------------

    def register(
        self,
        name: str,
        entrypoint: EntrypointFactory | type,
        *,
        env: Any = None,
        concurrency: int | None = None,
        schedules: str | Sequence[str] | None = None,
        retention: Retention | dict[str, Any] | None = None,
    ) -> WorkflowBinding:
        """Register the workflow ``name`` run by ``entrypoint(ctx, env).run(event, step)``.

        ``concurrency``: at most that many of its instances run at once, on every node sharing
        the database (others stay queued); ``schedules``: a cron expression or a list of them
        (wrangler's ``schedules``), each tick creating an instance; ``retention``: the
        workflow's default retention (``{"successRetention", "errorRetention"}`` or a
        :class:`Retention`). Bad values raise ConfigurationError naming the field. Schedules
        registered while the engine runs start at once (with their next tick)."""
        from .binding import WorkflowBinding

        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise ConfigurationError(
                f"workflow {name!r}: concurrency.limit must be a positive integer, "
                f"got {concurrency!r}"
            )
        crons = parse_schedules(schedules, what=f"workflow {name!r}: schedules")
        if not isinstance(retention, Retention):
            retention = parse_retention(retention, what=f"workflow {name!r}: retention")
        self._workflows[name] = WorkflowDefinition(
            name,
            entrypoint,
            env,
            concurrency=concurrency,
            schedules=crons,
            retention=retention,
        )
        self.triggers.set(name, crons)
        return WorkflowBinding(self, name)

    def workflow_limits(self) -> dict[str, int]:
        """The concurrency limit of each registered workflow that has one."""
        return {
            name: d.concurrency for name, d in self._workflows.items() if d.concurrency is not None
        }

    async def tenant_policy(self, scope: str) -> TenantPolicy | None:
        """The policy stored for ``scope`` (as last resolved by a create), None if the scope
        never created an instance."""
        state = await self.storage.get_tenant(scope)
        return None if state is None else state.policy

    def throttled_creates(self, scope: str | None = None) -> int:
        """Creates refused by a tenant's policy since this engine started: of ``scope``, or
        of every scope (``counters.throttled_by_scope`` has them per scope)."""
        by_scope = self.counters.throttled_by_scope
        return sum(by_scope.values()) if scope is None else by_scope.get(scope, 0)

    def set_env(self, name: str, env: Any) -> None:
        """Replace the env a registered workflow's entrypoint is built with (an env often holds
        bindings to this very engine, so it can only be made after ``register``)."""
        self._definition(name).env = env

    def workflow(self, name: str, *, scope: str = "") -> WorkflowBinding:
        """The binding of a registered workflow (``scope`` isolates instance ids)."""
        from .binding import WorkflowBinding

        if name not in self._workflows:
            raise UnknownWorkflowError(f"no workflow named {name!r} is registered")
        return WorkflowBinding(self, name, scope=scope)

    @property
    def workflows(self) -> dict[str, WorkflowDefinition]:
        return dict(self._workflows)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open storage, requeue what a crash left running, and start scheduling."""
        if self._scheduler is not None:
            return
        await self.storage.open()
        requeued = await self.storage.recover(self.clock.now())
        if requeued:
            log.info("resuming %d instance(s) interrupted by a stop or crash", requeued)
        if self.cluster is not None:
            await self.cluster.start()
        self._stopping = False
        self._scheduler = asyncio.create_task(self._schedule(), name="dwf-scheduler")
        await self.triggers.start()
        self.sweeper.start()

    async def stop(self) -> None:
        """Stop scheduling, hand live runs back to the queue (their uncommitted steps run again
        on the next start) and close storage."""
        self._stopping = True
        await self.triggers.stop()
        await self.sweeper.stop()
        if self._scheduler is not None:
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler
            self._scheduler = None
        if self.cluster is not None:
            await self.cluster.stop()
        live = list(self._live.values())
        for run in live:
            run.cancel("shutdown")
        tasks = [r.task for r in live if r.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.writes.flush()
        if self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        await self.storage.close()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def spawn(self, coro: Any) -> None:
        """Run ``coro`` in the background (a group commit, an expired wait); :meth:`stop` waits
        for it."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def poke(self) -> None:
        """Tell the scheduler that something may have become due."""
        self._poke.set()

    # -- several nodes (see cluster.py) ---------------------------------------------------

    def _lease_lost(self, pk: int) -> None:
        live = self._live.get(pk)
        if live is not None:
            live.cancel("lease lost")  # not "shutdown": the instance is another node's now

    def _event_elsewhere(self, pk: int) -> None:
        live = self._live.get(pk)
        if live is not None:
            self.spawn(self._deliver_stored(live))

    async def _deliver_stored(self, live: LiveRun) -> None:
        with contextlib.suppress(Exception):  # a missed delivery is retried by the wake-up
            live.deliver_from(await self.storage.load_journal(live.pk))

    def _control_elsewhere(self, pk: int) -> None:
        live = self._live.get(pk)
        if live is not None:
            live.control_notices += 1
            self.spawn(self._apply_stored_control(live, live.control_notices))

    async def _apply_stored_control(self, live: LiveRun, notice: int) -> None:
        """A control action taken on another node (or here) for a run live here: follow the
        stored row, as :meth:`control` does for an action taken here. Only the latest notice's
        read is followed: reads of two quick actions (a pause, then a resume) may come back in
        either order, and the older one would undo the newer."""
        try:
            row = await self.storage.get_instance_by_pk(live.pk)
        except Exception:
            return  # the run's own writes are fenced; the next renewal or write finds out
        if notice != live.control_notices:
            return
        if row is None or row.generation != live.generation:
            live.cancel("terminate" if row is None else "restart")
        elif row.status == Status.WAITING_FOR_PAUSE and not live.state.paused:
            live.state.set_paused(True)
        elif row.status == Status.RUNNING and live.state.paused:
            live.state.set_paused(False)
        elif row.status not in ACTIVE_STATUSES:
            live.cancel("control")

    # -- scheduling -----------------------------------------------------------------------

    async def _schedule(self) -> None:
        while True:
            try:
                await self._schedule_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler iteration failed; retrying in 1 s")
                await asyncio.sleep(1.0)

    def _warm_room(self) -> int:
        """How many more runs may be parked."""
        if self.warm_horizon <= 0:
            return 0
        return max(0, self.max_warm - len(self._parked))

    async def _schedule_once(self) -> None:
        self._poke.clear()
        free = self.concurrency - (len(self._live) - len(self._parked))
        lead = 0.0
        claimed_at: float | None = None
        if free > 0:
            now = claimed_at = self.clock.now()
            limits = self.workflow_limits()
            claims = await self.storage.claim_due(now, free, fair=self.fair, workflow_limits=limits)
            ahead = now >= self._no_claims_ahead_until
            room = min(free - len(claims), self._warm_room()) if ahead else 0
            if room > 0:
                # Due soon: replay now, park until the instant (see the module's docstring).
                claims += await self.storage.claim_due(
                    now, room, ahead=self.warm_horizon, fair=self.fair, workflow_limits=limits
                )
            for claim in claims:
                self._start_run(claim)
            if claims:
                return
            nxt = await self.storage.next_due()
            if ahead and self._warm_room() > 0:
                lead = self.warm_horizon
        else:
            nxt = None
        if nxt is not None:
            nxt -= lead
        if nxt is not None and nxt <= self.clock.now():
            if claimed_at is None or nxt > claimed_at:
                return  # it came due after the claim looked: claim again
            # Due work the claim did not take: held by a cap (a tenant's max_running, a
            # workflow's concurrency) or by another node's claim in flight. A run that ends
            # here pokes; one that ends on another node is not announced: look again soon.
            nxt = self.clock.now() + BLOCKED_RECHECK
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._poke.wait())]
        if nxt is not None:
            waiters.append(asyncio.ensure_future(self.clock.sleep_until(nxt)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    def _start_run(self, claim: Claim) -> None:
        row = claim.instance
        live = LiveRun(self, row, claim.journal)
        self._live[row.pk] = live
        live.task = asyncio.create_task(self._run(live, claim), name=f"dwf-run-{row.id}")

    async def _run(self, live: LiveRun, claim: Claim) -> None:
        row = claim.instance
        counters = self.counters
        counters.runs += 1
        counters.runs_by_workflow[row.workflow] = counters.runs_by_workflow.get(row.workflow, 0) + 1
        tracer = tracing.TRACER
        if tracer is not None:
            live.span = tracer.start_run(row.scope, row.workflow, row.id)
        try:
            outcome = await self._execute(live, claim)
            if live.span is not None:
                tracing.RunTracer.end(live.span, type(outcome).__name__.lower())
                live.span = None
            await live.flush_logs()
            live.close()
            await self._record(live, lambda: self._apply(live, outcome))
        except Exception:
            log.exception("run of instance %s failed inside the engine", row.id)
            with contextlib.suppress(Exception):
                await self._record(
                    live, lambda: self.storage.release_run(row.pk, row.generation, self.clock.now())
                )
        finally:
            if live.span is not None:  # the engine itself failed, or the run was cancelled
                tracing.RunTracer.end(live.span, "engine-error")
                live.span = None
            live.close()
            if self._live.get(row.pk) is live:
                del self._live[row.pk]
                self._parked.discard(row.pk)
            self.poke()

    async def _record(self, live: LiveRun, write: Callable[[], Awaitable[object]]) -> None:
        """Make a run's final write (its outcome, or handing it back), keeping the outcome
        through StorageErrors: the write is retried with backoff while this engine runs, so
        that once the database takes writes again (space freed on a full disk) the instance
        reaches its real end state. Given up once, it stayed ``running`` until the next
        start's recovery. On :meth:`stop` it is given up: the next start replays the run."""
        delay = RECORD_RETRY_FIRST
        failures = 0
        while True:
            try:
                await write()
            except StorageError as exc:
                failures += 1
                if self._stopping:
                    log.warning(
                        "instance %s: its run's end is not recorded (%s); the next start "
                        "replays it",
                        live.row.id,
                        exc,
                    )
                    return
                if failures == 1:
                    log.warning(
                        "instance %s: cannot record its run's end (%s); retrying until the "
                        "database takes writes again",
                        live.row.id,
                        exc,
                    )
                await self.clock.sleep_until(self.clock.now() + delay)
                delay = min(delay * 2, RECORD_RETRY_MAX)
            else:
                if failures:
                    log.info(
                        "instance %s: its run's end is recorded after %d failed write(s)",
                        live.row.id,
                        failures,
                    )
                return

    async def _execute(self, live: LiveRun, claim: Claim) -> RunOutcome:
        row = claim.instance
        definition = self._workflows.get(row.workflow)
        if definition is None:
            return Failed(
                ErrorInfo(
                    "UnknownWorkflowError", f"no workflow named {row.workflow!r} is registered"
                )
            )
        now = self.clock.now()
        step = WorkflowStep(
            live,
            claim.journal,
            clock=self.clock,
            now=now,
            state=live.state,
            limits=self.limits,
            terminating=live.terminating,
            # No capture of what the run prints here; a loader that installs one says so.
            logs=False,
        )
        event = {
            "payload": decode(row.params),
            "timestamp": _dt.datetime.fromtimestamp(row.created_at, _dt.UTC),
            "instanceId": row.id,
            "workflowName": row.workflow,
        }
        if row.schedule is not None:  # created by a cron tick: Cloudflare's WorkflowCronSchedule
            event["schedule"] = decode(row.schedule)

        async def run() -> Any:
            entry = definition.factory(ExecutionContext(), definition.env)
            return await entry.run(event, step)

        live.state.warm_horizon = self.warm_horizon if self._warm_room() > 0 else 0.0
        live.state.park_policy = self._park_policy(live)
        # A partial, not a coroutine of ours around run_with_rollback: every frame between the
        # task and the step is passed through again each time the run resumes.
        run_then_roll_back = functools.partial(run_with_rollback, run, step)
        return await drive(run_then_roll_back, live.state, limits=self.limits)

    def _park_policy(self, live: LiveRun) -> Callable[[float | None], Callable[[], None] | None]:
        def park(wake_at: float | None) -> Callable[[], None] | None:
            if (
                wake_at is None
                or live.stop_reason is not None
                or self._stopping
                or self._warm_room() <= 0
                or wake_at - self.clock.now() > self.warm_horizon
            ):
                return None
            self._parked.add(live.pk)
            self.poke()  # its slot is free for another run
            if self.cluster is None:
                return lambda: self._parked.discard(live.pk)
            # On a shared database the row says so too (`waiting`, still held by this node), so
            # that other nodes see what users see, and take the instance over if this node dies.
            live.hold_in_storage(wake_at)

            def unpark() -> None:
                self._parked.discard(live.pk)
                live.hold_in_storage(None, parked=False)

            return unpark

        return park

    async def _apply(self, live: LiveRun, outcome: RunOutcome) -> None:
        now = self.clock.now()
        if live.terminating and isinstance(outcome, Completed | Failed):
            # The rollback phase of a terminate with rollback is over (or the tenant's code
            # caught the termination error and returned: nothing was rolled back).
            rolled_back = outcome.rollback if isinstance(outcome, Failed) else None
            await self.storage.finish_run(
                live.pk, live.generation, Status.TERMINATED, None, None, now, rollback=rolled_back
            )
        elif isinstance(outcome, Completed):
            if await self.storage.finish_run(
                live.pk, live.generation, Status.COMPLETE, outcome.output, None, now
            ):
                self.counters.completed += 1
        elif isinstance(outcome, Failed):
            if await self.storage.finish_run(
                live.pk,
                live.generation,
                Status.ERRORED,
                None,
                outcome.error,
                now,
                rollback=outcome.rollback,
            ):
                self.counters.errored += 1
                _log_errored(live.row, outcome.error)
        elif isinstance(outcome, Suspended):
            wake_at = outcome.wake_at
            if (
                wake_at is not None
                and not outcome.paused
                and live.stop_reason is None
                and wake_at - now <= self.warm_horizon
            ):
                self._no_claims_ahead_until = max(self._no_claims_ahead_until, wake_at)
            if await self.storage.suspend_run(
                live.pk, live.generation, outcome.wake_at, outcome.paused, now
            ):
                self.counters.suspended += 1
        elif isinstance(outcome, Cancelled) and live.stop_reason in (None, "shutdown"):
            await self.storage.release_run(live.pk, live.generation, now)

    # -- operations on instances (used by bindings) -----------------------------------------

    def _definition(self, workflow: str) -> WorkflowDefinition:
        definition = self._workflows.get(workflow)
        if definition is None:
            raise UnknownWorkflowError(f"no workflow named {workflow!r} is registered")
        return definition

    def _encode_params(self, params: Any) -> bytes:
        try:
            data = encode(params)
        except SerializationError as exc:
            raise WorkflowError(f"params cannot be serialised as JSON: {exc}") from None
        return check_size(data, "params", self.limits)

    def _retention(self, definition: WorkflowDefinition, option: object) -> Retention:
        """A create's ``retention`` option over the workflow's default over the project's."""
        own = parse_retention(option) or Retention()
        workflow = (definition.retention or Retention()).over(self.retention)
        return own.over(workflow)

    def _tick_instance(self, workflow: str, cron: str, tick: float) -> NewInstance:
        retention = self._retention(self._definition(workflow), None)
        return NewInstance(
            workflow,
            "",
            tick_instance_id(cron, tick),
            encode(None),
            schedule=encode({"cron": cron, "scheduledTime": round(tick * 1000)}),
            success_retention=retention.success,
            error_retention=retention.error,
        )

    def _fired(self, row: InstanceRow) -> None:
        self.poke()

    async def create(
        self,
        workflow: str,
        scope: str,
        items: Sequence[tuple[str | None, Any]],
        *,
        batch: bool = False,
        policy: TenantPolicy | None = None,
        retention: Sequence[object] | None = None,
    ) -> list[InstanceRow]:
        """Create instances from ``(id or None, params)``; for a batch, existing ids are skipped,
        otherwise an existing id raises InstanceAlreadyExistsError. ``policy``: the scope's
        (default :attr:`tenant_defaults`), stored for it and enforced: a create over its rate or
        ``max_live`` raises :class:`TenantLimitError` and creates nothing. ``retention``: each
        item's ``retention`` create option (``{"successRetention", "errorRetention"}`` or
        None)."""
        definition = self._definition(workflow)
        if policy is None:  # not the dispatcher's binding (the admin API, ...): keep the stored
            policy = self._stored_policy.get(scope) or await self.tenant_policy(scope)
            if policy is None:
                policy = self.tenant_defaults
        new = []
        for i, (instance_id, params) in enumerate(items):
            iid = (
                self._id_factory()
                if instance_id is None
                else check_instance_id(instance_id, self.limits)
            )
            kept = self._retention(definition, None if retention is None else retention[i])
            new.append(
                NewInstance(
                    workflow,
                    scope,
                    iid,
                    self._encode_params(params),
                    success_retention=kept.success,
                    error_retention=kept.error,
                )
            )
        # A create-time cap is checked on every create; a policy without one is only stored
        # when this engine has not stored it already (a lock of the tenant's row saved).
        tenants = None
        if (
            policy.create_rate is not None
            or policy.max_live is not None
            or self._stored_policy.get(scope) != policy
        ):
            tenants = {scope: policy}
        try:
            rows = await self.storage.create_instances(new, self.clock.now(), tenants=tenants)
        except TenantLimitError:
            by_scope = self.counters.throttled_by_scope
            by_scope[scope] = by_scope.get(scope, 0) + 1
            raise
        self._stored_policy[scope] = policy
        if not batch and rows and rows[0] is None:
            raise InstanceAlreadyExistsError(new[0].id)
        self.poke()
        created = [r for r in rows if r is not None]
        if created:
            by_scope = self.counters.created_by_scope
            by_scope[scope] = by_scope.get(scope, 0) + len(created)
        return created

    async def get(self, workflow: str, scope: str, instance_id: str) -> InstanceRow:
        self._definition(workflow)
        if not isinstance(instance_id, str) or not instance_id:
            raise InstanceNotFoundError(str(instance_id))
        row = await self.storage.get_instance(workflow, scope, instance_id)
        if row is None:
            raise InstanceNotFoundError(instance_id)
        return row

    async def control(
        self,
        row: InstanceRow,
        action: str,
        *,
        restart_from: tuple[str, int] | None = None,
        rollback: bool = False,
    ) -> str:
        """Pause, resume, terminate or restart (from the step ``restart_from``, earlier steps
        keeping their results); returns the status after.

        A terminate with ``rollback`` of an instance with handlers left to run (its journal
        says so, see :func:`~.core.rollback.rollback_pending`) stops its live run and queues a
        run that replays it in terminating mode: the handlers run, then it is ``terminated``.
        With none, it terminates at once."""
        if rollback and action != "terminate":
            raise WorkflowError("rollback: only valid when terminating")
        if rollback and rollback_pending(await self.storage.load_journal(row.pk)):
            action = "terminate_rollback"
        if restart_from is not None:
            journal = await self.storage.load_journal(row.pk)
            if not any((e.name, e.count) == restart_from for e in journal):
                name, count = restart_from
                raise WorkflowError(
                    f"(instance.step_not_found) cannot restart from step {name!r} "
                    f"(occurrence {count}): the instance has not recorded it"
                )
        result = await self.storage.control(
            row.pk, action, self.clock.now(), restart_from=restart_from
        )
        if result is None:
            raise InstanceNotFoundError(row.id)
        live = self._live.get(row.pk)
        if action in ("terminate", "terminate_rollback"):
            if result.before in FINITE_STATUSES:
                raise CannotTerminateError()
            if live is not None:
                live.cancel("terminate")
            if action == "terminate_rollback":
                self.poke()
        elif action == "restart":
            if live is not None:
                live.cancel("restart")
            self.poke()
        elif action == "pause":
            if live is not None and result.after == Status.WAITING_FOR_PAUSE:
                live.state.set_paused(True)
        elif action == "resume":
            if live is not None and result.before == Status.WAITING_FOR_PAUSE:
                live.state.set_paused(False)
            self.poke()
        return result.after

    async def send_event(self, row: InstanceRow, event_type: str, payload: Any) -> None:
        check_event_type(event_type, self.limits)
        try:
            data = encode(payload)
        except SerializationError as exc:
            raise WorkflowError(f"event payload cannot be serialised as JSON: {exc}") from None
        check_size(data, f'the payload of event "{event_type}"', self.limits)
        delivery = await self.storage.add_event(row.pk, event_type, data, self.clock.now())
        current = await self.storage.get_instance_by_pk(row.pk)
        if current is None:
            raise InstanceNotFoundError(row.id)
        if delivery is None:
            return
        live = self._live.get(row.pk)
        if live is not None and live.generation == current.generation:
            live.deliver(delivery.name, delivery.count, delivery.value)
        self.poke()

    async def delete(self, row: InstanceRow) -> None:
        # The row first, then its live run: a delete that fails (a full disk) must leave the
        # run going. Stopped first, it left its row `running` with nothing in this process to
        # claim it again. A write the run makes meanwhile finds the row gone and stops it.
        if not await self.storage.delete_instance(row.pk):
            raise InstanceNotFoundError(row.id)
        live = self._live.get(row.pk)
        if live is not None:
            live.cancel("delete")

    async def status(self, row: InstanceRow) -> dict[str, Any]:
        current = await self.storage.get_instance_by_pk(row.pk)
        if current is None:
            raise InstanceNotFoundError(row.id)
        result = status_dict(current)
        result["status"] = self.reported_status(current)
        return result

    def reported_status(self, row: InstanceRow) -> str:
        """The status to show for ``row``: a parked run is stored as ``running`` (it is owned by
        this engine) but it is sleeping or waiting, which users see as ``waiting``."""
        if row.status == Status.RUNNING and row.pk in self._parked:
            live = self._live.get(row.pk)
            if live is not None and live.generation == row.generation:
                return Status.WAITING
        return row.status

    def live_runs(self) -> int:
        """How many runs are executing now (parked ones included)."""
        return len(self._live)

    def parked_runs(self) -> int:
        """How many live runs are parked: quiescent, kept warm for a near wake-up."""
        return len(self._parked)

    def quiet(self, margin: float = QUIET_BEFORE_WAKE_UP) -> bool:
        """Whether no parked run wakes up within ``margin`` seconds (an idle moment that a
        long pause, such as a full garbage collection, cannot make late)."""
        soon = self.clock.now() + margin
        for pk in self._parked:
            live = self._live.get(pk)
            wake_at = live.state.wake_at() if live is not None else None
            if wake_at is not None and wake_at <= soon:
                return False
        return True


def _log_errored(row: InstanceRow, error: ErrorInfo) -> None:
    """The one line an instance's error makes in the host's log."""
    where = last_frame(error.traceback)
    message = " ".join(error.message.split())
    log.warning(
        "instance %s of %s%s errored: %s%s%s",
        row.id,
        row.workflow,
        f" (scope {row.scope})" if row.scope else "",
        error.name,
        f": {message[:500]}" if message else "",
        f" at {where}" if where else "",
        extra={
            "event": "instance.errored",
            "workflow": row.workflow,
            "scope": row.scope,
            "instance": row.id,
            "error_name": error.name,
            "error_message": error.message,
        },
    )


def status_dict(row: InstanceRow) -> dict[str, Any]:
    """``instance.status()``'s value for a row: ``{"status", "output", "error"}``."""
    result = {
        "status": row.status,
        "output": None if row.output is None else decode(row.output),
        "error": None if row.error is None else row.error.as_dict(),
    }
    if row.rollback is not None:  # (Cloudflare's key exists only once a rollback ran)
        result["rollback"] = row.rollback.as_dict()
    return result
