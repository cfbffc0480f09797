"""The instance state machine, written once for every storage backend.

A backend loads what an action needs (the instance's status, generation and pending ``wake_at``;
for events and waits the steps or buffered events concerned), calls the function here named for
the action, and applies the answer in its own transaction. Which status goes where is decided
here only; backends run queries.

=================  ==========================  ===============================================
action             from                        to
=================  ==========================  ===============================================
claim              queued, waiting             running (``started_at`` set the first time)
suspend_run        running                     waiting (until the earliest of the run's
                                               ``wake_at`` and a pending wake-up)
                   waitingForPause             paused
release_run        running                     queued (due now)
                   waitingForPause             paused
finish_run         running, waitingForPause    complete or errored
begin_rollback     running, waitingForPause    unchanged; ``rollback`` reads ``running``
                                               (``run()`` raised, its handlers start)
recover            running                     queued (due now)
                   waitingForPause             paused
pause              queued, waiting             paused
                   running                     waitingForPause (the run winds down)
resume             paused                      queued (due now)
                   waitingForPause             running
terminate          anything not finite         terminated (generation + 1; a rollback
                                               phase on is stopped: :data:`ROLLBACK_STOPPED`)
terminate_rollback anything not finite         queued (generation + 1; ``rollback`` reads
                                               ``running`` until the handlers are done)
restart            anything                    queued (generation + 1; journal truncated)
add_event          waiting                     queued (due now), if a waiting step gets it
                   running, waitingForPause    unchanged, due now (the hibernation that follows
                                               must not miss the event)
=================  ==========================  ===============================================

Every other (action, status) pair changes nothing. Actions of a live run (``suspend_run``,
``release_run``, ``finish_run``, ``begin_rollback``, ``register_wait``, ``expire_wait``, and
the journal writes checked with :func:`is_live`) apply only while the instance is ``running`` or
``waitingForPause`` with the run's generation; otherwise the run is stale and they answer None.
``terminate`` and ``restart`` bump the generation, which is what makes an old run stale.

:class:`Change` fields left :data:`UNSET` keep the column as it is; ``None`` sets it to NULL.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import msgspec
from msgspec import UNSET, UnsetType

from .codec import encode
from .journal import ErrorInfo, JournalEntry, RollbackOutcome, StepKind, StepState

__all__ = [
    "ACTIVE_STATUSES",
    "CLAIMABLE_STATUSES",
    "CONTROL_ACTIONS",
    "FINITE_STATUSES",
    "INITIAL_STATUS",
    "NO_CHANGE",
    "ROLLBACK_STOPPED",
    "ROLLING_BACK",
    "ROLLING_BACK_AFTER_ERROR",
    "UNSET",
    "BufferedEvent",
    "BulkChange",
    "Change",
    "ControlOutcome",
    "ControlResult",
    "EventDelivery",
    "EventOutcome",
    "ExpireOutcome",
    "InstanceState",
    "State",
    "Status",
    "StepUpdate",
    "SuspendOutcome",
    "Truncate",
    "UnsetType",
    "WaitOutcome",
    "WaitResult",
    "add_event",
    "begin_rollback",
    "check_control_action",
    "claim",
    "control",
    "event_value",
    "expire_wait",
    "finish_run",
    "is_held",
    "is_live",
    "may_park",
    "recover",
    "recover_plan",
    "register_wait",
    "release_run",
    "rolling_back",
    "suspend_run",
]


class Status:
    """Instance statuses, spelled as Cloudflare's."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    ERRORED = "errored"
    TERMINATED = "terminated"
    COMPLETE = "complete"
    WAITING = "waiting"
    WAITING_FOR_PAUSE = "waitingForPause"
    UNKNOWN = "unknown"

    ALL = (
        QUEUED,
        RUNNING,
        PAUSED,
        ERRORED,
        TERMINATED,
        COMPLETE,
        WAITING,
        WAITING_FOR_PAUSE,
        UNKNOWN,
    )


FINITE_STATUSES = frozenset({Status.COMPLETE, Status.ERRORED, Status.TERMINATED})
ACTIVE_STATUSES = frozenset({Status.RUNNING, Status.WAITING_FOR_PAUSE})
"""Statuses in which a live run may write."""
CLAIMABLE_STATUSES = frozenset({Status.QUEUED, Status.WAITING})
"""Statuses :func:`claim` takes, once their ``wake_at`` has come."""
INITIAL_STATUS = Status.QUEUED
"""A new instance is queued, due at its creation time, generation 0."""
CONTROL_ACTIONS = ("pause", "resume", "terminate", "terminate_rollback", "restart")

ROLLING_BACK = RollbackOutcome("running")
"""An instance's ``rollback`` while a terminate with rollback runs its handlers: its next run
replays ``run()`` in terminating mode (see :mod:`.rollback`), then ends it ``terminated`` with
the phase's real outcome."""

ROLLING_BACK_AFTER_ERROR = RollbackOutcome("running", after_error=True)
"""An instance's ``rollback`` while its handlers run because ``run()`` raised (set as the first
handler starts, :func:`begin_rollback`): reported as :data:`ROLLING_BACK` is, but a run that
resumes the phase ends the instance ``errored`` with ``run()``'s error, not ``terminated``."""

ROLLBACK_STOPPED = RollbackOutcome(
    "failed",
    ErrorInfo(
        "Terminated",
        "Instance terminated during its rollback phase; "
        "the handlers that had not finished did not run to their end",
    ),
)
"""An instance's ``rollback`` once a plain terminate (without ``rollback``) stopped its rollback
phase: the chain halted there, as when a handler fails for good (see :mod:`.rollback`)."""


def rolling_back(rollback: RollbackOutcome | None) -> bool:
    """Whether an instance's ``rollback`` says its rollback phase is on (``running``)."""
    return rollback is not None and rollback.outcome == ROLLING_BACK.outcome


# -- what backends load -----------------------------------------------------------------------


class InstanceState(Protocol):
    """What the transitions read of an instance (an ``InstanceRow`` or a :class:`State`)."""

    @property
    def status(self) -> str: ...

    @property
    def generation(self) -> int: ...

    @property
    def wake_at(self) -> float | None: ...

    @property
    def started_at(self) -> float | None: ...


class State(msgspec.Struct, frozen=True):
    """An :class:`InstanceState` for backends that load only these columns."""

    status: str
    generation: int
    wake_at: float | None = None
    started_at: float | None = None


class BufferedEvent(msgspec.Struct, frozen=True):
    """An event not consumed yet; ``seq`` orders events by arrival."""

    seq: int
    type: str
    payload: bytes
    created_at: float


# -- what backends apply ----------------------------------------------------------------------


class Change(msgspec.Struct, frozen=True):
    """New values for an instance's columns (:data:`UNSET`: as it is; None: NULL)."""

    status: str | UnsetType = UNSET
    generation: int | UnsetType = UNSET
    wake_at: float | UnsetType | None = UNSET
    output: bytes | UnsetType | None = UNSET
    error: ErrorInfo | UnsetType | None = UNSET
    started_at: float | UnsetType | None = UNSET
    ended_at: float | UnsetType | None = UNSET
    updated_at: float | UnsetType = UNSET
    rollback: RollbackOutcome | UnsetType | None = UNSET

    def updates(self) -> dict[str, Any]:
        """The fields that change, by name (the names are ``InstanceRow``'s), in field order."""
        return _updates(self)


class StepUpdate(msgspec.Struct, frozen=True):
    """New values for the journal entry ``(name, count)`` (:data:`UNSET`: as it is)."""

    name: str
    count: int
    state: str
    value: bytes | UnsetType | None = UNSET
    error: ErrorInfo | UnsetType | None = UNSET

    def updates(self) -> dict[str, Any]:
        """``state`` and whichever of ``value``/``error`` change (``JournalEntry``'s names)."""
        out = _updates(self)
        del out["name"], out["count"]
        return out


def _updates(struct: msgspec.Struct) -> dict[str, Any]:
    return {
        name: value
        for name in struct.__struct_fields__
        if (value := getattr(struct, name)) is not UNSET
    }


class Truncate(msgspec.Struct, frozen=True):
    """Journal entries to delete: every one (``from_step`` None), or ``from_step`` and every
    entry first recorded after it."""

    from_step: tuple[str, int] | None = None


class BulkChange(msgspec.Struct, frozen=True):
    """Apply ``change`` to every instance in ``status``; ``requeued``: they count as requeued."""

    status: str
    change: Change
    requeued: bool


class ControlResult(msgspec.Struct, frozen=True):
    """What a control action did: the status before and after, and the generation after."""

    before: str
    after: str
    generation: int


class ControlOutcome(msgspec.Struct, frozen=True):
    """:func:`control`'s answer: the result to return, and what to write."""

    result: ControlResult
    change: Change
    truncate: Truncate | None = None
    """Journal entries to delete (None: keep the journal)."""
    drop_consumed_events: bool = False
    """Delete the events consumed so far (buffered ones stay)."""


class SuspendOutcome(msgspec.Struct, frozen=True):
    """:func:`suspend_run`'s answer: the status to return, and the change to write."""

    status: str
    change: Change


class WaitResult(msgspec.Struct, frozen=True):
    """``register_wait``'s answer: the deadline, and a buffered event consumed for it."""

    deadline: float
    value: bytes | None


class WaitOutcome(msgspec.Struct, frozen=True):
    """:func:`register_wait`'s answer: upsert ``entry``; mark ``consumed`` (if any) consumed."""

    result: WaitResult
    entry: JournalEntry
    consumed: BufferedEvent | None


class ExpireOutcome(msgspec.Struct, frozen=True):
    """:func:`expire_wait`'s answer: ``(timed_out, value)`` to return, and a step to update."""

    timed_out: bool
    value: bytes | None
    step: StepUpdate | None = None


class EventDelivery(msgspec.Struct, frozen=True):
    """``add_event`` consumed the event for a waiting step: the run waiting on
    ``(name, count)`` gets ``value``."""

    name: str
    count: int
    value: bytes


class EventOutcome(msgspec.Struct, frozen=True):
    """:func:`add_event`'s answer. The event is stored in every case: consumed when
    ``delivery`` is set (then ``step`` is the waiting step's update), buffered otherwise."""

    delivery: EventDelivery | None
    step: StepUpdate | None
    change: Change


NO_CHANGE = Change()


# -- the transitions ----------------------------------------------------------------------------


def is_live(status: str, generation: int, expected: int) -> bool:
    """Whether the run of generation ``expected`` still owns an instance in this state."""
    return generation == expected and status in ACTIVE_STATUSES


def is_held(status: str) -> bool:
    """Whether some run owns an instance in this status (whatever its generation)."""
    return status in ACTIVE_STATUSES


def may_park(status: str, generation: int, expected: int) -> bool:
    """Whether the live run of generation ``expected`` may park (stay warm in its process until
    its wake-up): only while running, not while a pause is pending (it suspends then)."""
    return generation == expected and status == Status.RUNNING


def _live(state: InstanceState | None, generation: int) -> bool:
    return state is not None and is_live(state.status, state.generation, generation)


def claim(state: InstanceState, now: float) -> Change | None:
    """Start a run of a due instance; None if ``state`` cannot be claimed."""
    if state.status not in CLAIMABLE_STATUSES:
        return None
    return Change(
        status=Status.RUNNING,
        wake_at=None,
        started_at=now if state.started_at is None else state.started_at,
        updated_at=now,
    )


def finish_run(
    state: InstanceState | None,
    generation: int,
    status: str,
    output: bytes | None,
    error: ErrorInfo | None,
    now: float,
    rollback: RollbackOutcome | None = None,
) -> Change | None:
    """End a live run as ``status`` (complete or errored; terminated after the rollback phase of
    a terminate with rollback), with its rollback phase's outcome; None if the run is stale."""
    if not _live(state, generation):
        return None
    return Change(
        status=status,
        wake_at=None,
        output=output,
        error=error,
        ended_at=now,
        updated_at=now,
        rollback=rollback,
    )


def begin_rollback(state: InstanceState | None, generation: int, now: float) -> Change | None:
    """The live run's rollback phase begins because ``run()`` raised (its first handler starts):
    the instance's ``rollback`` reads ``running`` until :func:`finish_run` records how it ended
    (a terminate with rollback marks it in :func:`control`). None if the run is stale."""
    if not _live(state, generation):
        return None
    return Change(updated_at=now, rollback=ROLLING_BACK_AFTER_ERROR)


def suspend_run(
    state: InstanceState | None,
    generation: int,
    wake_at: float | None,
    held_by_pause: bool,
    now: float,
) -> SuspendOutcome | None:
    """Hibernate a live run until ``wake_at`` (None: until an event or a resume), or pause it
    if a pause was asked meanwhile; None if the run is stale.

    ``held_by_pause``: the run stopped because it was paused, and the pause was lifted while it
    wound down, so it is due at once. A ``wake_at`` already pending on the instance (an event
    came during the run) wins when it is earlier."""
    if state is None or not _live(state, generation):
        return None
    if state.status == Status.WAITING_FOR_PAUSE:
        return SuspendOutcome(
            Status.PAUSED, Change(status=Status.PAUSED, wake_at=None, updated_at=now)
        )
    wake = now if held_by_pause else wake_at
    pending = state.wake_at
    if pending is not None:
        wake = pending if wake is None else min(wake, pending)
    return SuspendOutcome(
        Status.WAITING, Change(status=Status.WAITING, wake_at=wake, updated_at=now)
    )


def release_run(state: InstanceState | None, generation: int, now: float) -> Change | None:
    """Give a live run's instance back (shutdown, sandbox loss): queued and due now, or paused
    if a pause was asked; None if the run is stale."""
    if state is None or not _live(state, generation):
        return None
    return _requeue(state.status, now)


def _requeue(status: str, now: float) -> Change:
    if status == Status.WAITING_FOR_PAUSE:
        return Change(status=Status.PAUSED, wake_at=None, updated_at=now)
    return Change(status=Status.QUEUED, wake_at=now, updated_at=now)


def recover(state: InstanceState, now: float) -> Change | None:
    """After a crash of the only node, for an instance a run owned: queued and due now, or
    paused if a pause was asked; None for any other instance. Depends on the status only (so
    that :func:`recover_plan` can apply it in bulk)."""
    if state.status not in ACTIVE_STATUSES:
        return None
    return _requeue(state.status, now)


def recover_plan(now: float) -> list[BulkChange]:
    """:func:`recover` as one change per status, for backends that update in bulk."""
    plan = []
    for status in Status.ALL:
        change = recover(State(status, 0), now)
        if change is not None:
            plan.append(BulkChange(status, change, requeued=change.status == Status.QUEUED))
    return plan


def check_control_action(action: str) -> None:
    """Raise ValueError unless ``action`` is one :func:`control` knows (backends that run the
    transition later, on another thread, check first)."""
    if action not in CONTROL_ACTIONS:
        raise ValueError(f"unknown control action {action!r}")


def control(
    state: InstanceState,
    action: str,
    now: float,
    *,
    restart_from: tuple[str, int] | None = None,
    step_recorded: bool = False,
    rollback: RollbackOutcome | None = None,
) -> ControlOutcome:
    """``pause``, ``resume``, ``terminate`` (``terminate_rollback``: with ``rollback``) or
    ``restart`` (ValueError for anything else).

    ``terminate`` of a finite instance changes nothing (``after == before``); of one whose
    rollback phase is on (``rollback``, the instance's as stored, which backends read for a
    ``terminate``), it stops the phase and records :data:`ROLLBACK_STOPPED`. A ``restart``
    ``restart_from`` a step ``(name, count)`` that the instance has recorded
    (``step_recorded``) keeps the entries recorded before it and every event; otherwise it
    clears the journal and the consumed events (buffered ones stay for the next run)."""
    check_control_action(action)
    before = after = state.status
    generation = state.generation
    change = NO_CHANGE
    truncate: Truncate | None = None
    drop_consumed = False
    if action == "pause":
        if before in (Status.QUEUED, Status.WAITING):
            after = Status.PAUSED
            change = Change(status=after, wake_at=None, updated_at=now)
        elif before == Status.RUNNING:
            after = Status.WAITING_FOR_PAUSE
            change = Change(status=after, updated_at=now)
    elif action == "resume":
        if before == Status.PAUSED:
            after = Status.QUEUED
            change = Change(status=after, wake_at=now, updated_at=now)
        elif before == Status.WAITING_FOR_PAUSE:
            after = Status.RUNNING
            change = Change(status=after, updated_at=now)
    elif action == "terminate":
        if before not in FINITE_STATUSES:
            after = Status.TERMINATED
            generation += 1
            # A non-finite instance's rollback is None, or running: a terminate with rollback
            # is under way, or run() raised and its handlers run. A plain terminate ends it at
            # once, the handlers left unrun, and says so rather than forget the phase began.
            change = Change(
                status=after,
                generation=generation,
                wake_at=None,
                ended_at=now,
                updated_at=now,
                rollback=ROLLBACK_STOPPED if rolling_back(rollback) else None,
            )
    elif action == "terminate_rollback":
        # Stop the live run (the generation) and queue a run that replays to the first step
        # the instance had not finished and runs the handlers from there; it ends the
        # instance `terminated` (finish_run). Paused or not, the handlers run now.
        if before not in FINITE_STATUSES:
            after = Status.QUEUED
            generation += 1
            change = Change(
                status=after,
                generation=generation,
                wake_at=now,
                updated_at=now,
                rollback=ROLLING_BACK,
            )
    else:  # restart
        after = Status.QUEUED
        generation += 1
        change = Change(
            status=after,
            generation=generation,
            wake_at=now,
            output=None,
            error=None,
            started_at=None,
            ended_at=None,
            updated_at=now,
            rollback=None,
        )
        if restart_from is not None and step_recorded:
            truncate = Truncate(restart_from)
        else:
            truncate = Truncate()
            drop_consumed = True
    return ControlOutcome(ControlResult(before, after, generation), change, truncate, drop_consumed)


def event_value(event_type: str, payload: bytes, timestamp: float) -> bytes:
    """The JSON a consumed event is stored as: ``{"type", "payload", "timestamp"}``."""
    return encode({"type": event_type, "payload": msgspec.Raw(payload), "timestamp": timestamp})


def register_wait(
    state: InstanceState | None,
    generation: int,
    name: str,
    count: int,
    event_type: str,
    deadline: float,
    buffered: Iterable[BufferedEvent],
) -> WaitOutcome | None:
    """A live run waits on ``(name, count)`` for an event of ``event_type`` until ``deadline``:
    the oldest buffered event of that type among ``buffered`` is consumed for it at once (a
    backend may pass only the oldest of the type); None if the run is stale."""
    if not _live(state, generation):
        return None
    oldest: BufferedEvent | None = None
    for event in buffered:
        if event.type == event_type and (oldest is None or event.seq < oldest.seq):
            oldest = event
    if oldest is None:
        entry = JournalEntry(
            name,
            count,
            StepKind.WAIT,
            StepState.WAITING,
            wake_at=deadline,
            event_type=event_type,
        )
        return WaitOutcome(WaitResult(deadline, None), entry, None)
    value = event_value(oldest.type, oldest.payload, oldest.created_at)
    entry = JournalEntry(
        name,
        count,
        StepKind.WAIT,
        StepState.DONE,
        value=value,
        wake_at=deadline,
        event_type=event_type,
    )
    return WaitOutcome(WaitResult(deadline, value), entry, oldest)


def expire_wait(
    state: InstanceState | None, generation: int, entry: JournalEntry | None, error: ErrorInfo
) -> ExpireOutcome | None:
    """The deadline of the wait ``entry`` passed: it fails with ``error`` unless an event got
    there first (then ``timed_out`` is False and ``value`` is the event). None if the run is
    stale or the wait was never recorded."""
    if not _live(state, generation) or entry is None:
        return None
    if entry.state == StepState.DONE:
        return ExpireOutcome(False, entry.value)
    if entry.state == StepState.WAITING:
        failed = StepUpdate(entry.name, entry.count, StepState.FAILED, error=error)
        return ExpireOutcome(True, None, failed)
    return ExpireOutcome(True, None)


def add_event(
    state: InstanceState,
    event_type: str,
    payload: bytes,
    now: float,
    steps: Iterable[JournalEntry],
) -> EventOutcome:
    """An event arrives for an instance: it goes to the waiting step of that type among
    ``steps`` (a backend may pass only the steps waiting for ``event_type``) whose deadline has
    not passed, the one due first (then by name and count), and a waiting instance is woken;
    a finished instance, or one with no such step, buffers it."""
    if state.status in FINITE_STATUSES:
        return EventOutcome(None, None, NO_CHANGE)
    target: JournalEntry | None = None
    for entry in steps:
        if (
            entry.state == StepState.WAITING
            and entry.event_type == event_type
            and (entry.wake_at is None or entry.wake_at > now)
            and (target is None or _wait_order(entry) < _wait_order(target))
        ):
            target = entry
    if target is None:
        return EventOutcome(None, None, NO_CHANGE)
    value = event_value(event_type, payload, now)
    step = StepUpdate(target.name, target.count, StepState.DONE, value=value)
    if state.status == Status.WAITING:
        change = Change(status=Status.QUEUED, wake_at=now, updated_at=now)
    elif state.status in ACTIVE_STATUSES:
        change = Change(wake_at=now)
    else:
        change = NO_CHANGE
    return EventOutcome(EventDelivery(target.name, target.count, value), step, change)


def _wait_order(entry: JournalEntry) -> tuple[bool, float, str, int]:
    # A wait without a deadline first, as SQL's ORDER BY puts NULL first.
    return (entry.wake_at is not None, entry.wake_at or 0.0, entry.name, entry.count)
