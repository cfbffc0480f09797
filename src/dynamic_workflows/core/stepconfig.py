"""Step configuration: retries and timeout, with Cloudflare's defaults and validation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigurationError
from .durations import parse_duration

__all__ = ["Backoff", "StepConfig", "resolve_step_config"]

Backoff = Literal["constant", "linear", "exponential"]
_BACKOFFS = ("constant", "linear", "exponential")


@dataclass(frozen=True, slots=True)
class StepConfig:
    """A step's retry policy and timeout, normalised (seconds, not strings)."""

    retry_limit: int = 5
    """Retries after the first attempt (5 means up to 6 attempts)."""
    retry_delay: float = 10.0
    backoff: Backoff = "exponential"
    timeout: float = 600.0
    shown: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    """The config as the step gave it, over Cloudflare's defaults (``"30 seconds"`` stays a
    string): what ``ctx["config"]`` shows. None: derived from the numbers."""

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2, 3, ...), after attempt - 1 failed."""
        n = attempt - 1  # the number of the failed attempt
        if self.backoff == "constant":
            return self.retry_delay
        if self.backoff == "linear":
            return self.retry_delay * n
        return float(self.retry_delay * 2 ** (n - 1))

    def as_dict(self) -> dict[str, Any]:
        """The config as tenant code sees it in ``ctx["config"]``: Cloudflare's resolved step
        config, the values as the step gave them with the defaults filled in
        (``{"retries": {"limit", "delay", "backoff"}, "timeout"}``); a fresh dict each time."""
        if self.shown is not None:
            return {"retries": dict(self.shown["retries"]), "timeout": self.shown["timeout"]}
        return {
            "retries": {
                "limit": self.retry_limit,
                "delay": int(self.retry_delay * 1000),
                "backoff": self.backoff,
            },
            "timeout": int(self.timeout * 1000),
        }


_DEFAULT_DELAY_SHOWN = 10_000
_DEFAULT_TIMEOUT_SHOWN = "10 minutes"

DEFAULT_STEP_CONFIG = StepConfig(
    shown={
        "retries": {"limit": 5, "delay": _DEFAULT_DELAY_SHOWN, "backoff": "exponential"},
        "timeout": _DEFAULT_TIMEOUT_SHOWN,
    }
)


def _as_given(value: object, seconds: float) -> Any:
    """A duration as ``ctx["config"]`` shows it: as the step gave it when that is a number or a
    string (Cloudflare's form), in milliseconds otherwise (a timedelta)."""
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        return value
    return int(seconds * 1000)


def resolve_step_config(config: object, step_name: str) -> StepConfig:
    """Merge a tenant's ``config`` dict over the defaults, naming the step in any error."""
    if config is None:
        return DEFAULT_STEP_CONFIG
    if isinstance(config, StepConfig):
        return config
    if not isinstance(config, dict):
        raise ConfigurationError(
            f"step {step_name!r}: config must be a dict, got {type(config).__name__}"
        )
    unknown = set(config) - {"retries", "timeout"}
    if unknown:
        raise ConfigurationError(f"step {step_name!r}: unknown config key(s) {sorted(unknown)}")
    base = DEFAULT_STEP_CONFIG
    limit, delay, backoff = base.retry_limit, base.retry_delay, base.backoff
    delay_shown: Any = _DEFAULT_DELAY_SHOWN
    retries = config.get("retries")
    if retries is not None:
        if not isinstance(retries, dict):
            raise ConfigurationError(f"step {step_name!r}: config.retries must be a dict")
        unknown = set(retries) - {"limit", "delay", "backoff"}
        if unknown:
            raise ConfigurationError(
                f"step {step_name!r}: unknown config.retries key(s) {sorted(unknown)}"
            )
        if "limit" in retries:
            limit = retries["limit"]
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ConfigurationError(
                    f"step {step_name!r}: config.retries.limit must be an integer >= 0, "
                    f"got {limit!r}"
                )
        if "delay" in retries:
            delay = parse_duration(
                retries["delay"], what=f"step {step_name!r}: config.retries.delay"
            )
            delay_shown = _as_given(retries["delay"], delay)
        if "backoff" in retries:
            backoff = retries["backoff"]
            if backoff not in _BACKOFFS:
                raise ConfigurationError(
                    f"step {step_name!r}: config.retries.backoff must be one of "
                    f"{', '.join(_BACKOFFS)}, got {backoff!r}"
                )
    timeout = base.timeout
    timeout_shown: Any = _DEFAULT_TIMEOUT_SHOWN
    if config.get("timeout") is not None:
        timeout = parse_duration(config["timeout"], what=f"step {step_name!r}: config.timeout")
        if timeout <= 0:
            raise ConfigurationError(f"step {step_name!r}: config.timeout must be positive")
        timeout_shown = _as_given(config["timeout"], timeout)
    shown = {
        "retries": {"limit": limit, "delay": delay_shown, "backoff": backoff},
        "timeout": timeout_shown,
    }
    return StepConfig(
        retry_limit=limit, retry_delay=delay, backoff=backoff, timeout=timeout, shown=shown
    )
