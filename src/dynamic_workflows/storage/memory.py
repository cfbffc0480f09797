"""An in-memory backend for tests and throwaway runs: SQLite's semantics, no durability."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec

from ..core.codec import encode
from ..core.journal import ErrorInfo, JournalEntry, StepKind, StepState
from .base import (
    ACTIVE_STATUSES,
    FINITE_STATUSES,
    Claim,
    ControlResult,
    EventDelivery,
    InstanceRow,
    NewInstance,
    Status,
    WaitResult,
)

__all__ = ["MemoryStorage"]


@dataclass
class _Event:
    seq: int
    type: str
    payload: bytes
    created_at: float
    consumed: bool = False


@dataclass
class _Instance:
    row: InstanceRow
    steps: dict[tuple[str, int], JournalEntry] = field(default_factory=dict)
    events: list[_Event] = field(default_factory=list)


def event_value(event_type: str, payload: bytes, timestamp: float) -> bytes:
    """The JSON a consumed event is stored as: ``{"type", "payload", "timestamp"}``."""
    return encode({"type": event_type, "payload": msgspec.Raw(payload), "timestamp": timestamp})


class MemoryStorage:
    """Everything in dicts. Not durable; fine for unit tests and the test harness."""

    def __init__(self) -> None:
        self._by_pk: dict[int, _Instance] = {}
        self._by_key: dict[tuple[str, str, str], int] = {}
        self._next_pk = 1
        self._next_seq = 1
        self._due: list[tuple[float, int]] = []  # lazy heap of (wake_at, pk)

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # -- helpers ------------------------------------------------------------------------------

    def _set(self, inst: _Instance, **changes: object) -> InstanceRow:
        row = msgspec.structs.replace(inst.row, **changes)
        inst.row = row
        if row.wake_at is not None:
            heapq.heappush(self._due, (row.wake_at, row.pk))
        return row

    def _live(self, pk: int, generation: int) -> _Instance | None:
        inst = self._by_pk.get(pk)
        if inst is None or inst.row.generation != generation:
            return None
        if inst.row.status not in ACTIVE_STATUSES:
            return None
        return inst

    # -- instances --------------------------------------------------------------------------

    async def create_instances(
        self, items: Sequence[NewInstance], now: float
    ) -> list[InstanceRow | None]:
        out: list[InstanceRow | None] = []
        for item in items:
            key = (item.workflow, item.scope, item.id)
            if key in self._by_key:
                out.append(None)
                continue
            pk = self._next_pk
            self._next_pk += 1
            row = InstanceRow(
                pk=pk,
                workflow=item.workflow,
                scope=item.scope,
                id=item.id,
                status=Status.QUEUED,
                params=item.params,
                generation=0,
                created_at=now,
                updated_at=now,
                wake_at=now,
            )
            self._by_pk[pk] = _Instance(row)
            self._by_key[key] = pk
            heapq.heappush(self._due, (now, pk))
            out.append(row)
        return out

    async def get_instance(self, workflow: str, scope: str, id: str) -> InstanceRow | None:
        pk = self._by_key.get((workflow, scope, id))
        return None if pk is None else self._by_pk[pk].row

    async def get_instance_by_pk(self, pk: int) -> InstanceRow | None:
        inst = self._by_pk.get(pk)
        return None if inst is None else inst.row

    async def list_instances(
        self,
        workflow: str | None,
        *,
        scope: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[InstanceRow]:
        rows = [
            i.row
            for i in self._by_pk.values()
            if (workflow is None or i.row.workflow == workflow)
            and (scope is None or i.row.scope == scope)
            and (status is None or i.row.status == status)
        ]
        rows.sort(key=lambda r: (r.created_at, r.pk), reverse=True)
        return rows[offset : offset + limit]

    async def count_instances(
        self, workflow: str | None = None, *, scope: str | None = None
    ) -> dict[str, int]:
        counts: dict[str, int] = {}
        for inst in self._by_pk.values():
            if (workflow is None or inst.row.workflow == workflow) and (
                scope is None or inst.row.scope == scope
            ):
                counts[inst.row.status] = counts.get(inst.row.status, 0) + 1
        return counts

    async def find_instances(self, workflow: str, id: str) -> list[InstanceRow]:
        rows = [
            i.row for i in self._by_pk.values() if i.row.workflow == workflow and i.row.id == id
        ]
        rows.sort(key=lambda r: (r.created_at, r.pk))
        return rows

    async def load_journal(self, pk: int) -> list[JournalEntry]:
        inst = self._by_pk.get(pk)
        return [] if inst is None else list(inst.steps.values())

    # -- scheduling -------------------------------------------------------------------------

    async def claim_due(self, now: float, limit: int) -> list[Claim]:
        claims: list[Claim] = []
        while self._due and len(claims) < limit:
            wake_at, pk = self._due[0]
            if wake_at > now:
                break
            heapq.heappop(self._due)
            inst = self._by_pk.get(pk)
            if inst is None or inst.row.wake_at != wake_at:
                continue  # stale heap entry
            if inst.row.status not in (Status.QUEUED, Status.WAITING):
                continue
            row = self._set(
                inst,
                status=Status.RUNNING,
                wake_at=None,
                updated_at=now,
                started_at=inst.row.started_at or now,
            )
            claims.append(Claim(row, list(inst.steps.values())))
        return claims

    async def next_due(self) -> float | None:
        while self._due:
            wake_at, pk = self._due[0]
            inst = self._by_pk.get(pk)
            if (
                inst is not None
                and inst.row.wake_at == wake_at
                and inst.row.status in (Status.QUEUED, Status.WAITING)
            ):
                return wake_at
            heapq.heappop(self._due)
        return None

    # -- live runs --------------------------------------------------------------------------

    async def record_steps(
        self, writes: Sequence[tuple[int, int, JournalEntry]], now: float
    ) -> list[bool]:
        done: list[bool] = []
        for pk, generation, entry in writes:
            inst = self._live(pk, generation)
            if inst is not None:
                inst.steps[(entry.name, entry.count)] = entry
            done.append(inst is not None)
        return done

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
        inst = self._live(pk, generation)
        if inst is None:
            return None
        for event in inst.events:
            if not event.consumed and event.type == event_type:
                event.consumed = True
                value = event_value(event.type, event.payload, event.created_at)
                inst.steps[(name, count)] = JournalEntry(
                    name,
                    count,
                    StepKind.WAIT,
                    StepState.DONE,
                    value=value,
                    wake_at=deadline,
                    event_type=event_type,
                )
                return WaitResult(deadline, value)
        inst.steps[(name, count)] = JournalEntry(
            name,
            count,
            StepKind.WAIT,
            StepState.WAITING,
            wake_at=deadline,
            event_type=event_type,
        )
        return WaitResult(deadline, None)

    async def expire_wait(
        self, pk: int, generation: int, name: str, count: int, error: ErrorInfo, now: float
    ) -> tuple[bool, bytes | None] | None:
        inst = self._live(pk, generation)
        if inst is None:
            return None
        entry = inst.steps.get((name, count))
        if entry is None:
            return None
        if entry.state == StepState.DONE:
            return (False, entry.value)
        if entry.state == StepState.WAITING:
            inst.steps[(name, count)] = msgspec.structs.replace(
                entry, state=StepState.FAILED, error=error
            )
        return (True, None)

    async def add_event(
        self, pk: int, event_type: str, payload: bytes, now: float
    ) -> EventDelivery | None:
        inst = self._by_pk.get(pk)
        if inst is None:
            return None
        event = _Event(self._next_seq, event_type, payload, now)
        self._next_seq += 1
        inst.events.append(event)
        if inst.row.status in FINITE_STATUSES:
            return None
        waiting = [
            e
            for e in inst.steps.values()
            if e.state == StepState.WAITING
            and e.event_type == event_type
            and (e.wake_at is None or e.wake_at > now)
        ]
        if not waiting:
            return None
        entry = min(waiting, key=lambda e: (e.wake_at or 0.0, e.name, e.count))
        event.consumed = True
        value = event_value(event_type, payload, now)
        inst.steps[(entry.name, entry.count)] = msgspec.structs.replace(
            entry, state=StepState.DONE, value=value
        )
        if inst.row.status == Status.WAITING:
            self._set(inst, status=Status.QUEUED, wake_at=now, updated_at=now)
        elif inst.row.status in ACTIVE_STATUSES:
            self._set(inst, wake_at=now)
        return EventDelivery(entry.name, entry.count, value)

    async def finish_run(
        self,
        pk: int,
        generation: int,
        status: str,
        output: bytes | None,
        error: ErrorInfo | None,
        now: float,
    ) -> bool:
        inst = self._live(pk, generation)
        if inst is None:
            return False
        self._set(
            inst,
            status=status,
            output=output,
            error=error,
            wake_at=None,
            updated_at=now,
            ended_at=now,
        )
        return True

    async def suspend_run(
        self, pk: int, generation: int, wake_at: float | None, held_by_pause: bool, now: float
    ) -> str | None:
        inst = self._live(pk, generation)
        if inst is None:
            return None
        if inst.row.status == Status.WAITING_FOR_PAUSE:
            self._set(inst, status=Status.PAUSED, wake_at=None, updated_at=now)
            return Status.PAUSED
        if held_by_pause:  # the pause was lifted while the run wound down
            wake_at = now
        pending = inst.row.wake_at
        if pending is not None:
            wake_at = pending if wake_at is None else min(wake_at, pending)
        self._set(inst, status=Status.WAITING, wake_at=wake_at, updated_at=now)
        return Status.WAITING

    async def release_run(self, pk: int, generation: int, now: float) -> bool:
        inst = self._live(pk, generation)
        if inst is None:
            return False
        status = Status.PAUSED if inst.row.status == Status.WAITING_FOR_PAUSE else Status.QUEUED
        self._set(
            inst, status=status, wake_at=None if status == Status.PAUSED else now, updated_at=now
        )
        return True

    async def control(
        self, pk: int, action: str, now: float, *, restart_from: tuple[str, int] | None = None
    ) -> ControlResult | None:
        inst = self._by_pk.get(pk)
        if inst is None:
            return None
        before = inst.row.status
        after = before
        gen = inst.row.generation
        if action == "pause":
            if before in (Status.QUEUED, Status.WAITING):
                after = Status.PAUSED
                self._set(inst, status=after, wake_at=None, updated_at=now)
            elif before == Status.RUNNING:
                after = Status.WAITING_FOR_PAUSE
                self._set(inst, status=after, updated_at=now)
        elif action == "resume":
            if before == Status.PAUSED:
                after = Status.QUEUED
                self._set(inst, status=after, wake_at=now, updated_at=now)
            elif before == Status.WAITING_FOR_PAUSE:
                after = Status.RUNNING
                self._set(inst, status=after, updated_at=now)
        elif action == "terminate":
            if before not in FINITE_STATUSES:
                after = Status.TERMINATED
                gen += 1
                self._set(
                    inst, status=after, wake_at=None, generation=gen, updated_at=now, ended_at=now
                )
        elif action == "restart":
            after = Status.QUEUED
            gen += 1
            keys = list(inst.steps)  # in the order the steps were first recorded
            if restart_from is not None and restart_from in inst.steps:
                for key in keys[keys.index(restart_from) :]:
                    del inst.steps[key]
            else:
                inst.steps.clear()
                inst.events = [e for e in inst.events if not e.consumed]
            self._set(
                inst,
                status=after,
                wake_at=now,
                generation=gen,
                output=None,
                error=None,
                updated_at=now,
                started_at=None,
                ended_at=None,
            )
        else:
            raise ValueError(f"unknown control action {action!r}")
        return ControlResult(before, after, gen)

    async def delete_instance(self, pk: int) -> bool:
        inst = self._by_pk.pop(pk, None)
        if inst is None:
            return False
        del self._by_key[(inst.row.workflow, inst.row.scope, inst.row.id)]
        return True

    async def recover(self, now: float) -> int:
        count = 0
        for inst in self._by_pk.values():
            if inst.row.status == Status.RUNNING:
                self._set(inst, status=Status.QUEUED, wake_at=now, updated_at=now)
                count += 1
            elif inst.row.status == Status.WAITING_FOR_PAUSE:
                self._set(inst, status=Status.PAUSED, wake_at=None, updated_at=now)
        return count

    # -- several nodes: there is only this one -----------------------------------------------

    shared = False
    node_id = "local"

    async def heartbeat(self, now: float) -> None:
        return None

    async def renew_leases(self, pks: Sequence[int], now: float) -> set[int]:
        return {
            pk
            for pk in pks
            if (inst := self._by_pk.get(pk)) is None or inst.row.status not in ACTIVE_STATUSES
        }

    async def park_run(self, pk: int, generation: int, wake_at: float | None, now: float) -> bool:
        inst = self._live(pk, generation)  # nobody else claims: the row stays running
        return inst is not None and inst.row.status == Status.RUNNING

    async def unpark_run(self, pk: int, generation: int, now: float) -> bool:
        return self._live(pk, generation) is not None

    async def listen(self, callback: Callable[[str, str], None]) -> None:
        return None  # every change is made by this process's engine, which knows of it
