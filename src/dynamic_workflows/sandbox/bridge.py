"""The host side of a sandboxed ``run(event, step)``: the engine's step, served over a socket.

The engine hands the dispatcher a host :class:`~dynamic_workflows.core.step.WorkflowStep`; when the
dispatcher passes it on to a sandboxed entrypoint's ``run``, :class:`RunBridge` takes the step's
:class:`~dynamic_workflows.core.step.RunDetails` (the one hand-off across this seam), sends the
journal, the host's ``now`` and the limits with the call, and serves the sandbox's step-channel
requests by calling the run's channel (the engine's live run). The sandbox replays and
drives the run itself and answers with an outcome, which is turned back into what the engine
expects from ``run``: a value, an exception, or the :class:`RunSuspended` /
:class:`RunCancelled` signals.

When the worker dies or breaks a limit mid-run, every attempt the sandbox announced
(``attempt_started``) and did not finish is recorded as a failed attempt with a
``SandboxError``, so the step's retry policy decides what happens next, and the run suspends
until the earliest retry: the engine then replays it in a fresh process. A death while no
attempt is open is retried, and the run fails after :data:`MAX_DEATHS_OUTSIDE_STEPS` of them in
a row with no progress in between (a step committed, the run parked or returned): a run that
made progress since its last death did not die of its own code.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Any

from ..core.codec import decode
from ..core.journal import Cancelled, Completed, ErrorInfo, Failed, Suspended
from ..core.rollback import attach_rollback
from ..core.step import RunDetails
from ..core.step_errors import error_name, rebuild_error
from ..core.tracebacks import attach_traceback
from ..errors import RunCancelled, RunSuspended
from .errors import TenantWorkerError
from .process import WorkerProcess
from .protocol import (
    Run,
    RunParked,
    StepAttempt,
    StepComplete,
    StepFail,
    StepSleep,
    StepWaitForEvent,
    StepWake,
)

__all__ = ["MAX_DEATHS_OUTSIDE_STEPS", "SANDBOX_ERROR", "RunBridge", "death_outside_steps"]

SANDBOX_ERROR = "SandboxError"
"""The error name recorded for an attempt whose worker died or broke a limit."""

MAX_DEATHS_OUTSIDE_STEPS = 3
"""A run whose worker dies this many times in a row while no step attempt is open, with no
progress in between, fails."""

_SETTLE_TIMEOUT = 10.0


def death_outside_steps(
    strikes: dict[str, int], key: str, exc: TenantWorkerError, now: float
) -> BaseException:
    """What the engine gets for the run ``key`` whose worker died, or never started, while no
    step attempt was open: RunSuspended for a replay soon, or ``exc`` itself once that happened
    :data:`MAX_DEATHS_OUTSIDE_STEPS` times in a row (``strikes`` counts, per run)."""
    count = strikes.get(key, 0) + 1
    if count >= MAX_DEATHS_OUTSIDE_STEPS:
        strikes.pop(key, None)
        return exc
    strikes[key] = count
    if len(strikes) > 10_000:  # forget the oldest
        strikes.pop(next(iter(strikes)))
    return RunSuspended(now + 0.05 * count, False)


def _failure(exc: BaseException) -> ErrorInfo:
    """What the worker is told when serving its step message raised ``exc``."""
    if isinstance(exc, RunCancelled):
        return ErrorInfo("RunCancelled", "the run was stopped")
    return ErrorInfo(error_name(exc), str(exc))


class RunBridge:
    """Runs one wake-up of a workflow instance in a worker, on behalf of the host's ``step``."""

    def __init__(
        self,
        worker: WorkerProcess,
        details: RunDetails,
        *,
        strikes: dict[str, int] | None = None,
        key: str = "",
    ) -> None:
        self._worker = worker
        self._details = details
        self._strikes = strikes if strikes is not None else {}
        self._key = key
        self._channel = details.channel
        self._open: dict[tuple[str, int], tuple[int, float | None, bool]] = {}
        # What serves the worker's step messages (is it a wake-up?): tasks, and the commits'
        # own futures for step results.
        self._tasks: dict[asyncio.Future[Any], bool] = {}
        self._closed = False
        self._call: int | None = None

    async def run(self, entrypoint: str | None, event: Any) -> Any:
        """Run ``entrypoint.run(event, step)`` in the worker; returns its value or raises what
        the engine understands (the run's error, RunSuspended, RunCancelled)."""
        details = self._details
        state = details.state

        def message(call: int) -> Run:
            self._call = call
            return Run(
                call,
                entrypoint,
                event,
                details.journal,
                details.now,
                details.limits,
                state.paused,
                state.warm_horizon,
                details.clock.wall,
                # What the instance's logs may still take: the engine's live run knows.
                getattr(self._channel, "log_room", None),
                details.terminating,
            )

        state.add_pause_listener(self._on_pause)
        try:
            result = await self._worker.run(message, self)
        except TenantWorkerError as exc:
            self._closed = True
            await self._settle()
            raise await self._after_death(exc) from None
        except BaseException:
            self._closed = True
            for task in self._tasks:
                task.cancel()
            raise
        self._closed = True
        self._strikes.pop(self._key, None)
        if result.logs:
            self._channel.log(result.logs)
        await self._settle()
        outcome = result.outcome
        if isinstance(outcome, Completed):
            return decode(outcome.output)
        if isinstance(outcome, Failed):
            error = self._described(outcome.error)
            # With the worker's traceback: the run's error records the tenant's frames.
            failure = attach_traceback(rebuild_error(error.name, error.message), error.traceback)
            if outcome.rollback is not None:  # the worker ran the handlers (tenant code)
                attach_rollback(failure, outcome.rollback)
            raise failure
        if isinstance(outcome, Suspended):
            raise RunSuspended(outcome.wake_at, outcome.paused)
        assert isinstance(outcome, Cancelled)
        raise RunCancelled()

    def _described(self, error: ErrorInfo) -> ErrorInfo:
        """``error`` as recorded: Python raises MemoryError with no message, which told the
        tenant nothing; it says what happened and the limit instead."""
        if error.name != "MemoryError" or error.message:
            return error
        worker = self._worker
        limit = worker.limits.memory_mb
        cap = f"limit {limit} MiB" if limit else f"cap {worker.policy.memory_bytes >> 20} MiB"
        message = f"the tenant's worker ran out of memory ({cap})"
        return ErrorInfo(error.name, message, error.traceback)

    def _on_parked(self, message: RunParked) -> None:
        # The worker keeps its quiescent run live for a near wake-up: the host counts it as
        # parked (not holding a concurrency slot, reported as waiting) until it goes on.
        state = self._details.state
        if self._closed:
            return
        # Parked, the run runs no code: a death from now on is none of its doing (its worker
        # killed, or crashed by another run of the tenant), so earlier deaths stop counting.
        self._strikes.pop(self._key, None)
        if not state.parked:
            policy = state.park_policy
            on_unpark = policy(message.wake_at) if policy is not None else None
            # Over the host's bound the run stays live anyway (the worker already decided);
            # it is simply not counted as parked.
            if on_unpark is not None:
                state.park(on_unpark)

    def _on_pause(self, paused: bool) -> None:
        if not self._closed and self._call is not None:
            self._worker.send_pause(self._call, paused)

    # -- the step channel, served ----------------------------------------------------------------

    def on_step_message(self, message: Any) -> None:
        """A step-channel message from the worker (called in arrival order)."""
        if isinstance(message, RunParked):
            self._on_parked(message)
            return
        # Any other message of a parked run's says it went on (see RunParked).
        self._details.state.unpark()
        logs = getattr(message, "logs", None)
        if logs and not self._closed:
            # Before the message itself: a step's lines are stored with its result.
            self._channel.log(logs)
        if isinstance(message, StepAttempt):
            self._open[(message.name, message.count)] = (
                message.attempt,
                message.retry_in,
                message.rollback,
            )
            # (the host's side notes when it began, for the attempt history)
            self._channel.attempt_started(
                message.name, message.count, message.attempt, message.retry_in, message.rollback
            )
            return
        if isinstance(message, StepComplete | StepFail):
            # The attempt is over as far as the sandbox goes: whatever happens to the process
            # now, this commit (not a SandboxError) is its record.
            self._open.pop((message.name, message.count), None)
        if self._closed:
            self._worker.reply(message.id, error=ErrorInfo("RunCancelled", "the run has ended"))
            return
        if isinstance(message, StepComplete):
            # The hot path (a step's result): the commit's future answers the worker itself,
            # with no task of its own.
            try:
                pending = asyncio.ensure_future(
                    self._channel.complete(
                        message.name,
                        message.count,
                        message.value,
                        message.attempt,
                        message.rollback,
                        message.sensitive,
                    )
                )
            except Exception as exc:
                self._worker.reply(message.id, error=_failure(exc))
                return
            pending.add_done_callback(functools.partial(self._committed, message.id))
        else:
            pending = asyncio.ensure_future(self._serve(message))
        self._tasks[pending] = isinstance(message, StepWake)
        pending.add_done_callback(self._tasks.pop)

    def _committed(self, request: int, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            self._strikes.pop(self._key, None)  # progress: earlier deaths stop counting
            self._worker.reply(request, None)
        else:
            self._worker.reply(request, error=_failure(exc))

    async def _serve(self, message: Any) -> None:
        channel = self._channel
        value: Any
        try:
            if isinstance(message, StepFail):
                value = await channel.fail(
                    message.name,
                    message.count,
                    message.attempt,
                    self._described(message.error),
                    message.retry_in,
                    message.rollback,
                    message.sensitive,
                )
            elif isinstance(message, StepSleep):
                value = await channel.sleep(
                    message.name, message.count, message.until, message.seconds
                )
            elif isinstance(message, StepWaitForEvent):
                registration = await channel.wait_for_event(
                    message.name, message.count, message.event_type, message.timeout
                )
                value = [registration.deadline, registration.value]
            elif isinstance(message, StepWake):
                value = await channel.wake(message.name, message.count, message.timer)
            else:
                raise TypeError(f"unexpected step message {type(message).__name__}")
        except asyncio.CancelledError:
            raise
        except (RunCancelled, Exception) as exc:
            self._worker.reply(message.id, error=_failure(exc))
        else:
            self._worker.reply(message.id, value)

    async def _settle(self) -> None:
        # Wake-ups wait on timers and events: nobody needs them once the run is over. Commits
        # in progress must land before the engine records the outcome.
        for task, is_wake in list(self._tasks.items()):
            if is_wake:
                task.cancel()
        pending = list(self._tasks)
        if pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait(pending, timeout=_SETTLE_TIMEOUT)

    async def _after_death(self, exc: TenantWorkerError) -> BaseException:
        """Record the open attempts as failed; the exception for the engine: RunSuspended
        until the earliest retry, or the death itself if no step was running."""
        if not self._open:
            # Outside any step: the worker may have died of another call of the same tenant
            # (replay then succeeds), or of run()'s own code (replay dies the same way). Retry
            # a few times, then fail the run with the reason.
            return death_outside_steps(self._strikes, self._key, exc, self._details.clock.now())
        error = ErrorInfo(SANDBOX_ERROR, str(exc))
        wake_times: list[float] = []
        for (name, count), (attempt, retry_in, rollback) in list(self._open.items()):
            wake_at = await self._channel.fail(name, count, attempt, error, retry_in, rollback)
            if wake_at is not None:
                wake_times.append(wake_at)
        self._open.clear()
        return RunSuspended(min(wake_times) if wake_times else self._details.clock.now(), False)
