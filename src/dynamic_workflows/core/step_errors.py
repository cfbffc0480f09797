"""The errors a step can end with, and how they are recorded and rebuilt on replay.

The classes are the ones Cloudflare's Python SDK exposes as ``workers.workflows`` (the SDK module
re-exports them); the encoding (:func:`error_name`, :func:`error_message`,
:func:`rebuild_error`) is the core's, used by the replay logic in-process and on both sides of
the sandbox boundary."""

from __future__ import annotations

import builtins

__all__ = [
    "NonRetryableDelayError",
    "NonRetryableError",
    "StepError",
    "WorkflowTimeoutError",
    "error_message",
    "error_name",
    "rebuild_error",
]


class NonRetryableError(Exception):
    """Raise inside a step to fail it at once: no further attempts, whatever its retry policy."""


class NonRetryableDelayError(NonRetryableError):
    """A step's retry delay function raised, took too long or returned no duration: the step
    fails without further attempts (Cloudflare's name)."""


class WorkflowTimeoutError(Exception):
    """A step ran past its timeout, or a ``wait_for_event`` got no event in time."""


class StepError(Exception):
    """A step's error replayed from storage whose original class is not a builtin one.

    ``name`` is the original class name and ``str(error)`` its message, so an instance that lets
    it escape reports the same ``{"name", "message"}`` on the first run and on every replay.
    """

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


_KNOWN: dict[str, type[Exception]] = {
    "NonRetryableError": NonRetryableError,
    "NonRetryableDelayError": NonRetryableDelayError,
    "WorkflowTimeoutError": WorkflowTimeoutError,
}


def rebuild_error(name: str, message: str) -> Exception:
    """The exception to raise for a stored step error: the SDK's own classes and Python's builtin
    exception classes come back as themselves (so ``except ValueError`` works on replay), anything
    else as :class:`StepError`."""
    cls = _KNOWN.get(name)
    if cls is None:
        candidate = getattr(builtins, name, None)
        if (
            isinstance(candidate, type)
            and issubclass(candidate, Exception)
            and not issubclass(candidate, OSError | UnicodeError)  # need extra constructor args
        ):
            cls = candidate
    if cls is not None:
        try:
            return cls(message)
        except Exception:  # a builtin with an unusual constructor
            pass
    return StepError(name, message)


def error_name(exc: BaseException) -> str:
    """The name recorded for ``exc``: a replayed StepError keeps its original name."""
    if isinstance(exc, StepError):
        return exc.name
    return type(exc).__name__


def error_message(exc: BaseException) -> str:
    """The message recorded for ``exc``: its own text, ``str(exc)``, except for a ``KeyError``,
    whose ``str`` is the repr of the key (``"'customer'"``): its message is the key itself."""
    if isinstance(exc, KeyError) and type(exc).__str__ is KeyError.__str__ and len(exc.args) == 1:
        return str(exc.args[0])
    return str(exc)
