"""Cron expressions of scheduled workflows (``schedules`` in the wrangler config): checked, and
their ticks computed. No I/O and no clock of its own: every function takes the time.

Cloudflare's cron syntax, as its Cron Triggers: five fields (minute, hour, day of month, month,
day of week), evaluated in UTC, with ``*``, ``,``, ``-``, ``/``, names (``JAN``, ``MON``) and
``L``/``W``/``#``. The arithmetic is croniter's; this module only pins the rules around it
(five fields, UTC, one tick per instant) and turns croniter's errors into one that names the
field of the configuration.
"""

from __future__ import annotations

import datetime as _dt
import hashlib

from croniter import CroniterError, croniter

from ..errors import ConfigurationError

__all__ = ["check_cron", "latest_tick", "next_tick", "parse_schedules", "tick_instance_id"]


def check_cron(expression: object, *, what: str = "schedule") -> str:
    """``expression`` if it is a valid five-field cron expression; otherwise a
    :class:`ConfigurationError` naming ``what`` and the problem."""
    if not isinstance(expression, str) or not expression.strip():
        raise ConfigurationError(
            f"{what}: must be a cron expression such as '*/5 * * * *', got {expression!r}"
        )
    fields = expression.split()
    if len(fields) != 5:
        raise ConfigurationError(
            f"{what}: {expression!r} has {len(fields)} field(s); a cron expression has five "
            "(minute hour day-of-month month day-of-week), as Cloudflare's Cron Triggers"
        )
    try:
        # (a tick must exist: '0 0 30 2 *' parses, and never comes)
        croniter(expression, _dt.datetime(2000, 1, 1, tzinfo=_dt.UTC)).get_next(float)
    except (CroniterError, ValueError, KeyError) as exc:
        raise ConfigurationError(
            f"{what}: {expression!r} is not a valid cron expression: {exc}"
        ) from None
    return " ".join(fields)


def parse_schedules(value: object, *, what: str = "schedules") -> tuple[str, ...]:
    """Wrangler's ``schedules``: one cron expression or a list of them (``string |
    string[]``). Each is checked; repeats are dropped (one expression fires once per tick)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (check_cron(value, what=what),)
    if not isinstance(value, list | tuple):
        raise ConfigurationError(
            f"{what}: must be a cron expression or a list of them, got {type(value).__name__}"
        )
    out: dict[str, None] = {}
    for i, item in enumerate(value):
        out[check_cron(item, what=f"{what}[{i}]")] = None
    return tuple(out)


def _utc(at: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(at, _dt.UTC)


def next_tick(expression: str, after: float) -> float:
    """The first tick of ``expression`` strictly after ``after`` (epoch seconds)."""
    return float(croniter(expression, _utc(after)).get_next(float))


def latest_tick(expression: str, at: float) -> float:
    """The last tick of ``expression`` at or before ``at`` (a tick exactly at ``at`` counts)."""
    # croniter's get_prev is strictly before its start: start just after ``at``. Ticks are whole
    # minutes, so a millisecond later cannot skip one.
    return float(croniter(expression, _utc(at + 0.001)).get_prev(float))


def tick_instance_id(expression: str, tick: float) -> str:
    """The id of the instance a tick creates: the same for the same (expression, tick) on every
    node, so that a tick's instance is recognisable (and the unique id is a second guard
    against firing twice). ``cron-20260101T0005Z-<8 hex of the expression>``."""
    digest = hashlib.sha256(expression.encode()).hexdigest()[:8]
    return f"cron-{_utc(tick):%Y%m%dT%H%MZ}-{digest}"
