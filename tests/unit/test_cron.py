"""Cron expressions and their ticks (core/cron.py): pure arithmetic, no clock."""

from __future__ import annotations

import datetime as dt

import pytest

from dynamic_workflows.core.cron import (
    check_cron,
    latest_tick,
    next_tick,
    parse_schedules,
    tick_instance_id,
)
from dynamic_workflows.errors import ConfigurationError


def at(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


def test_next_tick_is_strictly_after_and_latest_tick_at_or_before() -> None:
    every5 = "*/5 * * * *"
    assert next_tick(every5, at(2026, 1, 1, 0, 2)) == at(2026, 1, 1, 0, 5)
    assert next_tick(every5, at(2026, 1, 1, 0, 5)) == at(2026, 1, 1, 0, 10)
    assert latest_tick(every5, at(2026, 1, 1, 0, 5)) == at(2026, 1, 1, 0, 5)
    assert latest_tick(every5, at(2026, 1, 1, 0, 9, 59)) == at(2026, 1, 1, 0, 5)
    assert latest_tick(every5, at(2026, 1, 1, 0, 4, 59)) == at(2026, 1, 1, 0, 0)


def test_ticks_are_utc_across_month_and_year_ends() -> None:
    assert next_tick("0 0 1 * *", at(2026, 1, 31, 23, 59)) == at(2026, 2, 1)
    assert next_tick("30 2 * * MON", at(2026, 12, 31)) == at(2027, 1, 4, 2, 30)  # a Monday
    assert latest_tick("0 12 29 2 *", at(2027, 3, 1)) == at(2024, 2, 29, 12)  # leap days only
    assert next_tick("0 0 L * *", at(2026, 2, 1)) == at(2026, 2, 28)


def test_schedules_are_one_or_a_list_and_repeats_count_once() -> None:
    assert parse_schedules("*/5 * * * *") == ("*/5 * * * *",)
    assert parse_schedules(["0 * * * *", "0  *  * * *", "*/5 * * * *"]) == (
        "0 * * * *",
        "*/5 * * * *",
    )
    assert parse_schedules(None) == ()
    assert parse_schedules([]) == ()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("61 * * * *", "'61 * * * *' is not a valid cron expression"),
        ("* * * *", "has 4 field(s); a cron expression has five"),
        ("0 0 * * * 2026", "has 6 field(s)"),
        ("0 0 30 2 *", "'0 0 30 2 *' is not a valid cron expression"),  # never comes
        ("", "must be a cron expression"),
        (5, "must be a cron expression such as '*/5 * * * *', got 5"),
    ],
)
def test_a_bad_expression_names_the_field_and_the_problem(value: object, problem: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_schedules(["* * * * *", value], what="workflows[0].schedules")
    assert str(info.value).startswith("workflows[0].schedules[1]: ")
    assert problem in str(info.value)
    with pytest.raises(ConfigurationError, match="must be a cron expression or a list"):
        parse_schedules({"cron": "* * * * *"}, what="schedules")


def test_a_ticks_instance_id_is_the_same_everywhere_and_valid() -> None:
    tick = at(2026, 1, 1, 0, 5)
    one = tick_instance_id("*/5 * * * *", tick)
    assert one == tick_instance_id(check_cron("*/5 * * * *"), tick)
    assert one.startswith("cron-20260101T0005Z-")
    assert one != tick_instance_id("*/5 * * * *", tick + 300)
    assert one != tick_instance_id("0,5 * * * *", tick)
