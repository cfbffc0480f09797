"""The hook that lets a sandbox stop a step attempt whose body never yields to the event loop.

A step's timeout (:mod:`.step`) is a loop timer that cancels the body's task; it works only
when the body awaits. A body that computes without awaiting (``while True: pass``) holds the
loop, the timer never fires, and the attempt runs until something outside stops the process.
An :class:`AttemptGuard` is told when each attempt begins (with its timeout) and ends, so that
something outside the loop can stop it: the sandboxed worker's guard
(:mod:`dynamic_workflows.sandbox.interrupt`) raises ``TimeoutError`` in the body from a timer
signal, which the step records as any other timeout (``WorkflowTimeoutError``, "Execution timed
out after N ms"), and its retry policy applies.

The engine's in-process runs have no guard: the host's own loop must never be interrupted in
the middle of its code, and trusted code is trusted not to spin.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["AttemptGuard"]


class AttemptGuard(Protocol):
    """Deadlines of the step attempts in progress, enforced from outside the event loop."""

    def begin(self, timeout: float) -> int:
        """An attempt allowed ``timeout`` seconds begins in the current task; returns a token
        for :meth:`end`. Called just before the channel's ``attempt_started`` notice."""
        ...

    def end(self, token: int) -> None:
        """The attempt of ``token`` is over (its outcome is known, or it was cancelled)."""
        ...
