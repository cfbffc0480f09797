"""Helpers shared by the unit tests (imported as ``unit_support``)."""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from dynamic_workflows.binding import Instance
from dynamic_workflows.host import HostMetrics, LiveProject, Project, create_dev_app, load_config
from dynamic_workflows.testing import WorkflowTestEnv
from dynamic_workflows.workers import WorkflowEntrypoint

RunFn = Callable[[Any, Any], Awaitable[Any]]
EnvFactory = Callable[..., WorkflowTestEnv]
DevClientFactory = Callable[..., Awaitable[httpx.AsyncClient]]
"""The ``dev_client`` fixture: ``await dev_client(config, entry, storage_url=...)``."""

START = 1_767_225_600.0
"""Where every test's MockClock starts (2026-01-01T00:00:00Z, the MockClock default)."""


def workflow(run: RunFn) -> type[WorkflowEntrypoint]:
    """A WorkflowEntrypoint class whose ``run(event, step)`` is ``run``: lets a test keep its
    workflow next to the counters it records into."""

    class _Workflow(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            return await run(event, step)

    return _Workflow


async def until(predicate: Callable[[], bool], *, timeout: float = 5.0) -> None:
    """Yield to the loop until ``predicate()`` holds (real time, bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


async def hibernated(wf: WorkflowTestEnv, instance: Instance) -> float:
    """Wait until ``instance`` hibernates with a wake-up time in the future; return that time.
    (A ``waiting`` row whose time has come is about to run again, so it does not count.)"""
    while True:
        await wf.wait_for(instance, "waiting")
        row = await wf.storage.get_instance(wf.binding.name, wf.binding.scope, instance.id)
        assert row is not None
        wake_at = row.wake_at
        if row.status == "waiting" and wake_at is not None and wake_at > wf.clock.now():
            return wake_at
        await asyncio.sleep(0.001)


async def through_hibernations(wf: WorkflowTestEnv, instance: Instance, times: int) -> Any:
    """Drive ``instance`` on a frozen clock through ``times`` hibernations, then to its end.

    Each time the instance hibernates, virtual time moves to its wake-up time. Unlike autojump,
    this makes sure the run really hibernated first (so the next run is a replay from storage)
    however slow the machine is. Returns the final status dict.
    """
    async with wf.clock.frozen():
        for _ in range(times):
            wake_at = await hibernated(wf, instance)
            # (Exact for the whole-second and half-second times these tests use.)
            wf.clock.advance(wake_at - wf.clock.now())
        return await wf.wait_for(instance)


@contextlib.asynccontextmanager
async def dev_app_client(
    folder: Path, config: str, entry: str, *, storage_url: str = "memory://"
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``dwf dev``'s app, in-process (tenant code too), over the project ``config``
    (its wrangler.jsonc) and ``entry`` (its src/entry.py) written to ``folder``."""
    (folder / "src").mkdir(parents=True)
    (folder / "wrangler.jsonc").write_text(config)
    (folder / "src" / "entry.py").write_text(textwrap.dedent(entry))
    live = LiveProject(
        lambda: Project(load_config(folder), storage_url=storage_url, loader_mode="in-process")
    )
    await live.start()
    transport = httpx.ASGITransport(app=create_dev_app(live, HostMetrics(live)))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://dev.test") as client:
            yield client
    finally:
        await live.stop()
