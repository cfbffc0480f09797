"""Cron-triggered workflows: each tick of a workflow's ``schedules`` creates one instance.

One task per schedule ``(workflow, cron expression)`` sleeps on the engine's clock until the
schedule's next tick, then fires it with :meth:`Storage.fire_schedule`, which moves the
schedule's last tick (the ``schedule_ticks`` row) and creates the instance in one transaction.
That row is what makes a tick fire once: every node of a shared database runs the same tasks and
races for the same tick, and one moves the row; a node killed after the commit finds the tick
spent when it starts again. The instance's id is derived from the tick too
(:func:`~dynamic_workflows.core.cron.tick_instance_id`), so that it can be recognised.

Ticks missed while no node ran: only the latest is fired, once, when a node starts (its event's
``scheduledTime`` says when it was due); older ones are dropped. Cloudflare does not backfill
Cron Triggers, and neither do we beyond this one: a node that restarts across a tick (a deploy,
a crash at the wrong moment) would otherwise lose it, and firing every tick of a long outage
at once would be a burst nobody asked for. A schedule seen for the first time starts with its
first tick after that moment (a schedule added at 15:00 to run daily at midnight does not fire
at once). A schedule removed and added again later counts as missed meanwhile: its latest tick
fires when it comes back.

Built with callbacks, not with the engine: ``make`` builds a tick's instance, ``fired`` hears of
each instance created.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import logging
from collections.abc import Callable

from .core.clock import Clock
from .core.cron import latest_tick, next_tick
from .errors import StorageError
from .storage.base import InstanceRow, NewInstance, Storage

__all__ = ["CronTriggers"]

log = logging.getLogger("dynamic_workflows.schedules")

RETRY_FIRST = 1.0
RETRY_MAX = 60.0
"""Seconds: a tick whose write failed (the database is down) is tried again after the first,
doubling up to the second, until it is fired or the next tick comes."""


class CronTriggers:
    """The cron schedules of one engine's workflows, fired on its clock."""

    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        *,
        make: Callable[[str, str, float], NewInstance],
        fired: Callable[[InstanceRow], None],
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._make = make
        self._fired = fired
        self._schedules: dict[str, tuple[str, ...]] = {}
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._started = False

    def set(self, workflow: str, schedules: tuple[str, ...]) -> None:
        """The (checked) cron expressions of ``workflow``, replacing its earlier ones. Before
        :meth:`start` they take effect then; after, at once (a new schedule starts with its
        next tick)."""
        if schedules:
            self._schedules[workflow] = schedules
        else:
            self._schedules.pop(workflow, None)
        if not self._started:
            return
        for key in [k for k in self._tasks if k[0] == workflow and k[1] not in schedules]:
            self._tasks.pop(key).cancel()
        for cron in schedules:
            if (workflow, cron) not in self._tasks:
                self._spawn(workflow, cron, self._clock.now())

    @property
    def schedules(self) -> dict[str, tuple[str, ...]]:
        """The schedules, by workflow."""
        return dict(self._schedules)

    def _spawn(self, workflow: str, cron: str, wake: float) -> None:
        self._tasks[(workflow, cron)] = asyncio.create_task(
            self._run(workflow, cron, wake), name=f"dwf-cron-{workflow}-{cron}"
        )

    async def start(self) -> None:
        """Fire the latest tick each schedule missed while stopped (recording the schedules
        seen for the first time) before returning, then start one task per schedule."""
        self._started = True
        for workflow, crons in self._schedules.items():
            for cron in crons:
                wake = self._clock.now()  # on failure, the task tries again at once
                with contextlib.suppress(StorageError):
                    await self.fire_due(workflow, cron)
                    # (computed now: the task may first run after the tick)
                    wake = next_tick(cron, self._clock.now())
                self._spawn(workflow, cron, wake)

    async def stop(self) -> None:
        self._started = False
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def fire_due(self, workflow: str, cron: str) -> InstanceRow | None:
        """Fire the latest tick of ``cron`` at or before now if it has not fired (the first
        call for a new schedule only records it); returns the instance created, if any."""
        now = self._clock.now()
        tick = latest_tick(cron, now)
        row = await self._storage.fire_schedule(
            workflow, cron, tick, self._make(workflow, cron, tick), now
        )
        if row is not None:
            log.info(
                "cron %r of %s fired for %s: instance %s",
                cron,
                workflow,
                _iso(tick),
                row.id,
                extra={"event": "cron.fired", "workflow": workflow, "instance": row.id},
            )
            self._fired(row)
        return row

    async def _run(self, workflow: str, cron: str, wake: float) -> None:
        delay = RETRY_FIRST
        await self._clock.sleep_until(wake)
        while True:
            now = self._clock.now()
            try:
                await self.fire_due(workflow, cron)
            except Exception as exc:  # the database is down (or a bug): never stop ticking
                if isinstance(exc, StorageError):
                    log.warning(
                        "cron %r of %s: cannot fire its tick (%s); retrying", cron, workflow, exc
                    )
                else:
                    log.exception("cron %r of %s: firing its tick failed", cron, workflow)
                # Until the next tick at most: the retry then fires that one (the latest).
                await self._clock.sleep_until(min(now + delay, next_tick(cron, now)))
                delay = min(delay * 2, RETRY_MAX)
                continue
            delay = RETRY_FIRST
            await self._clock.sleep_until(next_tick(cron, now))


def _iso(at: float) -> str:
    return _dt.datetime.fromtimestamp(at, _dt.UTC).isoformat().replace("+00:00", "Z")
