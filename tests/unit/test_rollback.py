"""Rollbacks (saga compensation, core/rollback.py): handlers of the started steps run in reverse
start order, once each, durably, with their own retries; the instance's status reports the
outcome; ``terminate({"rollback": True})`` runs them before it terminates."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from unit_support import EnvFactory, through_hibernations, until

from dynamic_workflows.core.clock import MockClock
from dynamic_workflows.core.limits import DEFAULT_LIMITS
from dynamic_workflows.errors import WorkflowDefinitionError

NO_RETRY = {"retries": {"limit": 0, "delay": 0}}


@pytest.fixture
def make_env(make_env: EnvFactory) -> EnvFactory:
    def factory(entrypoint: Any, **kwargs: Any) -> Any:
        return make_env(entrypoint, clock=MockClock(autojump=False), **kwargs)

    return factory


def saga(calls: list[Any], *, fail_handler: str | None = None, handler_retries: int = 0) -> Any:
    """Four steps, each with a handler that records what it got; step 3 fails for good."""

    async def run(event: Any, step: Any) -> Any:
        def handler(name: str) -> Any:
            async def undo(ctx: Any, output: Any, error: Any, step_name: str) -> None:
                calls.append((step_name, output, type(error).__name__, str(error), ctx["step"]))
                if name == fail_handler:
                    raise RuntimeError(f"cannot undo {name}")

            return undo

        config = {"retries": {"limit": handler_retries, "delay": "1 second", "backoff": "constant"}}

        @step.do("one", rollback=handler("one"), rollback_config=config)
        async def one() -> str:
            return "booked flight"

        @step.do("two", rollback=handler("two"), rollback_config=config)
        async def two() -> dict[str, int]:
            return {"hotel": 2}

        @step.do("three", config=NO_RETRY)
        async def three() -> None:
            raise ValueError("card declined")

        @three.rollback
        def undo_three(output: Any, error: Any) -> None:  # a failed step's: output None
            calls.append(("three", output, type(error).__name__))

        @step.do("four", rollback=handler("four"))
        async def four() -> None:
            calls.append("four ran")

        await one()
        await two()
        await three()
        await four()

    return run


async def test_failure_in_step_3_of_4_runs_handlers_of_steps_2_and_1_in_order_once(
    make_env: EnvFactory,
) -> None:
    calls: list[Any] = []
    async with make_env(saga(calls)) as wf:
        instance = await wf.binding.create()
        status = await wf.wait_for(instance)
    assert status["status"] == "errored"
    assert status["error"] == {"name": "ValueError", "message": "card declined"}
    assert status["rollback"] == {"outcome": "complete"}
    assert calls == [
        ("three", None, "ValueError"),
        ("two", {"hotel": 2}, "ValueError", "card declined", {"name": "two", "count": 1}),
        ("one", "booked flight", "ValueError", "card declined", {"name": "one", "count": 1}),
    ]


async def test_a_failing_handler_is_retried_then_halts_the_chain(make_env: EnvFactory) -> None:
    calls: list[Any] = []
    async with make_env(saga(calls, fail_handler="two", handler_retries=2)) as wf:
        instance = await wf.binding.create()
        status = await through_hibernations(wf, instance, 2)
        row = await wf.storage.get_instance(wf.binding.name, wf.binding.scope, instance.id)
        assert row is not None
        journal = await wf.storage.load_journal(row.pk)
    assert status["status"] == "errored"
    assert status["rollback"] == {
        "outcome": "failed",
        "error": {"name": "RuntimeError", "message": "cannot undo two"},
    }
    # three's handler once, two's three times (1 + 2 retries, across hibernations), one's never.
    assert [c[0] for c in calls] == ["three", "two", "two", "two"]
    undo = {(e.name, e.count): e for e in journal if e.kind == "rollback"}
    assert undo[("two", -1)].state == "failed"
    assert undo[("two", -1)].attempt == 3
    assert undo[("three", -1)].state == "done"
    assert sorted(e.name for e in journal if e.rollback) == ["one", "three", "two"]


async def test_a_caught_error_triggers_nothing_and_no_rollback_key(make_env: EnvFactory) -> None:
    calls: list[str] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("one", rollback=lambda: calls.append("undo"))
        async def one() -> int:
            return 1

        @step.do("two", config=NO_RETRY)
        async def two() -> None:
            raise ValueError("x")

        await one()
        try:
            await two()
        except ValueError:
            return "recovered"

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status == {"status": "complete", "output": "recovered", "error": None}
    assert calls == []


async def test_steps_cannot_start_during_the_rollback_phase(make_env: EnvFactory) -> None:
    seen: list[str] = []

    async def run(event: Any, step: Any) -> Any:
        async def undo() -> None:
            @step.do("sneaky")
            async def sneaky() -> None:
                seen.append("ran")

            await sneaky()

        @step.do("one", rollback=undo, rollback_config=NO_RETRY)
        async def one() -> int:
            return 1

        await one()
        raise ValueError("boom")

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert seen == []
    assert status["rollback"] == {
        "outcome": "failed",
        "error": {
            "name": "WorkflowDefinitionError",
            "message": "Cannot execute steps during rollback phase",
        },
    }


async def test_a_single_parameter_gets_cloudflares_dict(make_env: EnvFactory) -> None:
    got: list[Any] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("one", config={"retries": {"limit": 1, "delay": 5, "backoff": "linear"}})
        async def one() -> int:
            return 7

        @one.rollback(config=NO_RETRY)
        async def undo(info: Any) -> None:
            got.append(info)

        await one()
        raise ValueError("boom")

    async with make_env(run) as wf:
        await wf.wait_for(await wf.binding.create())
    [info] = got
    assert info["output"] == 7
    assert info["stepName"] == "one"
    assert isinstance(info["error"], ValueError)
    assert info["ctx"] == {
        "step": {"name": "one", "count": 1},
        "attempt": 1,
        "config": {
            "retries": {"limit": 1, "delay": 5, "backoff": "linear"},
            "timeout": "10 minutes",
        },
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rollback": "nope"}, "step 'one': rollback must be a function, got str"),
        (
            {"rollback": lambda: None, "rollback_config": {"retries": {"limit": -1}}},
            "rollback_config.retries.limit must be an integer >= 0",
        ),
        ({"rollback_config": NO_RETRY}, "rollback_config is given without a rollback handler"),
        (
            {"rollback": lambda a, b: None},
            "the rollback handler's parameter(s) ['a', 'b'] are not among",
        ),
    ],
)
async def test_a_bad_rollback_is_a_definition_error_naming_the_step(
    make_env: EnvFactory, kwargs: dict[str, Any], message: str
) -> None:
    async def run(event: Any, step: Any) -> Any:
        @step.do("one", **kwargs)
        async def one() -> int:
            return 1

        await one()

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["error"]["name"] == WorkflowDefinitionError.__name__
    assert message in status["error"]["message"]
    assert "one" in status["error"]["message"]


async def test_rollback_config_on_step_do_applies_to_a_handler_attached_later(
    make_env: EnvFactory,
) -> None:
    # The README's form: step.do(..., rollback_config=...) then @my_step.rollback; it used to
    # fail the run with "rollback_config is given without a rollback handler".
    calls: list[Any] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("charge card", rollback_config={"retries": {"limit": 2, "delay": "1 second"}})
        async def charge() -> dict[str, str]:
            return {"id": "ch_1"}

        @charge.rollback
        async def refund(output: Any, error: Any, ctx: Any) -> None:
            calls.append((output, str(error), ctx["step"]["name"]))
            if len(calls) < 3:
                raise RuntimeError("refund service down")

        await charge()
        raise ValueError("out of stock")

    async with make_env(run) as wf:
        instance = await wf.binding.create()
        status = await through_hibernations(wf, instance, 2)
    assert status["status"] == "errored"
    assert status["rollback"] == {"outcome": "complete"}
    # 1 + the 2 retries of the config given to step.do.
    assert calls == [({"id": "ch_1"}, "out of stock", "charge card")] * 3


async def test_rollback_config_given_twice_is_a_definition_error(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        @step.do("one", rollback_config=NO_RETRY)
        async def one() -> int:
            return 1

        @one.rollback(config=NO_RETRY)
        def undo() -> None:
            pass

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["error"]["name"] == WorkflowDefinitionError.__name__
    assert "step 'one': the rollback config is given twice" in status["error"]["message"]


def waiting_saga(calls: list[str]) -> Any:
    async def run(event: Any, step: Any) -> Any:
        @step.do("reserve", rollback=lambda output: calls.append(f"release {output}"))
        async def reserve() -> str:
            return "seat 4"

        @step.do("charge", rollback=lambda: calls.append("refund"))
        async def charge() -> str:
            return "paid"

        await reserve()
        await charge()
        await step.wait_for_event("approval", "approve", timeout="1 hour")

        @step.do("ship", rollback=lambda: calls.append("never"))
        async def ship() -> None:
            calls.append("shipped")

        await ship()

    return run


@pytest.mark.parametrize("form", ["dict", "keyword"])
async def test_terminate_with_rollback_runs_the_handlers_then_terminates(
    make_env: EnvFactory, form: str
) -> None:
    calls: list[str] = []
    async with make_env(waiting_saga(calls)) as wf:
        instance = await wf.binding.create()
        await wf.wait_for(instance, "waiting")
        if form == "dict":
            await instance.terminate({"rollback": True})
        else:
            await instance.terminate(rollback=True)
        status = await wf.wait_for(instance, "terminated")
        assert status["rollback"] == {"outcome": "complete"}
        assert calls == ["refund", "release seat 4"]
        # Terminating again: it is finished.
        with pytest.raises(Exception, match="finite state"):
            await instance.terminate({"rollback": True})


async def test_terminate_with_rollback_and_no_handlers_terminates_at_once(
    make_env: EnvFactory,
) -> None:
    async def run(event: Any, step: Any) -> Any:
        @step.do("plain")
        async def plain() -> int:
            return 1

        await plain()
        await step.sleep("nap", "1 hour")

    async with make_env(run) as wf:
        instance = await wf.binding.create()
        await wf.wait_for(instance, "waiting")
        await instance.terminate({"rollback": True})
        status = await instance.status()
    assert status == {"status": "terminated", "output": None, "error": None}


async def test_terminate_rejects_a_bad_rollback_option(make_env: EnvFactory) -> None:
    calls: list[str] = []
    async with make_env(waiting_saga(calls)) as wf:
        instance = await wf.binding.create()
        await wf.wait_for(instance, "waiting")
        with pytest.raises(Exception, match="rollback must be true or false"):
            await instance.terminate({"rollback": "yes"})
        with pytest.raises(Exception, match="unknown option"):
            await instance.terminate({"rollbak": True})


async def test_handlers_count_against_the_step_limit_and_the_runs_error_stays(
    make_env: EnvFactory,
) -> None:
    calls: list[str] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("one", rollback=lambda: calls.append("undo one"))
        async def one() -> int:
            return 1

        @step.do("two", rollback=lambda: calls.append("undo two"))
        async def two() -> int:
            return 2

        await one()
        await two()
        raise ValueError("late failure")

    # Two steps and one handler's entry fit; the second handler's would be the fourth.
    async with make_env(run, limits=dataclasses.replace(DEFAULT_LIMITS, max_steps=3)) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["error"] == {"name": "ValueError", "message": "late failure"}
    assert status["rollback"]["outcome"] == "failed"
    assert status["rollback"]["error"]["name"] == "LimitExceededError"
    assert calls == ["undo two"]


async def test_a_handlers_attempts_are_listed_like_a_steps(make_env: EnvFactory) -> None:
    # The handler's failed attempts were recorded, but the views listed none of them (attempts
    # [], attempts_total 0) and started it at its last attempt.
    tries: list[int] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("one", rollback_config={"retries": {"limit": 2, "delay": "1 second"}})
        async def one() -> int:
            return 1

        @one.rollback
        def undo() -> None:
            tries.append(1)
            if len(tries) < 3:
                raise RuntimeError(f"try {len(tries)} failed")

        await one()
        raise ValueError("boom")

    async with make_env(run) as wf:
        instance = await wf.binding.create()
        await through_hibernations(wf, instance, 2)
        view = await wf.engine.queries.get_instance(wf.binding.name, "", instance.id)
        assert view is not None
        [handler] = [s for s in await wf.engine.queries.journal(view) if s.count < 0]
    assert handler.attempts_total == 3
    assert [(a.attempt, a.success) for a in handler.attempts] == [(1, False), (2, False), (3, True)]
    assert handler.attempts[0].error is not None
    assert handler.attempts[0].error.message == "try 1 failed"
    assert handler.started_at == handler.attempts[0].started_at


def blocked_saga(calls: list[str], gate: asyncio.Event, *, fail: bool) -> Any:
    """Two steps with handlers; the newest one's handler waits for ``gate``. ``fail``: run()
    raises after them; otherwise it waits for an event (for a terminate with rollback)."""

    async def run(event: Any, step: Any) -> Any:
        @step.do("reserve", rollback=lambda: calls.append("release"))
        async def reserve() -> str:
            return "seat 4"

        @step.do("charge")
        async def charge() -> str:
            return "paid"

        @charge.rollback(config=NO_RETRY)
        async def refund() -> None:
            calls.append("refund started")
            await gate.wait()
            calls.append("refunded")

        await reserve()
        await charge()
        if fail:
            raise ValueError("card declined")
        await step.wait_for_event("approval", "approve", timeout="1 hour")

    return run


async def rolling_back(wf: Any, instance: Any, calls: list[str]) -> dict[str, Any]:
    """The status once the handler that blocks has started and the status says so."""
    await until(lambda: "refund started" in calls)
    status: dict[str, Any] = {}
    for _ in range(2000):
        status = await instance.status()
        if "rollback" in status:
            break
        await asyncio.sleep(0.001)
    return status


async def test_a_failed_runs_rollback_phase_reports_running_then_its_outcome(
    make_env: EnvFactory,
) -> None:
    # The status had no rollback key while a failed run's handlers ran (a terminate with
    # rollback's said `running`); the admin API and dwf read the same record.
    calls: list[str] = []
    gate = asyncio.Event()
    async with make_env(blocked_saga(calls, gate, fail=True)) as wf:
        instance = await wf.binding.create()
        status = await rolling_back(wf, instance, calls)
        assert status["status"] == "running"
        assert status["rollback"] == {"outcome": "running"}
        view = await wf.engine.queries.get_instance(wf.binding.name, "", instance.id)
        assert view is not None
        assert view.rollback == {"outcome": "running"}
        gate.set()
        status = await wf.wait_for(instance)
    assert status["status"] == "errored"
    assert status["error"] == {"name": "ValueError", "message": "card declined"}
    assert status["rollback"] == {"outcome": "complete"}
    assert calls == ["refund started", "refunded", "release"]


@pytest.mark.parametrize("trigger", ["failure", "terminate with rollback"])
async def test_a_plain_terminate_stops_the_rollback_phase_and_says_so(
    make_env: EnvFactory, trigger: str
) -> None:
    # It used to end the instance with no rollback key at all, as if no phase had begun.
    calls: list[str] = []
    gate = asyncio.Event()
    async with make_env(blocked_saga(calls, gate, fail=trigger == "failure")) as wf:
        instance = await wf.binding.create()
        if trigger != "failure":
            await wf.wait_for(instance, "waiting")
            await instance.terminate({"rollback": True})
        status = await rolling_back(wf, instance, calls)
        assert status["rollback"] == {"outcome": "running"}
        await instance.terminate()
        status = await instance.status()
        assert status["status"] == "terminated"
        assert status["error"] is None
        assert status["rollback"] == {
            "outcome": "failed",
            "error": {
                "name": "Terminated",
                "message": "Instance terminated during its rollback phase; "
                "the handlers that had not finished did not run to their end",
            },
        }
        gate.set()
        await asyncio.sleep(0.05)
        assert await instance.status() == status
    assert "release" not in calls  # the older step's handler never ran
