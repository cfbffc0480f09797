"""Run workflows in-process, on virtual time, for tests: hours of sleep take milliseconds.

::

    async with WorkflowTestEnv(MyWorkflow) as wf:
        instance = await wf.binding.create(params={"name": "Ada"})
        status = await wf.wait_for(instance, "complete")
        assert status["output"] == "Hello, Ada!"

Time is a :class:`~dynamic_workflows.core.clock.MockClock` that jumps to the next timer whenever the
program is idle; hold it still with ``async with wf.clock.frozen():`` while a test needs an
instance to stay where it is (for example before sending it an event).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .binding import Instance, WorkflowBinding
from .core.clock import MockClock
from .core.limits import DEFAULT_LIMITS, Limits
from .engine import Engine
from .queries import wait_for_status
from .storage import MemoryStorage, SQLiteStorage, Storage, open_storage
from .storage.base import FINITE_STATUSES

__all__ = ["WorkflowTestEnv"]


class WorkflowTestEnv:
    """An engine on virtual time with one workflow registered as ``name``.

    ``storage``: ``"memory"`` (default), ``"sqlite"`` (a file in ``tmp_path``), a
    ``postgresql://`` URL, or a Storage.

    ``warm_horizon`` is 0 here, unlike the engine's default: every sleep, back-off and event
    wait hibernates the instance, so each wake-up replays ``run()`` from the top, which is what
    shows a workflow that is not deterministic. Pass a horizon to test near wake-ups kept warm.

    ``schedules`` and ``retention``: the workflow's cron schedules and default retention (as
    in its wrangler entry); ``sweep_batch``: instances the retention sweeper deletes per batch.
    """

    def __init__(
        self,
        entrypoint: Any,
        *,
        name: str = "workflow",
        env: Any = None,
        storage: str | Storage = "memory",
        tmp_path: str | Path | None = None,
        clock: MockClock | None = None,
        limits: Limits = DEFAULT_LIMITS,
        concurrency: int = 64,
        warm_horizon: float = 0.0,
        schedules: str | list[str] | None = None,
        retention: dict[str, Any] | None = None,
        sweep_batch: int = 500,
    ) -> None:
        self.clock = clock or MockClock()
        if isinstance(storage, str):
            if storage == "memory":
                storage = MemoryStorage()
            elif storage == "sqlite":
                if tmp_path is None:
                    raise ValueError("storage='sqlite' needs tmp_path")
                storage = SQLiteStorage(Path(tmp_path) / "dwf.sqlite3", durability="normal")
            elif storage.startswith(("postgresql://", "postgres://")):
                storage = open_storage(storage, durability="normal")
            else:
                raise ValueError(
                    "storage must be 'memory', 'sqlite', a postgresql:// URL or a Storage, "
                    f"not {storage!r}"
                )
        self.storage = storage
        self.engine = Engine(
            storage,
            clock=self.clock,
            limits=limits,
            concurrency=concurrency,
            warm_horizon=warm_horizon,
            sweep_batch=sweep_batch,
        )
        self.binding: WorkflowBinding = self.engine.register(
            name, entrypoint, env=env, schedules=schedules, retention=retention
        )

    async def __aenter__(self) -> WorkflowTestEnv:
        await self.engine.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.engine.stop()

    async def wait_for(
        self,
        instance: Instance,
        statuses: str | Iterable[str] = FINITE_STATUSES,
        *,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """Poll until the instance's status is one of ``statuses``; returns its status dict.
        ``timeout`` is in real seconds (virtual time may run far ahead meanwhile)."""
        return await wait_for_status(instance, statuses, timeout=timeout, interval=0.001)
