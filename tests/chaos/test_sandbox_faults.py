"""Sandbox faults: workers and fork servers killed under load, hostile tenants (hanging,
spinning, exhausting memory, writing garbage on their sockets) confined to themselves."""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from dynamic_workflows import Engine, MemoryStorage
from dynamic_workflows.sandbox.confine import probe
from dynamic_workflows.sandbox.errors import TenantWorkerError
from dynamic_workflows.sandbox.loader import Loader
from dynamic_workflows.sandbox.process import WorkerProcess
from dynamic_workflows.workers import WorkflowEntrypoint

from .hosts import _children
from .scenarios import sandbox_faults

pytestmark = pytest.mark.chaos

PARKING = """
from workers import WorkflowEntrypoint

class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do("before")
        async def before():
            return 1

        await before()
        await step.sleep("nap", "2 seconds")  # within the warm horizon: parked in the worker

        @step.do("after")
        async def after():
            return 2

        return await before() + await after()
"""

ANSWERING = """
from workers import WorkerEntrypoint

class Default(WorkerEntrypoint):
    async def ok(self):
        return "ok"
"""


async def test_a_parked_run_outlives_its_worker_killed_again_and_again() -> None:
    """A run parked in its worker (quiescent, waiting for a near wake-up) runs no code of its
    own: its worker killed under it (by the OOM killer, an operator, another run of the tenant)
    is no strike against it, however often. Before, three such deaths in a row errored the
    instance ('the worker process was killed by SIGKILL'), as if its own code had crashed."""
    report = probe()
    code = {"main_module": "main.py", "modules": {"main.py": textwrap.dedent(PARKING)}}
    async with (
        Loader(unconfined=not report.safe_for_untrusted(), warm=1, report=report) as loader,
        Engine(MemoryStorage(), warm_horizon=5.0) as engine,
    ):

        class Dispatcher(WorkflowEntrypoint):
            async def run(self, event: Any, step: Any) -> Any:
                stub = loader.get("tenant", lambda: code)
                return await stub.get_entrypoint("TenantWorkflow").run(event, step)

        binding = engine.register("wf", Dispatcher)
        instance = await binding.create(id="parked")
        for _ in range(4):
            deadline = time.monotonic() + 10
            while engine.parked_runs() != 1:
                assert time.monotonic() < deadline, await instance.status()
                await asyncio.sleep(0.01)
            zygote = loader.pool.stats()["zygote_pid"]
            for pid in _children().get(zygote, []):
                os.kill(pid, signal.SIGKILL)
            # (a poll: the engine has no event for a run's leaving the parked set)
            while engine.parked_runs():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        deadline = time.monotonic() + 20
        while (status := await instance.status())["status"] not in ("complete", "errored"):
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.02)
    assert status["status"] == "complete", status
    assert status["output"] == 3


async def test_a_worker_that_dies_before_it_is_ready_is_forked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fresh fork that does not become ready (seen under load after a restart: it exits
    with code 0 before its Hello) is the pool's failure: the pool forks another. Before, the
    caller got the TenantWorkerError, and a run that asked for the worker errored its
    instance ('tenant '<pool>': worker N exited before it was ready')."""
    starts = 0
    real_start = WorkerProcess.start

    async def start(self: WorkerProcess, timeout: float) -> None:
        nonlocal starts
        await real_start(self, timeout)
        starts += 1
        if starts == 1:
            raise TenantWorkerError("<pool>", f"worker {self.pid} exited before it was ready")

    monkeypatch.setattr(WorkerProcess, "start", start)
    report = probe()
    code = {"main_module": "main.py", "modules": {"main.py": textwrap.dedent(ANSWERING)}}
    async with Loader(unconfined=not report.safe_for_untrusted(), warm=0, report=report) as loader:
        assert await loader.get("tenant", lambda: code).get_entrypoint().ok() == "ok"
    assert starts == 2


async def test_a_run_whose_worker_will_not_start_is_replayed_not_errored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When no worker would start for a run even after the pool's own retries, the run is
    treated as one whose worker died before any step: replayed soon (and failed only if that
    keeps happening), not errored at once."""
    starts = 0
    real_start = WorkerProcess.start

    async def start(self: WorkerProcess, timeout: float) -> None:
        nonlocal starts
        await real_start(self, timeout)
        starts += 1
        if starts <= 3:  # every fork of the first acquire (the pool tries 3)
            raise TenantWorkerError("<pool>", f"worker {self.pid} exited before it was ready")

    monkeypatch.setattr(WorkerProcess, "start", start)
    report = probe()
    code = {"main_module": "main.py", "modules": {"main.py": textwrap.dedent(PARKING)}}
    async with (
        Loader(unconfined=not report.safe_for_untrusted(), warm=0, report=report) as loader,
        Engine(MemoryStorage(), warm_horizon=0) as engine,
    ):

        class Dispatcher(WorkflowEntrypoint):
            async def run(self, event: Any, step: Any) -> Any:
                stub = loader.get("tenant", lambda: code)
                return await stub.get_entrypoint("TenantWorkflow").run(event, step)

        instance = await engine.register("wf", Dispatcher).create(id="unlucky")
        deadline = time.monotonic() + 20
        while (status := await instance.status())["status"] not in ("complete", "errored"):
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.02)
    assert status["status"] == "complete", status
    assert starts > 3


async def test_workers_and_fork_servers_killed_and_hostile_tenants(tmp_path: Path) -> None:
    figures = await sandbox_faults(tmp_path, seconds=15, worker_kills=6, fork_server_kills=2)
    assert figures["workers killed"] >= 3
