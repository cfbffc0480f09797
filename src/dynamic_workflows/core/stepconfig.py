"""Step configuration: retries and timeout, with Cloudflare's defaults and validation."""

from __future__ import annotations

from dataclasses import dataclass
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

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2, 3, ...), after attempt - 1 failed."""
        n = attempt - 1  # the number of the failed attempt
        if self.backoff == "constant":
            return self.retry_delay
        if self.backoff == "linear":
            return self.retry_delay * n
        return float(self.retry_delay * 2 ** (n - 1))

    def as_dict(self) -> dict[str, Any]:
        """The config as tenant code sees it in ``ctx["config"]`` (milliseconds, like the SDK)."""
        return {
            "retries": {
                "limit": self.retry_limit,
                "delay": int(self.retry_delay * 1000),
                "backoff": self.backoff,
            },
            "timeout": int(self.timeout * 1000),
        }


DEFAULT_STEP_CONFIG = StepConfig()


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
        if "backoff" in retries:
            backoff = retries["backoff"]
            if backoff not in _BACKOFFS:
                raise ConfigurationError(
                    f"step {step_name!r}: config.retries.backoff must be one of "
                    f"{', '.join(_BACKOFFS)}, got {backoff!r}"
                )
    timeout = base.timeout
    if config.get("timeout") is not None:
        timeout = parse_duration(config["timeout"], what=f"step {step_name!r}: config.timeout")
        if timeout <= 0:
            raise ConfigurationError(f"step {step_name!r}: config.timeout must be positive")
    return StepConfig(retry_limit=limit, retry_delay=delay, backoff=backoff, timeout=timeout)
