"""An in-memory backend for tests and throwaway runs: SQLite's semantics, no durability.

Every state change is :mod:`~dynamic_workflows.core.transitions`'s: a method finds the instance,
asks the transition, and applies the answer to its dicts.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from ..core import tenancy
from ..core import transitions as t
from ..core.journal import ErrorInfo, JournalEntry, RollbackOutcome
from ..core.logs import LogLine
from ..core.retention import retain_until
from ..core.tenancy import TenantPolicy, TenantState
from .base import (
    Claim,
    ControlResult,
    EventDelivery,
    InstanceRow,
    LogWrite,
    NewInstance,
    ScopeUsage,
    ScopeUsagePage,
    WaitResult,
    check_scope_order,
    new_row,
    scope_rank,
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
        self._due: dict[str, list[tuple[float, int]]] = {}  # per scope, lazy heaps (wake_at, pk)
        self._held: dict[int, tuple[str, str]] = {}  # active rows: (scope, workflow)
        self._tenants: dict[str, TenantState] = {}
        self._share = tenancy.FairShare()
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
            row = inst.row
            if row.wake_at is not None:
                heapq.heappush(self._due.setdefault(row.scope, []), (row.wake_at, row.pk))
            if row.status in t.ACTIVE_STATUSES:
                self._held[row.pk] = (row.scope, row.workflow)
            else:
                self._held.pop(row.pk, None)
        return inst.row

    def _update_step(self, inst: _Instance, update: t.StepUpdate) -> None:
        key = (update.name, update.count)
        inst.steps[key] = msgspec.structs.replace(inst.steps[key], **update.updates())

    # -- instances --------------------------------------------------------------------------

    async def create_instances(
        self,
        items: Sequence[NewInstance],
        now: float,
        *,
        tenants: Mapping[str, TenantPolicy] | None = None,
    ) -> list[InstanceRow | None]:
        counts: dict[str, int] = {}
        for item in items:
            counts[item.scope] = counts.get(item.scope, 0) + 1
        states: dict[str, TenantState] = {}
        for scope, n in counts.items():  # check every scope before anything is written
            old = self._tenants.get(scope) or TenantState(scope, tenancy.DEFAULT_POLICY)
            policy = (tenants or {}).get(scope)
            if policy is None:
                states[scope] = old
                continue
            if policy.max_live is not None:
                live = sum(
                    1
                    for i in self._by_pk.values()
                    if i.row.scope == scope and i.row.status not in t.FINITE_STATUSES
                )
                tenancy.check_live(policy, scope, live, n)
            bucket = tenancy.take_tokens(policy, scope, old.tokens, old.tokens_at, n, now)
            states[scope] = TenantState(
                scope,
                policy,
                None if bucket is None else bucket.tokens,
                None if bucket is None else bucket.at,
            )
        self._tenants.update(states)
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
            heapq.heappush(self._due.setdefault(item.scope, []), (now, pk))
            out.append(row)
        return out

    async def get_tenant(self, scope: str) -> TenantState | None:
        return self._tenants.get(scope)

    async def list_tenants(self) -> list[TenantState]:
        return [self._tenants[s] for s in sorted(self._tenants)]

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
        check_scope_order(order, steps=steps)
        found: dict[str, ScopeUsage] = {}
        for inst in self._by_pk.values():
            row = inst.row
            if (workflow is not None and row.workflow != workflow) or (
                not unscoped and not row.scope
            ):
                continue
            seen = found.get(row.scope)
            if seen is None:
                found[row.scope] = ScopeUsage(
                    row.scope,
                    {row.status: 1},
                    len(inst.steps) if steps else 0,
                    row.created_at,
                    row.updated_at,
                    row.params,
                )
                continue
            seen.by_status[row.status] = seen.by_status.get(row.status, 0) + 1
            found[row.scope] = msgspec.structs.replace(
                seen,
                steps=seen.steps + (len(inst.steps) if steps else 0),
                last_created_at=max(seen.last_created_at, row.created_at),
                last_updated_at=max(seen.last_updated_at, row.updated_at),
                # _by_pk is in pk order (pks only grow): a later row is a newer instance.
                sample_params=row.params,
            )
        usages = list(found.values())
        usages.sort(key=lambda u: scope_rank(order, u))
        totals: dict[str, int] = {}
        for u in usages:
            for status, n in u.by_status.items():
                totals[status] = totals.get(status, 0) + n
        return ScopeUsagePage(
            usages[offset : offset + limit],
            len(usages),
            totals,
            sum(u.steps for u in usages),
        )

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

    def _due_in(self, scope: str, until: float, k: int) -> list[tenancy.Candidate]:
        """Up to ``k`` claimable instances of ``scope`` due by ``until``, earliest first (the
        heap is left as it was, less its stale entries)."""
        heap = self._due.get(scope, [])
        out: list[tenancy.Candidate] = []
        taken: list[tuple[float, int]] = []
        while heap and len(out) < k and heap[0][0] <= until:
            wake_at, pk = heapq.heappop(heap)
            inst = self._by_pk.get(pk)
            if (
                inst is None
                or inst.row.wake_at != wake_at
                or inst.row.status not in t.CLAIMABLE_STATUSES
            ):
                continue  # stale heap entry
            taken.append((wake_at, pk))
            out.append(tenancy.Candidate(pk, scope, inst.row.workflow, wake_at))
        for entry in taken:
            heapq.heappush(heap, entry)
        if not heap:
            self._due.pop(scope, None)
        return out

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
        if limit <= 0:
            return []
        candidates = {scope: self._due_in(scope, due, limit) for scope in list(self._due)}
        candidates = {scope: items for scope, items in candidates.items() if items}
        policies = {s: self._policy(s) for s in candidates}
        wl = dict(workflow_limits or {})
        scopes, workflows = tenancy.capped(
            candidates, {s: p.max_running for s, p in policies.items()}, wl
        )
        admission = None
        if scopes or workflows:
            by_scope: dict[str, int] = {}
            by_workflow: dict[str, int] = {}
            for scope, workflow in self._held.values():
                by_scope[scope] = by_scope.get(scope, 0) + 1
                by_workflow[workflow] = by_workflow.get(workflow, 0) + 1
            admission = tenancy.Admission(
                {s: p.max_running for s, p in policies.items()}, wl, by_scope, by_workflow
            )
        picked = tenancy.choose(
            self._share if fair else None,
            candidates,
            {s: p.weight for s, p in policies.items()},
            limit,
            admission,
        )
        claims: list[Claim] = []
        for c in picked:
            inst = self._by_pk[c.pk]
            change = t.claim(inst.row, now)
            if change is None:
                continue
            claims.append(Claim(self._apply(inst, change), list(inst.steps.values())))
        return claims

    def _policy(self, scope: str) -> TenantPolicy:
        state = self._tenants.get(scope)
        return tenancy.DEFAULT_POLICY if state is None else state.policy

    async def next_due(self) -> float | None:
        best: float | None = None
        for scope in list(self._due):
            heap = self._due[scope]
            while heap:
                wake_at, pk = heap[0]
                inst = self._by_pk.get(pk)
                if (
                    inst is not None
                    and inst.row.wake_at == wake_at
                    and inst.row.status in t.CLAIMABLE_STATUSES
                ):
                    best = wake_at if best is None else min(best, wake_at)
                    break
                heapq.heappop(heap)
            if not heap:
                del self._due[scope]
        return best

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
        *,
        rollback: RollbackOutcome | None = None,
    ) -> bool:
        return self._transition(
            pk, lambda row: t.finish_run(row, generation, status, output, error, now, rollback)
        )

    async def begin_rollback(self, pk: int, generation: int, now: float) -> bool:
        return self._transition(pk, lambda row: t.begin_rollback(row, generation, now))

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
        return self._transition(pk, lambda row: t.release_run(row, generation, now))

    def _transition(self, pk: int, decide: Callable[[InstanceRow], t.Change | None]) -> bool:
        """Apply to instance ``pk`` the change ``decide`` makes of its row; False if there is
        no such instance or it makes none (the run is stale)."""
        inst = self._by_pk.get(pk)
        if inst is None:
            return False
        change = decide(inst.row)
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
            rollback=inst.row.rollback,
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
        self._held.pop(pk, None)
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
