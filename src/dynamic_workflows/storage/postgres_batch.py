"""Group commit for the PostgreSQL backend: calls made while a batch is in flight wait, and go to
the server together as the next batch (one statement for all of them), as SQLite's writer thread
group-commits every operation queued behind the one it is committing.

Under load a batch holds every call of one loop iteration or more (the engine's step writes of
all its runs, or the ends of all the runs that ended meanwhile): the round trips per call fall
with the load, and one commit (one WAL flush) serves them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from ..errors import StorageError
from .postgres_db import LOST

__all__ = ["GroupWriter"]

C = TypeVar("C")
R = TypeVar("R")


class GroupWriter(Generic[C, R]):
    """Calls of one kind, handed to ``write`` in batches, one batch in flight at a time.

    ``write(calls)`` answers each call in order; an exception in a call's place fails that call
    alone. If ``write`` raises a :class:`StorageError`, the batch is tried again call by call, so
    that one call that breaks the merged statement fails alone, unless the connection was lost
    (then the others would only wait to fail too, and the outcome of what was sent is unknown:
    every call of the batch gets the error)."""

    __slots__ = ("_name", "_pending", "_task", "_write")

    def __init__(
        self, name: str, write: Callable[[list[C]], Awaitable[list[R | Exception]]]
    ) -> None:
        self._name = name
        self._write = write
        self._pending: list[tuple[C, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, call: C) -> R:
        """Queue ``call`` for the next batch and wait for its answer."""
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((call, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"dwf-pg-{self._name}")
        return await fut

    async def drain(self) -> None:
        """Wait until the calls queued so far are answered."""
        task = self._task
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._write_batch(batch)
            except BaseException as exc:
                # Nobody may wait forever: whatever stopped the writer fails its callers.
                if isinstance(exc, Exception):
                    error: BaseException = exc
                else:
                    error = StorageError(f"{self._name}: the writer was cancelled")
                    batch += self._pending
                    self._pending = []
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(error)
                if not isinstance(exc, Exception):
                    raise

    async def _write_batch(self, batch: list[tuple[C, asyncio.Future[R]]]) -> None:
        try:
            answers = await self._write([call for call, _ in batch])
        except StorageError as exc:
            if len(batch) == 1 or isinstance(exc.__cause__, LOST):
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                return
            # One call broke the merged statement: each alone, so that only it fails.
            for call, fut in batch:
                try:
                    (answer,) = await self._write([call])
                except StorageError as one:
                    answer = one
                _settle(fut, answer)
            return
        for (_, fut), answer in zip(batch, answers, strict=True):
            _settle(fut, answer)


def _settle(fut: asyncio.Future[R], answer: R | Exception) -> None:
    if fut.done():
        return
    if isinstance(answer, Exception):
        fut.set_exception(answer)
    else:
        fut.set_result(answer)
