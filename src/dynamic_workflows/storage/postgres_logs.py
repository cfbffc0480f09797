"""The PostgreSQL backend's part of what runs print (``record_steps(..., logs=)``,
``load_logs``): the statements are ``record_logs`` and ``load_logs`` in ``queries.sql``.

A run's lines are written after its steps, in a statement of their own (a round trip that
only runs that print pay), one at a time per node: an instance's lines are written by the node
that holds its run, so their numbers (``seq``, a reader's cursor) follow the order they were
printed in, and a reader that has seen number N has seen every line before it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from ..core.logs import LogLine
from ..errors import StorageError
from .base import LogWrite
from .postgres_db import Database, Session
from .postgres_sql import Q

__all__ = ["LogWriter", "load_logs"]

log = logging.getLogger("dynamic_workflows.storage")


class LogWriter:
    """Writes runs' lines for one node, one statement at a time."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock: asyncio.Lock | None = None

    async def write(self, logs: Sequence[LogWrite], node_id: str, held: list[str]) -> None:
        """Append the lines of ``logs`` whose runs this node still holds live. A failure is
        logged, not raised: the steps they came with are committed already, and lines are
        never worth handing a run back."""
        columns: list[list[Any]] = [[] for _ in range(9)]
        for w in logs:
            for line in w.lines:
                for column, value in zip(
                    columns,
                    (
                        w.pk,
                        w.generation,
                        line.at,
                        line.stream,
                        line.text,
                        line.step,
                        line.count,
                        line.attempt,
                        line.dropped,
                    ),
                    strict=True,
                ):
                    column.append(value)
        totals = [
            [w.pk for w in logs],
            [w.generation for w in logs],
            [w.bytes for w in logs],
            [w.dropped for w in logs],
        ]

        async def op(c: Session) -> None:
            await c.execute(Q["record_logs"], *columns, *totals, node_id, held)

        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            try:
                await self._db.run("record_logs", op, write=True)
            except StorageError as exc:
                lines = sum(len(w.lines) for w in logs)
                log.warning("%d line(s) of %d run(s) were not stored: %s", lines, len(logs), exc)


async def load_logs(
    db: Database,
    pk: int,
    after: int,
    limit: int,
    step: tuple[str, int] | None,
    attempt: int | None,
) -> list[tuple[int, LogLine]]:
    """``Storage.load_logs``."""
    name, count = step if step is not None else (None, None)

    async def op(c: Session) -> list[Any]:
        return await c.fetch(Q["load_logs"], pk, after, limit, name, count, attempt)

    rows = await db.run("load_logs", op, write=False)
    return [(r[0], LogLine(r[1], r[2], r[3], r[4], r[5], r[6], r[7])) for r in rows]
