"""The limits every instance lives under, and the checks that enforce them with clear errors."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import (
    InvalidEventTypeError,
    InvalidInstanceIdError,
    LimitExceededError,
    WorkflowDefinitionError,
)

__all__ = [
    "Limits",
    "check_event_type",
    "check_instance_id",
    "check_size",
    "check_step_name",
    "check_step_result",
]

_ID_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9\-_]*$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-instance limits; Cloudflare's published values are the defaults."""

    max_id_length: int = 100
    max_step_name_length: int = 256
    max_value_bytes: int = MIB
    """Largest serialised step result, event payload, instance params or output."""
    max_steps: int = 10_000
    max_batch: int = 100
    log_bytes_per_attempt: int = 64 * 1024
    """What one step attempt (and ``run()``'s own code, per run) may print or log; the rest
    is dropped and counted (see :mod:`.logs`)."""
    log_bytes_per_instance: int = MIB
    """What an instance's logs may hold in all."""


DEFAULT_LIMITS = Limits()


def check_instance_id(value: object, limits: Limits = DEFAULT_LIMITS) -> str:
    """Return ``value`` if it is a valid instance id, else raise InvalidInstanceIdError."""
    if not isinstance(value, str) or len(value) > limits.max_id_length or not _ID_RE.match(value):
        raise InvalidInstanceIdError(value)
    return value


def check_event_type(value: object, limits: Limits = DEFAULT_LIMITS) -> str:
    """Return ``value`` if it is a valid event type, else raise InvalidEventTypeError."""
    if not isinstance(value, str) or len(value) > limits.max_id_length or not _ID_RE.match(value):
        raise InvalidEventTypeError(value)
    return value


def check_step_name(value: object, limits: Limits = DEFAULT_LIMITS) -> str:
    """Return ``value`` if it can name a step: a non-empty string, at most 256 characters,
    without control characters."""
    if (
        type(value) is str
        and 0 < len(value) <= limits.max_step_name_length
        and value.isprintable()  # (no control characters: the regex below is not needed)
    ):
        return value
    if not isinstance(value, str):
        raise WorkflowDefinitionError(f"step name must be a string, got {type(value).__name__}")
    if not value:
        raise WorkflowDefinitionError("step name must not be empty")
    if len(value) > limits.max_step_name_length:
        raise WorkflowDefinitionError(
            f"step name is {len(value)} characters; the limit is {limits.max_step_name_length}"
        )
    if _CONTROL_RE.search(value):
        raise WorkflowDefinitionError(f"step name {value!r} contains control characters")
    return value


def check_size(data: bytes, what: str, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Return ``data`` if it fits the value limit, else raise LimitExceededError naming ``what``."""
    if len(data) > limits.max_value_bytes:
        raise LimitExceededError(
            f"{what} is {len(data):,} bytes once serialised; the limit is "
            f"{limits.max_value_bytes:,} bytes (1 MiB)"
            if limits.max_value_bytes == MIB
            else f"{what} is {len(data):,} bytes once serialised; the limit is "
            f"{limits.max_value_bytes:,} bytes"
        )
    return data


def check_step_result(data: bytes, name: str, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """:func:`check_size` for the result of step ``name``, which names it only if it is too
    large (the hot path of every step builds no message)."""
    if len(data) > limits.max_value_bytes:
        check_size(data, f"the result of step {name!r}", limits)
    return data
