"""Notifications between the nodes of a shared PostgreSQL database: one LISTEN connection.

The backend sends ``NOTIFY <channel>, '<kind>:<subject>'`` inside the transactions that make a
change other nodes may act on; PostgreSQL delivers it at commit, so a listener never hears of
something it cannot read yet. A notification is a hint, never the truth: the connection can
drop and notifications sent meanwhile are lost, so after reconnecting the listener reports
``("reconnected", "")`` and the engine polls.

A dead connection is noticed by asyncpg's termination callback, or by a periodic ``SELECT 1``
(a silently dropped network path closes nothing); reconnection backs off exponentially.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

__all__ = ["Listener"]

log = logging.getLogger("dynamic_workflows.storage")

Callback = Callable[[str, str], None]


class Listener:
    """LISTEN on ``channel`` over connections from ``connect``, calling every callback with
    ``(kind, subject)``."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        channel: str,
        *,
        ping_interval: float = 10.0,
        backoff: tuple[float, float] = (0.05, 5.0),
    ) -> None:
        self._connect = connect
        self.channel = channel
        self._ping_interval = ping_interval
        self._backoff = backoff
        self._callbacks: list[Callback] = []
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reconnects = 0

    async def add(self, callback: Callback) -> None:
        """Start listening (connecting now: a failure raises) and add ``callback``."""
        if self._task is None:
            await self._open()
            self._task = asyncio.create_task(self._supervise(), name="dwf-pg-listener")
        self._callbacks.append(callback)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop()

    async def _open(self) -> None:
        conn = await self._connect()
        try:
            self._lost.clear()
            conn.add_termination_listener(self._terminated)
            await conn.add_listener(self.channel, self._notified)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        conn.remove_termination_listener(self._terminated)
        try:
            await asyncio.wait_for(conn.close(), timeout=1.0)
        except Exception:
            conn.terminate()

    def _terminated(self, conn: asyncpg.Connection[Any] | PoolConnectionProxy[Any]) -> None:
        if conn is self._conn:
            self._lost.set()

    def _notified(self, conn: object, pid: int, channel: str, payload: object) -> None:
        kind, _, subject = str(payload).partition(":")
        self._emit(kind, subject)

    def _emit(self, kind: str, subject: str) -> None:
        for callback in list(self._callbacks):
            try:
                callback(kind, subject)
            except Exception:
                log.exception("a storage notification callback failed")

    async def _supervise(self) -> None:
        while True:
            await self._until_lost()
            await self._drop()
            delay = self._backoff[0]
            while True:
                try:
                    await self._open()
                    break
                except Exception as exc:  # whatever stops a connection: try again later
                    log.warning("storage notifications: reconnecting in %.2f s (%s)", delay, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._backoff[1])
            self.reconnects += 1
            self._emit("reconnected", "")

    async def _until_lost(self) -> None:
        while not self._lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), timeout=self._ping_interval)
                return
            conn = self._conn
            if conn is None or conn.is_closed():
                return
            try:
                await asyncio.wait_for(conn.fetchval("SELECT 1"), timeout=self._ping_interval)
            except Exception:
                return
