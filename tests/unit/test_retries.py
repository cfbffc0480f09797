"""Retries, back-off on virtual time, timeouts, NonRetryableError and how failed steps replay."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from unit_support import START, EnvFactory, through_hibernations, until

from dynamic_workflows.workers.workflows import NonRetryableError, WorkflowTimeoutError


class FlakyError(Exception):
    """A tenant-defined error class (not a builtin)."""


def failing_workflow(
    attempts: list[tuple[int, float]], wf_ref: list[Any], config: Any, *, succeed_on: int = 0
) -> Any:
    """A workflow whose step ``flaky`` fails with ``ValueError("attempt N")`` on attempt N
    (succeeding on ``succeed_on`` if given), recording ``(attempt, virtual time)``."""

    async def run(event: Any, step: Any) -> Any:
        @step.do("flaky", config=config)
        async def flaky(ctx: Any) -> str:
            attempts.append((ctx["attempt"], wf_ref[0].clock.now() - START))
            if ctx["attempt"] == succeed_on:
                return f"ok on {ctx['attempt']}"
            raise ValueError(f"attempt {ctx['attempt']}")

        return await flaky()

    return run


@pytest.mark.parametrize("limit", [0, 1, 3])
async def test_limit_n_means_n_plus_one_attempts(make_env: EnvFactory, limit: int) -> None:
    attempts: list[tuple[int, float]] = []
    ref: list[Any] = []
    config = {"retries": {"limit": limit, "delay": "1 second", "backoff": "constant"}}
    async with make_env(failing_workflow(attempts, ref, config)) as wf:
        ref.append(wf)
        status = await wf.wait_for(await wf.binding.create())
    assert [a for a, _ in attempts] == list(range(1, limit + 2))
    assert status == {
        "status": "errored",
        "output": None,
        "error": {"name": "ValueError", "message": f"attempt {limit + 1}"},
    }


@pytest.mark.parametrize(
    ("backoff", "expected_times"),
    [
        ("constant", [0, 2, 4, 6]),  # d, d, d
        ("linear", [0, 2, 6, 12]),  # d*1, d*2, d*3
        ("exponential", [0, 2, 6, 14]),  # d*1, d*2, d*4
    ],
)
async def test_backoff_delays_on_virtual_time(
    make_env: EnvFactory, backoff: str, expected_times: list[float]
) -> None:
    attempts: list[tuple[int, float]] = []
    ref: list[Any] = []
    config = {"retries": {"limit": 3, "delay": "2 seconds", "backoff": backoff}}
    async with make_env(failing_workflow(attempts, ref, config)) as wf:
        ref.append(wf)
        status = await wf.wait_for(await wf.binding.create())
    assert attempts == list(zip([1, 2, 3, 4], expected_times, strict=True))
    assert status["error"] == {"name": "ValueError", "message": "attempt 4"}


async def test_delay_in_milliseconds(make_env: EnvFactory) -> None:
    attempts: list[tuple[int, float]] = []
    ref: list[Any] = []
    config = {"retries": {"limit": 2, "delay": 1500, "backoff": "linear"}}
    async with make_env(failing_workflow(attempts, ref, config)) as wf:
        ref.append(wf)
        await wf.wait_for(await wf.binding.create())
    assert attempts == [(1, 0.0), (2, 1.5), (3, 4.5)]


async def test_default_config_five_retries_exponential_from_ten_seconds(
    make_env: EnvFactory,
) -> None:
    attempts: list[tuple[int, float]] = []
    ref: list[Any] = []
    async with make_env(failing_workflow(attempts, ref, None)) as wf:
        ref.append(wf)
        status = await wf.wait_for(await wf.binding.create())
        ended = wf.clock.now() - START
    assert attempts == [(1, 0), (2, 10), (3, 30), (4, 70), (5, 150), (6, 310)]
    assert ended == 10 + 20 + 40 + 80 + 160
    assert status["error"] == {"name": "ValueError", "message": "attempt 6"}


async def test_success_after_retries(make_env: EnvFactory) -> None:
    attempts: list[tuple[int, float]] = []
    ref: list[Any] = []
    config = {"retries": {"limit": 5, "delay": "1 minute", "backoff": "exponential"}}
    async with make_env(failing_workflow(attempts, ref, config, succeed_on=3)) as wf:
        ref.append(wf)
        status = await wf.wait_for(await wf.binding.create())
    assert attempts == [(1, 0), (2, 60), (3, 180)]
    assert status == {"status": "complete", "output": "ok on 3", "error": None}


async def test_errored_instance_reports_the_last_attempt(make_env: EnvFactory) -> None:
    errors = [ValueError("first"), RuntimeError("second"), FlakyError("third")]

    async def run(event: Any, step: Any) -> Any:
        @step.do("flaky", config={"retries": {"limit": 2, "delay": 1, "backoff": "constant"}})
        async def flaky(ctx: Any) -> None:
            raise errors[ctx["attempt"] - 1]

        await flaky()

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["error"] == {"name": "FlakyError", "message": "third"}


async def test_ctx_attempt_and_step_across_retries(make_env: EnvFactory) -> None:
    ctxs: list[Any] = []

    async def run(event: Any, step: Any) -> Any:
        config = {"retries": {"limit": 2, "delay": "1 second", "backoff": "constant"}}

        @step.do("flaky", config=config)
        async def flaky(ctx: Any) -> None:
            ctxs.append(ctx)
            raise ValueError("no")

        await flaky()

    async with make_env(run) as wf:
        await wf.wait_for(await wf.binding.create())
    config = {
        "retries": {"limit": 2, "delay": "1 second", "backoff": "constant"},
        "timeout": "10 minutes",
    }
    assert ctxs == [
        {"step": {"name": "flaky", "count": 1}, "attempt": n, "config": config} for n in (1, 2, 3)
    ]


async def test_retries_do_not_rerun_completed_steps(make_env: EnvFactory) -> None:
    calls = {"before": 0, "flaky": 0}

    async def run(event: Any, step: Any) -> Any:
        @step.do("before")
        async def before() -> str:
            calls["before"] += 1
            return "b"

        @step.do("flaky", config={"retries": {"limit": 3, "delay": 1, "backoff": "constant"}})
        async def flaky(before: str, ctx: Any) -> str:
            calls["flaky"] += 1
            if ctx["attempt"] < 4:
                raise ValueError("not yet")
            return before + "!"

        return await flaky()

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["output"] == "b!"
    assert calls == {"before": 1, "flaky": 4}


async def test_step_timeout_then_retry(make_env: EnvFactory) -> None:
    attempts: list[tuple[int, float]] = []
    ref: list[Any] = []

    async def run(event: Any, step: Any) -> Any:
        config = {
            "retries": {"limit": 2, "delay": "1 second", "backoff": "constant"},
            "timeout": "1 second",
        }

        @step.do("slow", config=config)
        async def slow(ctx: Any) -> str:
            attempts.append((ctx["attempt"], ref[0].clock.now() - START))
            if ctx["attempt"] < 3:
                await asyncio.Event().wait()  # hangs until the step timeout cancels it
            return "made it"

        return await slow()

    async with make_env(run) as wf:
        ref.append(wf)
        status = await wf.wait_for(await wf.binding.create())
    # attempt 1 at 0 s, times out at 1 s; back-off 1 s; attempt 2 at 2 s, times out at 3 s...
    assert attempts == [(1, 0), (2, 2), (3, 4)]
    assert status["output"] == "made it"


async def test_step_timeout_error_name_and_message(make_env: EnvFactory) -> None:
    caught: list[Any] = []

    async def run(event: Any, step: Any) -> Any:
        config = {"retries": {"limit": 1, "delay": 1, "backoff": "constant"}, "timeout": 1000}

        @step.do("slow", config=config)
        async def slow() -> None:
            await asyncio.Event().wait()

        try:
            await slow()
        except WorkflowTimeoutError as exc:
            caught.append((type(exc).__name__, str(exc)))
        await slow()  # a second occurrence, uncaught this time

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert caught[0] == ("WorkflowTimeoutError", "Execution timed out after 1000ms")
    assert status == {
        "status": "errored",
        "output": None,
        "error": {"name": "WorkflowTimeoutError", "message": "Execution timed out after 1000ms"},
    }


async def test_non_retryable_error_makes_one_attempt(make_env: EnvFactory) -> None:
    attempts: list[int] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("doomed")  # default config: 5 retries
        async def doomed(ctx: Any) -> None:
            attempts.append(ctx["attempt"])
            raise NonRetryableError("do not retry me")

        await doomed()

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
        elapsed = wf.clock.now() - START
    assert attempts == [1]
    assert elapsed == 0  # no back-off was waited for
    assert status == {
        "status": "errored",
        "output": None,
        "error": {"name": "NonRetryableError", "message": "do not retry me"},
    }


async def test_non_retryable_error_on_a_later_attempt_stops_retrying(
    make_env: EnvFactory,
) -> None:
    attempts: list[int] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("doomed", config={"retries": {"limit": 10, "delay": 1, "backoff": "constant"}})
        async def doomed(ctx: Any) -> None:
            attempts.append(ctx["attempt"])
            if ctx["attempt"] == 2:
                raise NonRetryableError("stop at 2")
            raise ValueError("again")

        await doomed()

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert attempts == [1, 2]
    assert status["error"] == {"name": "NonRetryableError", "message": "stop at 2"}


async def test_step_error_caught_in_run_lets_the_instance_complete(
    make_env: EnvFactory,
) -> None:
    async def run(event: Any, step: Any) -> Any:
        @step.do("boom", config={"retries": {"limit": 0}})
        async def boom() -> None:
            raise ValueError("kaput")

        @step.do("after")
        async def after() -> str:
            return "carried on"

        try:
            await boom()
        except ValueError as exc:
            caught = str(exc)
        return [caught, await after()]

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status == {"status": "complete", "output": ["kaput", "carried on"], "error": None}


@pytest.mark.parametrize(
    ("raised", "expected_class", "expected_name"),
    [
        (ValueError("bad value"), ValueError, "ValueError"),
        (NonRetryableError("final"), NonRetryableError, "NonRetryableError"),
        (FlakyError("custom"), None, "FlakyError"),
    ],
)
async def test_caught_error_is_the_same_on_first_run_and_on_replay(
    make_env: EnvFactory,
    raised: Exception,
    expected_class: type[Exception] | None,
    expected_name: str,
) -> None:
    seen: list[tuple[type[BaseException], str, str]] = []
    executions: list[int] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("fails", config={"retries": {"limit": 1, "delay": 1, "backoff": "constant"}})
        async def fails(ctx: Any) -> None:
            executions.append(ctx["attempt"])
            raise raised

        try:
            await fails()
        except Exception as exc:
            seen.append((type(exc), getattr(exc, "name", type(exc).__name__), str(exc)))
        await step.sleep("nap", "1 hour")  # hibernate: the next run replays the stored error
        return len(seen)

    hibernations = 1 if isinstance(raised, NonRetryableError) else 2  # (back-off and) sleep
    async with make_env(run) as wf:
        status = await through_hibernations(wf, await wf.binding.create(), hibernations)
    expected_attempts = [1] if isinstance(raised, NonRetryableError) else [1, 2]
    assert executions == expected_attempts  # the stored error replays without running again
    assert status["status"] == "complete"
    assert len(seen) == 2
    assert seen[0] == seen[1]
    assert seen[0][1:] == (expected_name, str(raised))
    if expected_class is not None:
        assert seen[0][0] is expected_class


async def test_replayed_custom_error_keeps_its_name(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        @step.do("fails", config={"retries": {"limit": 0}})
        async def fails() -> None:
            raise FlakyError("custom failure")

        try:
            await fails()
        except Exception as exc:
            error = exc
        await step.sleep("nap", "1 minute")
        raise error  # raised by the run that replayed the step's error from storage

    async with make_env(run) as wf:
        status = await through_hibernations(wf, await wf.binding.create(), 1)
    assert status["error"] == {"name": "FlakyError", "message": "custom failure"}


async def test_unserialisable_result_fails_at_once(make_env: EnvFactory) -> None:
    attempts: list[int] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("weird")
        async def weird(ctx: Any) -> Any:
            attempts.append(ctx["attempt"])
            return object()

        return await weird()

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
        elapsed = wf.clock.now() - START
    assert attempts == [1]
    assert elapsed == 0
    assert status["status"] == "errored"
    assert status["error"] == {
        "name": "NonRetryableError",
        "message": "step 'weird' returned a value that cannot be serialised: "
        "Encoding objects of type object is unsupported",
    }


async def test_result_over_one_mib_fails_at_once(make_env: EnvFactory) -> None:
    attempts: list[int] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("huge")
        async def huge(ctx: Any) -> str:
            attempts.append(ctx["attempt"])
            return "x" * (1024 * 1024)  # 1 MiB of text: 2 bytes more once quoted as JSON

        return await huge()

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
        elapsed = wf.clock.now() - START
    assert attempts == [1]
    assert elapsed == 0
    assert status["error"] == {
        "name": "NonRetryableError",
        "message": "the result of step 'huge' is 1,048,578 bytes once serialised; "
        "the limit is 1,048,576 bytes (1 MiB)",
    }


async def test_result_of_exactly_one_mib_is_accepted(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        @step.do("big")
        async def big() -> str:
            return "x" * (1024 * 1024 - 2)

        return len(await big())

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["output"] == 1024 * 1024 - 2


async def test_every_back_off_is_waited_for_while_the_run_stays_live(
    make_env: EnvFactory,
) -> None:
    """A step held open by a gathered branch keeps the run from hibernating, so all back-offs
    of the flaky step happen in one live run: each must still wait its full delay."""
    attempts: list[tuple[int, float]] = []
    release = asyncio.Event()
    ref: list[Any] = []

    async def run(event: Any, step: Any) -> Any:
        config = {"retries": {"limit": 3, "delay": "10 seconds", "backoff": "constant"}}

        @step.do("flaky", config=config)
        async def flaky(ctx: Any) -> str:
            attempts.append((ctx["attempt"], ref[0].clock.now() - START))
            if ctx["attempt"] < 4:
                raise ValueError("not yet")
            return "ok"

        @step.do("holder")
        async def holder() -> str:
            await release.wait()
            return "held"

        return list(await asyncio.gather(flaky(), holder()))

    async with make_env(run) as wf, wf.clock.frozen():
        ref.append(wf)
        instance = await wf.binding.create()
        await until(lambda: len(attempts) == 1)
        for expected in (2, 3, 4):
            await asyncio.sleep(0.02)
            assert len(attempts) == expected - 1  # the back-off holds the next attempt
            wf.clock.advance(10)
            await until(lambda expected=expected: len(attempts) == expected)
        release.set()
        status = await wf.wait_for(instance)
    assert attempts == [(1, 0), (2, 10), (3, 20), (4, 30)]
    assert status == {"status": "complete", "output": ["ok", "held"], "error": None}
    assert wf.engine.counters.runs == 1


async def test_default_timeout_is_ten_minutes(make_env: EnvFactory) -> None:
    attempts: list[tuple[int, float]] = []
    ref: list[Any] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("slow")
        async def slow(ctx: Any) -> str:
            attempts.append((ctx["attempt"], ref[0].clock.now() - START))
            if ctx["attempt"] == 1:
                await asyncio.Event().wait()
            return "second time lucky"

        return await slow()

    async with make_env(run) as wf:
        ref.append(wf)
        status = await wf.wait_for(await wf.binding.create())
    assert attempts == [(1, 0), (2, 600 + 10)]  # timed out at 10 minutes, then a 10 s back-off
    assert status["output"] == "second time lucky"


async def test_the_journal_records_the_attempt_that_succeeded(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        @step.do("steady")
        async def steady() -> str:
            return "first time"

        @step.do("flaky", config={"retries": {"limit": 5, "delay": 1, "backoff": "constant"}})
        async def flaky(ctx: Any) -> int:
            if ctx["attempt"] < 3:
                raise RuntimeError("not yet")
            return int(ctx["attempt"])

        await steady()
        return await flaky()

    async with make_env(run) as wf:
        instance = await wf.binding.create()
        status = await wf.wait_for(instance)
        assert status["output"] == 3
        row = await wf.storage.get_instance("workflow", "", instance.id)
        assert row is not None
        journal = {e.name: e for e in await wf.storage.load_journal(row.pk)}
        assert (journal["steady"].state, journal["steady"].attempt) == ("done", 1)
        assert (journal["flaky"].state, journal["flaky"].attempt) == ("done", 3)


# -- dynamic retry delays (Cloudflare, July 2026) ------------------------------------------------


def rate_limited_delay(ctx: Any, error: Exception) -> str:
    """The changelog's example, in Python: longer after a rate limit, 10 s otherwise."""
    if "rate limit" in str(error):
        return f"{ctx['attempt'] * 30} seconds"
    return "10 seconds"


async def test_a_delay_function_sees_the_attempt_and_the_error(make_env: EnvFactory) -> None:
    attempts: list[tuple[int, float]] = []
    seen: list[Any] = []
    ref: list[Any] = []

    def delay(ctx: Any, error: Exception) -> str:
        seen.append((ctx, type(error).__name__, str(error)))
        return rate_limited_delay(ctx, error)

    async def run(event: Any, step: Any) -> Any:
        config = {"retries": {"limit": 3, "delay": delay, "backoff": "constant"}}

        @step.do("sync customer", config=config)
        async def sync(ctx: Any) -> str:
            attempts.append((ctx["attempt"], ref[0].clock.now() - START))
            if ctx["attempt"] in (1, 2):
                raise RuntimeError("rate limit exceeded")
            if ctx["attempt"] == 3:
                raise ValueError("network blip")
            return "synced"

        return await sync()

    async with make_env(run) as wf:
        ref.append(wf)
        status = await wf.wait_for(await wf.binding.create())
    assert status["output"] == "synced"
    # 30 s after attempt 1, 60 s after attempt 2 (rate limit), 10 s after attempt 3
    assert attempts == [(1, 0), (2, 30), (3, 90), (4, 100)]
    assert [(c["attempt"], name, msg) for c, name, msg in seen] == [
        (1, "RuntimeError", "rate limit exceeded"),
        (2, "RuntimeError", "rate limit exceeded"),
        (3, "ValueError", "network blip"),
    ]
    # the ctx is the step's context; a delay function is not shown in its config
    assert seen[0][0] == {
        "step": {"name": "sync customer", "count": 1},
        "attempt": 1,
        "config": {"retries": {"limit": 3, "backoff": "constant"}, "timeout": "10 minutes"},
    }


@pytest.mark.parametrize(
    ("backoff", "expected_times"),
    [
        ("constant", [0, 2, 4, 6]),
        ("linear", [0, 2, 6, 12]),
        ("exponential", [0, 2, 6, 14]),  # the function's 2 s, scaled by the back-off
    ],
)
async def test_the_functions_delay_is_scaled_by_the_backoff(
    make_env: EnvFactory, backoff: str, expected_times: list[float]
) -> None:
    attempts: list[tuple[int, float]] = []
    ref: list[Any] = []
    config = {"retries": {"limit": 3, "delay": lambda: 2000, "backoff": backoff}}
    async with make_env(failing_workflow(attempts, ref, config)) as wf:
        ref.append(wf)
        await wf.wait_for(await wf.binding.create())
    assert [t for _, t in attempts] == expected_times


@pytest.mark.parametrize(
    "delay",
    [
        lambda args: f"{args['ctx']['attempt']} seconds",  # the TypeScript form's one object
        lambda ctx: f"{ctx['attempt']} seconds",
        lambda **kw: f"{kw['ctx']['attempt']} seconds",
    ],
    ids=["one-object", "ctx-only", "kwargs"],
)
async def test_the_python_forms_of_a_delay_function(make_env: EnvFactory, delay: Any) -> None:
    attempts: list[tuple[int, float]] = []
    ref: list[Any] = []
    config = {"retries": {"limit": 2, "delay": delay, "backoff": "constant"}}
    async with make_env(failing_workflow(attempts, ref, config)) as wf:
        ref.append(wf)
        await wf.wait_for(await wf.binding.create())
    assert [t for _, t in attempts] == [0, 1, 3]


async def test_an_async_delay_function(make_env: EnvFactory) -> None:
    attempts: list[tuple[int, float]] = []
    ref: list[Any] = []

    async def delay(ctx: Any, error: Exception) -> float:
        await asyncio.sleep(0)
        return 1500

    config = {"retries": {"limit": 1, "delay": delay, "backoff": "constant"}}
    async with make_env(failing_workflow(attempts, ref, config)) as wf:
        ref.append(wf)
        await wf.wait_for(await wf.binding.create())
    assert [t for _, t in attempts] == [0, 1.5]


def _raises(ctx: Any, error: Exception) -> str:
    raise KeyError("retry-after")


def _invalid(ctx: Any, error: Exception) -> Any:
    return "soon"


async def _hangs(ctx: Any, error: Exception) -> str:
    await asyncio.Event().wait()
    return "never"


@pytest.mark.parametrize(
    ("delay", "problem"),
    [
        (_raises, "threw an error: KeyError: 'retry-after'"),
        (
            _invalid,
            "returned an invalid delay value 'soon' (expected a number of ms or a duration "
            'string like "30 seconds")',
        ),
        (lambda: -5, "returned an invalid delay value -5"),
        (lambda: True, "returned an invalid delay value True"),
        (_hangs, "did not return within 5 seconds"),
    ],
    ids=["raises", "invalid", "negative", "bool", "hangs"],
)
async def test_a_broken_delay_function_fails_the_step_without_retrying(
    make_env: EnvFactory, delay: Any, problem: str
) -> None:
    attempts: list[tuple[int, float]] = []
    ref: list[Any] = []
    config = {"retries": {"limit": 5, "delay": delay, "backoff": "constant"}}
    async with make_env(failing_workflow(attempts, ref, config)) as wf:
        ref.append(wf)
        status = await wf.wait_for(await wf.binding.create())
    assert [a for a, _ in attempts] == [1]
    assert status["status"] == "errored"
    assert status["error"]["name"] == "NonRetryableDelayError"
    assert status["error"]["message"].startswith(f'The delay function for step "flaky" {problem}')


async def test_a_caught_delay_failure_is_the_same_on_replay(make_env: EnvFactory) -> None:
    from dynamic_workflows.workers.workflows import NonRetryableDelayError

    caught: list[str] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("bad", config={"retries": {"limit": 2, "delay": _raises}})
        async def bad() -> None:
            raise ValueError("first")

        try:
            await bad()
        except NonRetryableDelayError as exc:
            caught.append(type(exc).__name__)
        await step.sleep("nap", "1 minute")
        return "survived"

    async with make_env(run) as wf:
        status = await through_hibernations(wf, await wf.binding.create(), 1)
    assert status["output"] == "survived"
    assert caught == ["NonRetryableDelayError", "NonRetryableDelayError"]  # first run, replay


def test_a_delay_function_with_other_parameters_is_a_clear_error() -> None:
    from dynamic_workflows.core.stepconfig import resolve_step_config
    from dynamic_workflows.errors import ConfigurationError

    def bad(ctx: Any, attempt: int) -> str:
        return "1 second"

    with pytest.raises(ConfigurationError, match="a delay function takes parameters named ctx"):
        resolve_step_config({"retries": {"delay": bad}}, "s")
