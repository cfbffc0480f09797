"""Rollbacks (saga compensation): a step's compensating handler, and the rollback phase.

A step declares a handler with ``@step.do("name", rollback=handler, rollback_config={...})`` or
the chained ``@my_step.rollback`` (Cloudflare's TypeScript ``step.do(name, config, callback,
{rollback, rollbackConfig})``; its Python SDK has no form yet). When ``run()`` raises, or the
instance is terminated with ``rollback``, the handlers of the steps that registered one and
started run in reverse step-start order, each once: each handler's execution is a journal entry
of its own (:data:`~.journal.StepKind.ROLLBACK`, keyed by :func:`~.journal.rollback_count`),
committed and retried exactly like a step's. The chain halts at the first handler that fails
for good; :class:`~.journal.RollbackOutcome` says how it ended.

What the instance's status reports (``rollback``), whichever way the phase began:
``{"outcome": "running"}`` while the handlers run (a terminate with rollback marks it when
asked, :data:`~.transitions.ROLLING_BACK`; a ``run()`` that raised, as its first handler starts,
:func:`~.transitions.begin_rollback`), then how it ended, ``{"outcome": "complete"}`` or
``{"outcome": "failed", "error": ...}``. A plain terminate (without ``rollback``) while the phase
is on stops it: the instance ends ``terminated``, the handlers that had not finished left
unrun, and its ``rollback`` keeps the truth, :data:`~.transitions.ROLLBACK_STOPPED`:
``{"outcome": "failed", "error": {"name": "Terminated", "message": "Instance terminated during
its rollback phase; ..."}}``, as if the chain had halted at a handler that failed.

Nothing here does I/O: :meth:`.step.WorkflowStep.roll_back` drives the handlers through the
run's step channel, in the host and in a sandbox worker alike, and :func:`run_with_rollback`
wraps a ``run()`` so that its error enters the phase.

A run with no handler pays nothing on a step's path: a step without ``rollback`` carries
``None`` where a handler would be, and registers nothing.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, RunCancelled, RunSuspended, WorkflowDefinitionError
from .journal import (
    ErrorInfo,
    JournalEntry,
    RollbackOutcome,
    StepKind,
    StepState,
    rollback_count,
)
from .step_errors import StepError
from .stepconfig import StepConfig, resolve_step_config
from .tracebacks import error_info

if TYPE_CHECKING:
    from .step import WorkflowStep

__all__ = [
    "HANDLER_PARAMETERS",
    "ROLLBACK_PHASE_MESSAGE",
    "TERMINATED_MESSAGE",
    "Registration",
    "RollbackSpec",
    "attach_rollback",
    "handler_body",
    "rollback_of",
    "rollback_pending",
    "rollback_spec",
    "run_with_rollback",
    "terminated_error",
]

HANDLER_PARAMETERS = ("ctx", "output", "error", "step_name")
"""What a handler may ask for by parameter name (a single parameter named otherwise gets all of
it as Cloudflare's ``{"ctx", "output", "error", "stepName"}``)."""

ROLLBACK_PHASE_MESSAGE = "Cannot execute steps during rollback phase"
"""Cloudflare's error for a step (or sleep, or wait) started while handlers run."""

TERMINATED_MESSAGE = "Instance terminated during rollback"
"""The message of the error a terminate with ``rollback`` hands the handlers (name
``Terminated``), as Cloudflare's."""


def terminated_error() -> Exception:
    """The error that triggers the rollback phase of a terminate with ``rollback``."""
    return StepError("Terminated", TERMINATED_MESSAGE)


class RollbackSpec:
    """A step's handler and its own retry and timeout config (validated when declared)."""

    __slots__ = ("config", "func", "params")

    def __init__(self, func: Callable[..., Any], config: StepConfig, params: tuple[str, ...]):
        self.func = func
        self.config = config
        self.params = params


def check_rollback_config(step_name: str, config: object) -> StepConfig:
    """A step's ``rollback_config`` resolved (the keys of a step's config: ``retries`` and
    ``timeout``); a WorkflowDefinitionError names the step and what is wrong."""
    try:
        return resolve_step_config(config, step_name)
    except ConfigurationError as exc:
        # (The step's config and its handler's share their rules; say which one is wrong.)
        message = str(exc).replace(": config", ": rollback_config", 1)
        raise WorkflowDefinitionError(message) from None


def rollback_spec(
    step_name: str, handler: object, config: object, parameters: Callable[[Any], tuple[str, ...]]
) -> RollbackSpec:
    """Check a step's ``rollback`` handler and ``rollback_config`` (the keys of a step's config:
    ``retries`` and ``timeout``); a WorkflowDefinitionError names the step and what is wrong."""
    if not callable(handler):
        raise WorkflowDefinitionError(
            f"step {step_name!r}: rollback must be a function, got {type(handler).__name__}"
        )
    cfg = check_rollback_config(step_name, config)
    try:
        params = parameters(handler)
    except (TypeError, ValueError):
        params = ()
    unknown = [p for p in params if p not in HANDLER_PARAMETERS]
    if unknown and len(params) != 1:
        raise WorkflowDefinitionError(
            f"step {step_name!r}: the rollback handler's parameter(s) {unknown} are not among "
            f"{', '.join(HANDLER_PARAMETERS)} (or one parameter that gets them all as a dict)"
        )
    return RollbackSpec(handler, cfg, params)


class Registration:
    """A step occurrence that registered a handler and started, as this run reached it."""

    __slots__ = ("attempt", "count", "name", "output", "spec", "step_config")

    def __init__(
        self, name: str, count: int, spec: RollbackSpec, attempt: int, step_config: Any
    ) -> None:
        self.name = name
        self.count = count
        self.spec = spec
        self.attempt = attempt
        self.step_config = step_config
        """The step's config as declared (resolved only if its handler runs)."""
        self.output: Any = None

    def context(self, step_config: StepConfig) -> dict[str, Any]:
        """The step's own context, as its body got it: ``{"step", "attempt", "config"}``."""
        return {
            "step": {"name": self.name, "count": self.count},
            "attempt": max(self.attempt, 1),
            "config": step_config.as_dict(),
        }


def handler_body(
    registration: Registration, step_config: StepConfig, error: BaseException
) -> Callable[[], Awaitable[None]]:
    """The body of one attempt of ``registration``'s handler: called with what its parameters
    ask for; its return value is not kept (Cloudflare's handlers return nothing)."""
    spec = registration.spec
    ctx = registration.context(step_config)
    given = {
        "ctx": ctx,
        "output": registration.output,
        "error": error,
        "step_name": registration.name,
    }
    params = spec.params
    if len(params) == 1 and params[0] not in HANDLER_PARAMETERS:
        everything = dict(given)
        everything["stepName"] = everything.pop("step_name")
        args: list[Any] = [everything]
        kwargs: dict[str, Any] = {}
    else:
        args = []
        kwargs = {p: given[p] for p in params}

    async def body() -> None:
        result = spec.func(*args, **kwargs)
        if inspect.isawaitable(result):
            await result

    return body


def rollback_pending(journal: list[JournalEntry]) -> bool:
    """Whether a step of ``journal`` registered a handler that has not run to its end (done,
    or failed for good): what a terminate with rollback has to run, read without tenant code."""
    ended = {
        (e.name, e.count)
        for e in journal
        if e.kind == StepKind.ROLLBACK and e.state in (StepState.DONE, StepState.FAILED)
    }
    return any(
        e.rollback and (e.name, rollback_count(e.count)) not in ended
        for e in journal
        if e.kind == StepKind.DO
    )


_ATTRIBUTE = "__dwf_rollback__"


def attach_rollback(exc: BaseException, outcome: RollbackOutcome) -> BaseException:
    """Note on ``exc`` (the run's error) how the rollback phase it triggered ended."""
    setattr(exc, _ATTRIBUTE, outcome)
    return exc


def rollback_of(exc: BaseException) -> RollbackOutcome | None:
    """How the rollback phase ``exc`` triggered ended (None: no handler was eligible)."""
    outcome = getattr(exc, _ATTRIBUTE, None)
    return outcome if isinstance(outcome, RollbackOutcome) else None


async def run_with_rollback(run: Callable[[], Awaitable[Any]], step: WorkflowStep) -> Any:
    """``await run()``; when it raises an error (not a suspension or a stop), the handlers
    registered on ``step`` run first, and the error is re-raised with the phase's outcome
    attached (:func:`rollback_of`)."""
    try:
        return await run()
    except (RunSuspended, RunCancelled, asyncio.CancelledError):
        raise
    except Exception as exc:
        if rollback_of(exc) is None:
            try:
                outcome = await step.roll_back(exc)
            except Exception as broke:  # (the step limit, say): the run's error stays its own
                info = error_info(broke)
                outcome = RollbackOutcome("failed", ErrorInfo(info.name, info.message))
            if outcome is not None:
                attach_rollback(exc, outcome)
        raise
