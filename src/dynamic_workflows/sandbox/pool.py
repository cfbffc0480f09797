"""A pool of pre-forked, confined, warmed worker processes, and the fork server behind it.

::

    WorkerPool ── ZygoteProcess (fork server, replaced every ``zygote_max_forks`` forks)
        └── WorkerProcess x n  (a forked, confined, warmed worker and its socket)
              ├── calls in flight, multiplexed by id (Load, Call, Run)
              ├── the capabilities it was given (env bindings, objects returned to it)
              └── limits: wall time per call, CPU while a call is in flight (a watchdog reads
                  /proc/<pid>/stat), memory (RLIMIT_AS in the worker)

A worker belongs to one tenant once it has been loaded; it is never handed to another.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from .errors import ProtocolError, TenantWorkerError
from .forkserver import ZygoteProcess
from .framing import DEFAULT_MAX_FRAME
from .process import WorkerProcess
from .protocol import (
    ZygoteReady,
)

if TYPE_CHECKING:
    from .confine import ConfinementPolicy

__all__ = ["WorkerPool"]

log = logging.getLogger("dynamic_workflows.sandbox")

_WATCHDOG_INTERVAL = 0.05
_REFILL_DELAY = 0.02
_START_ATTEMPTS = 3
"""Forks a worker gets before its caller hears that none would start: a fresh fork that exits
before its Hello (seen under load, right after a restart) is the pool's failure, not the
tenant's, and it errored the instance that asked for the worker."""


class WorkerPool:
    """Pre-forked, confined, warmed workers, ready to be given to a tenant.

    ``warm``: how many idle workers to keep ready. ``zygote_max_forks``: the fork server is
    replaced after that many forks (workers share its address-space layout, so a long-lived
    one would let every tenant learn the same ASLR secrets).
    """

    def __init__(
        self,
        policy: ConfinementPolicy,
        *,
        warm: int = 2,
        zygote_max_forks: int = 256,
        start_timeout: float = 15.0,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        if warm < 0:
            raise ValueError("warm must be >= 0")
        if zygote_max_forks < 1:
            raise ValueError("zygote_max_forks must be >= 1")
        self.policy = policy
        self.warm = warm
        self.zygote_max_forks = zygote_max_forks
        self.start_timeout = start_timeout
        self.max_frame = max_frame
        self.ready_info: ZygoteReady | None = None
        self._zygote: ZygoteProcess | None = None
        self._old_zygotes: list[ZygoteProcess] = []
        self._rotating: asyncio.Task[None] | None = None
        self._ready: deque[WorkerProcess] = deque()
        self._filling = 0
        self._refill_pending = False
        self._all: set[WorkerProcess] = set()
        self._busy: set[WorkerProcess] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._start_lock: asyncio.Lock | None = None
        self.closed = False
        self.spawned = 0

    async def start(self) -> None:
        """Start the fork server and begin warming workers."""
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._zygote is None:
                zygote = ZygoteProcess(self.policy, max_frame=self.max_frame)
                self.ready_info = await zygote.start(self.start_timeout)
                self._zygote = zygote
        self._refill()

    async def acquire(self) -> WorkerProcess:
        """A warm worker of nobody's (forked now if none is ready)."""
        if self.closed:
            raise RuntimeError("the worker pool is closed")
        if self._zygote is None:
            await self.start()
        while self._ready:
            worker = self._ready.popleft()
            if worker.usable:
                self._refill_soon()
                return worker
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                worker = await self._spawn()
                break
            except TenantWorkerError as exc:
                if attempt == _START_ATTEMPTS or self.closed:
                    raise
                log.warning("%s; forking another", exc)
        self._refill_soon()
        return worker

    def _refill_soon(self) -> None:
        # Forking and warming a replacement costs a few ms of CPU; done at once it competes
        # with the very request that took the worker (measured: cold p50 5 ms instead of 2.5 on
        # two cores). The remaining warm workers cover a burst meanwhile.
        if not self._refill_pending:
            self._refill_pending = True
            asyncio.get_running_loop().call_later(_REFILL_DELAY, self._deferred_refill)

    def _deferred_refill(self) -> None:
        self._refill_pending = False
        self._refill()

    def _refill(self) -> None:
        while not self.closed and len(self._ready) + self._filling < self.warm:
            self._filling += 1
            self._spawn_task(self._fill_one())

    async def _fill_one(self) -> None:
        try:
            worker = await self._spawn()
        except TenantWorkerError as exc:
            # A child forked by a fork server that is being replaced (rotation, or its death)
            # exits before its Hello: no tenant was waiting on it, so fork another, later.
            if not self.closed:
                log.warning("could not pre-fork a worker (%s); forking another", exc.reason)
                self._refill_soon()
            return
        except Exception:
            if not self.closed:  # a fork cut short by close() is no failure
                log.exception("could not pre-fork a worker")
            return
        finally:
            self._filling -= 1
        if self.closed:
            worker.shutdown()
        else:
            self._ready.append(worker)

    async def _spawn(self) -> WorkerProcess:
        zygote = self._zygote
        assert zygote is not None
        if zygote.forks >= self.zygote_max_forks and self._rotating is None:
            self._rotating = self._spawn_task(self._rotate())
        if zygote.closed:
            # It died (killed, crashed): start another rather than fail every tenant.
            if self._rotating is None:
                self._rotating = self._spawn_task(self._rotate())
            await asyncio.shield(self._rotating)
            zygote = self._zygote
            assert zygote is not None
            if zygote.closed:
                raise ProtocolError("the fork server is gone and could not be restarted")
        pid, pidfd, sock = await zygote.spawn()
        worker = WorkerProcess(
            zygote,
            pid,
            pidfd,
            sock,
            policy=self.policy,
            max_frame=self.max_frame,
            on_call_started=self._watch,
            on_closed=self._forget,
        )
        self._all.add(worker)
        self.spawned += 1
        try:
            await worker.start(self.start_timeout)
        except BaseException:
            worker.kill("failed to start")
            raise
        return worker

    async def _rotate(self) -> None:
        try:
            fresh = ZygoteProcess(self.policy, max_frame=self.max_frame)
            await fresh.start(self.start_timeout)
            old, self._zygote = self._zygote, fresh
            if old is not None and old.closed:
                log.warning(
                    "started a new fork server (pid %s) in place of one that died", fresh.pid
                )
            if old is not None:
                old.retire()
                self._old_zygotes.append(old)
            # A fork server that is gone must still be reaped (waited for), or its process
            # handle is dropped while the kernel keeps a zombie.
            for dead in [z for z in self._old_zygotes if z.closed]:
                self._spawn_task(dead.close())
            self._old_zygotes = [z for z in self._old_zygotes if not z.closed]
        except Exception:
            log.exception("could not start a replacement fork server; keeping the old one")
        finally:
            self._rotating = None

    def _spawn_task(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _forget(self, worker: WorkerProcess) -> None:
        self._all.discard(worker)
        self._busy.discard(worker)

    # -- the CPU watchdog ----------------------------------------------------------------------

    def _watch(self, worker: WorkerProcess) -> None:
        self._busy.add(worker)
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = self._spawn_task(self._watch_loop())

    async def _watch_loop(self) -> None:
        while self._busy:
            await asyncio.sleep(_WATCHDOG_INTERVAL)
            for worker in list(self._busy):
                self._check(worker)

    def _check(self, worker: WorkerProcess) -> None:
        if worker.dead or not worker.busy:
            self._busy.discard(worker)
            return
        worker.check_steps()
        cpu = worker.check_cpu()
        if cpu is None:  # unreadable, or the worker was killed for a call's CPU limit
            return
        if cpu > self.policy.cpu_seconds / 2:
            # RLIMIT_CPU counts the worker's whole life: retire it before it is reached.
            worker.retired = True

    # -- shutdown --------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop every worker and the fork server(s)."""
        self.closed = True
        for worker in list(self._all) + list(self._ready):
            worker.shutdown()
        self._ready.clear()
        for task in list(self._tasks):
            task.cancel()
        for zygote in [self._zygote, *self._old_zygotes]:
            if zygote is not None:
                await zygote.close()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for worker in list(self._all):
            worker.cancel_tasks()
        self._zygote = None

    def stats(self) -> dict[str, Any]:
        """Counts for status pages: workers alive, ready, busy, forked so far."""
        return {
            "workers": len(self._all),
            "ready": len(self._ready),
            "busy": len(self._busy),
            "spawned": self.spawned,
            "zygote_pid": self._zygote.pid if self._zygote is not None else None,
            "isolation": self.ready_info.summary if self.ready_info is not None else None,
        }
