"""``parse_duration`` and ``parse_timestamp``: Cloudflare's duration strings, milliseconds,
timedeltas and datetimes, and the messages for bad input."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamic_workflows.core.durations import MAX_SLEEP_SECONDS, parse_duration, parse_timestamp
from dynamic_workflows.errors import ConfigurationError

UNITS = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
    "month": 30 * 86400,
    "year": 365 * 86400,
}
CANNOT_PARSE = (
    "cannot parse {value!r}; use milliseconds or 'N unit' with unit one of "
    "second, minute, hour, day, week, month, year"
)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1 second", 1),
        ("2 seconds", 2),
        ("1 minute", 60),
        ("10 minutes", 600),
        ("1 hour", 3600),
        ("24 hours", 86400),
        ("1 day", 86400),
        ("2 days", 172800),
        ("1 week", 604800),
        ("3 weeks", 3 * 604800),
        ("1 month", 2_592_000),
        ("1 year", 31_536_000),
        ("2 years", 63_072_000),
        ("1.5 hours", 5400),
        ("0 seconds", 0),
        ("  30 seconds  ", 30),
        ("30seconds", 30),
        ("5 MINUTES", 300),
        ("250 milliseconds", 0.25),
        (0, 0),
        (1, 0.001),
        (1500, 1.5),
        (10_000, 10),
        (2.5, 0.0025),
        (dt.timedelta(0), 0),
        (dt.timedelta(hours=1, seconds=1), 3601),
        (dt.timedelta(milliseconds=5), 0.005),
    ],
)
def test_parse_duration(value: Any, seconds: float) -> None:
    assert parse_duration(value) == seconds


def test_max_sleep_is_365_days() -> None:
    assert MAX_SLEEP_SECONDS == 365 * 86400
    assert parse_duration("365 days") == MAX_SLEEP_SECONDS
    assert parse_duration("1 year") == MAX_SLEEP_SECONDS


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ten seconds", CANNOT_PARSE.format(value="ten seconds")),
        ("10 fortnights", CANNOT_PARSE.format(value="10 fortnights")),
        ("10", CANNOT_PARSE.format(value="10")),
        ("", CANNOT_PARSE.format(value="")),
        ("-5 seconds", CANNOT_PARSE.format(value="-5 seconds")),
        ("5 seconds ago", CANNOT_PARSE.format(value="5 seconds ago")),
        ("1e3 seconds", CANNOT_PARSE.format(value="1e3 seconds")),
        (-1, "must be a finite, non-negative number of ms"),
        (-0.5, "must be a finite, non-negative number of ms"),
        (math.inf, "must be a finite, non-negative number of ms"),
        (math.nan, "must be a finite, non-negative number of ms"),
        (True, "expected a duration, got True"),
        (False, "expected a duration, got False"),
        (None, "expected a duration, got NoneType"),
        ([10], "expected a duration, got list"),
        (
            dt.timedelta(seconds=-1),
            "must not be negative, got datetime.timedelta(days=-1, seconds=86399)",
        ),
    ],
)
def test_bad_durations(value: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_duration(value, what="step 'x': config.timeout")
    assert str(info.value) == f"step 'x': config.timeout: {message}"


def test_default_what_is_duration() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_duration("soon")
    assert str(info.value).startswith("duration: cannot parse 'soon'")


@given(n=st.integers(min_value=0, max_value=10**6), unit=st.sampled_from(sorted(UNITS)))
def test_singular_and_plural_units(n: int, unit: str) -> None:
    expected = n * UNITS[unit]
    assert parse_duration(f"{n} {unit}") == expected
    assert parse_duration(f"{n} {unit}s") == expected
    assert parse_duration(f"{n}{unit}s") == expected
    assert parse_duration(f"{n} {unit.upper()}S") == expected


@given(ms=st.integers(min_value=0, max_value=10**12))
def test_milliseconds(ms: int) -> None:
    assert parse_duration(ms) == ms / 1000


@given(delta=st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=3650)))
def test_timedeltas(delta: dt.timedelta) -> None:
    assert parse_duration(delta) == delta.total_seconds()


@given(text=st.text(max_size=30))
def test_any_text_parses_or_fails_with_configuration_error(text: str) -> None:
    error: ConfigurationError | None = None
    try:
        seconds = parse_duration(text)
    except ConfigurationError as exc:
        error = exc
    if error is None:
        assert seconds >= 0
    else:
        assert str(error).startswith(f"duration: cannot parse {text!r}")


# -- timestamps ----------------------------------------------------------------------------

EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2026, 1, 1),  # naive means UTC
        dt.datetime(2026, 1, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        dt.date(2026, 1, 1),
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00+00:00",
        "2025-12-31T19:00:00-05:00",
        "2026-01-01T00:00:00",
        int(EPOCH * 1000),
        EPOCH * 1000,
    ],
)
def test_parse_timestamp(value: Any) -> None:
    assert parse_timestamp(value) == EPOCH


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("next tuesday", "cannot parse 'next tuesday' as ISO-8601"),
        (math.inf, "must be finite"),
        (True, "expected a datetime, got bool"),
        (None, "expected a datetime, got NoneType"),
    ],
)
def test_bad_timestamps(value: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_timestamp(value, what="step.sleep_until('x') timestamp")
    assert str(info.value) == f"step.sleep_until('x') timestamp: {message}"


@given(
    moment=st.datetimes(
        min_value=dt.datetime(1971, 1, 1),
        max_value=dt.datetime(2200, 1, 1),
        timezones=st.just(dt.UTC),
    )
)
def test_timestamp_forms_agree(moment: dt.datetime) -> None:
    expected = moment.timestamp()
    assert parse_timestamp(moment) == expected
    assert parse_timestamp(moment.replace(tzinfo=None)) == expected
    assert parse_timestamp(moment.isoformat()) == expected
    assert parse_timestamp(moment.isoformat().replace("+00:00", "Z")) == expected
