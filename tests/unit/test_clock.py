"""The MockClock the tests run on: autojump, and ``frozen()`` holding time still."""

from __future__ import annotations

import asyncio

from dynamic_workflows.clock import MockClock


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
