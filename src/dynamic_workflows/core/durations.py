"""Cloudflare's durations: a number of milliseconds, or ``"N unit"`` / ``"N units"``.

Units: second, minute, hour, day, week, month (30 days), year (365 days). A
``datetime.timedelta`` is accepted too. Everything is returned in seconds (float).
"""

from __future__ import annotations

import datetime as _dt
import math
import re

from ..errors import ConfigurationError

__all__ = ["MAX_SLEEP_SECONDS", "parse_duration", "parse_timestamp"]

_UNIT_SECONDS = {
    "millisecond": 0.001,
    "second": 1.0,
    "minute": 60.0,
    "hour": 3600.0,
    "day": 86400.0,
    "week": 7 * 86400.0,
    "month": 30 * 86400.0,
    "year": 365 * 86400.0,
}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+?)s?\s*$")

MAX_SLEEP_SECONDS = 365 * 86400.0
"""The longest sleep Cloudflare allows (365 days)."""


def parse_duration(value: object, *, what: str = "duration") -> float:
    """Seconds for a duration given as milliseconds (int/float), a string, or a timedelta.

    Raises :class:`ConfigurationError` naming ``what`` and the bad value.
    """
    if isinstance(value, bool):
        raise ConfigurationError(f"{what}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ConfigurationError(f"{what}: must be a finite, non-negative number of ms")
        return float(value) / 1000.0
    if isinstance(value, _dt.timedelta):
        seconds = value.total_seconds()
        if seconds < 0:
            raise ConfigurationError(f"{what}: must not be negative, got {value!r}")
        return seconds
    if isinstance(value, str):
        match = _DURATION_RE.match(value.lower())
        if match is not None:
            unit = _UNIT_SECONDS.get(match.group(2))
            if unit is not None:
                return float(match.group(1)) * unit
        raise ConfigurationError(
            f"{what}: cannot parse {value!r}; use milliseconds or 'N unit' with unit one of "
            "second, minute, hour, day, week, month, year"
        )
    raise ConfigurationError(f"{what}: expected a duration, got {type(value).__name__}")


def parse_timestamp(value: object, *, what: str = "timestamp") -> float:
    """Epoch seconds for a ``datetime`` (naive means UTC), an ISO-8601 string or epoch ms."""
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.UTC)
        return value.timestamp()
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day, tzinfo=_dt.UTC).timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigurationError(f"{what}: must be finite")
        return float(value) / 1000.0
    if isinstance(value, str):
        try:
            parsed = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigurationError(f"{what}: cannot parse {value!r} as ISO-8601") from None
        return parse_timestamp(parsed, what=what)
    raise ConfigurationError(f"{what}: expected a datetime, got {type(value).__name__}")
