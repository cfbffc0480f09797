"""How long a finished instance is kept: Cloudflare's ``retention`` create option.

``retention: {"successRetention": <duration>, "errorRetention": <duration>}`` (durations as
everywhere: milliseconds or ``"7 days"``). An instance that ends ``complete`` is kept
``successRetention`` after it ended; one that ends ``errored`` or ``terminated``,
``errorRetention``. Then the sweeper (``retention.py`` at the engine's layer) deletes it with its
steps, events and logs. A field left out falls back to the workflow's default (its wrangler
entry's ``retention``), then the project's; with none anywhere the instance is kept forever
(Cloudflare keeps finished instances for a limited time by default; we delete nothing nobody
asked us to).

The one rule, :func:`retain_until`, is mirrored in SQL by the SQLite and PostgreSQL backends
(an index over the same expression); the contract tests hold them to it.
"""

from __future__ import annotations

import msgspec

from ..errors import ConfigurationError
from .durations import parse_duration
from .transitions import Status

__all__ = ["Retention", "parse_retention", "retain_until"]

_FIELDS = ("successRetention", "errorRetention")


class Retention(msgspec.Struct, frozen=True):
    """Seconds to keep an instance after it ended, by outcome (None: forever)."""

    success: float | None = None
    error: float | None = None

    def over(self, default: Retention | None) -> Retention:
        """This retention, its missing fields taken from ``default``."""
        if default is None:
            return self
        return Retention(
            default.success if self.success is None else self.success,
            default.error if self.error is None else self.error,
        )


def parse_retention(value: object, *, what: str = "retention") -> Retention | None:
    """``{"successRetention", "errorRetention"}`` (either may be left out) as a
    :class:`Retention`; None for None. A bad value raises :class:`ConfigurationError` naming
    the field (``retention.errorRetention``) and the problem."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigurationError(
            f"{what}: must be an object with successRetention and/or errorRetention, "
            f"got {type(value).__name__}"
        )
    unknown = sorted(set(value) - set(_FIELDS))
    if unknown:
        raise ConfigurationError(
            f"{what}: unknown field(s) {', '.join(map(str, unknown))} (known: {', '.join(_FIELDS)})"
        )
    success, error = (
        None if value.get(name) is None else parse_duration(value[name], what=f"{what}.{name}")
        for name in _FIELDS
    )
    return Retention(success, error)


def retain_until(
    status: str, ended_at: float | None, success: float | None, error: float | None
) -> float | None:
    """When an instance in ``status`` that ended at ``ended_at`` may be deleted; None while it
    runs, and when its outcome's retention is None (kept forever)."""
    if ended_at is None:
        return None
    if status == Status.COMPLETE:
        keep = success
    elif status in (Status.ERRORED, Status.TERMINATED):
        keep = error
    else:
        return None
    return None if keep is None else ended_at + keep
