"""Limits enforced with clear errors: step names, event types, sizes, step counts, JSON."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from unit_support import EnvFactory

from dynamic_workflows import (
    InvalidEventTypeError,
    LimitExceededError,
    Limits,
    WorkflowError,
)

MIB = 1024 * 1024
OVER_MIB = "x" * MIB  # 1,048,578 bytes once quoted as JSON
TYPE_RULE = "at most 100 characters matching ^[a-zA-Z0-9_][a-zA-Z0-9-_]*$"


def errored(name: str, message: str) -> dict[str, Any]:
    return {"status": "errored", "output": None, "error": {"name": name, "message": message}}


def test_default_limits_are_cloudflares() -> None:
    limits = Limits()
    assert limits.max_id_length == 100
    assert limits.max_step_name_length == 256
    assert limits.max_value_bytes == MIB
    assert limits.max_steps == 10_000
    assert limits.max_batch == 100


# -- step names ------------------------------------------------------------------------------


def with_step_name(kind: str, name: str) -> Any:
    async def run(event: Any, step: Any) -> Any:
        if kind == "do":

            @step.do(name)
            async def fn() -> str:
                return "ran"

            return await fn()
        if kind == "sleep":
            await step.sleep(name, 1)
            return "slept"
        try:
            await step.wait_for_event(name, "evt", timeout=1)
        except Exception as exc:
            if type(exc).__name__ != "WorkflowTimeoutError":
                raise
        return "waited"

    return run


@pytest.mark.parametrize("kind", ["do", "sleep", "wait"])
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("n" * 257, "step name is 257 characters; the limit is 256"),
        ("line\nbreak", "step name 'line\\nbreak' contains control characters"),
        ("nul\x00", "step name 'nul\\x00' contains control characters"),
        ("del\x7f", "step name 'del\\x7f' contains control characters"),
        ("", "step name must not be empty"),
    ],
)
async def test_bad_step_names(make_env: EnvFactory, kind: str, name: str, message: str) -> None:
    async with make_env(with_step_name(kind, name)) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status == errored("WorkflowDefinitionError", message)


@pytest.mark.parametrize("kind", ["do", "sleep", "wait"])
@pytest.mark.parametrize(
    "name",
    [
        "n" * 256,
        "spaces and ünïcode are fine",
        "a/b.c:d",
        # Not "printable" to Python, but no control character: the slow path accepts them.
        "tab\u2028separated\u00a0too",
    ],
)
async def test_good_step_names(make_env: EnvFactory, kind: str, name: str) -> None:
    async with make_env(with_step_name(kind, name)) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["status"] == "complete"


# -- event types -----------------------------------------------------------------------------


@pytest.mark.parametrize("bad_type", ["t" * 101, "has space", "-dash-first", "", "dot.type", None])
async def test_bad_event_type_in_send_event(make_env: EnvFactory, bad_type: Any) -> None:
    async def run(event: Any, step: Any) -> Any:
        await step.sleep("nap", "1 hour")

    async with make_env(run) as wf:
        instance = await wf.binding.create()
        with pytest.raises(InvalidEventTypeError) as info:
            await instance.send_event(type=bad_type, payload=1)
    assert str(info.value) == f"Invalid event type {bad_type!r}: {TYPE_RULE}"
    assert info.value.code == "instance.invalid_event_type"


@pytest.mark.parametrize("bad_type", ["t" * 101, "has space", "-dash-first"])
async def test_bad_event_type_in_wait_for_event(make_env: EnvFactory, bad_type: str) -> None:
    async def run(event: Any, step: Any) -> Any:
        await step.wait_for_event("wait", bad_type, timeout="1 minute")

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status == errored(
        "InvalidEventTypeError", f"Invalid event type {bad_type!r}: {TYPE_RULE}"
    )


async def test_longest_event_type_is_fine(make_env: EnvFactory) -> None:
    event_type = "T" * 100

    async def run(event: Any, step: Any) -> Any:
        got = await step.wait_for_event("wait", event_type, timeout="1 minute")
        return got["type"]

    async with make_env(run) as wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await wf.wait_for(instance, "waiting")
        await instance.send_event(type=event_type)
        status = await wf.wait_for(instance)
    assert status["output"] == event_type


# -- sizes -----------------------------------------------------------------------------------


async def test_params_over_one_mib_are_refused(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        return None

    async with make_env(run) as wf:
        with pytest.raises(LimitExceededError) as info:
            await wf.binding.create(id="big", params=OVER_MIB)
        assert str(info.value) == (
            "params is 1,048,578 bytes once serialised; the limit is 1,048,576 bytes (1 MiB)"
        )
        assert await wf.storage.list_instances(None) == []
        just_fits = await wf.binding.create(params="x" * (MIB - 2))
        assert (await wf.wait_for(just_fits))["status"] == "complete"


async def test_event_payload_over_one_mib_is_refused(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        got = await step.wait_for_event("wait", "big", timeout="1 hour")
        return len(got["payload"])

    async with make_env(run) as wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await wf.wait_for(instance, "waiting")
        with pytest.raises(LimitExceededError) as info:
            await instance.send_event(type="big", payload=OVER_MIB)
        assert str(info.value) == (
            'the payload of event "big" is 1,048,578 bytes once serialised; '
            "the limit is 1,048,576 bytes (1 MiB)"
        )
        await asyncio.sleep(0.02)
        assert (await instance.status())["status"] == "waiting"  # nothing was delivered
        await instance.send_event(type="big", payload="x" * (MIB - 2))
        status = await wf.wait_for(instance)
    assert status["output"] == MIB - 2


async def test_run_output_over_one_mib_errors_the_instance(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        return OVER_MIB

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status == errored(
        "LimitExceededError",
        "the output of run() is 1,048,578 bytes once serialised; "
        "the limit is 1,048,576 bytes (1 MiB)",
    )


async def test_custom_value_limit(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        @step.do("medium")
        async def medium() -> str:
            return "y" * 200

        return await medium()

    async with make_env(run, limits=Limits(max_value_bytes=100)) as wf:
        with pytest.raises(LimitExceededError) as info:
            await wf.binding.create(params="z" * 100)
        assert str(info.value) == "params is 102 bytes once serialised; the limit is 100 bytes"
        status = await wf.wait_for(await wf.binding.create())
    assert status == errored(
        "NonRetryableError",
        "the result of step 'medium' is 202 bytes once serialised; the limit is 100 bytes",
    )


# -- step count ------------------------------------------------------------------------------


def ticker(total: int, executions: list[int], *, sleep_after: int | None = None) -> Any:
    async def run(event: Any, step: Any) -> Any:
        @step.do("tick")
        async def tick(ctx: Any) -> int:
            executions.append(ctx["step"]["count"])
            return int(ctx["step"]["count"])

        out = []
        for n in range(total):
            out.append(await tick())
            if sleep_after is not None and n + 1 == sleep_after:
                await step.sleep("nap", "1 minute")
        return out

    return run


async def test_step_count_limit(make_env: EnvFactory) -> None:
    executions: list[int] = []
    async with make_env(ticker(10, executions), limits=Limits(max_steps=5)) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status == errored(
        "LimitExceededError", "step 'tick': the instance would exceed the limit of 5 steps"
    )
    assert executions == [1, 2, 3, 4, 5]


async def test_step_count_limit_counts_replayed_steps_and_sleeps(make_env: EnvFactory) -> None:
    executions: list[int] = []
    async with make_env(ticker(10, executions, sleep_after=2), limits=Limits(max_steps=5)) as wf:
        status = await wf.wait_for(await wf.binding.create())
    # tick 1, tick 2, the sleep, tick 3, tick 4 = 5 steps; tick 5 would be the sixth
    assert status == errored(
        "LimitExceededError", "step 'tick': the instance would exceed the limit of 5 steps"
    )
    assert executions == [1, 2, 3, 4]


async def test_exactly_the_step_limit_is_fine(make_env: EnvFactory) -> None:
    executions: list[int] = []
    async with make_env(ticker(5, executions, sleep_after=3), limits=Limits(max_steps=6)) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status == {"status": "complete", "output": [1, 2, 3, 4, 5], "error": None}


# -- JSON ------------------------------------------------------------------------------------


async def test_unserialisable_params_are_refused(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        return None

    async with make_env(run) as wf:
        with pytest.raises(WorkflowError) as info:
            await wf.binding.create(id="odd", params={"handle": object()})
        assert str(info.value) == (
            "params cannot be serialised as JSON: Encoding objects of type object is unsupported"
        )
        assert await wf.storage.list_instances(None) == []


async def test_unserialisable_event_payload_is_refused(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        await step.sleep("nap", "1 hour")

    async with make_env(run) as wf:
        instance = await wf.binding.create()
        with pytest.raises(WorkflowError) as info:
            await instance.send_event(type="evt", payload=object())
    assert str(info.value) == (
        "event payload cannot be serialised as JSON: Encoding objects of type object is unsupported"
    )


async def test_unserialisable_run_output_errors_the_instance(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        return object()

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status == errored(
        "TypeError",
        "run() returned a value that cannot be serialised: "
        "Encoding objects of type object is unsupported",
    )
