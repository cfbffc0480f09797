"""Step configuration: retries, timeout and sensitivity, with Cloudflare's defaults and validation.

A retry's ``delay`` is a duration, or (Cloudflare's dynamic retry delays, July 2026) a function
of the failed attempt and its error: ``delay(ctx, error)`` returning a duration (a number of
milliseconds or ``"N unit"``), which the back-off then scales, as a fixed delay is. Python style
of the TypeScript ``delay: ({ ctx, error }) => ...``: the function's parameters named ``ctx``
and ``error`` receive them (either may be left out); a function of one other parameter receives
``{"ctx": ..., "error": ...}``, the TypeScript form's one object. It may be ``async``.

``sensitive: "output"`` (Cloudflare's ``WorkflowStepConfig.sensitive``, type
``WorkflowStepSensitivity``, whose one value is ``"output"``): the step's result is stored and
handed to the workflow as any other, but every view of it for operators (the admin API, wrangler
and ``dwf`` ``instances describe``, the dashboard) shows :data:`REDACTED` instead. Its error is
never redacted (as on Cloudflare).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigurationError
from .durations import parse_duration

__all__ = [
    "DELAY_FUNCTION_FALLBACK",
    "DELAY_FUNCTION_TIMEOUT",
    "REDACTED",
    "SENSITIVE_OUTPUT",
    "Backoff",
    "StepConfig",
    "resolve_step_config",
]

Backoff = Literal["constant", "linear", "exponential"]
_BACKOFFS = ("constant", "linear", "exponential")

DELAY_FUNCTION_TIMEOUT = 5.0
"""Seconds a delay function may take (Cloudflare's): past them the step fails, not retried."""

DELAY_FUNCTION_FALLBACK = 1.0
"""Seconds before retrying an attempt that never reported its error (its process died), when
the delay is a function: there is no error to ask it about (Cloudflare's default delay)."""

_DELAY_ARGS = frozenset(("ctx", "error"))

SENSITIVE_OUTPUT = "output"
"""The one value of ``config["sensitive"]`` (Cloudflare's ``WorkflowStepSensitivity``)."""

REDACTED = "[REDACTED]"
"""What operators see in place of a sensitive step's result (Cloudflare's
``REDACTED_STEP_OUTPUT``, workers-sdk ``workflows-shared/src/context.ts``)."""

_CONFIG_KEYS = frozenset(("retries", "timeout", "sensitive"))


@dataclass(frozen=True, slots=True)
class StepConfig:
    """A step's retry policy, timeout and sensitivity, normalised (seconds, not strings)."""

    retry_limit: int = 5
    """Retries after the first attempt (5 means up to 6 attempts)."""
    retry_delay: float = 10.0
    backoff: Backoff = "exponential"
    timeout: float = 600.0
    shown: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    """The config as the step gave it, over Cloudflare's defaults (``"30 seconds"`` stays a
    string): what ``ctx["config"]`` shows. None: derived from the numbers."""
    sensitive: bool = False
    """``sensitive: "output"``: operators see :data:`REDACTED` instead of the step's result."""
    delay_fn: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    """A dynamic delay (``retries.delay`` given as a function): see the module docstring."""
    delay_args: tuple[str, ...] = field(default=(), compare=False, repr=False)
    """How ``delay_fn`` takes its arguments: the names of ``ctx``/``error`` among its
    parameters, or ``("*",)`` for one parameter receiving both in a dict."""
    first_retry_in: float | None = field(init=False, compare=False, repr=False)
    """:meth:`delay_before` the second attempt, None when there is none (``retry_limit`` 0):
    what every step's first attempt notice carries, computed once per config."""

    def __post_init__(self) -> None:
        first = None if self.retry_limit < 1 else self.delay_before(2)
        object.__setattr__(self, "first_retry_in", first)

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2, 3, ...), after attempt - 1 failed (with a
        delay function: :data:`DELAY_FUNCTION_FALLBACK`, for an attempt whose error is not
        known; a known error asks the function, see :meth:`scaled`)."""
        if self.delay_fn is not None:
            return DELAY_FUNCTION_FALLBACK
        return self.scaled(self.retry_delay, attempt - 1)

    def scaled(self, delay: float, failed_attempt: int) -> float:
        """``delay`` under the back-off, after the attempt numbered ``failed_attempt`` failed:
        constant = delay, linear = delay * n, exponential = delay * 2 ** (n - 1)."""
        if self.backoff == "constant":
            return delay
        if self.backoff == "linear":
            return delay * failed_attempt
        return float(delay * 2 ** (failed_attempt - 1))

    def delay_call(self, ctx: dict[str, Any], error: BaseException) -> Any:
        """Call the delay function for a failed attempt (its return value, maybe awaitable)."""
        assert self.delay_fn is not None
        if self.delay_args == ("*",):
            return self.delay_fn({"ctx": ctx, "error": error})
        given = {"ctx": ctx, "error": error}
        return self.delay_fn(**{name: given[name] for name in self.delay_args})

    def as_dict(self) -> dict[str, Any]:
        """The config as tenant code sees it in ``ctx["config"]``: Cloudflare's resolved step
        config, the values as the step gave them with the defaults filled in
        (``{"retries": {"limit", "delay", "backoff"}, "timeout"}``, and ``"sensitive":
        "output"`` when the step gave it); a fresh dict each time."""
        shown: dict[str, Any]
        if self.shown is not None:
            shown = {"retries": dict(self.shown["retries"]), "timeout": self.shown["timeout"]}
        else:
            shown = {
                "retries": {
                    "limit": self.retry_limit,
                    "delay": int(self.retry_delay * 1000),
                    "backoff": self.backoff,
                },
                "timeout": int(self.timeout * 1000),
            }
        if self.sensitive:
            shown["sensitive"] = SENSITIVE_OUTPUT
        return shown


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
    unknown = config.keys() - _CONFIG_KEYS
    if unknown:
        raise ConfigurationError(f"step {step_name!r}: unknown config key(s) {sorted(unknown)}")
    base = DEFAULT_STEP_CONFIG
    limit, delay, backoff = base.retry_limit, base.retry_delay, base.backoff
    delay_shown: Any = _DEFAULT_DELAY_SHOWN
    delay_fn: Callable[..., Any] | None = None
    delay_args: tuple[str, ...] = ()
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
        if "delay" in retries and callable(retries["delay"]):
            delay_fn = retries["delay"]
            delay_args = _delay_args(delay_fn, step_name)
        elif "delay" in retries:
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
    sensitive = False
    given = config.get("sensitive")
    if given is not None:  # (None: not given, as for the other keys)
        if not isinstance(given, str) or given != SENSITIVE_OUTPUT:
            raise ConfigurationError(
                f"step {step_name!r}: config.sensitive must be {SENSITIVE_OUTPUT!r} (the one "
                f"sensitivity there is: the step's output), got {given!r}"
            )
        sensitive = True
    # A delay function is not shown (as on Cloudflare, where it cannot cross to the step).
    shown_retries = {"limit": limit, "backoff": backoff}
    if delay_fn is None:
        shown_retries = {"limit": limit, "delay": delay_shown, "backoff": backoff}
    shown = {"retries": shown_retries, "timeout": timeout_shown}
    return StepConfig(
        retry_limit=limit,
        retry_delay=delay,
        backoff=backoff,
        timeout=timeout,
        shown=shown,
        sensitive=sensitive,
        delay_fn=delay_fn,
        delay_args=delay_args,
    )


def _delay_args(fn: Callable[..., Any], step_name: str) -> tuple[str, ...]:
    """How a delay function takes ``ctx`` and ``error`` (see :attr:`StepConfig.delay_args`)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: give it the one object
        return ("*",)
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return ("ctx", "error")
    names = tuple(p.name for p in params if p.name in _DELAY_ARGS)
    others = [p for p in params if p.name not in _DELAY_ARGS and p.default is p.empty]
    if not names and len(others) == 1 and others[0].kind is not others[0].KEYWORD_ONLY:
        return ("*",)
    if others:
        raise ConfigurationError(
            f"step {step_name!r}: config.retries.delay: a delay function takes parameters "
            "named ctx and/or error (or a single one, which receives {'ctx', 'error'}); "
            f"got {fn!r} with parameters {[p.name for p in params]}"
        )
    return names
