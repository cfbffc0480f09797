"""``step.sleep``, ``step.sleep_until`` and ``step.wait_for_event`` on virtual time."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from unit_support import START, EnvFactory, hibernated, through_hibernations, until

from dynamic_workflows.workers.workflows import WorkflowTimeoutError

UTC = dt.UTC
START_DT = dt.datetime.fromtimestamp(START, UTC)


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [
        ("1 second", 1),
        ("90 seconds", 90),
        ("1 minute", 60),
        ("3 hours", 3 * 3600),
        ("2 days", 2 * 86400),
        ("1 week", 7 * 86400),
        ("1 month", 30 * 86400),
        ("365 days", 365 * 86400),
        (2500, 2.5),
        (dt.timedelta(hours=5, minutes=1), 5 * 3600 + 60),
    ],
)
async def test_sleep_durations(make_env: EnvFactory, duration: Any, seconds: float) -> None:
    woke: list[float] = []
    ref: list[Any] = []

    async def run(event: Any, step: Any) -> Any:
        await step.sleep("nap", duration)
        woke.append(ref[0].clock.now() - START)
        return "rested"

    async with make_env(run) as wf:
        ref.append(wf)
        status = await wf.wait_for(await wf.binding.create())
    assert status == {"status": "complete", "output": "rested", "error": None}
    assert woke == [seconds]


async def test_sleep_longer_than_365_days_is_refused(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        await step.sleep("nap", "366 days")

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["error"] == {
        "name": "WorkflowDefinitionError",
        "message": "step.sleep('nap'): 31622400 s is longer than the 365-day limit",
    }


async def test_bad_sleep_duration_errors_the_instance(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        await step.sleep("nap", "2 fortnights")

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["error"] == {
        "name": "ConfigurationError",
        "message": "step.sleep('nap') duration: cannot parse '2 fortnights'; use milliseconds "
        "or 'N unit' with unit one of second, minute, hour, day, week, month, year",
    }


THREE_DAYS_LATER = START_DT + dt.timedelta(days=3)


@pytest.mark.parametrize(
    "target",
    [
        THREE_DAYS_LATER,
        THREE_DAYS_LATER.replace(tzinfo=None),  # naive means UTC
        THREE_DAYS_LATER.astimezone(dt.timezone(dt.timedelta(hours=5))),
        "2026-01-04T00:00:00Z",
        "2026-01-04T01:00:00+01:00",
        int((START + 3 * 86400) * 1000),  # epoch milliseconds
    ],
    ids=["aware", "naive", "offset", "iso-z", "iso-offset", "epoch-ms"],
)
async def test_sleep_until(make_env: EnvFactory, target: Any) -> None:
    woke: list[float] = []
    ref: list[Any] = []

    async def run(event: Any, step: Any) -> Any:
        await step.sleep_until("alarm", target)
        woke.append(ref[0].clock.now() - START)

    async with make_env(run) as wf:
        ref.append(wf)
        status = await wf.wait_for(await wf.binding.create())
    assert status["status"] == "complete"
    assert woke == [3 * 86400]


async def test_sleep_until_the_past_goes_on_at_once(make_env: EnvFactory) -> None:
    woke: list[float] = []
    ref: list[Any] = []

    async def run(event: Any, step: Any) -> Any:
        await step.sleep_until("alarm", START_DT - dt.timedelta(days=1))
        woke.append(ref[0].clock.now() - START)

    async with make_env(run) as wf:
        ref.append(wf)
        status = await wf.wait_for(await wf.binding.create())
    assert status["status"] == "complete"
    assert woke == [0]


async def test_sleeping_instance_is_waiting_then_completes_on_time(
    make_env: EnvFactory,
) -> None:
    calls: list[str] = []
    woke: list[float] = []
    ref: list[Any] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("before")
        async def before() -> str:
            calls.append("before")
            return "b"

        value = await before()
        await step.sleep("nap", "1 hour")
        woke.append(ref[0].clock.now() - START)
        return value

    async with make_env(run) as wf:
        ref.append(wf)
        async with wf.clock.frozen():
            instance = await wf.binding.create()
            status = await wf.wait_for(instance, "waiting")
            assert status == {"status": "waiting", "output": None, "error": None}
            await asyncio.sleep(0.02)
            assert wf.clock.now() == START
            assert (await instance.status())["status"] == "waiting"
        status = await wf.wait_for(instance)
    assert status == {"status": "complete", "output": "b", "error": None}
    assert woke == [3600]
    assert calls == ["before"]


async def test_consecutive_sleeps_add_up(make_env: EnvFactory) -> None:
    woke: list[float] = []
    ref: list[Any] = []

    async def run(event: Any, step: Any) -> Any:
        await step.sleep("a", "1 hour")
        await step.sleep("b", "30 minutes")
        await step.sleep("a", 1000)  # same name again: a new occurrence, not a replay
        woke.append(ref[0].clock.now() - START)

    async with make_env(run) as wf:
        ref.append(wf)
        await wf.wait_for(await wf.binding.create())
    assert woke == [3600 + 1800 + 1]


# -- wait_for_event ------------------------------------------------------------------------


def waiter(received: list[Any], *, timeout: str = "1 hour", event_type: str = "approval") -> Any:
    async def run(event: Any, step: Any) -> Any:
        got = await step.wait_for_event("approve", event_type, timeout=timeout)
        received.append(got)
        return got["payload"]

    return run


async def test_event_sent_to_a_waiting_instance_is_delivered(make_env: EnvFactory) -> None:
    received: list[Any] = []
    async with make_env(waiter(received)) as wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await wf.wait_for(instance, "waiting")
        wf.clock.advance(60)
        await instance.send_event(type="approval", payload={"ok": True})
        status = await wf.wait_for(instance)
    assert status == {"status": "complete", "output": {"ok": True}, "error": None}
    assert received == [
        {
            "payload": {"ok": True},
            "type": "approval",
            "timestamp": START_DT + dt.timedelta(seconds=60),
        }
    ]


async def test_event_dict_has_a_utc_aware_timestamp(make_env: EnvFactory) -> None:
    seen: list[Any] = []

    async def run(event: Any, step: Any) -> Any:
        got = await step.wait_for_event("approve", "approval", timeout="1 hour")
        seen.append(got)
        await step.sleep("nap", "1 day")  # the next run replays the event from storage
        return got["timestamp"].isoformat()

    async with make_env(run) as wf:
        async with wf.clock.frozen():
            instance = await wf.binding.create()
            await wf.wait_for(instance, "waiting")
            wf.clock.advance(90)
            await instance.send_event(type="approval", payload=[1, 2])
        status = await through_hibernations(wf, instance, 1)
    assert status["output"] == "2026-01-01T00:01:30+00:00"
    assert len(seen) == 2
    for got in seen:
        assert set(got) == {"payload", "timestamp", "type"}
        assert got["payload"] == [1, 2]
        assert got["type"] == "approval"
        assert isinstance(got["timestamp"], dt.datetime)
        assert got["timestamp"].utcoffset() == dt.timedelta(0)
        assert got["timestamp"] == START_DT + dt.timedelta(seconds=90)


async def test_event_sent_before_the_wait_is_buffered(make_env: EnvFactory) -> None:
    received: list[Any] = []

    async def run(event: Any, step: Any) -> Any:
        await step.sleep("first", "1 hour")
        got = await step.wait_for_event("approve", "approval", timeout="1 minute")
        received.append(got)
        return got["payload"]

    async with make_env(run) as wf:
        async with wf.clock.frozen():
            instance = await wf.binding.create()
            await wf.wait_for(instance, "waiting")
            await instance.send_event(type="approval", payload="early")
            assert (await instance.status())["status"] == "waiting"  # the sleep still holds it
        status = await wf.wait_for(instance)
    assert status["output"] == "early"
    assert received[0]["timestamp"] == START_DT  # when it was sent, not when it was consumed


async def test_event_sent_while_a_step_runs_is_buffered(make_env: EnvFactory) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def run(event: Any, step: Any) -> Any:
        @step.do("work")
        async def work() -> str:
            started.set()
            await release.wait()
            return "worked"

        done = await work()
        got = await step.wait_for_event("approve", "approval", timeout="1 minute")
        return [done, got["payload"]]

    async with make_env(run) as wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await started.wait()
        await instance.send_event(type="approval", payload=7)
        release.set()
        status = await wf.wait_for(instance)
    assert status["output"] == ["worked", 7]


async def test_event_of_another_type_is_not_consumed(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        first = await step.wait_for_event("first", "alpha", timeout="1 hour")
        second = await step.wait_for_event("second", "beta", timeout="1 hour")
        return [first["payload"], first["type"], second["payload"], second["type"]]

    async with make_env(run) as wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await wf.wait_for(instance, "waiting")
        await instance.send_event(type="beta", payload="B")
        await asyncio.sleep(0.02)
        assert (await instance.status())["status"] == "waiting"  # alpha still awaited
        await instance.send_event(type="alpha", payload="A")
        status = await wf.wait_for(instance)
    assert status == {"status": "complete", "output": ["A", "alpha", "B", "beta"], "error": None}


async def test_buffered_event_of_another_type_is_not_consumed(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        await step.sleep("first", "1 hour")
        alpha = await step.wait_for_event("alpha", "alpha", timeout="1 hour")
        beta = await step.wait_for_event("beta", "beta", timeout="1 hour")
        return [alpha["payload"], beta["payload"]]

    async with make_env(run) as wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await wf.wait_for(instance, "waiting")
        await instance.send_event(type="beta", payload="B")  # buffered during the sleep
        wf.clock.advance(3600)
        await until(lambda: wf.engine.counters.runs == 2)
        # The sleep is over and the run now waits for alpha: the buffered beta is no use.
        await wf.wait_for(instance, "waiting")
        await asyncio.sleep(0.02)
        assert (await instance.status())["status"] == "waiting"
        await instance.send_event(type="alpha", payload="A")
        status = await wf.wait_for(instance)
    assert status["output"] == ["A", "B"]


async def test_wait_timeout_raises_and_can_be_caught(make_env: EnvFactory) -> None:
    seen: list[tuple[type[BaseException], str, float]] = []
    ref: list[Any] = []

    async def run(event: Any, step: Any) -> Any:
        try:
            await step.wait_for_event("approve", "approval", timeout="1 hour")
        except WorkflowTimeoutError as exc:
            seen.append((type(exc), str(exc), ref[0].clock.now() - START))
        await step.sleep("nap", "1 minute")  # the next run replays the timed-out wait
        return "gave up"

    async with make_env(run) as wf:
        ref.append(wf)
        status = await through_hibernations(wf, await wf.binding.create(), 2)
    message = (
        'step.wait_for_event("approve") timed out after 3600000ms '
        'waiting for an event of type "approval"'
    )
    assert status == {"status": "complete", "output": "gave up", "error": None}
    assert seen == [(WorkflowTimeoutError, message, 3600), (WorkflowTimeoutError, message, 3660)]


async def test_uncaught_wait_timeout_errors_the_instance(make_env: EnvFactory) -> None:
    ref: list[Any] = []
    ended: list[float] = []

    async def run(event: Any, step: Any) -> Any:
        try:
            await step.wait_for_event("approve", type="approval")  # default timeout: 24 hours
        finally:
            ended.append(ref[0].clock.now() - START)

    async with make_env(run) as wf:
        ref.append(wf)
        status = await wf.wait_for(await wf.binding.create())
    assert status == {
        "status": "errored",
        "output": None,
        "error": {
            "name": "WorkflowTimeoutError",
            "message": 'step.wait_for_event("approve") timed out after 86400000ms '
            'waiting for an event of type "approval"',
        },
    }
    assert ended[-1] == 86400


async def test_event_after_the_deadline_is_not_delivered_to_that_wait(
    make_env: EnvFactory,
) -> None:
    async def run(event: Any, step: Any) -> Any:
        try:
            await step.wait_for_event("first", "ping", timeout="1 minute")
            first = "got it"
        except WorkflowTimeoutError:
            first = "timed out"
        await step.sleep("nap", "1 hour")
        second = await step.wait_for_event("second", "ping", timeout="1 minute")
        return [first, second["payload"]]

    async with make_env(run) as wf, wf.clock.frozen():
        instance = await wf.binding.create()
        assert await hibernated(wf, instance) == START + 60
        # Paused, the instance cannot run when the deadline passes: the wait is still open in
        # storage when the late event comes, and must not take it.
        await instance.pause()
        wf.clock.advance(120)
        await instance.send_event(type="ping", payload="late")
        await instance.resume()
        assert await hibernated(wf, instance) == START + 120 + 3600  # the sleep
        wf.clock.advance(3600)
        status = await wf.wait_for(instance)
    assert status["output"] == ["timed out", "late"]


async def test_event_sent_while_paused_is_delivered_after_resume(make_env: EnvFactory) -> None:
    received: list[Any] = []
    async with make_env(waiter(received)) as wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await wf.wait_for(instance, "waiting")
        await instance.pause()
        assert (await instance.status())["status"] == "paused"
        wf.clock.advance(10)
        await instance.send_event(type="approval", payload="while paused")
        await asyncio.sleep(0.02)
        assert (await instance.status())["status"] == "paused"
        assert received == []
        await instance.resume()
        status = await wf.wait_for(instance)
    assert status["output"] == "while paused"
    assert received[0]["timestamp"] == START_DT + dt.timedelta(seconds=10)


async def test_two_waits_of_one_type_consume_two_events_in_order(
    make_env: EnvFactory,
) -> None:
    async def run(event: Any, step: Any) -> Any:
        await step.sleep("first", "1 hour")
        one = await step.wait_for_event("one", "tick", timeout="1 hour")
        two = await step.wait_for_event("two", "tick", timeout="1 hour")
        return [one["payload"], two["payload"]]

    async with make_env(run) as wf:
        async with wf.clock.frozen():
            instance = await wf.binding.create()
            await wf.wait_for(instance, "waiting")
            await instance.send_event(type="tick", payload=1)
            await instance.send_event(type="tick", payload=2)
        status = await wf.wait_for(instance)
    assert status["output"] == [1, 2]


async def test_same_wait_name_in_a_loop_consumes_events_in_order(
    make_env: EnvFactory,
) -> None:
    async def run(event: Any, step: Any) -> Any:
        out = []
        for _ in range(3):
            got = await step.wait_for_event("next", "item", timeout="1 hour")
            out.append(got["payload"])
        return out

    async with make_env(run) as wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await wf.wait_for(instance, "waiting")
        await instance.send_event(type="item", payload="a")
        await wf.wait_for(instance, "waiting")
        await instance.send_event({"type": "item", "payload": "b"})
        await instance.sendEvent({"type": "item", "payload": "c"})
        status = await wf.wait_for(instance)
    assert status["output"] == ["a", "b", "c"]


async def test_event_without_payload_delivers_none(make_env: EnvFactory) -> None:
    received: list[Any] = []
    async with make_env(waiter(received)) as wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await wf.wait_for(instance, "waiting")
        await instance.send_event(type="approval")
        status = await wf.wait_for(instance)
    assert status == {"status": "complete", "output": None, "error": None}
    assert received[0]["payload"] is None


async def test_gathered_waits_of_different_types(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        a, b = await asyncio.gather(
            step.wait_for_event("a", "alpha", timeout="1 hour"),
            step.wait_for_event("b", "beta", timeout="1 hour"),
        )
        return [a["payload"], b["payload"]]

    async with make_env(run) as wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await wf.wait_for(instance, "waiting")
        await instance.send_event(type="beta", payload="B")
        await instance.send_event(type="alpha", payload="A")
        status = await wf.wait_for(instance)
    assert status["output"] == ["A", "B"]


async def test_wait_timeout_longer_than_365_days_is_refused(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        await step.wait_for_event("approve", "approval", timeout="366 days")

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["error"] == {
        "name": "WorkflowDefinitionError",
        "message": "step.wait_for_event('approve'): timeout is longer than the 365-day limit",
    }
