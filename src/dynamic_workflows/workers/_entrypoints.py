"""The entrypoint base classes and the objects handed to them (``env``, ``ctx``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator, Mapping
from typing import Any

__all__ = ["Env", "ExecutionContext", "WorkerEntrypoint", "WorkflowEntrypoint"]


class Env(Mapping[str, Any]):
    """A worker's bindings and variables, read as attributes (``env.WORKFLOWS``) or items."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        merged = dict(values or {})
        merged.update(more)
        object.__setattr__(self, "_values", merged)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"env has no binding or variable named {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("env is read-only")

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Env({sorted(self._values)})"


class ExecutionContext:
    """``ctx``: lets code keep work alive past its response (``wait_until``)."""

    def __init__(self, props: Mapping[str, Any] | None = None) -> None:
        self.props: Mapping[str, Any] = props or {}
        self._pending: set[asyncio.Future[Any]] = set()

    def wait_until(self, awaitable: Awaitable[Any]) -> None:
        """Keep ``awaitable`` running after the handler returns."""
        future = asyncio.ensure_future(awaitable)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    waitUntil = wait_until

    @property
    def pending(self) -> int:
        """How many awaitables passed to ``wait_until`` are still running (the host drains a
        request's context only when there is something to wait for)."""
        return len(self._pending)

    def pass_through_on_exception(self) -> None:
        """Accepted for compatibility; there is no origin to fall back to here."""

    async def drain(self) -> None:
        """Wait for everything passed to ``wait_until``."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


class WorkerEntrypoint:
    """Base class of a worker's entrypoints (``class Default(WorkerEntrypoint)``)."""

    ctx: ExecutionContext
    env: Any

    def __init__(self, ctx: ExecutionContext, env: Any) -> None:
        self.ctx = ctx
        self.env = env


class WorkflowEntrypoint:
    """Base class of a workflow: subclasses define ``async def run(self, event, step)``."""

    ctx: ExecutionContext
    env: Any

    def __init__(self, ctx: ExecutionContext, env: Any) -> None:
        self.ctx = ctx
        self.env = env

    async def run(self, event: Any, step: Any) -> Any:
        raise TypeError(f"{type(self).__name__} does not define run(self, event, step)")
