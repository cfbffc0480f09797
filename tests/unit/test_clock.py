"""The MockClock the tests run on: autojump, and ``frozen()`` holding time still."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from dynamic_workflows.core.clock import MockClock, SystemClock


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


async def _fire_all_never_early() -> None:
    clock = SystemClock()
    fired: list[tuple[float, float]] = []
    for i in range(40):
        deadline = time.time() + 0.0003 + i * 0.00037  # not on millisecond boundaries
        clock.call_at(deadline, lambda d=deadline: fired.append((d, time.time())))
    for i in range(10):
        deadline = time.time() + 0.0004 + i * 0.0011
        await clock.sleep_until(deadline)
        fired.append((deadline, time.time()))
        busy_until = time.perf_counter() + 0.0007  # the loop's cached time falls behind,
        while time.perf_counter() < busy_until:  # as it does under load
            pass
    await asyncio.sleep(0.05)
    assert len(fired) == 50
    early = [round((deadline - at) * 1000, 3) for deadline, at in fired if at < deadline]
    assert not early, f"fired early by {early} ms"


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_system_clock_timers_never_fire_early(loop_kind: str) -> None:
    # The loop's timers may fire early (uvloop rounds delays to the nearest millisecond from the
    # start of its iteration; the monotonic and wall clocks drift): a sleep must not end early.
    uvloop = pytest.importorskip("uvloop") if loop_kind == "uvloop" else None
    loop = uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()
    try:
        loop.run_until_complete(_fire_all_never_early())
    finally:
        loop.close()


async def test_system_clock_timers_due_together_share_one_loop_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    armed = 0
    call_later = loop.call_later

    def counting_call_later(*args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        nonlocal armed
        armed += 1
        return call_later(*args, **kwargs)

    monkeypatch.setattr(loop, "call_later", counting_call_later)
    clock = SystemClock()
    due = time.time() + 0.02
    order: list[int] = []
    for i in range(1000):
        clock.call_at(due, lambda i=i: order.append(i))
    clock.call_at(due + 0.01, lambda: order.append(-1))
    assert armed == 2  # one per distinct millisecond, not one per timer
    await asyncio.sleep(0.05)
    # All of the first millisecond's timers in one callback, in the order they were armed.
    assert order == [*range(1000), -1]


async def test_system_clock_cancelled_timers() -> None:
    clock = SystemClock()
    fired: list[str] = []
    due = time.time() + 0.01
    keep = clock.call_at(due, lambda: fired.append("kept"))
    gone = clock.call_at(due, lambda: fired.append("cancelled"))
    gone.cancel()
    gone.cancel()  # idempotent
    alone = clock.call_at(due + 0.005, lambda: fired.append("alone"))
    alone.cancel()  # its millisecond had no other timer: the loop timer goes too
    assert clock._alarms is not None
    assert len(clock._alarms._buckets) == 1
    await asyncio.sleep(0.03)
    assert fired == ["kept"]
    keep.cancel()  # after it fired: nothing happens
    assert clock._alarms._buckets == {}


async def test_system_clock_a_failing_timer_does_not_stop_the_others() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        clock = SystemClock()
        fired: list[int] = []
        due = time.time() + 0.005

        def fail() -> None:
            raise RuntimeError("boom")

        clock.call_at(due, lambda: fired.append(1))
        clock.call_at(due, fail)
        clock.call_at(due, lambda: fired.append(2))
        await asyncio.sleep(0.03)
        assert fired == [1, 2]
        assert [str(c["exception"]) for c in reported] == ["boom"]
    finally:
        loop.set_exception_handler(None)
