"""Stopping a step body that runs past its timeout without awaiting: a timer signal in the worker.

A step's own timeout is a loop timer that cancels the body when it awaits; a body that never
awaits (``while True: pass``, a long computation, ``time.sleep``) holds the worker's event loop,
so that timer never fires, and it ran on to the sandbox's 30 s CPU limit while every request to
the tenant waited. :class:`AttemptInterrupter` is the worker's
:class:`~dynamic_workflows.core.guard.AttemptGuard`: it keeps the deadline and the task of each
attempt in progress and one interval timer (``setitimer(ITIMER_REAL)``, ``SIGALRM``) armed for
the earliest. Python runs the signal handler in the main thread between two bytecodes of
whatever is running there (a blocking system call is interrupted first); the handler raises
``TimeoutError`` in it when

- an attempt's deadline has passed, and
- the task running now is that attempt's task (so the code running is its body: nothing else
  runs in that task while the attempt is open), and
- the innermost frame is not this package's own code (the step machinery around the body,
  where an exception would escape the attempt instead of failing it): then it tries again a
  few milliseconds later.

The step records the ``TimeoutError`` as every timeout, ``WorkflowTimeoutError: Execution timed
out after N ms``, and its retry policy applies; the worker and its other runs go on. An expired
attempt whose task is not running is suspended (its loop timer cancels it) or is held up by
other code that blocks the loop; the handler looks again every :data:`RETRY` seconds until the
attempt ends.

What it cannot stop, and what the host does about it (:mod:`.process`): a body stuck in C code
that never returns to the interpreter (``sum(range(10**12))``), one that catches the
``TimeoutError`` and goes on, one that takes ``SIGALRM`` for itself (``signal.alarm``), a step
whose body awaits a task of its own that spins. Each ``StepAttempt`` notice carries the
attempt's timeout: the host kills a worker that still has the attempt open :data:`GRACE`
seconds after its deadline and does not answer a ping, and the attempt fails with the reason.

Cost: :meth:`begin` is a dict insert, plus one ``setitimer`` call only when its deadline is the
earliest; :meth:`end` is a dict pop. The timer is never disarmed: a signal that finds nothing
due re-arms for the earliest attempt left, or not at all.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time
from types import FrameType

__all__ = ["GRACE", "RETRY", "AttemptInterrupter"]

RETRY = 0.02
"""Seconds between two looks at an expired attempt that is still open."""
_SOON = 0.002
"""Seconds before the next look when the signal landed in this package's code."""
GRACE = 1.0
"""Seconds past an attempt's deadline after which the host stops a worker that is still in it
and does not answer (the in-worker interruption failed)."""

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
"""The package's folder: code there is the machinery around a body, never the body."""


class _Attempt:
    __slots__ = ("deadline", "task", "timeout")

    def __init__(self, deadline: float, task: asyncio.Task[object] | None, timeout: float) -> None:
        self.deadline = deadline
        self.task = task
        self.timeout = timeout


class AttemptInterrupter:
    """The worker's step-attempt guard (see the module docs). :meth:`install` it in the main
    thread of the worker before any run starts."""

    def __init__(self) -> None:
        self._open: dict[int, _Attempt] = {}
        self._next = 0
        self._armed_at = math.inf
        self._installed = False
        self.latest_timeout: float | None = None
        """The timeout of the attempt that began last (the channel's notice carries it)."""

    def install(self) -> None:
        """Take ``SIGALRM`` (main thread only)."""
        signal.signal(signal.SIGALRM, self._on_alarm)
        self._installed = True

    # -- AttemptGuard ----------------------------------------------------------------------------

    def begin(self, timeout: float) -> int:
        token = self._next
        self._next += 1
        self.latest_timeout = timeout
        if not self._installed:
            return token
        deadline = time.monotonic() + timeout
        self._open[token] = _Attempt(deadline, asyncio.current_task(), timeout)
        if deadline < self._armed_at:
            self._arm(deadline)
        return token

    def end(self, token: int) -> None:
        self._open.pop(token, None)

    # -- the signal ------------------------------------------------------------------------------

    def _arm(self, when: float) -> None:
        self._armed_at = when
        if when == math.inf:
            return
        # At least 1 us: 0 would disarm the timer.
        signal.setitimer(signal.ITIMER_REAL, max(when - time.monotonic(), 1e-6))

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        self._armed_at = math.inf
        now = time.monotonic()
        try:
            current = asyncio.current_task()
        except RuntimeError:  # no loop running
            current = None
        expired_here = False
        next_look = math.inf
        for attempt in self._open.values():
            if attempt.deadline > now:
                next_look = min(next_look, attempt.deadline)
                continue
            next_look = min(next_look, now + RETRY)
            if current is not None and attempt.task is current:
                expired_here = True
        if expired_here and (frame is None or frame.f_code.co_filename.startswith(_PACKAGE)):
            # In the step machinery around the body: raising here would escape the attempt.
            self._arm(now + _SOON)
            return
        self._arm(next_look)
        if expired_here:
            raise TimeoutError("the step ran past its timeout")
