"""Rollbacks with tenant code in a sandboxed worker: the handlers run there (through the worker's
step channel), in reverse start order, once each, with their outputs and their own retries
across hibernations; the outcome crosses back with the run's failure; a terminate with rollback
replays the run in terminating mode in the worker."""

from __future__ import annotations

import asyncio
from typing import Any

from dynamic_workflows import Engine, MemoryStorage
from dynamic_workflows.sandbox.loader import Loader

from .conftest import worker_code
from .test_workflows import Log, dispatcher, wait_status

SAGA = """
    from workers import WorkflowEntrypoint

    class TenantWorkflow(WorkflowEntrypoint):
        async def run(self, event, step):
            fail_undo = event["payload"].get("fail_undo")

            def undo(name):
                async def handler(ctx, output, error, step_name):
                    count = ctx["step"]["count"]
                    await self.env.LOG.hit(f"undo {step_name} {output} {error} #{count}")
                    if name == fail_undo:
                        raise RuntimeError(f"cannot undo {name}")
                return handler

            retry = {"retries": {"limit": 1, "delay": 30, "backoff": "constant"}}

            @step.do("one", rollback=undo("one"), rollback_config=retry)
            async def one():
                return 1

            @step.do("two", rollback=undo("two"), rollback_config=retry)
            async def two():
                return 2

            @step.do("three", config={"retries": {"limit": 0, "delay": 0}})
            async def three():
                raise ValueError("step three broke")

            @step.do("four", rollback=undo("four"))
            async def four():
                return 4

            await one()
            await two()
            if event["payload"].get("wait"):
                await step.wait_for_event("go", "go", timeout="1 hour")
            await three()
            await four()
"""


async def run_saga(loader: Loader, log: Log, payload: dict[str, Any]) -> Any:
    # No warm horizon: a handler's back-off hibernates, and run() is replayed in a new run.
    async with Engine(MemoryStorage(), warm_horizon=0) as engine:
        binding = engine.register(
            "wf", dispatcher(loader, lambda: worker_code(SAGA, env={"LOG": log}))
        )
        instance = await binding.create(params=payload)
        if payload.get("wait"):
            await wait_status(instance, {"waiting"})
            await instance.terminate({"rollback": True})
            return await wait_status(instance, {"terminated"})
        return await wait_status(instance, {"errored", "complete"})


async def test_a_failure_in_step_3_runs_2_then_1_once_each_in_the_worker(loader: Loader) -> None:
    log = Log()
    status = await run_saga(loader, log, {})
    assert status["status"] == "errored"
    assert status["error"] == {"name": "ValueError", "message": "step three broke"}
    assert status["rollback"] == {"outcome": "complete"}
    assert log.hits == ["undo two 2 step three broke #1", "undo one 1 step three broke #1"]


async def test_a_failing_handler_is_retried_then_reported(loader: Loader) -> None:
    log = Log()
    status = await run_saga(loader, log, {"fail_undo": "two"})
    assert status["rollback"] == {
        "outcome": "failed",
        "error": {"name": "RuntimeError", "message": "cannot undo two"},
    }
    # Two attempts (limit 1), across a hibernation; the chain halts: one's never runs.
    assert log.hits == ["undo two 2 step three broke #1"] * 2


async def test_terminate_with_rollback_runs_the_handlers_in_the_worker(loader: Loader) -> None:
    log = Log()
    status = await run_saga(loader, log, {"wait": True})
    assert status["rollback"] == {"outcome": "complete"}
    assert status["error"] is None
    message = "Instance terminated during rollback"
    assert log.hits == [f"undo two 2 {message} #1", f"undo one 1 {message} #1"]


CRASHY = """
    import os
    from workers import WorkflowEntrypoint

    class TenantWorkflow(WorkflowEntrypoint):
        async def run(self, event, step):
            @step.do("crashy", config={"retries": {"limit": 1, "delay": 300}})
            async def crashy(ctx):
                if ctx["attempt"] == 1:
                    os._exit(9)  # the worker dies mid-attempt
                return "survived"

            @crashy.rollback
            async def undo(output):
                await self.env.LOG.hit(f"undo crashy {output}")

            await crashy()
            await step.wait_for_event("go", "go", timeout="1 hour")
"""


async def test_an_attempt_whose_worker_died_keeps_the_steps_rollback_flag(
    loader: Loader,
) -> None:
    log = Log()
    async with Engine(MemoryStorage(), warm_horizon=0) as engine:
        binding = engine.register(
            "wf", dispatcher(loader, lambda: worker_code(CRASHY, env={"LOG": log}))
        )
        instance = await binding.create(id="c")
        row = await engine.storage.get_instance("wf", "", "c")
        assert row is not None
        seen: list[tuple[str, int, bool]] = []
        for _ in range(2000):
            journal = await engine.storage.load_journal(row.pk)
            for e in journal:
                if e.name == "crashy" and (e.state, e.attempt, e.rollback) not in seen:
                    seen.append((e.state, e.attempt, e.rollback))
            if any(e.kind == "wait" for e in journal):
                break
            await asyncio.sleep(0.002)
        # The failure the host recorded for the dead worker keeps the step's flag, as the
        # result of attempt 2 does (a terminate with rollback reads it before any code runs).
        assert seen == [("retrying", 1, True), ("done", 2, True)]
        await wait_status(instance, {"waiting"})
        await instance.terminate({"rollback": True})
        status = await wait_status(instance, {"terminated"})
    assert status["rollback"] == {"outcome": "complete"}
    assert log.hits == ["undo crashy survived"]


HELD = """
    from workers import WorkflowEntrypoint

    class TenantWorkflow(WorkflowEntrypoint):
        async def run(self, event, step):
            @step.do("book")
            async def book():
                return "seat"

            @book.rollback
            async def release(output):
                await self.env.LOG.hit(f"release {output}")
                await self.env.LOG.held()

            await book()
            raise ValueError("payment failed")
"""


class HeldLog(Log):
    """A Log whose ``held()`` returns once the test lets it."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def held(self) -> None:
        await self.gate.wait()


async def test_a_failed_runs_rollback_phase_shows_running_while_the_worker_runs_it(
    loader: Loader,
) -> None:
    # The status had no rollback key until the phase ended (a terminate with rollback's said
    # running); the sandboxed handler's start is what tells the host.
    log = HeldLog()
    async with Engine(MemoryStorage()) as engine:
        binding = engine.register(
            "wf", dispatcher(loader, lambda: worker_code(HELD, env={"LOG": log}))
        )
        instance = await binding.create()
        await asyncio.wait_for(log.first.wait(), 20)
        status = await instance.status()
        for _ in range(1000):
            if "rollback" in status:
                break
            await asyncio.sleep(0.005)
            status = await instance.status()
        assert (status["status"], status.get("rollback")) == ("running", {"outcome": "running"})
        log.gate.set()
        status = await wait_status(instance, {"errored", "terminated", "complete"})
    assert status["status"] == "errored"
    assert status["error"] == {"name": "ValueError", "message": "payment failed"}
    assert status["rollback"] == {"outcome": "complete"}
    assert log.hits == ["release seat"]
