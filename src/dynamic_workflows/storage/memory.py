"""An in-memory backend for tests and throwaway runs: SQLite's semantics, no durability.

Every state change is :mod:`~dynamic_workflows.core.transitions`'s: a method finds the instance,
asks the transition, and applies the answer to its dicts.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec

from ..core import transitions as t
from ..core.journal import ErrorInfo, JournalEntry
from ..core.logs import LogLine
from ..core.retention import retain_until
from .base import (
    Claim,
    ControlResult,
    EventDelivery,
    InstanceRow,
    LogWrite,
    NewInstance,
    WaitResult,
    new_row,
)

__all__ = ["MemoryStorage"]


@dataclass
class _Instance:
    row: InstanceRow
    steps: dict[tuple[str, int], JournalEntry] = field(default_factory=dict)
    """In the order the steps were first recorded."""
    buffered: list[t.BufferedEvent] = field(default_factory=list)
    """Events not consumed yet, in arrival order."""
    consumed: list[t.BufferedEvent] = field(default_factory=list)
    logs: list[tuple[int, LogLine]] = field(default_factory=list)
    """Its runs' lines, numbered, in order."""


class MemoryStorage:
    """Everything in dicts. Not durable; fine for unit tests and the test harness."""

    def __init__(self) -> None:
        self._by_pk: dict[int, _Instance] = {}
        self._by_key: dict[tuple[str, str, str], int] = {}
        self._next_pk = 1
        self._next_seq = 1
        self._next_log = 1
        self._due: list[tuple[float, int]] = []  # lazy heap of (wake_at, pk)
        self._ticks: dict[tuple[str, str], float] = {}  # schedules' last ticks

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # -- helpers ------------------------------------------------------------------------------

    def _apply(self, inst: _Instance, change: t.Change) -> InstanceRow:
        updates = change.updates()
        if updates:
            inst.row = msgspec.structs.replace(inst.row, **updates)
            if inst.row.wake_at is not None:
                heapq.heappush(self._due, (inst.row.wake_at, inst.row.pk))
        return inst.row

    def _update_step(self, inst: _Instance, update: t.StepUpdate) -> None:
        key = (update.name, update.count)
        inst.steps[key] = msgspec.structs.replace(inst.steps[key], **update.updates())

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
            row = new_row(pk, item, now)
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

    async def claim_due(self, now: float, limit: int, *, ahead: float = 0.0) -> list[Claim]:
        now += ahead  # one owner: no lease to judge
        claims: list[Claim] = []
        while self._due and len(claims) < limit:
            wake_at, pk = self._due[0]
            if wake_at > now:
                break
            heapq.heappop(self._due)
            inst = self._by_pk.get(pk)
            if inst is None or inst.row.wake_at != wake_at:
                continue  # stale heap entry
            change = t.claim(inst.row, now)
            if change is None:
                continue
            claims.append(Claim(self._apply(inst, change), list(inst.steps.values())))
        return claims

    async def next_due(self) -> float | None:
        while self._due:
            wake_at, pk = self._due[0]
            inst = self._by_pk.get(pk)
            if (
                inst is not None
                and inst.row.wake_at == wake_at
                and inst.row.status in t.CLAIMABLE_STATUSES
            ):
                return wake_at
            heapq.heappop(self._due)
        return None

    # -- live runs --------------------------------------------------------------------------

    async def record_steps(
        self,
        writes: Sequence[tuple[int, int, JournalEntry]],
        now: float,
        *,
        logs: Sequence[LogWrite] = (),
    ) -> list[bool]:
        done: list[bool] = []
        for pk, generation, entry in writes:
            inst = self._by_pk.get(pk)
            if inst is not None and t.is_live(inst.row.status, inst.row.generation, generation):
                inst.steps[(entry.name, entry.count)] = entry
                done.append(True)
            else:
                done.append(False)
        for write in logs:
            inst = self._by_pk.get(write.pk)
            if inst is None or not t.is_live(
                inst.row.status, inst.row.generation, write.generation
            ):
                continue
            for line in write.lines:
                inst.logs.append((self._next_log, line))
                self._next_log += 1
            inst.row = msgspec.structs.replace(
                inst.row,
                log_bytes=inst.row.log_bytes + write.bytes,
                log_dropped=inst.row.log_dropped + write.dropped,
            )
        return done

    async def load_logs(
        self,
        pk: int,
        *,
        after: int = 0,
        limit: int = 1000,
        step: tuple[str, int] | None = None,
        attempt: int | None = None,
    ) -> list[tuple[int, LogLine]]:
        inst = self._by_pk.get(pk)
        if inst is None:
            return []
        out = []
        for seq, line in inst.logs:
            if seq <= after:
                continue
            if step is not None and (line.step, line.count) != step:
                continue
            if attempt is not None and line.attempt != attempt:
                continue
            out.append((seq, line))
            if len(out) >= limit:
                break
        return out

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
        inst = self._by_pk.get(pk)
        if inst is None:
            return None
        outcome = t.register_wait(
            inst.row, generation, name, count, event_type, deadline, inst.buffered
        )
        if outcome is None:
            return None
        if outcome.consumed is not None:
            inst.buffered.remove(outcome.consumed)
            inst.consumed.append(outcome.consumed)
        inst.steps[(name, count)] = msgspec.structs.replace(outcome.entry, started_at=now)
        return outcome.result

    async def expire_wait(
        self, pk: int, generation: int, name: str, count: int, error: ErrorInfo, now: float
    ) -> tuple[bool, bytes | None] | None:
        inst = self._by_pk.get(pk)
        if inst is None:
            return None
        outcome = t.expire_wait(inst.row, generation, inst.steps.get((name, count)), error)
        if outcome is None:
            return None
        if outcome.step is not None:
            self._update_step(inst, outcome.step)
        return (outcome.timed_out, outcome.value)

    async def add_event(
        self, pk: int, event_type: str, payload: bytes, now: float
    ) -> EventDelivery | None:
        inst = self._by_pk.get(pk)
        if inst is None:
            return None
        outcome = t.add_event(inst.row, event_type, payload, now, inst.steps.values())
        event = t.BufferedEvent(self._next_seq, event_type, payload, now)
        self._next_seq += 1
        if outcome.step is None:
            inst.buffered.append(event)
        else:
            inst.consumed.append(event)
            self._update_step(inst, outcome.step)
        self._apply(inst, outcome.change)
        return outcome.delivery

    async def finish_run(
        self,
        pk: int,
        generation: int,
        status: str,
        output: bytes | None,
        error: ErrorInfo | None,
        now: float,
    ) -> bool:
        inst = self._by_pk.get(pk)
        if inst is None:
            return False
        change = t.finish_run(inst.row, generation, status, output, error, now)
        if change is None:
            return False
        self._apply(inst, change)
        return True

    async def suspend_run(
        self, pk: int, generation: int, wake_at: float | None, held_by_pause: bool, now: float
    ) -> str | None:
        inst = self._by_pk.get(pk)
        if inst is None:
            return None
        outcome = t.suspend_run(inst.row, generation, wake_at, held_by_pause, now)
        if outcome is None:
            return None
        self._apply(inst, outcome.change)
        return outcome.status

    async def release_run(self, pk: int, generation: int, now: float) -> bool:
        inst = self._by_pk.get(pk)
        if inst is None:
            return False
        change = t.release_run(inst.row, generation, now)
        if change is None:
            return False
        self._apply(inst, change)
        return True

    async def control(
        self, pk: int, action: str, now: float, *, restart_from: tuple[str, int] | None = None
    ) -> ControlResult | None:
        t.check_control_action(action)
        inst = self._by_pk.get(pk)
        if inst is None:
            return None
        outcome = t.control(
            inst.row,
            action,
            now,
            restart_from=restart_from,
            step_recorded=restart_from is not None and restart_from in inst.steps,
        )
        if outcome.truncate is not None:
            cut = outcome.truncate.from_step
            if cut is None:
                inst.steps.clear()
            else:
                keys = list(inst.steps)
                for key in keys[keys.index(cut) :]:
                    del inst.steps[key]
        if outcome.drop_consumed_events:
            inst.consumed.clear()
        self._apply(inst, outcome.change)
        return outcome.result

    async def delete_instance(self, pk: int) -> bool:
        inst = self._by_pk.pop(pk, None)
        if inst is None:
            return False
        del self._by_key[(inst.row.workflow, inst.row.scope, inst.row.id)]
        return True

    async def fire_schedule(
        self, workflow: str, cron: str, tick: float, item: NewInstance, now: float
    ) -> InstanceRow | None:
        key = (workflow, cron)
        last = self._ticks.get(key)
        if last is None:
            self._ticks[key] = now
            return None
        if last >= tick:
            return None
        self._ticks[key] = tick
        return (await self.create_instances([item], now))[0]

    async def delete_retained(self, now: float, limit: int) -> int:
        due = []
        for pk, inst in self._by_pk.items():
            r = inst.row
            until = retain_until(r.status, r.ended_at, r.success_retention, r.error_retention)
            if until is not None and until <= now:
                due.append(pk)
                if len(due) >= limit:
                    break
        for pk in due:
            await self.delete_instance(pk)
        return len(due)

    async def recover(self, now: float) -> int:
        plan = {bulk.status: bulk for bulk in t.recover_plan(now)}
        count = 0
        for inst in self._by_pk.values():
            bulk = plan.get(inst.row.status)
            if bulk is not None:
                self._apply(inst, bulk.change)
                count += bulk.requeued
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
            if (inst := self._by_pk.get(pk)) is None or not t.is_held(inst.row.status)
        }

    async def park_run(self, pk: int, generation: int, wake_at: float | None, now: float) -> bool:
        inst = self._by_pk.get(pk)  # nobody else claims: the row stays running
        return inst is not None and t.may_park(inst.row.status, inst.row.generation, generation)

    async def unpark_run(self, pk: int, generation: int, now: float) -> bool:
        inst = self._by_pk.get(pk)
        return inst is not None and t.is_live(inst.row.status, inst.row.generation, generation)

    async def listen(self, callback: Callable[[str, str], None]) -> None:
        return None  # every change is made by this process's engine, which knows of it
