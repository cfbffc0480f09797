"""The step channel: how a run's steps reach the world, and the one seam between the replay core
and whoever hosts it.

:class:`~dynamic_workflows.core.step.WorkflowStep` answers completed steps from the journal it
was given and sends everything durable through a :class:`StepChannel`. Two implementations:
the engine's live run (``engine.LiveRun``, in-process, over the storage) and the sandbox's
``RemoteStepChannel`` (``sandbox/worker.py``), whose every call is a message to the host, served
there by the bridge (``sandbox/bridge.py``) calling the engine's live run. So the same replay
code runs in the host and in a confined worker, and neither knows which it is in.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from .journal import ErrorInfo
from .logs import LogLine

__all__ = ["StepChannel", "WaitRegistration"]


class WaitRegistration(Protocol):
    """What registering an event wait returns: the deadline, and the event if one was buffered."""

    @property
    def deadline(self) -> float: ...

    @property
    def value(self) -> bytes | None: ...


class StepChannel(Protocol):
    """The host's side of a run: durable effects, answered once committed."""

    def complete(
        self,
        name: str,
        count: int,
        value: bytes,
        attempt: int = 1,
        rollback: bool = False,
        sensitive: bool = False,
    ) -> Awaitable[None]:
        """Commit a step's result (``attempt``: the attempt that produced it; ``rollback``: the
        step registered a rollback handler; ``sensitive``: the step's config says
        ``sensitive: "output"``, recorded with it). A ``count`` below 0 is a rollback handler's
        entry (:func:`~.journal.rollback_count`)."""
        ...

    async def fail(
        self,
        name: str,
        count: int,
        attempt: int,
        error: ErrorInfo,
        retry_in: float | None,
        rollback: bool = False,
        sensitive: bool = False,
    ) -> float | None:
        """Commit a failed attempt. ``retry_in`` None: the error is final. Otherwise returns the
        time the next attempt is due. ``rollback`` and ``sensitive`` as for :meth:`complete` (the
        error itself is never redacted, as on Cloudflare)."""
        ...

    async def sleep(self, name: str, count: int, until: float | None, seconds: float) -> float:
        """Register a sleep (``until`` an absolute time, else ``seconds`` from now); returns when
        it ends."""
        ...

    async def wait_for_event(
        self, name: str, count: int, event_type: str, timeout: float
    ) -> WaitRegistration:
        """Register an event wait; a buffered event is consumed and returned at once."""
        ...

    async def wake(self, name: str, count: int, timer: float | None = None) -> bytes | None:
        """Block until the host wakes this step: a sleep or back-off ended (None), an event
        arrived (its JSON) or an event wait timed out (None). ``timer``: the step waits for
        nothing but that instant (a sleep or a back-off), which a channel whose host shares its
        wall clock may wait for by itself."""
        ...

    def attempt_started(
        self,
        name: str,
        count: int,
        attempt: int,
        retry_in: float | None,
        rollback: bool = False,
    ) -> None:
        """One-way notice that an attempt begins (no acknowledgement is awaited). A sandboxed
        channel uses it to count an attempt whose process died as failed; ``retry_in`` is the
        back-off before the next attempt, None if this is the last one allowed; ``rollback``:
        the step registered a rollback handler (so such a failure keeps the journal's flag).
        The host's channel notes the time, for the step's attempt history."""
        ...

    def log(self, lines: list[LogLine]) -> None:
        """One-way: lines the run's code printed or logged (see :mod:`.logs`). The host's
        channel bounds them and stores them with its next write (a sandbox's come with the
        messages the worker sends anyway)."""
        ...
