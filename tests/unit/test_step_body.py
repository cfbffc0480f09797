"""How a step's body is run: an ``async def`` body that never suspends is stepped once by hand
(no timeout armed), one that suspends is awaited under its timeout from its second step on,
and every other kind of body (sync, or returning an awaitable) behaves as before. Also: the
journal writes of one loop iteration share one storage operation."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from unit_support import EnvFactory, until, workflow

from dynamic_workflows.core.journal import JournalEntry, StepKind, StepState
from dynamic_workflows.engine import Engine
from dynamic_workflows.errors import RunCancelled, StorageError
from dynamic_workflows.storage import MemoryStorage, SQLiteStorage
from dynamic_workflows.storage.base import NewInstance
from dynamic_workflows.workers.workflows import NonRetryableError

ONE_TRY = {"retries": {"limit": 0, "delay": 1, "backoff": "constant"}, "timeout": 1000}


async def test_a_body_that_suspends_many_times_gets_its_values_and_result(
    make_env: EnvFactory,
) -> None:
    async def run(event: Any, step: Any) -> Any:
        @step.do("chatty")
        async def chatty() -> list[Any]:
            got = []
            for i in range(3):
                await asyncio.sleep(0)
                fut = asyncio.get_running_loop().create_future()
                asyncio.get_running_loop().call_soon(fut.set_result, i)
                got.append(await fut)
            return got

        return await chatty()

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["output"] == [0, 1, 2]


async def test_errors_before_and_after_the_first_suspension_fail_the_step(
    make_env: EnvFactory,
) -> None:
    async def run(event: Any, step: Any) -> Any:
        @step.do("at-once", config=ONE_TRY)
        async def at_once() -> None:
            raise ValueError("at once")

        @step.do("later", config=ONE_TRY)
        async def later() -> None:
            await asyncio.sleep(0)
            raise NonRetryableError("later")

        caught = []
        for fn in (at_once, later):
            try:
                await fn()
            except Exception as exc:
                caught.append([type(exc).__name__, str(exc)])
        return caught

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["output"] == [["ValueError", "at once"], ["NonRetryableError", "later"]]


async def test_a_body_caught_by_its_timeout_after_suspending_twice(make_env: EnvFactory) -> None:
    cleaned: list[str] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("stuck", config=ONE_TRY)
        async def stuck() -> None:
            await asyncio.sleep(0)
            try:
                await asyncio.Event().wait()
            finally:
                cleaned.append("finally ran")

        await stuck()

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["error"] == {
        "name": "WorkflowTimeoutError",
        "message": "Execution timed out after 1000ms",
    }
    assert cleaned == ["finally ran"]


async def test_a_body_that_handles_what_is_thrown_into_it_goes_on(make_env: EnvFactory) -> None:
    """An exception thrown into the awaited future reaches the body, which may handle it and
    go on: what ``await`` does."""

    async def run(event: Any, step: Any) -> Any:
        @step.do("recovers")
        async def recovers() -> str:
            fut = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(fut.set_exception, KeyError("k"))
            try:
                await fut
            except KeyError:
                await asyncio.sleep(0)
                return "recovered"
            return "not reached"

        return await recovers()

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["output"] == "recovered"


async def test_sync_bodies_and_bodies_returning_awaitables(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        @step.do("sync")
        def sync() -> int:
            return 1

        @step.do("future")
        def future() -> asyncio.Future[int]:
            fut = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(fut.set_result, 2)
            return fut

        @step.do("never", config=ONE_TRY)
        def never() -> asyncio.Future[int]:
            return asyncio.get_running_loop().create_future()  # the timeout applies to it too

        out: list[Any] = [await sync(), await future()]
        try:
            await never()
        except Exception as exc:
            out.append(type(exc).__name__)
        return out

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["output"] == [1, 2, "WorkflowTimeoutError"]


async def test_terminating_a_run_cancels_a_suspended_body(make_env: EnvFactory) -> None:
    seen: list[str] = []
    started = asyncio.Event()

    async def run(event: Any, step: Any) -> Any:
        @step.do("long")
        async def long() -> None:
            await asyncio.sleep(0)
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        await long()

    async with make_env(run) as wf:
        instance = await wf.binding.create()
        await asyncio.wait_for(started.wait(), 5)
        await instance.terminate()
        status = await wf.wait_for(instance)
        await until(lambda: bool(seen))
    assert status["status"] == "terminated"
    assert seen == ["cancelled"]


# -- the journal writes of one loop iteration: one storage operation --------------------------


def _three_steps() -> type:
    async def run(event: Any, step: Any) -> Any:
        total = 0
        for i in range(3):

            @step.do(f"s{i}")
            async def s() -> int:
                return 1

            total += await s()
        return total

    return workflow(run)


async def test_steps_of_many_runs_share_storage_operations(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "db.sqlite3")
    engine = Engine(storage)
    binding = engine.register("three", _three_steps())
    async with engine:
        for _ in range(2):
            await binding.create_batch([{} for _ in range(100)])
        await until(lambda: engine.counters.completed == 200, timeout=30)
        stats = storage.stats
    assert engine.counters.steps_committed == 600
    # 600 step writes + 200 finishes + claims; one operation per loop iteration for the steps,
    # so far fewer operations than writes.
    assert stats["operations"] < 600


ENTRY = JournalEntry("s", 1, StepKind.DO, StepState.DONE, value=b"1", attempt=1)


async def test_a_stale_write_raises_run_cancelled_and_the_others_are_kept() -> None:
    storage = MemoryStorage()
    await storage.open()
    engine = Engine(storage)  # not started: only its writes are used here
    await storage.create_instances([NewInstance("wf", "", i, b"null") for i in "ab"], 0.0)
    claims = await storage.claim_due(1.0, 2)
    (pa, ga), (pb, gb) = [(c.instance.pk, c.instance.generation) for c in claims]
    kept = engine.writes.add(pa, ga, ENTRY)
    stale = engine.writes.add(pb, gb + 1, ENTRY)
    await kept
    with pytest.raises(RunCancelled):
        await stale
    assert [e.name for e in await storage.load_journal(pa)] == ["s"]
    assert await storage.load_journal(pb) == []
    assert engine.counters.steps_committed == 1


async def test_a_failed_storage_write_reaches_every_waiter() -> None:
    # Every waiter hears of it, as the signal to stop its run and hand the instance back: a
    # storage failure is not the workflow's failure (see the test below).
    class Failing(MemoryStorage):
        async def record_steps(self, writes: Any, now: float) -> list[bool]:
            raise StorageError("disk on fire")

    engine = Engine(Failing())
    futures = [engine.writes.add(pk, 0, ENTRY) for pk in (1, 2, 3)]
    for fut in futures:
        with pytest.raises(RunCancelled):
            await fut


async def test_a_run_whose_step_write_fails_is_handed_back_and_completes_later() -> None:
    from dynamic_workflows.testing import WorkflowTestEnv

    class FailsTwice(MemoryStorage):
        failures = 0

        async def record_steps(self, writes: Any, now: float) -> list[bool]:
            if self.failures < 2:
                self.failures += 1
                raise StorageError("connection lost (its outcome is unknown)")
            return await super().record_steps(writes, now)

    async def run(event: Any, step: Any) -> Any:
        @step.do("only")
        async def only() -> str:
            return "done"

        return await only()

    storage = FailsTwice()
    async with WorkflowTestEnv(workflow(run), storage=storage) as wf:
        instance = await wf.binding.create(id="i")
        status = await wf.wait_for(instance)
    assert (status["status"], status["output"], storage.failures) == ("complete", "done", 2)


async def test_runs_woken_together_all_start_their_bodies_before_any_result_is_written() -> None:
    # Ten thousand sleepers due at one instant: each run's result is handed to the host in the
    # next loop iteration, so the last body does not wait behind the others' bookkeeping.
    from dynamic_workflows.core.clock import SystemClock
    from dynamic_workflows.core.step import RunState, WorkflowStep

    log: list[str] = []

    class Channel:
        def complete(self, name: str, count: int, value: bytes, attempt: int = 1) -> Any:
            log.append(f"write {value.decode()}")
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(None)
            return fut

        def attempt_started(self, *args: Any) -> None:
            return None

    async def run(i: int, gate: asyncio.Future[None]) -> Any:
        step = WorkflowStep(Channel(), [], clock=SystemClock(), now=0.0, state=RunState())
        await gate

        @step.do("after")
        async def after() -> int:
            log.append(f"body {i}")
            return i

        return await after()

    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    tasks = [asyncio.ensure_future(run(i, gate)) for i in range(3)]
    await asyncio.sleep(0)
    gate.set_result(None)
    assert await asyncio.gather(*tasks) == [0, 1, 2]
    assert log == ["body 0", "body 1", "body 2", "write 0", "write 1", "write 2"]
