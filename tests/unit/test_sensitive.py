"""Cloudflare's ``sensitive: "output"`` step option: validated, echoed in ``ctx["config"]``,
recorded with the step, replayed to the run unredacted and redacted in every operator's view
(the query layer), on every backend."""

from __future__ import annotations

from typing import Any

import pytest
from unit_support import EnvFactory, hibernated, through_hibernations

from dynamic_workflows.core.codec import decode
from dynamic_workflows.core.journal import StepState
from dynamic_workflows.core.stepconfig import REDACTED, resolve_step_config
from dynamic_workflows.errors import ConfigurationError
from dynamic_workflows.workers import NonRetryableError

SECRET = {"token": "super-secret"}


# -- the config ---------------------------------------------------------------------------------


def test_sensitive_output_is_accepted_and_shown_in_the_config() -> None:
    cfg = resolve_step_config({"sensitive": "output"}, "s")
    assert cfg.sensitive
    assert cfg.as_dict() == {
        "retries": {"limit": 5, "delay": 10_000, "backoff": "exponential"},
        "timeout": "10 minutes",
        "sensitive": "output",
    }
    with_others = resolve_step_config(
        {"retries": {"limit": 1, "delay": 5}, "timeout": 1000, "sensitive": "output"}, "s"
    )
    assert with_others.sensitive
    assert (with_others.retry_limit, with_others.retry_delay, with_others.timeout) == (
        1,
        0.005,
        1.0,
    )


@pytest.mark.parametrize("config", [None, {}, {"timeout": 1000}, {"sensitive": None}])
def test_without_the_option_nothing_is_sensitive_nor_shown(config: Any) -> None:
    cfg = resolve_step_config(config, "s")
    assert not cfg.sensitive
    assert "sensitive" not in cfg.as_dict()


@pytest.mark.parametrize("value", ["all", "OUTPUT", "", True, 1, ["output"], {"output": True}])
def test_any_other_sensitivity_names_the_step_and_the_allowed_value(value: Any) -> None:
    with pytest.raises(ConfigurationError) as raised:
        resolve_step_config({"sensitive": value}, "charge card")
    message = str(raised.value)
    assert "step 'charge card'" in message
    assert "config.sensitive must be 'output'" in message
    assert repr(value) in message


# -- a run ---------------------------------------------------------------------------------------


async def test_the_output_is_replayed_to_the_run_and_redacted_for_operators(
    make_env: EnvFactory,
) -> None:
    ran = {"secret": 0}
    seen: list[Any] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("get secret", config={"sensitive": "output"})
        async def get_secret(ctx: Any) -> Any:
            ran["secret"] += 1
            seen.append(ctx["config"])
            return SECRET

        @step.do("plain")
        async def plain() -> str:
            return "visible"

        secret = await get_secret()
        await plain()
        await step.sleep("nap", "1 hour")  # the rest runs in a later run, replayed from storage

        @step.do("use it")
        async def use_it() -> Any:
            return {"used": secret}

        return await use_it()

    async with make_env(run) as wf:
        instance = await wf.binding.create()
        status = await through_hibernations(wf, instance, 1)
        assert status["output"] == {"used": SECRET}
        assert ran["secret"] == 1  # replayed, not run again
        assert seen == [
            {
                "retries": {"limit": 5, "delay": 10_000, "backoff": "exponential"},
                "timeout": "10 minutes",
                "sensitive": "output",
            }
        ]
        view = await wf.engine.queries.get_instance(wf.binding.name, wf.binding.scope, instance.id)
        assert view is not None
        steps = {s.name: s for s in await wf.engine.queries.journal(view)}
        assert (steps["get secret"].value, steps["get secret"].sensitive) == (REDACTED, True)
        assert steps["get secret"].state == StepState.DONE
        assert (steps["plain"].value, steps["plain"].sensitive) == ("visible", False)
        assert steps["use it"].value == {"used": SECRET}  # what the run made of it: its own
        # The run's side reads the journal from storage: the value is there, with the flag.
        stored = {e.name: e for e in await wf.storage.load_journal(view.row.pk)}
        assert decode(stored["get secret"].value or b"") == SECRET
        assert stored["get secret"].sensitive
        assert not stored["plain"].sensitive
        assert not stored["nap"].sensitive


async def test_a_sensitive_steps_error_is_not_redacted_and_its_retries_keep_the_flag(
    make_env: EnvFactory,
) -> None:
    async def run(event: Any, step: Any) -> Any:
        @step.do(
            "flaky",
            config={"sensitive": "output", "retries": {"limit": 1, "delay": "1 minute"}},
        )
        async def flaky(ctx: Any) -> str:
            if ctx["attempt"] == 1:
                raise ValueError("first try fails")
            return "s3cr3t"

        @step.do("doomed", config={"sensitive": "output", "retries": {"limit": 0, "delay": 0}})
        async def doomed() -> None:
            raise NonRetryableError("boom with secret context")

        value = await flaky()
        try:
            await doomed()
        except Exception as exc:
            return [value, str(exc)]
        return None

    async with make_env(run) as wf, wf.clock.frozen():
        instance = await wf.binding.create()
        wake_at = await hibernated(wf, instance)  # the first attempt failed: a retry is due
        view = await wf.engine.queries.get_instance(wf.binding.name, wf.binding.scope, instance.id)
        assert view is not None
        (retrying,) = await wf.engine.queries.journal(view)
        assert (retrying.state, retrying.sensitive, retrying.value) == (
            StepState.RETRYING,
            True,
            None,
        )
        assert retrying.error is not None
        assert retrying.error.message == "first try fails"
        wf.clock.advance(wake_at - wf.clock.now())
        status = await wf.wait_for(instance)
        assert status["output"] == ["s3cr3t", "boom with secret context"]
        steps = {s.name: s for s in await wf.engine.queries.journal(view)}
        assert (steps["flaky"].value, steps["flaky"].sensitive) == (REDACTED, True)
        doomed = steps["doomed"]
        assert (doomed.state, doomed.sensitive, doomed.value) == (StepState.FAILED, True, None)
        assert doomed.error is not None
        assert doomed.error.message == "boom with secret context"


async def test_a_bad_sensitivity_fails_the_instance_naming_the_step(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        @step.do("leaky", config={"sensitive": "everything"})
        async def leaky() -> int:
            return 1

        return await leaky()

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status["status"] == "errored"
    assert "step 'leaky': config.sensitive must be 'output'" in status["error"]["message"]
