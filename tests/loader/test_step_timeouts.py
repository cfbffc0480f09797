"""Step timeouts in sandboxed runs: a body that never awaits is stopped at its timeout (issue 17),
and a tenant answers requests while one of its runs computes."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from dynamic_workflows import Engine, MemoryStorage
from dynamic_workflows.sandbox.errors import TenantWorkerError
from dynamic_workflows.sandbox.loader import Loader
from dynamic_workflows.workers import WorkflowEntrypoint

from .conftest import worker_code
from .test_workflows import Log, wait_status

SPIN = """
    import os
    from workers import Response, WorkerEntrypoint, WorkflowEntrypoint

    class Default(WorkerEntrypoint):
        async def fetch(self, request):
            return Response.json({"pid": os.getpid()})

    class TenantWorkflow(WorkflowEntrypoint):
        async def run(self, event, step):
            config = event["payload"]["config"]

            @step.do("spin", config=config)
            async def spin(ctx):
                await self.env.LOG.hit(f"spin#{ctx['attempt']}")
                if ctx["attempt"] == 1:
                    SPIN_HERE
                return [ctx["attempt"], os.getpid()]

            return await spin()
"""

PURE_PYTHON = "while True:\n                        pass"
SWALLOWS_TIMEOUTS = (
    "while True:\n"
    "                        try:\n"
    "                            while True:\n"
    "                                pass\n"
    "                        except BaseException:\n"
    "                            pass"
)
IN_C_CODE = "sum(range(10**15))"
BLOCKING_SLEEP = "import time; time.sleep(60)"


def spinning(how: str) -> str:
    return SPIN.replace("SPIN_HERE", how)


def dispatcher(loader: Loader, tenant: str, get_code: Any) -> type[WorkflowEntrypoint]:
    class Dispatcher(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            stub = loader.get(tenant, get_code)
            return await stub.get_entrypoint("TenantWorkflow").run(event, step)

    return Dispatcher


async def run_instance(
    loader: Loader, how: str, config: dict[str, Any], log: Log | None = None
) -> tuple[dict[str, Any], list[int], float]:
    loads: list[int] = []
    log = log or Log()

    def get_code() -> dict[str, Any]:
        loads.append(1)
        return worker_code(spinning(how), env={"LOG": log})

    started = time.monotonic()
    async with Engine(MemoryStorage()) as engine:
        binding = engine.register("wf", dispatcher(loader, how, get_code))
        instance = await binding.create(params={"config": config})
        status = await wait_status(instance, {"complete", "errored"}, timeout=30)
    return status, loads, time.monotonic() - started


async def test_a_step_that_never_awaits_is_stopped_at_its_timeout_and_retried(
    loader: Loader,
) -> None:
    config = {"timeout": 300, "retries": {"limit": 1, "delay": 10}}
    status, loads, elapsed = await run_instance(loader, PURE_PYTHON, config)
    assert status["status"] == "complete", status
    assert status["output"][0] == 2
    # Interrupted inside the worker: the same worker ran the retry (loaded once, not killed).
    assert len(loads) == 1
    assert elapsed < 5, f"took {elapsed:.1f} s"


async def test_a_timed_out_step_fails_with_cloudflares_error(loader: Loader) -> None:
    for how in (PURE_PYTHON, BLOCKING_SLEEP):
        config = {"timeout": "300 milliseconds", "retries": {"limit": 0}}
        status, loads, elapsed = await run_instance(loader, how, config)
        assert status["status"] == "errored", status
        assert status["error"] == {
            "name": "WorkflowTimeoutError",
            "message": "Execution timed out after 300ms",
        }
        assert len(loads) == 1
        assert elapsed < 5, f"took {elapsed:.1f} s"


async def test_a_body_the_worker_cannot_interrupt_is_stopped_by_the_host(loader: Loader) -> None:
    """In C code that never returns to the interpreter, or catching the timeout and going on:
    the host kills the worker a grace period after the deadline, and the retry runs in a new
    one."""
    for how in (IN_C_CODE, SWALLOWS_TIMEOUTS):
        config = {"timeout": 300, "retries": {"limit": 1, "delay": 10}}
        status, loads, elapsed = await run_instance(loader, how, config)
        assert status["status"] == "complete", (how, status)
        assert status["output"][0] == 2
        assert len(loads) == 2  # the worker was replaced
        assert elapsed < 8, f"took {elapsed:.1f} s"


async def test_a_tenant_answers_requests_while_a_step_of_its_own_computes(
    loader: Loader,
) -> None:
    log = Log()
    get_code = lambda: worker_code(spinning(PURE_PYTHON), env={"LOG": log})  # noqa: E731
    stub = loader.get("t1", get_code)
    before = json.loads((await stub.get_entrypoint().fetch("http://t/")).body_bytes())["pid"]
    async with Engine(MemoryStorage()) as engine:
        binding = engine.register("wf", dispatcher(loader, "t1", get_code))
        config = {"timeout": "3 seconds", "retries": {"limit": 0}}
        instance = await binding.create(params={"config": config})
        await asyncio.wait_for(log.first.wait(), 10)
        await asyncio.sleep(0.05)  # the body is spinning now
        started = time.monotonic()
        async with asyncio.timeout(2):
            response = await stub.get_entrypoint().fetch("http://t/")
        answered_in = time.monotonic() - started
        # A fresh worker answered, while the busy one goes on with the run.
        assert json.loads(response.body_bytes())["pid"] != before
        assert answered_in < 1, f"answered in {answered_in:.2f} s"
        for _ in range(3):  # and keeps answering, without waiting for a ping
            await stub.get_entrypoint().fetch("http://t/")
        status = await wait_status(instance, {"complete", "errored"}, timeout=30)
    assert status["error"] == {
        "name": "WorkflowTimeoutError",
        "message": "Execution timed out after 3000ms",
    }


async def test_a_retired_worker_that_dies_says_how_it_died(loader: Loader) -> None:
    """Retired (no new calls: the CPU watchdog past half the allowance, a stall) is not shut
    down: its death was reported as 'shut down (idle or evicted)', hiding a SIGXCPU."""
    source = """
        import asyncio, os
        from workers import WorkerEntrypoint

        class Default(WorkerEntrypoint):
            async def die(self):
                await asyncio.sleep(0.3)
                os._exit(3)
    """
    stub = loader.get("dies", lambda: worker_code(source))
    call = asyncio.ensure_future(stub.get_entrypoint().die())

    # Retire it only once die() is in flight: retired during "loading the code" (busy too),
    # it is shut down when the load ends and die() never reaches it ("the worker process is
    # gone"), which CI saw once.
    def calling_die() -> list[Any]:
        return [
            w
            for w in loader.pool._all
            if w.tenant == "dies" and any(p.what == "die()" for p in w._pending.values())
        ]

    async with asyncio.timeout(5):
        while not (busy := calling_die()):  # noqa: ASYNC110 - polling the pool's own set
            await asyncio.sleep(0.01)
    busy[0].retired = True
    with pytest.raises(TenantWorkerError, match="exited with code 3"):
        await call
