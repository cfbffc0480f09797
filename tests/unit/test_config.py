"""``resolve_step_config``: Cloudflare's defaults, merging, validation messages, and the
back-off formula."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from unit_support import EnvFactory

from dynamic_workflows.core.stepconfig import DEFAULT_STEP_CONFIG, StepConfig, resolve_step_config
from dynamic_workflows.errors import ConfigurationError


def test_defaults() -> None:
    cfg = resolve_step_config(None, "s")
    assert cfg == StepConfig(retry_limit=5, retry_delay=10.0, backoff="exponential", timeout=600.0)
    # ctx["config"]: Cloudflare's documented defaults, as its docs write them
    assert cfg.as_dict() == {
        "retries": {"limit": 5, "delay": 10_000, "backoff": "exponential"},
        "timeout": "10 minutes",
    }
    assert resolve_step_config({}, "s") == cfg
    assert resolve_step_config({"retries": {}}, "s") == cfg
    assert resolve_step_config({"retries": None, "timeout": None}, "s") == cfg


def test_default_exponential_delays() -> None:
    # before attempts 2..6: 10, 20, 40, 80, 160 seconds
    assert [DEFAULT_STEP_CONFIG.delay_before(a) for a in range(2, 7)] == [10, 20, 40, 80, 160]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {
                "retries": {"limit": 3, "delay": "1 second", "backoff": "constant"},
                "timeout": "30 seconds",
            },
            StepConfig(3, 1.0, "constant", 30.0),
        ),
        ({"retries": {"limit": 0}}, StepConfig(0, 10.0, "exponential", 600.0)),
        ({"retries": {"delay": 250}}, StepConfig(5, 0.25, "exponential", 600.0)),
        ({"retries": {"backoff": "linear"}}, StepConfig(5, 10.0, "linear", 600.0)),
        ({"timeout": 1000}, StepConfig(5, 10.0, "exponential", 1.0)),
        ({"timeout": "2 hours"}, StepConfig(5, 10.0, "exponential", 7200.0)),
        ({"retries": {"delay": "0 seconds"}}, StepConfig(5, 0.0, "exponential", 600.0)),
    ],
)
def test_merge_over_defaults(config: dict[str, Any], expected: StepConfig) -> None:
    assert resolve_step_config(config, "s") == expected


def test_a_step_config_passes_through() -> None:
    cfg = StepConfig(1, 2.0, "linear", 3.0)
    assert resolve_step_config(cfg, "s") is cfg


def test_as_dict_of_a_config_built_from_numbers_is_in_milliseconds() -> None:
    assert StepConfig(2, 1.5, "linear", 0.25).as_dict() == {
        "retries": {"limit": 2, "delay": 1500, "backoff": "linear"},
        "timeout": 250,
    }


def test_as_dict_shows_the_values_as_given_over_the_defaults() -> None:
    import datetime as dt

    given = resolve_step_config(
        {"retries": {"limit": 1, "delay": "3 seconds"}, "timeout": dt.timedelta(seconds=2)}, "s"
    )
    assert given.as_dict() == {
        "retries": {"limit": 1, "delay": "3 seconds", "backoff": "exponential"},
        "timeout": 2000,  # a timedelta is shown in milliseconds
    }
    shown = given.as_dict()
    shown["retries"]["limit"] = 99  # each call is a fresh dict: a step cannot change another's
    assert given.as_dict()["retries"]["limit"] == 1


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (["retries"], "step 'charge': config must be a dict, got list"),
        ("fast", "step 'charge': config must be a dict, got str"),
        ({"retry": {}}, "step 'charge': unknown config key(s) ['retry']"),
        ({"retries": 3}, "step 'charge': config.retries must be a dict"),
        (
            {"retries": {"limit": 1, "tries": 2}},
            "step 'charge': unknown config.retries key(s) ['tries']",
        ),
        (
            {"retries": {"limit": -1}},
            "step 'charge': config.retries.limit must be an integer >= 0, got -1",
        ),
        (
            {"retries": {"limit": "3"}},
            "step 'charge': config.retries.limit must be an integer >= 0, got '3'",
        ),
        (
            {"retries": {"limit": 1.5}},
            "step 'charge': config.retries.limit must be an integer >= 0, got 1.5",
        ),
        (
            {"retries": {"limit": True}},
            "step 'charge': config.retries.limit must be an integer >= 0, got True",
        ),
        (
            {"retries": {"backoff": "quadratic"}},
            "step 'charge': config.retries.backoff must be one of constant, linear, "
            "exponential, got 'quadratic'",
        ),
        (
            {"retries": {"delay": "soon"}},
            "step 'charge': config.retries.delay: cannot parse 'soon'; use milliseconds or "
            "'N unit' with unit one of second, minute, hour, day, week, month, year",
        ),
        (
            {"retries": {"delay": -5}},
            "step 'charge': config.retries.delay: must be a finite, non-negative number of ms",
        ),
        ({"timeout": 0}, "step 'charge': config.timeout must be positive"),
        ({"timeout": "0 seconds"}, "step 'charge': config.timeout must be positive"),
        (
            {"timeout": "forever"},
            "step 'charge': config.timeout: cannot parse 'forever'; use milliseconds or "
            "'N unit' with unit one of second, minute, hour, day, week, month, year",
        ),
    ],
)
def test_validation_messages_name_step_and_field(config: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve_step_config(config, "charge")
    assert str(info.value) == message


@given(
    delay_ms=st.integers(min_value=0, max_value=10**7),
    failed=st.integers(min_value=1, max_value=30),
)
def test_backoff_formulas(delay_ms: int, failed: int) -> None:
    """After attempt ``failed`` fails: constant d, linear d*failed, exponential d*2**(failed-1)."""
    d = delay_ms / 1000
    attempt = failed + 1
    for backoff, expected in (
        ("constant", d),
        ("linear", d * failed),
        ("exponential", d * 2 ** (failed - 1)),
    ):
        cfg = resolve_step_config({"retries": {"delay": delay_ms, "backoff": backoff}}, "s")
        assert cfg.delay_before(attempt) == expected


@given(limit=st.integers(min_value=0, max_value=10**6))
def test_any_non_negative_limit_is_kept(limit: int) -> None:
    cfg = resolve_step_config({"retries": {"limit": limit}}, "s")
    assert cfg.retry_limit == limit
    assert cfg.as_dict()["retries"]["limit"] == limit


async def test_bad_config_errors_the_instance_without_running_the_step(
    make_env: EnvFactory,
) -> None:
    ran: list[str] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("charge", config={"retries": {"backoff": "sometimes"}})
        async def charge() -> None:
            ran.append("charge")

        await charge()

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status == {
        "status": "errored",
        "output": None,
        "error": {
            "name": "ConfigurationError",
            "message": "step 'charge': config.retries.backoff must be one of constant, linear, "
            "exponential, got 'sometimes'",
        },
    }
    assert ran == []
