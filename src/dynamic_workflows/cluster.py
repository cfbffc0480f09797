"""One node among several sharing a database: its leases, its heartbeat, and what it hears.

On a shared backend (PostgreSQL, ``storage.shared``) every run this node holds is under a lease
in the database. :class:`ClusterNode` renews them all in one statement every third of the lease
time; a lease the database says this node no longer holds (it lapsed, and another node took the
instance over with its generation bumped) ends that run here at once, and even if it did not,
every write of it would be refused (writes are fenced by generation and owner).

Other nodes' transactions NOTIFY what concerns everyone: a new instance, a wake-up due soon, an
event for an instance, a control action on one. The node hears them on one connection and hands
them to the engine's callbacks, so an event sent to any node reaches a run live on this one
promptly; polling at the renewal interval is the fallback when a notification is missed (the
listener reconnects by itself after a drop and reports it, and the engine then re-polls).

Built with callbacks, not with the engine (the engine owns it): ``live`` lists the instances
this node runs, ``on_lost``/``on_event``/``on_control`` act on one of them, ``poke`` wakes the
scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from .core.clock import Clock
from .errors import StorageError
from .storage.base import Storage

__all__ = ["ClusterNode"]

log = logging.getLogger("dynamic_workflows.cluster")

DEFAULT_LEASE_SECONDS = 30.0


class ClusterNode:
    """The shared-database side of one engine: lease renewal, heartbeat, notifications."""

    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        *,
        live: Callable[[], Iterable[int]],
        on_lost: Callable[[int], None],
        on_event: Callable[[int], None],
        on_control: Callable[[int], None],
        poke: Callable[[], None],
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._live = live
        self._on_lost = on_lost
        self._on_event = on_event
        self._on_control = on_control
        self._poke = poke
        lease = float(getattr(storage, "lease_seconds", DEFAULT_LEASE_SECONDS))
        self.lease_seconds = lease
        # A third of the lease: two renewals may fail (a database restart, a long pause) before
        # the lease lapses and another node takes the runs over.
        self.renew_interval = max(0.02, lease / 3)
        self._task: asyncio.Task[None] | None = None
        self.renewals = 0
        self.leases_lost = 0

    @property
    def node_id(self) -> str:
        return self._storage.node_id

    async def start(self) -> None:
        """Announce this node, listen, and start renewing."""
        await self._storage.heartbeat(self._clock.now())
        await self._storage.listen(self._heard)
        self._task = asyncio.create_task(self._keep(), name="dwf-cluster-leases")
        log.info("node %s joined the shared database", self.node_id)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _heard(self, kind: str, subject: str) -> None:
        # Notifications arrive as (kind, subject), e.g. ("event", "42"); a pk we do not run
        # here may have become claimable, so the scheduler looks in every case.
        if kind in ("event", "control") and subject.isdigit():
            pk = int(subject)
            if kind == "event":
                self._on_event(pk)
            else:
                self._on_control(pk)
        self._poke()

    async def _keep(self) -> None:
        # Real time, not the engine's clock: a lease guards against this process stalling, and a
        # test's virtual clock must not see a timer that never ends.
        while True:
            await asyncio.sleep(self.renew_interval)
            try:
                await self.renew()
            except StorageError as exc:
                log.warning("node %s could not renew its leases: %s", self.node_id, exc)
            # The fallback for a missed notification, and how lapsed leases of a dead node's
            # runs are found: the scheduler claims them once due.
            self._poke()

    async def renew(self) -> None:
        """Renew every lease of this node's live runs now; end the runs whose lease was lost."""
        now = self._clock.now()
        pks = list(self._live())
        lost = await self._storage.renew_leases(pks, now) if pks else set()
        await self._storage.heartbeat(now)
        self.renewals += 1
        for pk in lost:
            self.leases_lost += 1
            log.warning(
                "node %s lost the lease of instance pk %d (another node took it over): its run "
                "here stops",
                self.node_id,
                pk,
            )
            self._on_lost(pk)
