"""The ``step`` object a workflow's ``run(event, step)`` receives, and the replay logic behind it.

Nothing here does I/O. Every durable effect goes through a
:class:`~dynamic_workflows.core.channel.StepChannel` (the engine in-process, or a socket from a
sandbox), and every completed step is answered from the
:class:`~dynamic_workflows.core.journal.JournalEntry` list sent with the run, with no round trip.

A step costs one call on the channel (its result, committed before the call returns). Sleeps,
event waits and retry back-offs are registered on the channel and then *block* on
``channel.wake``; when every live branch of the run is blocked, the run is *quiescent* and
:func:`dynamic_workflows.core.replay.drive` unwinds it so the instance hibernates.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import inspect
import types
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from typing import Any

from ..errors import (
    ConfigurationError,
    LimitExceededError,
    RunCancelled,
    WorkflowDefinitionError,
)
from .channel import StepChannel
from .clock import Clock
from .codec import SerializationError, decode, encode
from .durations import MAX_SLEEP_SECONDS, parse_duration, parse_timestamp
from .guard import AttemptGuard
from .journal import (
    ErrorInfo,
    JournalEntry,
    RollbackOutcome,
    StepKind,
    StepState,
    rollback_count,
)
from .limits import (
    DEFAULT_LIMITS,
    Limits,
    check_event_type,
    check_step_name,
    check_step_result,
)
from .logs import current_step
from .rollback import (
    ROLLBACK_PHASE_MESSAGE,
    Registration,
    RollbackSpec,
    check_rollback_config,
    handler_body,
    rollback_spec,
    terminated_error,
)
from .step_errors import (
    NonRetryableDelayError,
    NonRetryableError,
    WorkflowTimeoutError,
    error_name,
    rebuild_error,
)
from .stepconfig import DELAY_FUNCTION_TIMEOUT, StepConfig, resolve_step_config
from .tracebacks import attach_traceback, error_info

__all__ = ["RunDetails", "RunState", "StepFunction", "WorkflowStep"]

_SETTLE_ROUNDS = 4
"""Loop iterations a run must stay blocked before it counts as quiescent: tenant code between two
steps runs synchronously or awaits only other steps, so a few rounds are enough to see it start
its next step."""


class RunState:
    """Bookkeeping of one live run: which branches are working and which are blocked.

    The host flips ``paused`` through :meth:`set_paused`; ``closed`` makes every further step call
    raise :class:`RunCancelled` (the run was unwound or stopped)."""

    def __init__(self) -> None:
        self.active = 0
        self.blocked = 0
        self._generation = 0
        self._wakes: dict[int, float | None] = {}
        self._next_token = 0
        self._paused_blocked = 0
        self.paused = False
        self.closed = False
        self._resumed = asyncio.Event()
        self._resumed.set()
        self.quiescent = asyncio.Event()
        self._settling = False
        self._listeners: list[Callable[[bool], None]] = []
        self.parked = False
        self._on_unpark: Callable[[], None] | None = None
        # Whether a quiescent run may park (see replay.drive); a host also passes the horizon on
        # to a run whose code runs elsewhere (a sandbox), which parks by itself and reports it.
        self.warm_horizon = 0.0
        self.park_policy: Callable[[float | None], Callable[[], None] | None] | None = None

    # -- transitions ---------------------------------------------------------------------------

    def begin_active(self) -> None:
        if self.closed:  # (_check_open, inline: every step attempt passes here)
            raise RunCancelled()
        if self.parked:
            self.unpark()
        self.active += 1
        self._generation += 1

    def end_active(self) -> None:
        self.active -= 1
        self._generation += 1
        if self.active == 0 and self.blocked > 0:
            self._maybe_settle()

    def begin_blocked(self, wake_at: float | None, *, by_pause: bool = False) -> int:
        self._check_open()
        token = self._next_token
        self._next_token += 1
        self._wakes[token] = wake_at
        self.blocked += 1
        if by_pause:
            self._paused_blocked += 1
        self._generation += 1
        self._maybe_settle()
        return token

    def end_blocked(self, token: int, *, by_pause: bool = False) -> None:
        del self._wakes[token]
        self.blocked -= 1
        if by_pause:
            self._paused_blocked -= 1
        self._generation += 1

    def _check_open(self) -> None:
        if self.closed:
            raise RunCancelled()

    # -- pause -----------------------------------------------------------------------------------

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        if paused:
            self._resumed.clear()
        else:
            self._resumed.set()
        for listener in list(self._listeners):
            listener(paused)
        if paused and self.parked:
            # A parked run is kept warm only while it may go on by itself: a pause hibernates it.
            self._maybe_settle()

    # -- parking ---------------------------------------------------------------------------------

    def park(self, on_unpark: Callable[[], None] | None = None) -> None:
        """The run is quiescent but kept live (warm) because its next wake-up is near:
        ``on_unpark`` is called once, when a branch starts work again or the run ends."""
        self.parked = True
        self._on_unpark = on_unpark

    def unpark(self) -> None:
        if not self.parked:
            return
        self.parked = False
        callback, self._on_unpark = self._on_unpark, None
        if callback is not None:
            callback()

    def add_pause_listener(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(paused)`` on every pause/resume (a sandbox bridge forwards them)."""
        self._listeners.append(listener)

    async def pause_gate(self) -> None:
        """Hold a branch that is about to start new work while the instance is paused."""
        if not self.paused:
            self._check_open()
            return
        token = self.begin_blocked(None, by_pause=True)
        try:
            await self._resumed.wait()
        finally:
            self.end_blocked(token, by_pause=True)
        self._check_open()

    # -- quiescence -------------------------------------------------------------------------------

    def wake_at(self) -> float | None:
        """When the earliest blocked branch can go on (None: only an event or resume)."""
        times = [t for t in self._wakes.values() if t is not None]
        return min(times) if times else None

    @property
    def held_by_pause(self) -> bool:
        return self._paused_blocked > 0

    def _maybe_settle(self) -> None:
        if self.active == 0 and self.blocked > 0 and not self._settling:
            self._settling = True
            asyncio.get_running_loop().call_soon(self._settle, self._generation, _SETTLE_ROUNDS)

    def _settle(self, generation: int, rounds: int) -> None:
        if self.active != 0 or self.blocked == 0:
            self._settling = False
            return
        if generation != self._generation:
            # Something moved; start counting again from here.
            asyncio.get_running_loop().call_soon(self._settle, self._generation, _SETTLE_ROUNDS)
            return
        if rounds > 0:
            asyncio.get_running_loop().call_soon(self._settle, generation, rounds - 1)
            return
        self._settling = False
        self.quiescent.set()


class StepFunction:
    # What ``@step.do(...)`` returns: awaiting ``fn()`` runs (or replays) the step. (A comment,
    # not a docstring: ``__doc__`` is the decorated function's, as ``__name__`` is.) Slots: one
    # is made per step per run, and every object a waking run makes is one more for the
    # garbage collector to walk. It is given the function that runs it (its step's, one bound
    # method per run) rather than its step, and hands that function what it was declared with.

    __slots__ = (
        "_concurrent",
        "_config",
        "_depends",
        "_func",
        "_rollback",
        "_rollback_config",
        "_run",
        "_step_name",
    )

    def __init__(
        self,
        run: _StepCall,
        name: str,
        func: Callable[..., Any],
        depends: list[StepFunction] | None,
        concurrent: bool,
        config: Any,
        rollback: RollbackSpec | None = None,
        rollback_config: Any = None,
    ) -> None:
        self._run = run
        self._step_name = name
        self._func = func
        self._depends = depends
        self._concurrent = concurrent
        self._config = config
        self._rollback = rollback
        # ``step.do(..., rollback_config=...)`` without ``rollback=``: the config of a handler
        # attached later with ``@my_step.rollback`` (the README's form), which needs one.
        self._rollback_config = rollback_config

    @property
    def __name__(self) -> str:
        return str(getattr(self._func, "__name__", self._step_name))

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return getattr(self._func, "__doc__", None)

    @property
    def step_name(self) -> str:
        return self._step_name

    def __call__(self) -> Awaitable[Any]:
        if self._rollback is None and self._rollback_config is not None:
            raise WorkflowDefinitionError(
                f"step {self._step_name!r}: rollback_config is given without a rollback handler "
                f"(pass rollback=... to step.do, or attach one with @{self.__name__}.rollback)"
            )
        return self._run(
            self._step_name,
            self._func,
            self._depends,
            self._concurrent,
            self._config,
            self._rollback,
        )

    def rollback(
        self, handler: Callable[..., Any] | None = None, *, config: dict[str, Any] | None = None
    ) -> Any:
        """Attach the step's rollback handler: ``@my_step.rollback`` or
        ``@my_step.rollback(config={...})`` over a (sync or async) function; what
        ``step.do(..., rollback=handler, rollback_config=config)`` does (see
        :mod:`dynamic_workflows.core.rollback`). Returns the handler."""

        def attach(func: Callable[..., Any]) -> Callable[..., Any]:
            if config is not None and self._rollback_config is not None:
                raise WorkflowDefinitionError(
                    f"step {self._step_name!r}: the rollback config is given twice (in step.do's "
                    "rollback_config and in .rollback(config=...)); give it once"
                )
            cfg = config if config is not None else self._rollback_config
            self._rollback = rollback_spec(self._step_name, func, cfg, _parameter_names)
            return func

        if handler is None:
            return attach
        return attach(handler)

    def __repr__(self) -> str:
        return f"<step {self._step_name!r}>"


_StepCall = Callable[
    [str, Callable[..., Any], list[StepFunction] | None, bool, Any, RollbackSpec | None],
    Awaitable[Any],
]
"""What runs a declared step: ``(name, func, depends, concurrent, config, rollback)`` -> its
result."""


class RunDetails:
    """What one wake-up of a run was given, as one object: the hand-off across the sandbox seam
    (as temporal's ``WorkflowInstanceDetails``).

    The host's step hands it out (:meth:`WorkflowStep.run_details`); the sandbox bridge sends
    its journal, ``now``, limits and clock kind to the worker (which builds its own step from
    them), serves the worker's step requests on ``channel`` and reports to ``state``."""

    __slots__ = ("channel", "clock", "journal", "limits", "now", "state", "terminating")

    def __init__(
        self,
        channel: StepChannel,
        journal: list[JournalEntry],
        clock: Clock,
        now: float,
        limits: Limits,
        state: RunState,
        terminating: bool = False,
    ) -> None:
        self.channel = channel
        """Where the run's durable effects go (the engine's live run)."""
        self.journal = journal
        """The steps recorded before this wake-up, answered without a round trip."""
        self.clock = clock
        self.now = now
        """The host's clock reading when this wake-up began (replays compare wake-ups with it)."""
        self.limits = limits
        self.state = state
        """The run's bookkeeping (pause, parking) on the host."""
        self.terminating = terminating
        """The instance is being terminated with rollback (see :mod:`.rollback`)."""


_CTX = object()


class WorkflowStep:
    """The ``step`` argument of ``run(event, step)``.

    Source-compatible with Cloudflare's Python Workflows SDK: ``@step.do(...)``,
    ``step.sleep``, ``step.sleep_until`` and ``step.wait_for_event``.
    """

    def __init__(
        self,
        channel: StepChannel,
        journal: Iterable[JournalEntry],
        *,
        clock: Clock,
        now: float,
        state: RunState | None = None,
        limits: Limits = DEFAULT_LIMITS,
        guard: AttemptGuard | None = None,
        terminating: bool = False,
        logs: bool = True,
    ) -> None:
        self._channel = channel
        # Stops a body that never yields (a sandbox's); see core/guard.py.
        self._guard = guard
        # Whether each attempt is marked for log capture (core/logs.current_step): only where
        # what the run prints is captured (see capture_logs).
        self._logs = logs
        self._journal = {(e.name, e.count): e for e in journal}
        self._clock = clock
        self._now = now
        self.state = state or RunState()
        self._limits = limits
        self._counts: dict[str, int] = {}
        self._steps_used = len(self._journal)
        # Recorded steps not reached yet in this run (see `replaying`).
        self._unreplayed = len(self._journal)
        self._closures: dict[str, StepFunction] = {}
        self._memo: dict[str, Any] = {}
        self._in_flight: dict[str, object] = {}
        self._waiters: dict[object, asyncio.Future[Any]] = {}
        # What every StepFunction of this run calls: one bound method per run, not per step.
        self._run_function: _StepCall = self._call_step_function
        # Rollbacks (core/rollback.py): the steps that registered a handler, in the order this
        # run started (or replayed) them, made when the first registers; and what a step
        # started now meets: None, or the error that stops it (the rollback phase is on, or
        # the instance is being terminated with rollback and this is past what it finished).
        self._registry: list[Registration] | None = None
        self._terminating = terminating
        self._blocked_by: str | None = None

    # -- public API -------------------------------------------------------------------------------

    def do(
        self,
        name: str | Callable[..., Any] | None = None,
        depends: list[StepFunction] | None = None,
        concurrent: bool = False,
        config: dict[str, Any] | None = None,
        *,
        rollback: Callable[..., Any] | None = None,
        rollback_config: dict[str, Any] | None = None,
    ) -> Any:
        """Declare a step: ``@step.do("name", config=...)`` over an (async) function.

        Parameters of the function named like an earlier step receive that step's result; a
        parameter named ``ctx`` receives ``{"step": {"name", "count"}, "attempt", "config"}``.
        The legacy form ``@step.do("name", depends=[a, b])`` passes results positionally.

        ``rollback``: a handler run if the instance fails (or is terminated with rollback)
        after this step started, with its own ``rollback_config`` (``retries``, ``timeout``);
        see :mod:`dynamic_workflows.core.rollback`.
        """
        func = None
        if callable(name) and not isinstance(name, str):
            func, name = name, None
        if name is not None:
            check_step_name(name, self._limits)
        if depends is not None and not isinstance(depends, list | tuple):
            raise WorkflowDefinitionError("step.do(depends=...) must be a list of steps")
        if func is not None:
            return self._define(name, depends, concurrent, config, rollback, rollback_config, func)
        # The decorator: a partial, not a closure (which would make a cell per argument; every
        # run makes one per step it declares).
        return functools.partial(
            self._define, name, depends, concurrent, config, rollback, rollback_config
        )

    async def sleep(self, name: str, duration: Any) -> None:
        """Sleep durably for ``duration`` (ms, ``"N unit"`` or timedelta), up to 365 days."""
        check_step_name(name, self._limits)
        seconds = parse_duration(duration, what=f"step.sleep({name!r}) duration")
        if seconds > MAX_SLEEP_SECONDS:
            raise WorkflowDefinitionError(
                f"step.sleep({name!r}): {seconds:.0f} s is longer than the 365-day limit"
            )
        await self._sleep(name, None, seconds)

    async def sleep_until(self, name: str, timestamp: Any) -> None:
        """Sleep durably until ``timestamp`` (datetime, ISO string or epoch ms)."""
        check_step_name(name, self._limits)
        until = parse_timestamp(timestamp, what=f"step.sleep_until({name!r}) timestamp")
        await self._sleep(name, until, 0.0)

    async def wait_for_event(
        self,
        name: str,
        event_type: str | None = None,
        /,
        timeout: Any = "24 hours",
        *,
        type: str | None = None,
    ) -> dict[str, Any]:
        """Wait for an event of ``event_type`` sent to this instance; returns
        ``{"payload", "timestamp", "type"}``. Raises WorkflowTimeoutError after ``timeout``."""
        check_step_name(name, self._limits)
        event_type = check_event_type(event_type if event_type is not None else type)
        seconds = parse_duration(timeout, what=f"step.wait_for_event({name!r}) timeout")
        if seconds > MAX_SLEEP_SECONDS:
            raise WorkflowDefinitionError(
                f"step.wait_for_event({name!r}): timeout is longer than the 365-day limit"
            )
        count = self._next_count(name)
        if self._blocked_by is not None:
            raise self._blocked()
        entry = self._replayed(name, count, StepKind.WAIT)
        if entry is not None and entry.state == StepState.DONE:
            return _event_dict(entry.value)
        if entry is not None and entry.state == StepState.FAILED:
            # Only a timeout fails a wait. Raise the error the first run raised (the stored
            # record, written by the host when the deadline passed, knows less about the wait).
            raise _wait_timed_out(name, seconds, event_type)
        if self._terminating:
            raise self._blocked(terminating=True)
        if entry is not None:
            value = await self._block(name, count, entry.wake_at)
        else:
            await self.state.pause_gate()
            self.state.begin_active()
            try:
                registration = await self._channel.wait_for_event(name, count, event_type, seconds)
            finally:
                self.state.end_active()
            value = registration.value
            if value is None:
                value = await self._block(name, count, registration.deadline)
        if value is None:
            raise _wait_timed_out(name, seconds, event_type)
        return _event_dict(value)

    # -- rollbacks (core/rollback.py) ----------------------------------------------------------

    async def roll_back(self, error: BaseException) -> RollbackOutcome | None:
        """The rollback phase, after ``run()`` raised ``error``: the handlers of the steps that
        registered one, in reverse start order, each as a journal entry of its own (one already
        done is skipped); halts at the first that fails for good. None when no step registered
        a handler. Steps started meanwhile raise (Cloudflare's rule)."""
        registry = self._registry
        if not registry:
            return None
        self._registry = None
        self._blocked_by = ROLLBACK_PHASE_MESSAGE
        for registration in reversed(registry):
            name, count = registration.name, rollback_count(registration.count)
            entry = self._replayed(name, count, StepKind.ROLLBACK)
            if entry is not None:
                if entry.state == StepState.DONE:
                    continue
                if entry.state == StepState.FAILED:
                    return RollbackOutcome("failed", _brief(entry.error))
            step_config = resolve_step_config(registration.step_config, name)
            body = handler_body(registration, step_config, error)
            spec = registration.spec
            try:
                await self._execute(name, count, entry, spec.config, body, (), None)
            except Exception as exc:
                info = error_info(exc)
                return RollbackOutcome("failed", ErrorInfo(info.name, info.message))
        return RollbackOutcome("complete")

    def _register(
        self,
        name: str,
        count: int,
        spec: RollbackSpec,
        entry: JournalEntry | None,
        config: Any,
    ) -> Registration:
        attempt = 0 if entry is None else entry.attempt
        registration = Registration(name, count, spec, attempt, config)
        if self._registry is None:
            self._registry = []
        self._registry.append(registration)
        return registration

    def _blocked(self, *, terminating: bool = False) -> Exception:
        if terminating:
            # Everything after this is the rollback phase's (whatever the tenant does with it).
            self._terminating = False
            self._blocked_by = ROLLBACK_PHASE_MESSAGE
            return terminated_error()
        return WorkflowDefinitionError(self._blocked_by or ROLLBACK_PHASE_MESSAGE)

    # -- the hand-off to a runner elsewhere --------------------------------------------------------

    def run_details(self) -> RunDetails:
        """What this run was given, for code that runs it somewhere else (the sandbox bridge):
        not part of the workflow API. Made when asked, so a run in the host pays nothing."""
        return RunDetails(
            self._channel,
            list(self._journal.values()),
            self._clock,
            self._now,
            self._limits,
            self.state,
            self._terminating,
        )

    def capture_logs(self) -> None:
        """What this run prints or logs is captured from now on: mark each step attempt for it
        (:data:`~.logs.current_step`). For the code that installs the capture (the in-process
        loader), for a step made with ``logs=False``; not part of the workflow API."""
        self._logs = True

    @property
    def replaying(self) -> bool:
        """Whether this run is still going over steps it recorded before (some recorded step is
        not reached yet): what ``run()`` prints meanwhile was printed by an earlier run already
        (the logs keep it once). Not part of the workflow API."""
        return self._unreplayed > 0

    # -- step declaration and dependency resolution --------------------------------------------

    def _define(
        self,
        name: str | None,
        depends: list[StepFunction] | None,
        concurrent: bool,
        config: Any,
        rollback: Callable[..., Any] | None,
        rollback_config: Any,
        func: Callable[..., Any],
    ) -> StepFunction:
        """What ``@step.do(...)`` makes of ``func`` (the arguments checked by :meth:`do`)."""
        if not callable(func):
            raise WorkflowDefinitionError("@step.do(...) must decorate a function")
        step_name = name if name is not None else check_step_name(func.__name__)
        if rollback is None and rollback_config is not None:
            # Checked now (a mistake is named at once); the handler comes later, with
            # ``@my_step.rollback``, and must come before the step runs (__call__).
            check_rollback_config(step_name, rollback_config)
        spec = (
            None
            if rollback is None
            else rollback_spec(step_name, rollback, rollback_config, _parameter_names)
        )
        fn = StepFunction(
            self._run_function,
            step_name,
            func,
            list(depends) if depends is not None else None,
            concurrent,
            config,
            spec,
            rollback_config if rollback is None else None,
        )
        self._closures[step_name] = fn
        return fn

    def _dependencies(
        self, name: str, func: Callable[..., Any], depends: list[StepFunction] | None
    ) -> Sequence[Any]:
        params = _parameter_names(func)
        if not params and not depends:
            return ()
        deps: list[Any] = []
        if depends is None:
            for param in params:
                if param == "ctx":
                    deps.append(_CTX)
                elif param in self._closures:
                    deps.append(self._closures[param])
                else:
                    raise WorkflowDefinitionError(
                        f"step {name!r}: received unexpected parameter {param!r} "
                        "(parameters must be named like an earlier step, or ctx)"
                    )
            return deps
        others = [param for param in params if param != "ctx"]
        if len(others) != len(depends):
            raise WorkflowDefinitionError(
                f"step {name!r} declares {len(others)} non-ctx parameter(s) but "
                f"depends has {len(depends)} item(s)"
            )
        queue = list(depends)
        for param in params:
            deps.append(_CTX if param == "ctx" else queue.pop(0))
        return deps

    async def _resolve(self, dep: Any) -> Any:
        if dep is _CTX:
            return _CTX
        if not isinstance(dep, StepFunction):
            raise WorkflowDefinitionError(f"depends: {dep!r} is not a step")
        if dep.step_name in self._memo:
            return self._memo[dep.step_name]
        token = self._in_flight.get(dep.step_name)
        if token is not None:
            waiter = self._waiters.get(token)
            if waiter is None:
                waiter = self._waiters[token] = asyncio.get_running_loop().create_future()
            return await waiter
        return await dep()

    async def _call_step_function(
        self,
        name: str,
        func: Callable[..., Any],
        depends: list[StepFunction] | None,
        concurrent: bool,
        config: Any,
        rollback: RollbackSpec | None = None,
    ) -> Any:
        deps = self._dependencies(name, func, depends)
        args: Sequence[Any] = deps
        if deps and concurrent:
            args = list(await asyncio.gather(*(self._resolve(d) for d in deps)))
        elif deps:
            args = [await self._resolve(d) for d in deps]
        # While the step runs, a step that depends on it awaits it rather than running it again;
        # the future it awaits is made only when one does (see _resolve).
        token = object()
        self._in_flight[name] = token
        try:
            result = await self._do(name, config, func, args, rollback)
        except BaseException as exc:
            waiter = self._waiters.pop(token, None)
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)
                waiter.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        else:
            waiter = self._waiters.pop(token, None) if self._waiters else None
            if waiter is not None and not waiter.done():  # (a cancelled dependent cancels it)
                waiter.set_result(result)
            self._memo[name] = result
            return result
        finally:
            # Another occurrence of the same step may have started meanwhile (gathered calls of
            # one step function): its entry is not ours to remove.
            if self._in_flight.get(name) is token:
                del self._in_flight[name]

    # -- the durable operations ----------------------------------------------------------------

    def _next_count(self, name: str) -> int:
        count = self._counts.get(name, 0) + 1
        self._counts[name] = count
        return count

    def _replayed(self, name: str, count: int, kind: str) -> JournalEntry | None:
        entry = self._journal.get((name, count))
        if entry is None:
            self._steps_used += 1
            if self._steps_used > self._limits.max_steps:
                raise LimitExceededError(
                    f"step {name!r}: the instance would exceed the limit of "
                    f"{self._limits.max_steps:,} steps"
                )
            return None
        self._unreplayed -= 1
        if entry.kind != kind:
            raise WorkflowDefinitionError(
                f"step {name!r} (occurrence {count}) was a {entry.kind!r} step when it ran "
                f"before and is a {kind!r} step now: step names must be deterministic"
            )
        return entry

    async def _do(
        self,
        name: str,
        config: Any,
        func: Callable[..., Any],
        args: Sequence[Any],
        rollback: RollbackSpec | None = None,
    ) -> Any:
        # (_next_count, inline: every step passes here)
        counts = self._counts
        count = counts[name] = counts.get(name, 0) + 1
        if self._blocked_by is not None:
            raise self._blocked()
        entry = self._replayed(name, count, StepKind.DO)
        registration = None
        if rollback is not None:
            registration = self._register(name, count, rollback, entry, config)
        if entry is not None:
            if entry.state == StepState.DONE:
                value = decode(entry.value or b"null")
                if registration is not None:
                    registration.output = value
                return value
            if entry.state == StepState.FAILED:
                raise _rebuild(entry.error)
        if self._terminating:
            # Terminated with rollback: what the instance had not finished does not run.
            raise self._blocked(terminating=True)
        cfg = resolve_step_config(config, name)
        value = await self._execute(name, count, entry, cfg, func, args, registration)
        if registration is not None:
            registration.output = value
        return value

    async def _execute(
        self,
        name: str,
        count: int,
        entry: JournalEntry | None,
        cfg: StepConfig,
        func: Callable[..., Any],
        args: Sequence[Any],
        registration: Registration | None,
    ) -> Any:
        """Run the attempts of a step (or of a rollback handler: ``count`` < 0) from where its
        journal ``entry`` left off, through the channel; its value, or raise its error."""
        attempt = 0
        if entry is not None:
            attempt = entry.attempt
            if entry.wake_at is not None and entry.wake_at > self._now:
                await self._block(name, count, entry.wake_at, timer=True)
        flagged = registration is not None
        state = self.state
        channel = self._channel
        guard = self._guard
        while True:
            attempt += 1
            if state.paused:
                await state.pause_gate()
            state.begin_active()
            if registration is not None:
                registration.attempt = attempt
            token = None if guard is None else guard.begin(cfg.timeout)
            # What the attempt prints or logs is its own (core/logs.py), in this task only.
            attempt_key = current_step.set((name, count, attempt)) if self._logs else None
            try:
                channel.attempt_started(
                    name,
                    count,
                    attempt,
                    cfg.first_retry_in
                    if attempt == 1
                    else None
                    if attempt > cfg.retry_limit
                    else cfg.delay_before(attempt + 1),
                    flagged,
                )
                outcome = self._attempt(name, count, attempt, cfg, func, args)
                if not isinstance(outcome, bytes | _AttemptFailed):
                    outcome = await outcome
                if token is not None and guard is not None:
                    guard.end(token)
                    token = None
                if not isinstance(outcome, _AttemptFailed):
                    # The result is handed to the host in the next loop iteration: runs woken
                    # together (sleepers due at one instant) all start their bodies first, and
                    # their writes still share one commit.
                    await _next_iteration()
                    if flagged or cfg.sensitive:
                        await channel.complete(
                            name, count, outcome, attempt, flagged, cfg.sensitive
                        )
                    else:  # the call a step without either option has always made
                        await channel.complete(name, count, outcome, attempt)
                    return decode(outcome)
                retry_in: float | None = None
                if outcome.final or attempt > cfg.retry_limit:
                    pass
                elif cfg.delay_fn is None:
                    retry_in = cfg.delay_before(attempt + 1)
                else:
                    delay = await self._dynamic_delay(name, count, attempt, cfg, outcome)
                    if isinstance(delay, _AttemptFailed):
                        outcome = delay
                    else:
                        retry_in = delay
                if flagged or cfg.sensitive:
                    wake_at = await channel.fail(
                        name, count, attempt, outcome.info, retry_in, flagged, cfg.sensitive
                    )
                else:
                    wake_at = await channel.fail(name, count, attempt, outcome.info, retry_in)
                if retry_in is None or wake_at is None:
                    # Raise what a replay would raise, so first run and replays behave alike.
                    raise _rebuild(outcome.info) from outcome.exception
            finally:
                if token is not None and guard is not None:
                    guard.end(token)
                if attempt_key is not None:
                    current_step.reset(attempt_key)
                state.end_active()
            await self._block(name, count, wake_at, timer=True)

    async def _dynamic_delay(
        self, name: str, count: int, attempt: int, cfg: StepConfig, failed: _AttemptFailed
    ) -> float | _AttemptFailed:
        """Seconds before the next attempt, from the step's delay function (asked about the
        failed ``attempt`` and its error, then scaled by the back-off); or, when the function
        raises, runs past :data:`DELAY_FUNCTION_TIMEOUT` or returns no duration, the step's
        end: a NonRetryableDelayError, as on Cloudflare. It runs here, where the step runs (in
        a sandboxed run, in the tenant's worker)."""
        ctx = {"step": {"name": name, "count": count}, "attempt": attempt, "config": cfg.as_dict()}
        try:
            value = cfg.delay_call(ctx, failed.exception)
            if inspect.isawaitable(value):
                value = await self._under_timeout(value, DELAY_FUNCTION_TIMEOUT)
        except TimeoutError:
            problem = f"did not return within {DELAY_FUNCTION_TIMEOUT:g} seconds"
        except Exception as exc:
            problem = f"threw an error: {error_name(exc)}: {exc}"
        else:
            try:
                return cfg.scaled(parse_duration(value), attempt)
            except ConfigurationError:
                problem = (
                    f"returned an invalid delay value {value!r} (expected a number of ms or a "
                    'duration string like "30 seconds")'
                )
        error = NonRetryableDelayError(f'The delay function for step "{name}" {problem}')
        return _AttemptFailed(error, final=True)

    def _attempt(
        self,
        name: str,
        count: int,
        attempt: int,
        cfg: StepConfig,
        func: Callable[..., Any],
        args: Sequence[Any],
    ) -> bytes | _AttemptFailed | Awaitable[bytes | _AttemptFailed]:
        """Run one attempt of the step's body: its serialised result, or how it failed, or, if
        the body suspends, an awaitable of either.

        A plain method, not a coroutine: an ``async def`` body that returns without awaiting
        anything (a step that only computes, or reads the clock) is stepped once by hand and
        finishes here, with no coroutine of ours around it and before any deadline could
        cancel it; only a body that suspends pays for its timeout."""
        if args:
            ctx = {
                "step": {"name": name, "count": count},
                "attempt": attempt,
                "config": cfg.as_dict(),
            }
            args = [ctx if a is _CTX else a for a in args]
        try:
            result = func(*args)
            if type(result) is types.CoroutineType:
                try:
                    yielded = result.send(None)
                except StopIteration as stop:
                    result = stop.value
                else:
                    return self._attempt_rest(name, _resume(result, yielded), cfg)
            elif inspect.isawaitable(result):
                return self._attempt_rest(name, result, cfg)
        except Exception as exc:
            return _attempt_failed(exc, cfg)
        return self._serialised(name, result)

    async def _attempt_rest(
        self, name: str, awaitable: Awaitable[Any], cfg: StepConfig
    ) -> bytes | _AttemptFailed:
        """The rest of an attempt whose body suspended, under the step's timeout."""
        try:
            result = await self._under_timeout(awaitable, cfg.timeout)
        except Exception as exc:
            return _attempt_failed(exc, cfg)
        return self._serialised(name, result)

    def _serialised(self, name: str, result: Any) -> bytes | _AttemptFailed:
        try:
            data = encode(result)
        except SerializationError as exc:
            # A retry cannot make the value serialisable: fail at once.
            return _AttemptFailed(
                NonRetryableError(
                    f"step {name!r} returned a value that cannot be serialised: {exc}"
                ),
                final=True,
            )
        try:
            return check_step_result(data, name, self._limits)
        except LimitExceededError as exc:
            return _AttemptFailed(NonRetryableError(str(exc)), final=True)

    async def _under_timeout(self, awaitable: Awaitable[Any], timeout: float) -> Any:
        deadline = self._clock.timeout_at(self._clock.now() + timeout)
        deadline.start()
        try:
            value = await awaitable
        except BaseException as exc:
            deadline.finish(isinstance(exc, asyncio.CancelledError))
            raise
        deadline.finish(False)
        return value

    async def _sleep(self, name: str, until: float | None, seconds: float) -> None:
        count = self._next_count(name)
        if self._blocked_by is not None:
            raise self._blocked()
        entry = self._replayed(name, count, StepKind.SLEEP)
        if entry is not None:
            if entry.state == StepState.DONE:
                return
            wake_at = entry.wake_at or 0.0
            if wake_at <= self._now:
                return
            if self._terminating:
                raise self._blocked(terminating=True)
        elif self._terminating:
            raise self._blocked(terminating=True)
        else:
            await self.state.pause_gate()
            self.state.begin_active()
            try:
                wake_at = await self._channel.sleep(name, count, until, seconds)
            finally:
                self.state.end_active()
        await self._block(name, count, wake_at, timer=True)

    async def _block(
        self, name: str, count: int, wake_at: float | None, *, timer: bool = False
    ) -> bytes | None:
        token = self.state.begin_blocked(wake_at)
        try:
            return await self._channel.wake(name, count, wake_at if timer else None)
        finally:
            self.state.end_blocked(token)


@types.coroutine
def _next_iteration() -> Generator[None, None, None]:
    """Await this to go on in the loop's next iteration, after what is already scheduled."""
    yield


@types.coroutine
def _resume(coro: types.CoroutineType[Any, Any, Any], yielded: Any) -> Any:
    """Go on awaiting ``coro``, which was stepped once by hand and yielded ``yielded``: what
    ``await coro`` (``yield from``) does, from its second step on."""
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


def _attempt_failed(exc: Exception, cfg: StepConfig) -> _AttemptFailed:
    """What an attempt that raised ``exc`` comes to."""
    if isinstance(exc, TimeoutError):
        err = WorkflowTimeoutError(f"Execution timed out after {int(cfg.timeout * 1000)}ms")
        return _AttemptFailed(err, final=False)
    return _AttemptFailed(exc, final=isinstance(exc, NonRetryableError))


class _AttemptFailed:
    __slots__ = ("exception", "final", "info")

    def __init__(self, exception: Exception, *, final: bool) -> None:
        self.exception = exception
        self.final = final
        self.info = error_info(exception)


@functools.lru_cache(maxsize=2048)
def _code_parameter_names(code: types.CodeType) -> tuple[str, ...]:
    # A pure function of the code object, bounded: a step's function is a new closure on every
    # run and loop iteration but its code is shared, and inspect.signature on every step call
    # was the largest cost of the step path in the profile.
    positional = code.co_argcount
    named = positional + code.co_kwonlyargcount
    names = list(code.co_varnames[:named])
    extra = named
    if code.co_flags & inspect.CO_VARARGS:
        names.insert(positional, code.co_varnames[extra])
        extra += 1
    if code.co_flags & inspect.CO_VARKEYWORDS:
        names.append(code.co_varnames[extra])
    return tuple(names)


def _parameter_names(func: Callable[..., Any]) -> tuple[str, ...]:
    if type(func) is types.FunctionType and not hasattr(func, "__wrapped__"):
        return _code_parameter_names(func.__code__)
    return tuple(inspect.signature(func).parameters)


def _rebuild(error: ErrorInfo | None) -> Exception:
    if error is None:
        return rebuild_error("Error", "step failed")
    # With the traceback recorded: a run that lets it escape records the same on every replay.
    return attach_traceback(rebuild_error(error.name, error.message), error.traceback)


def _brief(error: ErrorInfo | None) -> ErrorInfo:
    if error is None:
        return ErrorInfo("Error", "rollback failed")
    return ErrorInfo(error.name, error.message)


def _wait_timed_out(name: str, seconds: float, event_type: str) -> WorkflowTimeoutError:
    return WorkflowTimeoutError(
        f'step.wait_for_event("{name}") timed out after {int(seconds * 1000)}ms '
        f'waiting for an event of type "{event_type}"'
    )


def _event_dict(value: bytes | None) -> dict[str, Any]:
    record = decode(value or b"{}")
    return {
        "payload": record.get("payload"),
        "timestamp": _dt.datetime.fromtimestamp(record.get("timestamp", 0.0), _dt.UTC),
        "type": record.get("type"),
    }
