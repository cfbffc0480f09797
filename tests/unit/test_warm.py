"""Near wake-ups kept warm: a run whose next wake-up is within the engine's ``warm_horizon`` is
parked (kept live, not unwound), and instances due within it are replayed ahead of time, so
the due instant costs a resumption, not a replay. Everything else must behave as if it had
hibernated: statuses, pause, terminate, events, crash recovery, and never waking early."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from unit_support import START, EnvFactory, until, workflow

from dynamic_workflows.engine import Engine
from dynamic_workflows.storage import SQLiteStorage

HORIZON = 5.0


async def test_a_short_sleep_stays_warm_and_reports_waiting(make_env: EnvFactory) -> None:
    runs: list[int] = []
    executed: list[str] = []
    woke_at: list[float] = []

    async def run(event: Any, step: Any) -> Any:
        runs.append(1)

        @step.do("before")
        async def before() -> str:
            executed.append("before")
            return "b"

        first = await before()
        await step.sleep("nap", "2 seconds")

        @step.do("after")
        async def after() -> str:
            executed.append("after")
            woke_at.append(wf.clock.now())
            return "a"

        return [first, await after()]

    wf = make_env(run, warm_horizon=HORIZON)
    async with wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await until(lambda: wf.engine.parked_runs() == 1)
        assert (await instance.status())["status"] == "waiting"
        assert wf.engine.live_runs() == 1
        wf.clock.advance(2.0)
        status = await wf.wait_for(instance)
    assert status == {"status": "complete", "output": ["b", "a"], "error": None}
    assert runs == [1]  # resumed in memory: no replay
    assert executed == ["before", "after"]
    assert woke_at == [START + 2.0]
    assert wf.engine.parked_runs() == 0


async def test_a_long_sleep_still_hibernates(make_env: EnvFactory) -> None:
    runs: list[int] = []

    async def run(event: Any, step: Any) -> Any:
        runs.append(1)
        await step.sleep("nap", "1 hour")
        return "done"

    wf = make_env(run, warm_horizon=HORIZON)
    async with wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await wf.wait_for(instance, "waiting")
        row = await wf.storage.get_instance(wf.binding.name, "", instance.id)
        assert row is not None
        assert row.status == "waiting"
        assert row.wake_at == START + 3600
        assert wf.engine.live_runs() == 0
        # Not yet within the horizon: nothing is claimed ahead of time.
        wf.clock.advance(3600 - HORIZON - 1)
        await asyncio.sleep(0.05)
        assert wf.engine.live_runs() == 0
        assert len(runs) == 1


async def test_an_instance_due_soon_is_replayed_ahead_and_wakes_on_time(
    make_env: EnvFactory,
) -> None:
    runs: list[float] = []
    woke_at: list[float] = []

    async def run(event: Any, step: Any) -> Any:
        runs.append(wf.clock.now())
        await step.sleep("nap", "1 hour")

        @step.do("after")
        async def after() -> float:
            woke_at.append(wf.clock.now())
            return wf.clock.now()

        return await after()

    wf = make_env(run, warm_horizon=HORIZON)
    async with wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await wf.wait_for(instance, "waiting")
        await until(lambda: wf.engine.live_runs() == 0)
        wf.clock.advance(3600 - HORIZON + 1)  # now within the horizon of the due time
        await until(lambda: wf.engine.parked_runs() == 1)
        assert len(runs) == 2  # replayed ahead of time...
        assert woke_at == []  # ...but not woken early
        assert (await instance.status())["status"] == "waiting"
        wf.clock.advance(HORIZON - 1.5)
        await asyncio.sleep(0.05)
        assert woke_at == []
        wf.clock.advance(0.5)
        status = await wf.wait_for(instance)
    assert status["status"] == "complete"
    assert woke_at == [START + 3600]
    assert len(runs) == 2


async def test_parked_runs_do_not_take_concurrency_slots(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        await step.sleep("nap", "3 seconds")
        return event["payload"]

    wf = make_env(run, warm_horizon=HORIZON, concurrency=1)
    async with wf, wf.clock.frozen():
        instances = [await wf.binding.create(params=i) for i in range(3)]
        await until(lambda: wf.engine.parked_runs() == 3)
        wf.clock.advance(3.0)
        statuses = [await wf.wait_for(i) for i in instances]
    assert [s["output"] for s in statuses] == [0, 1, 2]


async def test_max_warm_bounds_parked_runs(make_env: EnvFactory) -> None:
    runs: list[int] = []

    async def run(event: Any, step: Any) -> Any:
        runs.append(event["payload"])
        await step.sleep("nap", "3 seconds")
        return event["payload"]

    wf = make_env(run, warm_horizon=HORIZON)
    wf.engine.max_warm = 1
    async with wf, wf.clock.frozen():
        first = await wf.binding.create(params=1)
        await until(lambda: wf.engine.parked_runs() == 1)
        second = await wf.binding.create(params=2)
        await wf.wait_for(second, "waiting")
        await asyncio.sleep(0.05)
        assert wf.engine.parked_runs() == 1
        row = await wf.storage.get_instance(wf.binding.name, "", second.id)
        assert row is not None
        assert row.status == "waiting"
        wf.clock.advance(3.0)
        assert (await wf.wait_for(first))["output"] == 1
        assert (await wf.wait_for(second))["output"] == 2
    assert sorted(runs) == [1, 2, 2]  # only the hibernated one was replayed


async def test_a_near_run_that_could_not_park_is_not_claimed_ahead_in_a_loop(
    make_env: EnvFactory,
) -> None:
    """Where the run's code decides it cannot park (a sandbox with no memory to spare), the
    engine only sees it hibernate with a near wake-up: it must not claim it ahead again at once,
    or the run would be replayed over and over until its due time."""
    runs: list[int] = []

    async def run(event: Any, step: Any) -> Any:
        runs.append(1)
        await step.sleep("nap", "3 seconds")
        return "done"

    wf = make_env(run, warm_horizon=HORIZON)
    wf.engine._park_policy = lambda live: lambda wake_at: None  # type: ignore[method-assign]
    async with wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await wf.wait_for(instance, "waiting")
        await asyncio.sleep(0.1)  # real time: a claim-ahead loop would replay it many times
        assert len(runs) == 1
        wf.clock.advance(3.0)
        status = await wf.wait_for(instance)
    assert status["output"] == "done"
    assert len(runs) == 2


def nap_then_step(executed: list[str]) -> Any:
    """A workflow that sleeps 2 seconds (within the horizon: it parks), then runs a step."""

    async def run(event: Any, step: Any) -> Any:
        await step.sleep("nap", "2 seconds")

        @step.do("after")
        async def after() -> str:
            executed.append("after")
            return "a"

        return await after()

    return run


async def test_pausing_a_parked_run_hibernates_it_as_paused(make_env: EnvFactory) -> None:
    executed: list[str] = []
    wf = make_env(nap_then_step(executed), warm_horizon=HORIZON)
    async with wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await until(lambda: wf.engine.parked_runs() == 1)
        await instance.pause()
        await wf.wait_for(instance, "paused")
        await until(lambda: wf.engine.live_runs() == 0)
        wf.clock.advance(10.0)
        await asyncio.sleep(0.05)
        assert executed == []
        assert (await instance.status())["status"] == "paused"
        await instance.resume()
        status = await wf.wait_for(instance)
    assert status["output"] == "a"
    assert executed == ["after"]


async def test_terminating_a_parked_run(make_env: EnvFactory) -> None:
    executed: list[str] = []
    wf = make_env(nap_then_step(executed), warm_horizon=HORIZON)
    async with wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await until(lambda: wf.engine.parked_runs() == 1)
        await instance.terminate()
        await until(lambda: wf.engine.live_runs() == 0)
        assert wf.engine.parked_runs() == 0
        wf.clock.advance(10.0)
        await asyncio.sleep(0.05)
        assert (await instance.status())["status"] == "terminated"
    assert executed == []


async def test_events_and_timeouts_of_a_parked_wait(make_env: EnvFactory) -> None:
    reached: list[int] = []

    async def run(event: Any, step: Any) -> Any:
        got = await step.wait_for_event("approval", "approved", timeout="3 seconds")
        reached.append(1)
        try:
            await step.wait_for_event("second", "never", timeout="2 seconds")
        except Exception as exc:
            return [got["payload"], type(exc).__name__]
        return "no timeout"

    wf = make_env(run, warm_horizon=HORIZON)
    async with wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await until(lambda: wf.engine.parked_runs() == 1)
        await instance.send_event({"type": "approved", "payload": {"ok": True}})
        await until(lambda: bool(reached))
        await until(lambda: wf.engine.parked_runs() == 1)
        await asyncio.sleep(0.05)
        wf.clock.advance(1.5)
        await asyncio.sleep(0.05)
        assert (await instance.status())["status"] == "waiting"  # the deadline is not yet
        wf.clock.advance(0.5)
        status = await wf.wait_for(instance)
    assert status["output"] == [{"ok": True}, "WorkflowTimeoutError"]


async def test_a_wait_without_a_near_deadline_hibernates(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        return (await step.wait_for_event("approval", "approved", timeout="1 hour"))["payload"]

    wf = make_env(run, warm_horizon=HORIZON)
    async with wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await wf.wait_for(instance, "waiting")
        await until(lambda: wf.engine.live_runs() == 0)
        await instance.send_event({"type": "approved", "payload": 7})
        status = await wf.wait_for(instance)
    assert status["output"] == 7


@pytest.mark.parametrize("horizon", [0.0, HORIZON])
async def test_a_retry_back_off_never_retries_early(make_env: EnvFactory, horizon: float) -> None:
    attempts: list[float] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do(
            "flaky", config={"retries": {"limit": 2, "delay": "1 second", "backoff": "constant"}}
        )
        async def flaky() -> str:
            attempts.append(wf.clock.now())
            if len(attempts) < 3:
                raise ValueError("not yet")
            return "ok"

        return await flaky()

    wf = make_env(run, warm_horizon=horizon)
    async with wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["output"] == "ok"
    assert [round(t - attempts[0], 3) for t in attempts] == [0.0, 1.0, 2.0]


async def test_a_parked_run_survives_a_restart_of_the_engine(tmp_path: Path) -> None:
    """A parked run is stored as ``running`` (owned by this engine): after a stop (or crash)
    the next engine requeues it and replays it; its completed steps do not run again."""
    executed: list[str] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("before")
        async def before() -> str:
            executed.append("before")
            return "b"

        value = await before()
        await step.sleep("nap", "1 second")
        return value

    db = tmp_path / "warm.sqlite3"
    first = Engine(SQLiteStorage(db), warm_horizon=HORIZON)
    binding = first.register("w", workflow(run))
    async with first:
        instance = await binding.create()
        await until(lambda: first.parked_runs() == 1)
    second = Engine(SQLiteStorage(db), warm_horizon=HORIZON)
    binding = second.register("w", workflow(run))
    async with second:
        again = await binding.get(instance.id)
        for _ in range(500):
            status = await again.status()
            if status["status"] == "complete":
                break
            await asyncio.sleep(0.01)
    assert status == {"status": "complete", "output": "b", "error": None}
    assert executed == ["before"]


def test_the_engine_checks_its_warm_settings() -> None:
    from dynamic_workflows.storage import MemoryStorage

    with pytest.raises(ValueError, match="warm_horizon"):
        Engine(MemoryStorage(), warm_horizon=-1)
    with pytest.raises(ValueError, match="max_warm"):
        Engine(MemoryStorage(), max_warm=-1)
