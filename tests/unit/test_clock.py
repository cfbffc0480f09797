"""The MockClock the tests run on: autojump, and ``frozen()`` holding time still."""

from __future__ import annotations

import asyncio

import pytest

from dynamic_workflows.clock import MockClock, SystemClock


async def test_autojump_moves_to_the_next_timer() -> None:
    clock = MockClock(start=1000.0)
    await clock.sleep_until(5000.0)
    assert clock.now() == 5000.0


async def test_timeout_at_on_virtual_time() -> None:
    clock = MockClock(start=0.0)
    timed_out = False
    try:
        async with clock.timeout_at(30.0):
            await asyncio.Event().wait()
    except TimeoutError:
        timed_out = True
    assert timed_out
    assert clock.now() == 30.0


async def test_frozen_stops_a_jumper_that_is_already_running() -> None:
    clock = MockClock(start=0.0)
    fired: list[float] = []
    clock.call_at(10.0, lambda: fired.append(clock.now()))  # starts the jumper
    async with clock.frozen():
        await asyncio.sleep(0.03)  # many autojump thresholds of idleness
        assert fired == []
        assert clock.now() == 0.0
    await asyncio.sleep(0.03)
    assert fired == [10.0]


async def test_timers_added_while_frozen_fire_after_it() -> None:
    clock = MockClock(start=0.0)
    async with clock.frozen():
        task = asyncio.ensure_future(clock.sleep_until(60.0))
        await asyncio.sleep(0.03)
        assert not task.done()
    await asyncio.wait_for(task, 1.0)
    assert clock.now() == 60.0


async def test_advance_fires_due_timers_while_frozen() -> None:
    clock = MockClock(start=0.0)
    fired: list[str] = []
    async with clock.frozen():
        clock.call_at(5.0, lambda: fired.append("five"))
        clock.call_at(50.0, lambda: fired.append("fifty"))
        clock.advance(10.0)
        assert fired == ["five"]
        assert clock.now() == 10.0


async def test_system_clock_timeouts_fire_in_deadline_order() -> None:
    clock = SystemClock()
    loop = asyncio.get_running_loop()
    ended: dict[str, float] = {}

    async def sleeper(name: str, timeout: float) -> None:
        start = loop.time()
        try:
            async with clock.timeout_at(clock.now() + timeout):
                await asyncio.sleep(5)
        except TimeoutError:
            ended[name] = loop.time() - start

    # The later deadline is armed first: the earlier one must re-arm the shared timer.
    await asyncio.gather(sleeper("late", 0.2), sleeper("early", 0.05))
    assert set(ended) == {"late", "early"}
    assert 0.04 <= ended["early"] < 0.15
    assert 0.19 <= ended["late"] < 0.5


async def test_system_clock_timeout_not_reached_and_external_cancel() -> None:
    clock = SystemClock()
    async with clock.timeout_at(clock.now() + 10):
        await asyncio.sleep(0)

    async def cancelled_from_outside() -> None:
        async with clock.timeout_at(clock.now() + 10):
            await asyncio.sleep(5)

    task = asyncio.ensure_future(cancelled_from_outside())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):  # not turned into a TimeoutError
        await task


async def test_system_clock_finished_timeouts_do_not_accumulate() -> None:
    clock = SystemClock()
    for _ in range(10_000):
        async with clock.timeout_at(clock.now() + 600):
            pass
    deadlines = clock._deadlines
    assert deadlines is not None
    assert len(deadlines._heap) <= 1_000
    # ...and a timeout after all of them still fires.
    with pytest.raises(TimeoutError):
        async with clock.timeout_at(clock.now() + 0.01):
            await asyncio.sleep(1)
