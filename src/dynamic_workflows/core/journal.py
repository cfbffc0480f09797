"""What is remembered about a run: journal entries, error records and run outcomes.

These structs are persisted by storage, sent across the sandbox boundary and read by the replay
logic, so they are plain msgspec structs with no behaviour.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "Cancelled",
    "Completed",
    "ErrorInfo",
    "Failed",
    "JournalEntry",
    "RollbackOutcome",
    "RunOutcome",
    "StepKind",
    "StepState",
    "Suspended",
    "rollback_count",
]


class StepKind:
    """What a journal entry records."""

    DO = "do"
    SLEEP = "sleep"
    WAIT = "wait"
    ROLLBACK = "rollback"
    """A step's rollback handler (saga compensation), run once the instance failed or was
    terminated with ``rollback``; keyed ``(step name, -count)``: see :func:`rollback_count`."""


def rollback_count(count: int) -> int:
    """The journal count of the rollback handler of the step occurrence ``count`` (and back):
    its negation. Step counts start at 1, so a handler's entry never collides with a step's, and
    the storage key ``(name, count)`` needs no new column."""
    return -count


class StepState:
    """Where a step stands. ``done`` and ``failed`` are final."""

    DONE = "done"
    FAILED = "failed"
    RETRYING = "retrying"
    """An attempt failed; the next one is due at ``wake_at``."""
    SLEEPING = "sleeping"
    """A sleep that ends at ``wake_at`` (it is over once that time has passed)."""
    WAITING = "waiting"
    """Waiting for an event of ``event_type`` until ``wake_at`` (the deadline)."""


class ErrorInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """An error as the reference reports it: ``{"name": ..., "message": ...}``, and the
    traceback of the workflow's own code where it was raised (see :mod:`.tracebacks`)."""

    name: str
    message: str
    traceback: str | None = None
    """Bounded, frames of the workflow's code only; None when there is none (not reported in
    :meth:`as_dict`, which is Cloudflare's shape)."""

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "message": self.message}


class JournalEntry(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One step occurrence, keyed by ``(name, count)``; ``count`` starts at 1.

    Encoded without its default fields (``omit_defaults``): a journal crosses to the sandbox
    with every run, and most entries leave most fields empty (measured: a quarter smaller and
    faster both ways, so :attr:`sensitive` costs the steps without it nothing)."""

    name: str
    count: int
    kind: str
    state: str
    value: bytes | None = None
    """JSON of the result (``do``) or of the received event (``wait``)."""
    error: ErrorInfo | None = None
    attempt: int = 0
    """Attempts made so far (``do``)."""
    wake_at: float | None = None
    event_type: str | None = None
    started_at: float | None = None
    """When the latest attempt began (``do``), or the sleep or wait (epoch seconds)."""
    ended_at: float | None = None
    """When the latest attempt ended (``do``)."""
    attempts: bytes | None = None
    """The step's failed attempts (``do``), bounded: see :mod:`dynamic_workflows.core.attempts`."""
    rollback: bool = False
    """The step registered a rollback handler (``do``): it is eligible for the rollback phase
    (read without running tenant code when the instance is terminated with ``rollback``)."""
    sensitive: bool = False
    """The step was declared with ``config={"sensitive": "output"}`` (``do``): its ``value`` is
    replayed to the run as any other, and shown to operators as
    :data:`~dynamic_workflows.core.stepconfig.REDACTED` (see :mod:`dynamic_workflows.queries`)."""


class Completed(msgspec.Struct, frozen=True, tag=True):
    """``run()`` returned; ``output`` is its JSON."""

    output: bytes


class RollbackOutcome(msgspec.Struct, frozen=True, omit_defaults=True):
    """How the rollback phase of a failed or terminated instance ended, as its status reports
    it: ``outcome`` ``"complete"`` (every eligible handler ran) or ``"failed"`` (the chain
    halted at the handler whose error is ``error``, or a terminate stopped it); ``"running"``
    while the handlers run."""

    outcome: str
    error: ErrorInfo | None = None
    after_error: bool = False
    """Ours, not reported (:meth:`as_dict`): a ``running`` phase began because ``run()``
    raised, so the run that resumes it ends the instance ``errored``; without it, a terminate
    with rollback began it, and the instance ends ``terminated``."""

    def as_dict(self) -> dict[str, object]:
        """Cloudflare's shape: ``{"outcome"}`` and, when a handler failed, ``"error"``."""
        if self.error is None:
            return {"outcome": self.outcome}
        return {"outcome": self.outcome, "error": self.error.as_dict()}


class Failed(msgspec.Struct, frozen=True, tag=True):
    """``run()`` raised; ``rollback`` is how its rollback phase ended (None: no handler was
    eligible)."""

    error: ErrorInfo
    rollback: RollbackOutcome | None = None


class Suspended(msgspec.Struct, frozen=True, tag=True):
    """Every live branch of the run is blocked: hibernate until ``wake_at`` (None: only an
    event or a resume can wake it). ``paused`` is set when a branch is held by a pause."""

    wake_at: float | None
    paused: bool = False


class Cancelled(msgspec.Struct, frozen=True, tag=True):
    """The run was stopped from outside (terminate, restart, delete, shutdown)."""


RunOutcome = Completed | Failed | Suspended | Cancelled
