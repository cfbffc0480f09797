"""``step.do``: naming, dependencies by parameter name, ``ctx``, the legacy ``depends=[...]``
form, concurrency, memoisation, occurrence counts and replay from the journal."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from unit_support import EnvFactory, through_hibernations

from dynamic_workflows.core.clock import MockClock


@pytest.fixture
def make_env(make_env: EnvFactory) -> EnvFactory:
    """No autojump here: nothing in these tests waits on virtual time except sleeps, which
    :func:`through_hibernations` steps through; so a slow machine cannot time a step out."""

    def factory(entrypoint: Any, **kwargs: Any) -> Any:
        return make_env(entrypoint, clock=MockClock(autojump=False), **kwargs)

    return factory


DEFAULT_CONFIG = {
    "retries": {"limit": 5, "delay": 10_000, "backoff": "exponential"},
    "timeout": "10 minutes",  # as Cloudflare documents the default
}


async def test_step_result_becomes_the_output(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        @step.do("greet")
        async def greet() -> str:
            return f"Hello, {event['payload']['name']}!"

        return await greet()

    async with make_env(run) as wf:
        instance = await wf.binding.create(params={"name": "Ada"})
        status = await wf.wait_for(instance)
    assert status == {"status": "complete", "output": "Hello, Ada!", "error": None}


async def test_json_values_round_trip_through_steps(make_env: EnvFactory) -> None:
    value = {"n": 1, "f": 1.5, "s": "é", "l": [1, None, True], "d": {"k": [{}]}, "none": None}
    seen: list[Any] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("make")
        async def make() -> Any:
            return value

        @step.do("nothing")
        async def nothing() -> None:
            return None

        got = await make()
        nil = await nothing()
        seen.append((got, nil))
        await step.sleep("nap", "1 second")  # the second run reads both from storage
        return got

    async with make_env(run) as wf:
        status = await through_hibernations(wf, await wf.binding.create(), 1)
    assert status["output"] == value
    assert seen == [(value, None), (value, None)]


async def test_parameter_named_like_a_step_receives_its_result(make_env: EnvFactory) -> None:
    calls: Counter[str] = Counter()

    async def run(event: Any, step: Any) -> Any:
        @step.do("first")
        async def first() -> int:
            calls["first"] += 1
            return 20

        @step.do("second")
        async def second() -> int:
            calls["second"] += 1
            return 22

        @step.do("total")
        async def total(second: int, first: int) -> int:  # order of parameters is free
            calls["total"] += 1
            return first + second

        # Neither dependency is awaited first: total() runs them itself.
        return await total()

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["output"] == 42
    assert calls == {"first": 1, "second": 1, "total": 1}


async def test_ctx_holds_step_name_count_attempt_and_default_config(
    make_env: EnvFactory,
) -> None:
    async def run(event: Any, step: Any) -> Any:
        @step.do("inspect")
        async def inspect(ctx: Any) -> Any:
            return ctx

        return await inspect()

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["output"] == {
        "step": {"name": "inspect", "count": 1},
        "attempt": 1,
        "config": DEFAULT_CONFIG,
    }


async def test_ctx_config_reflects_the_step_config(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        @step.do(
            "custom",
            config={
                "retries": {"limit": 2, "delay": "3 seconds", "backoff": "linear"},
                "timeout": "45 seconds",
            },
        )
        async def custom(ctx: Any) -> Any:
            return ctx["config"]

        @step.do("partial", config={"retries": {"limit": 0}})
        async def partial(ctx: Any) -> Any:
            return ctx["config"]

        return [await custom(), await partial()]

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    # Cloudflare's resolved config: the values as given, defaults filled in.
    assert status["output"] == [
        {
            "retries": {"limit": 2, "delay": "3 seconds", "backoff": "linear"},
            "timeout": "45 seconds",
        },
        {
            "retries": {"limit": 0, "delay": 10_000, "backoff": "exponential"},
            "timeout": "10 minutes",
        },
    ]


async def test_ctx_and_dependencies_together(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        @step.do("a")
        async def a() -> str:
            return "A"

        @step.do("b")
        async def b(ctx: Any, a: str) -> Any:
            return [a, ctx["step"], ctx["attempt"]]

        return await b()

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["output"] == ["A", {"name": "b", "count": 1}, 1]


async def test_legacy_depends_passes_results_positionally(make_env: EnvFactory) -> None:
    calls: Counter[str] = Counter()

    async def run(event: Any, step: Any) -> Any:
        @step.do("x")
        async def x() -> str:
            calls["x"] += 1
            return "X"

        @step.do("y")
        async def y() -> str:
            calls["y"] += 1
            return "Y"

        # Parameter names need not match the steps: depends gives them in order; ctx is skipped.
        @step.do("joined", depends=[y, x])
        async def joined(first: str, ctx: Any, second: str) -> Any:
            return [first, second, ctx["step"]["name"]]

        return await joined()

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["output"] == ["Y", "X", "joined"]
    assert calls == {"x": 1, "y": 1}


async def test_legacy_depends_with_concurrent_and_defaults(make_env: EnvFactory) -> None:
    """The SDK's own backward-compatibility test: defaults on the parameters do not matter."""
    log: list[str] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("step_1")
        async def step_1() -> str:
            log.append("start 1")
            await asyncio.sleep(0)
            log.append("end 1")
            return "foo"

        @step.do("step_2")
        async def step_2() -> str:
            log.append("start 2")
            await asyncio.sleep(0)
            log.append("end 2")
            return "bar"

        @step.do("step_3", depends=[step_1, step_2], concurrent=True)
        async def step_3(result1: Any = (), result2: Any = ()) -> Any:
            return result1 + result2

        return await step_3()

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["output"] == "foobar"
    assert log[:2] == ["start 1", "start 2"]


async def test_legacy_depends_count_mismatch_is_an_error(make_env: EnvFactory) -> None:
    ran: list[str] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("x")
        async def x() -> str:
            ran.append("x")
            return "X"

        @step.do("y")
        async def y() -> str:
            ran.append("y")
            return "Y"

        @step.do("joined", depends=[x, y])
        async def joined(only: str) -> str:
            ran.append("joined")
            return only

        return await joined()

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status == {
        "status": "errored",
        "output": None,
        "error": {
            "name": "WorkflowDefinitionError",
            "message": "step 'joined' declares 1 non-ctx parameter(s) but depends has 2 item(s)",
        },
    }
    assert ran == []


async def test_unexpected_parameter_is_an_error(make_env: EnvFactory) -> None:
    ran: list[str] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("lonely")
        async def lonely(missing: Any) -> None:
            ran.append("lonely")

        await lonely()

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["status"] == "errored"
    assert status["error"] == {
        "name": "WorkflowDefinitionError",
        "message": "step 'lonely': received unexpected parameter 'missing' "
        "(parameters must be named like an earlier step, or ctx)",
    }
    assert ran == []


async def test_parameter_with_a_default_is_still_unexpected(make_env: EnvFactory) -> None:
    """As in the SDK: every parameter must name an earlier step or be ctx, defaults or not."""

    async def run(event: Any, step: Any) -> Any:
        @step.do("defaulted")
        async def defaulted(n: int = 3) -> int:
            return n

        return await defaulted()

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["error"] == {
        "name": "WorkflowDefinitionError",
        "message": "step 'defaulted': received unexpected parameter 'n' "
        "(parameters must be named like an earlier step, or ctx)",
    }


async def test_dependencies_resolve_one_after_another_by_default(make_env: EnvFactory) -> None:
    log: list[str] = []

    async def run(event: Any, step: Any) -> Any:
        async def body(name: str) -> str:
            log.append(f"start {name}")
            for _ in range(5):
                await asyncio.sleep(0)
            log.append(f"end {name}")
            return name

        @step.do("left")
        async def left() -> str:
            return await body("left")

        @step.do("right")
        async def right() -> str:
            return await body("right")

        @step.do("both")
        async def both(left: str, right: str) -> str:
            return left + right

        return await both()

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["output"] == "leftright"
    assert log == ["start left", "end left", "start right", "end right"]


async def test_concurrent_true_resolves_dependencies_in_parallel(make_env: EnvFactory) -> None:
    log: list[str] = []

    async def run(event: Any, step: Any) -> Any:
        async def body(name: str) -> str:
            log.append(f"start {name}")
            for _ in range(5):
                await asyncio.sleep(0)
            log.append(f"end {name}")
            return name

        @step.do("left")
        async def left() -> str:
            return await body("left")

        @step.do("right")
        async def right() -> str:
            return await body("right")

        @step.do("both", concurrent=True)
        async def both(left: str, right: str) -> str:
            return left + right

        return await both()

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["output"] == "leftright"
    assert log[:2] == ["start left", "start right"]
    assert sorted(log[2:]) == ["end left", "end right"]


async def test_completed_dependency_is_not_run_again(make_env: EnvFactory) -> None:
    calls: Counter[str] = Counter()
    ctxs: list[Any] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("base")
        async def base(ctx: Any) -> int:
            calls["base"] += 1
            ctxs.append(ctx["step"])
            return 10

        @step.do("double")
        async def double(base: int) -> int:
            calls["double"] += 1
            return base * 2

        @step.do("triple")
        async def triple(base: int) -> int:
            calls["triple"] += 1
            return base * 3

        first = await base()
        return [first, await double(), await triple()]

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["output"] == [10, 20, 30]
    assert calls == {"base": 1, "double": 1, "triple": 1}
    assert ctxs == [{"name": "base", "count": 1}]


async def test_dependency_shared_by_concurrent_steps_runs_once(make_env: EnvFactory) -> None:
    calls: Counter[str] = Counter()

    async def run(event: Any, step: Any) -> Any:
        @step.do("base")
        async def base() -> int:
            calls["base"] += 1
            for _ in range(3):
                await asyncio.sleep(0)
            return 1

        @step.do("plus")
        async def plus(base: int) -> int:
            return base + 1

        @step.do("minus")
        async def minus(base: int) -> int:
            return base - 1

        return list(await asyncio.gather(plus(), minus()))

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["output"] == [2, 0]
    assert calls == {"base": 1}


async def test_default_name_is_the_function_name(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        @step.do()
        async def with_parens(ctx: Any) -> Any:
            return ctx["step"]

        @step.do
        async def bare(ctx: Any) -> Any:
            return ctx["step"]

        @step.do(config={"retries": {"limit": 1}})
        async def config_only(ctx: Any) -> Any:
            return ctx["step"]

        @step.do()
        async def uses(with_parens: Any, bare: Any) -> Any:  # dependencies by the default name
            return [with_parens["name"], bare["name"]]

        return [await with_parens(), await bare(), await config_only(), await uses()]

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["output"] == [
        {"name": "with_parens", "count": 1},
        {"name": "bare", "count": 1},
        {"name": "config_only", "count": 1},
        ["with_parens", "bare"],
    ]


async def test_sync_function_as_a_step(make_env: EnvFactory) -> None:
    calls: Counter[str] = Counter()

    async def run(event: Any, step: Any) -> Any:
        @step.do("plain")
        def plain() -> int:
            calls["plain"] += 1
            return 7

        @step.do("plain_ctx")
        def plain_ctx(plain: int, ctx: Any) -> Any:
            calls["plain_ctx"] += 1
            return [plain, ctx["attempt"]]

        result = await plain_ctx()
        await step.sleep("nap", "1 minute")
        return result

    async with make_env(run) as wf:
        status = await through_hibernations(wf, await wf.binding.create(), 1)
    assert status["output"] == [7, 1]
    assert calls == {"plain": 1, "plain_ctx": 1}


async def test_same_name_in_a_loop_runs_every_callback_with_counts(
    make_env: EnvFactory,
) -> None:
    executions: list[tuple[int, int]] = []

    async def run(event: Any, step: Any) -> Any:
        def make_tick(i: int) -> Any:
            # A parameter with a default would be taken for a dependency (as in the SDK), so the
            # loop variable is bound by a factory instead.
            @step.do("tick")
            async def tick(ctx: Any) -> int:
                executions.append((i, ctx["step"]["count"]))
                return i * 10

            return tick

        results = []
        for i in range(3):
            results.append(await make_tick(i)())
        await step.sleep("nap", "1 hour")  # the next run replays all three from storage
        return results

    async with make_env(run) as wf:
        status = await through_hibernations(wf, await wf.binding.create(), 1)
    assert status["output"] == [0, 10, 20]
    assert executions == [(0, 1), (1, 2), (2, 3)]


async def test_calling_a_step_function_twice_runs_it_twice(make_env: EnvFactory) -> None:
    counts: list[int] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("again")
        async def again(ctx: Any) -> int:
            counts.append(ctx["step"]["count"])
            return ctx["step"]["count"]

        return [await again(), await again()]

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["output"] == [1, 2]
    assert counts == [1, 2]


async def test_gather_of_steps(make_env: EnvFactory) -> None:
    calls: Counter[str] = Counter()
    runs: list[list[Any]] = []

    async def run(event: Any, step: Any) -> Any:
        def make(name: str, value: int) -> Any:
            @step.do(name)
            async def fn() -> int:
                calls[name] += 1
                for _ in range(value):
                    await asyncio.sleep(0)
                return value

            return fn

        results = list(await asyncio.gather(make("a", 3)(), make("b", 1)(), make("c", 2)()))
        runs.append(results)
        await step.sleep("nap", "5 minutes")
        return results

    async with make_env(run) as wf:
        status = await through_hibernations(wf, await wf.binding.create(), 1)
    assert status["output"] == [3, 1, 2]
    assert calls == {"a": 1, "b": 1, "c": 1}
    assert runs == [[3, 1, 2], [3, 1, 2]]  # the second run (after the sleep) is pure replay


async def test_gather_of_one_step_function_runs_each_occurrence(make_env: EnvFactory) -> None:
    executions: list[int] = []
    runs: list[list[Any]] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("tick")
        async def tick(ctx: Any) -> int:
            executions.append(ctx["step"]["count"])
            for _ in range(4 - ctx["step"]["count"]):  # the first one finishes last
                await asyncio.sleep(0)
            return int(ctx["step"]["count"]) * 10

        results = list(await asyncio.gather(tick(), tick(), tick()))
        runs.append(results)
        await step.sleep("nap", "1 minute")
        return results

    async with make_env(run) as wf:
        status = await through_hibernations(wf, await wf.binding.create(), 1)
    assert status == {"status": "complete", "output": [10, 20, 30], "error": None}
    assert sorted(executions) == [1, 2, 3]
    assert runs == [[10, 20, 30], [10, 20, 30]]


async def test_completed_steps_replay_without_running_after_hibernation(
    make_env: EnvFactory,
) -> None:
    calls: Counter[str] = Counter()
    run_count = 0

    async def run(event: Any, step: Any) -> Any:
        nonlocal run_count
        run_count += 1

        @step.do("one")
        async def one() -> str:
            calls["one"] += 1
            return "1"

        @step.do("two")
        async def two(one: str) -> str:
            calls["two"] += 1
            return one + "2"

        a = await two()
        await step.sleep("first nap", "1 hour")

        @step.do("three")
        async def three() -> str:
            calls["three"] += 1
            return "3"

        b = await three()
        await step.sleep("second nap", "1 day")
        return a + b

    async with make_env(run) as wf:
        status = await through_hibernations(wf, await wf.binding.create(), 2)
    assert status["output"] == "123"
    assert calls == {"one": 1, "two": 1, "three": 1}
    assert run_count == 3
