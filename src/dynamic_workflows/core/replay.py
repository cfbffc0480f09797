"""Driving one run of ``run(event, step)`` to an outcome: completed, failed, or suspended when
every live branch is blocked (the instance then hibernates and is replayed from the top later)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import LimitExceededError, RunCancelled, RunSuspended
from .codec import SerializationError, encode
from .journal import Cancelled, Completed, ErrorInfo, Failed, RunOutcome, Suspended
from .limits import DEFAULT_LIMITS, Limits, check_size
from .rollback import rollback_of
from .step import RunState
from .tracebacks import error_info

__all__ = ["drive", "outcome_of_exception"]

_UNWIND_GRACE = 1.0
"""Real seconds an unwound run may take to honour its cancellation before it is abandoned."""


def outcome_of_exception(exc: BaseException) -> RunOutcome:
    """The outcome for a run that raised ``exc``."""
    if isinstance(exc, RunSuspended):
        wake_at, paused = (*exc.args, None, False)[:2]
        return Suspended(wake_at=wake_at, paused=bool(paused))
    if isinstance(exc, RunCancelled | asyncio.CancelledError):
        return Cancelled()
    return Failed(error_info(exc), rollback_of(exc))


ParkPolicy = Callable[[float | None], Callable[[], None] | None]
"""Asked when a run goes quiescent with ``wake_at`` (its earliest wake-up, None if only an event
or a resume can wake it): None unwinds it (it hibernates); a callback keeps it live and
*parked*, and is called once the run unparks (a branch starts work again, or the run ends)."""


async def drive(
    run: Callable[[], Awaitable[Any]],
    state: RunState,
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> RunOutcome:
    """Run ``run()`` until it returns, raises, or goes quiescent (see :class:`RunState`).

    A quiescent run whose wake-up is near may be kept live instead (``state.park_policy``): its
    timer then resumes it in memory, without the replay a hibernated instance costs.

    Cancelling the task that awaits ``drive`` stops the run and returns :class:`Cancelled`.
    """
    try:
        return await _drive(run, state, limits, state.park_policy)
    finally:
        state.unpark()


async def _drive(
    run: Callable[[], Awaitable[Any]],
    state: RunState,
    limits: Limits,
    park: ParkPolicy | None,
) -> RunOutcome:

    async def body() -> Any:
        return await run()

    task: asyncio.Task[Any] = asyncio.ensure_future(body())
    while True:
        quiet = asyncio.ensure_future(state.quiescent.wait())
        try:
            await asyncio.wait({task, quiet}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            quiet.cancel()
            await _unwind(task, state)
            return Cancelled()
        quiet.cancel()
        if task.done():
            break
        # Between the signal and now a timer may have woken a branch: check again, and decide
        # without awaiting, so that nothing can move between the check and the unwinding.
        if state.active == 0 and state.blocked > 0:
            wake_at = state.wake_at()
            if not state.paused and park is not None and not state.parked:
                on_unpark = park(wake_at)
                if on_unpark is not None:
                    state.park(on_unpark)
            if not state.parked or state.paused:
                state.unpark()
                outcome: RunOutcome = Suspended(wake_at=wake_at, paused=state.held_by_pause)
                await _unwind(task, state)
                return outcome
        state.quiescent.clear()
    if task.cancelled():
        return Cancelled()
    exc = task.exception()
    if exc is not None:
        return outcome_of_exception(exc)
    try:
        output = encode(task.result())
        check_size(output, "the output of run()", limits)
    except SerializationError as exc2:
        return Failed(
            ErrorInfo("TypeError", f"run() returned a value that cannot be serialised: {exc2}")
        )
    except LimitExceededError as exc3:
        return Failed(ErrorInfo("LimitExceededError", str(exc3)))
    return Completed(output)


async def _unwind(task: asyncio.Task[Any], state: RunState) -> None:
    state.closed = True
    task.cancel()
    with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, BaseException):
        await asyncio.wait_for(asyncio.shield(task), _UNWIND_GRACE)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: an unwound run's error means nothing
