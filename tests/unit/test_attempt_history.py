"""Every attempt of every step is recorded: when it began and ended, how it went, what it raised
and how long the engine waited before the next one; bounded, on every backend."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from unit_support import START, EnvFactory, through_hibernations

from dynamic_workflows.core.attempts import KEPT_FIRST, KEPT_LAST
from dynamic_workflows.queries import StepView


async def steps_of(wf: Any, instance: Any) -> dict[str, StepView]:
    view = await wf.engine.queries.get_instance(wf.binding.name, "", instance.id)
    assert view is not None
    return {s.name: s for s in await wf.engine.queries.journal(view)}


async def test_a_step_retried_twice_shows_three_attempts_a_second_apart(
    make_env: EnvFactory,
) -> None:
    clock: list[Any] = []

    async def run(event: Any, step: Any) -> Any:
        config = {"retries": {"limit": 2, "delay": "1 second", "backoff": "constant"}}

        @step.do("flaky", config=config)
        async def flaky(ctx: Any) -> str:
            await asyncio.sleep(0)
            if ctx["attempt"] < 3:
                raise ValueError(f"attempt {ctx['attempt']} failed")
            return "third time lucky"

        return await flaky()

    async with make_env(run) as wf:
        clock.append(wf.clock)
        instance = await wf.binding.create()
        status = await through_hibernations(wf, instance, 2)
        assert status["output"] == "third time lucky"
        step = (await steps_of(wf, instance))["flaky"]
    assert step.attempts_total == 3
    assert step.attempts_omitted == 0
    assert [(a.attempt, a.success) for a in step.attempts] == [(1, False), (2, False), (3, True)]
    assert [a.error.as_dict() if a.error else None for a in step.attempts] == [
        {"name": "ValueError", "message": "attempt 1 failed"},
        {"name": "ValueError", "message": "attempt 2 failed"},
        None,
    ]
    assert [a.delay for a in step.attempts] == [1.0, 1.0, None]
    starts = [a.started_at for a in step.attempts]
    assert all(s is not None for s in starts)
    assert starts[0] == pytest.approx(START, abs=0.01)
    assert [b - a for a, b in itertools.pairwise(starts)] == [
        pytest.approx(1.0, abs=0.01),
        pytest.approx(1.0, abs=0.01),
    ]
    for attempt in step.attempts:
        assert attempt.ended_at is not None
        assert attempt.duration == pytest.approx(0.0, abs=0.01)
    assert step.started_at == starts[0]
    assert step.ended_at == step.attempts[-1].ended_at
    assert step.duration == pytest.approx(2.0, abs=0.02)


async def test_a_first_try_success_is_one_attempt_with_its_times(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        @step.do("quick")
        async def quick() -> int:
            return 1

        result = await quick()
        await step.sleep("nap", "10 seconds")
        return result

    async with make_env(run) as wf:
        instance = await wf.binding.create()
        await through_hibernations(wf, instance, 1)
        steps = await steps_of(wf, instance)
    quick, nap = steps["quick"], steps["nap"]
    assert quick.attempts_total == 1
    (only,) = quick.attempts
    assert (only.attempt, only.success, only.error, only.delay) == (1, True, None, None)
    assert only.started_at == pytest.approx(START, abs=0.01)
    assert quick.started_at == only.started_at
    assert quick.ended_at == only.ended_at
    # a sleep: from when it began to its wake-up time; no attempts
    assert nap.attempts == []
    assert nap.started_at == pytest.approx(START, abs=0.01)
    assert nap.ended_at == pytest.approx(START + 10, abs=0.01)


async def test_a_step_that_fails_for_good_records_its_last_attempt(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        @step.do("doomed", config={"retries": {"limit": 1, "delay": 500, "backoff": "constant"}})
        async def doomed() -> None:
            raise RuntimeError("nope")

        await doomed()

    async with make_env(run) as wf:
        instance = await wf.binding.create()
        status = await through_hibernations(wf, instance, 1)
        assert status["status"] == "errored"
        step = (await steps_of(wf, instance))["doomed"]
    assert [(a.attempt, a.success, a.delay) for a in step.attempts] == [
        (1, False, 0.5),
        (2, False, None),
    ]
    assert step.ended_at == step.attempts[-1].ended_at


async def test_a_long_history_keeps_its_first_and_last_attempts(make_env: EnvFactory) -> None:
    tries = KEPT_FIRST + KEPT_LAST + 5

    async def run(event: Any, step: Any) -> Any:
        config = {"retries": {"limit": tries, "delay": 1, "backoff": "constant"}}

        @step.do("stubborn", config=config)
        async def stubborn(ctx: Any) -> int:
            if ctx["attempt"] <= tries:
                raise ValueError(str(ctx["attempt"]))
            return int(ctx["attempt"])

        return await stubborn()

    async with make_env(run, warm_horizon=5.0) as wf:  # back-offs of 1 ms stay in the run
        instance = await wf.binding.create()
        status = await wf.wait_for(instance)
        assert status["output"] == tries + 1
        step = (await steps_of(wf, instance))["stubborn"]
    assert step.attempts_total == tries + 1
    assert step.attempts_omitted == tries + 1 - (KEPT_FIRST + KEPT_LAST + 1)
    numbers = [a.attempt for a in step.attempts]
    assert numbers == [
        *range(1, KEPT_FIRST + 1),
        *range(tries - KEPT_LAST + 1, tries + 1),
        tries + 1,
    ]


async def test_a_wait_has_a_start_and_ends_with_its_event(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        got = await step.wait_for_event("approval", "approved", timeout="1 hour")
        return got["payload"]

    async with make_env(run) as wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await wf.wait_for(instance, "waiting")
        wf.clock.advance(30)
        await instance.send_event(type="approved", payload="ok")
        assert (await wf.wait_for(instance))["output"] == "ok"
        wait = (await steps_of(wf, instance))["approval"]
    assert wait.started_at == pytest.approx(START, abs=0.01)
    assert wait.ended_at == pytest.approx(START + 30, abs=0.01)
