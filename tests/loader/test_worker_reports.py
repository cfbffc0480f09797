"""What the host reports about a tenant's worker: a MemoryError that says what happened, and a
log line for every worker or fork server that dies unexpectedly."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

import pytest

from dynamic_workflows import Engine, MemoryStorage
from dynamic_workflows.sandbox.errors import TenantWorkerError
from dynamic_workflows.sandbox.loader import Loader

from .conftest import _REPORT, worker_code
from .test_workflows import dispatcher, wait_status

HOG = """
    from workers import WorkflowEntrypoint

    class TenantWorkflow(WorkflowEntrypoint):
        async def run(self, event, step):
            @step.do("hog", config={"retries": {"limit": 0}})
            async def hog():
                return len(bytearray(1 << 30))

            if event["payload"]["in_step"]:
                return await hog()
            return len(bytearray(1 << 30))  # in run() itself, outside any step
"""


async def test_a_memory_error_says_the_worker_ran_out_of_memory(loader: Loader) -> None:
    # Python raises MemoryError with no message: the instance reported {"name": "MemoryError",
    # "message": ""}, in its error and in the step's.
    code: dict[str, Any] = worker_code(HOG, limits={"memory_mb": 64})
    message = "the tenant's worker ran out of memory (limit 64 MiB)"
    async with Engine(MemoryStorage()) as engine:
        binding = engine.register("wf", dispatcher(loader, lambda: code))
        for in_step in (True, False):
            instance = await binding.create(params={"in_step": in_step})
            status = await wait_status(instance, {"complete", "errored"})
            assert status["error"] == {"name": "MemoryError", "message": message}, in_step
            if in_step:
                row = await engine.storage.get_instance("wf", "", instance.id)
                assert row is not None
                (hog,) = await engine.storage.load_journal(row.pk)
                assert hog.error is not None
                assert (hog.error.name, hog.error.message) == ("MemoryError", message)


BREAKS = """
    import asyncio, os
    from workers import WorkerEntrypoint

    class Default(WorkerEntrypoint):
        async def pid(self):
            return os.getpid()

        async def exit(self):
            os._exit(7)

        async def spin(self):
            while True:
                pass

        async def nap(self):
            await asyncio.sleep(30)
"""


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name.startswith("dynamic_workflows")
    ]


async def test_every_unexpected_worker_exit_is_one_warning(
    loader: Loader, caplog: pytest.LogCaptureFixture
) -> None:
    # A worker that died or was killed left no trace in the host's log: only the caller of
    # the call it was running heard of it.
    caplog.set_level(logging.INFO)
    acme = loader.get("acme", lambda: worker_code(BREAKS, limits={"cpu_ms": 200}))
    pid = await acme.get_entrypoint().pid()
    with pytest.raises(TenantWorkerError):
        await acme.get_entrypoint().exit()
    assert warnings(caplog) == [
        f"tenant 'acme': worker {pid} died (the worker process exited with code 7); it was "
        "running exit()"
    ]
    caplog.clear()
    pid = await acme.get_entrypoint().pid()
    with pytest.raises(TenantWorkerError):
        await acme.get_entrypoint().spin()
    assert warnings(caplog) == [
        f"tenant 'acme': worker {pid} was killed by the host (call exceeded the CPU limit of "
        "200 ms); it was running spin()"
    ]
    caplog.clear()
    pid = await acme.get_entrypoint().pid()
    os.kill(pid, signal.SIGKILL)  # from outside (the OOM killer, an operator), while idle
    for _ in range(200):
        if warnings(caplog):
            break
        await asyncio.sleep(0.01)
    assert warnings(caplog) == [
        f"tenant 'acme': worker {pid} died (the worker process was killed by SIGKILL); it was idle"
    ]


async def test_an_exit_the_host_asks_for_is_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    unconfined = not _REPORT.safe_for_untrusted()
    async with Loader(unconfined=unconfined, warm=1, idle_timeout=0.1, report=_REPORT) as loader:
        idle = loader.get("idle", lambda: worker_code(BREAKS)).get_entrypoint()
        pid = await idle.pid()
        await asyncio.sleep(0.6)  # evicted once idle for 0.1 s (swept every 0.05 s)
        assert await idle.pid() != pid
    assert warnings(caplog) == []  # nor is closing the loader


async def test_a_fork_server_death_and_its_replacement_are_warnings(
    loader: Loader, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    zygote_pid = loader.pool.stats()["zygote_pid"]
    os.kill(zygote_pid, signal.SIGKILL)
    for _ in range(200):
        if any("fork server" in w for w in warnings(caplog)):
            break
        await asyncio.sleep(0.01)
    good = loader.get("after", lambda: worker_code(BREAKS)).get_entrypoint()
    assert isinstance(await good.pid(), int)
    new_pid = loader.pool.stats()["zygote_pid"]
    server_lines = [w for w in warnings(caplog) if "fork server" in w]
    assert server_lines == [
        f"the fork server (pid {zygote_pid}) was killed by SIGKILL; its workers are gone, and "
        "a new one is started for the next worker",
        f"started a new fork server (pid {new_pid}) in place of one that died",
    ]
    # The warm workers that died with it are each one line, as idle workers of nobody's; one
    # that was being pre-forked when its server died is one more line (and forked again).
    for line in warnings(caplog):
        assert (
            "fork server" in line
            or (line.startswith("tenant '<unassigned>': worker ") and line.endswith("it was idle"))
            or (
                line.startswith("could not pre-fork a worker (worker ")
                and line.endswith("forking another")
            )
        ), line
