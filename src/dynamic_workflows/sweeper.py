"""Retention: finished instances whose time is up are deleted, a bounded batch at a time.

Every ``interval`` seconds (real time: a cadence, like lease renewal in cluster.py, not a
workflow's time; whether an instance is due is judged on the engine's clock) the sweeper asks
the storage to delete up to ``batch`` due instances (:meth:`Storage.delete_retained`: one
short transaction, with their steps, events and logs), and goes on with the next batch after
yielding to the event loop, until a batch comes back short. A backlog of a million instances is
thus a long series of small transactions between which runs, claims and commits go on.

On a shared database every node sweeps; two nodes sweeping at once skip each other's rows
(``FOR UPDATE SKIP LOCKED``), so it is harmless, and each batch is someone's work done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .core.clock import Clock
from .errors import StorageError
from .storage.base import Storage

__all__ = ["DEFAULT_SWEEP_BATCH", "DEFAULT_SWEEP_INTERVAL", "Sweeper"]

log = logging.getLogger("dynamic_workflows.retention")

DEFAULT_SWEEP_INTERVAL = 60.0
"""Seconds between sweeps (an instance is deleted at most this late)."""

DEFAULT_SWEEP_BATCH = 500
"""Instances deleted per transaction."""


class Sweeper:
    """Deletes the instances whose retention ran out (see the module's docstring)."""

    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        *,
        interval: float = DEFAULT_SWEEP_INTERVAL,
        batch: int = DEFAULT_SWEEP_BATCH,
    ) -> None:
        if interval <= 0 or batch < 1:
            raise ValueError("sweep interval must be positive and batch at least 1")
        self._storage = storage
        self._clock = clock
        self.interval = interval
        self.batch = batch
        self.deleted = 0
        """Instances deleted so far."""
        self.batches = 0
        """Batches (transactions) run so far."""
        self._task: asyncio.Task[None] | None = None

    async def sweep(self) -> int:
        """Delete every instance due now, batch after batch; returns how many."""
        total = 0
        while True:
            n = await self._storage.delete_retained(self._clock.now(), self.batch)
            self.batches += 1
            total += n
            self.deleted += n
            if n < self.batch:
                return total
            await asyncio.sleep(0)  # the engine's other work goes on between batches

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="dwf-retention")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            try:
                n = await self.sweep()
            except StorageError as exc:
                log.warning(
                    "retention sweep failed (%s); trying again in %.0f s", exc, self.interval
                )
            except Exception:  # (a bug: logged, and the next sweep tries again)
                log.exception("retention sweep failed")
            else:
                if n:
                    log.info("retention: deleted %d finished instance(s)", n)
            await asyncio.sleep(self.interval)
