"""The PostgreSQL backend's statements (``sql/postgres/queries.sql``, by name) and the mapping
between their rows and the storage structs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from ..core.journal import ErrorInfo, JournalEntry
from ..core.transitions import Change
from .base import InstanceRow, rollback_outcome, rollback_text, step_values
from .postgres_schema import queries

__all__ = [
    "END_FIELDS",
    "RECORDED_AT",
    "Held",
    "Q",
    "change_sets",
    "end_args",
    "end_tracebacks",
    "entry",
    "held",
    "row",
    "step_args",
]

INSTANCE_COLUMNS = (
    "pk, workflow, scope, id, status, params, generation, created_at, updated_at, output, "
    "error_name, error_message, wake_at, started_at, ended_at, error_traceback, log_bytes, "
    "log_dropped, rollback, schedule, success_retention, error_retention"
)
STEP_COLUMNS = (
    "name, count, kind, state, value, error_name, error_message, attempt, wake_at, event_type, "
    "started_at, ended_at, attempts, error_traceback, rollback, sensitive"
)


def _of(alias: str, columns: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


_CLAIM_UPDATE = """UPDATE instances i SET
    status      = CASE WHEN i.status = $6 THEN $7 ELSE $8 END,
    generation  = CASE WHEN i.owner IS NULL THEN i.generation ELSE i.generation + 1 END,
    wake_at     = NULL,
    started_at  = CASE WHEN i.status = $6 THEN i.started_at ELSE coalesce(i.started_at, $1) END,
    updated_at  = $1,
    owner       = CASE WHEN i.status = $6 THEN NULL ELSE $4 END,
    lease_until = CASE WHEN i.status = $6 THEN NULL ELSE $1 + $9 END
FROM picked
WHERE i.pk = picked.pk
RETURNING {instance_columns_of_i};"""
"""The end of both claim statements (claim_due, claim_picked): mark the rows they ``picked``
running (a lapsed lease's row gets a new generation), stamped now, not at the horizon."""


def _load() -> dict[str, str]:
    fill = {
        "{claim_update}": _CLAIM_UPDATE,
        "{instance_columns}": INSTANCE_COLUMNS,
        "{instance_columns_of_i}": _of("i", INSTANCE_COLUMNS) + ", picked.t",
        "{step_columns}": STEP_COLUMNS,
        "{step_columns_of_s}": _of("s", STEP_COLUMNS),
    }
    out = {}
    for name, sql in queries().items():
        for key, value in fill.items():
            sql = sql.replace(key, value)
        out[name] = sql
    return out


Q = _load()
"""The statements by name, column lists filled in."""


class Held(msgspec.Struct, frozen=True):
    """What a transition reads of a locked row (a ``transitions.InstanceState``) and who holds
    it (``lock_instance``'s columns)."""

    status: str
    generation: int
    wake_at: float | None
    started_at: float | None
    owner: str | None
    lease_until: float | None


def held(r: asyncpg.Record, at: int = 0) -> Held:
    """A ``Held`` from ``lock_instance``'s columns starting at column ``at``."""
    return Held(r[at], r[at + 1], r[at + 2], r[at + 3], r[at + 4], r[at + 5])


def row(r: asyncpg.Record) -> InstanceRow:
    """An ``InstanceRow`` from ``INSTANCE_COLUMNS``."""
    return InstanceRow(
        pk=r[0],
        workflow=r[1],
        scope=r[2],
        id=r[3],
        status=r[4],
        params=r[5],
        generation=r[6],
        created_at=r[7],
        updated_at=r[8],
        output=r[9],
        error=None if r[10] is None else ErrorInfo(r[10], r[11] or "", r[15]),
        wake_at=r[12],
        started_at=r[13],
        ended_at=r[14],
        log_bytes=r[16],
        log_dropped=r[17],
        rollback=rollback_outcome(r[18]),
        schedule=r[19],
        success_retention=r[20],
        error_retention=r[21],
    )


def entry(r: asyncpg.Record, at: int = 0) -> JournalEntry:
    """A ``JournalEntry`` from ``STEP_COLUMNS`` starting at column ``at``."""
    return JournalEntry(
        name=r[at],
        count=r[at + 1],
        kind=r[at + 2],
        state=r[at + 3],
        value=r[at + 4],
        error=None if r[at + 5] is None else ErrorInfo(r[at + 5], r[at + 6] or "", r[at + 13]),
        attempt=r[at + 7],
        wake_at=r[at + 8],
        event_type=r[at + 9],
        started_at=r[at + 10],
        ended_at=r[at + 11],
        attempts=r[at + 12],
        rollback=r[at + 14],
        sensitive=r[at + 15],
    )


def step_args(pk: int, e: JournalEntry, now: float) -> tuple[Any, ...]:
    """The values of a ``steps`` row, as ``put_step`` takes them ($1-$15; ``now`` is
    ``recorded_at``, at :data:`RECORDED_AT`)."""
    return step_values(pk, e, now)


RECORDED_AT = 11
"""Where ``recorded_at`` is in :func:`step_args`."""


def change_sets(change: Change, args: list[Any]) -> list[str]:
    """``column = $n`` for each column ``change`` sets, its values appended to ``args`` (whose
    length numbers them)."""
    sets = []

    def put(column: str, value: Any) -> None:
        args.append(value)
        sets.append(f"{column} = ${len(args)}")

    for name, value in change.updates().items():
        if name == "error":
            put("error_name", None if value is None else value.name)
            put("error_message", None if value is None else value.message)
            put("error_traceback", None if value is None else value.traceback)
        elif name == "rollback":
            put("rollback", rollback_text(value))
        else:
            put(name, value)
    return sets


END_FIELDS = (
    "status",
    "generation",
    "wake_at",
    "output",
    "error",
    "started_at",
    "ended_at",
    "updated_at",
)
"""The ``Change`` fields ``end_runs`` sets, in the order of its parameters (``error`` is two
columns; its traceback, a third, is :func:`end_tracebacks`')."""


def end_args(ends: Sequence[tuple[int, Held, Change, bool, str | None]]) -> list[list[Any]]:
    """``end_runs``' arrays ($1-$24) for ``ends``: each ``(pk, the row as read, the change,
    whether it lets go of the holder, what to announce or None)``."""
    pks: list[Any] = []
    was: list[list[Any]] = [[], [], [], []]
    cols: list[list[Any]] = [[] for _ in range(2 * len(END_FIELDS) + 1)]
    let_go: list[Any] = []
    notify: list[Any] = []
    for pk, state, change, drop, announce in ends:
        pks.append(pk)
        for column, value in zip(
            was, (state.status, state.generation, state.wake_at, state.started_at), strict=True
        ):
            column.append(value)
        updates = change.updates()
        if not updates.keys() - {"rollback"} <= set(END_FIELDS):
            raise AssertionError(f"end_runs cannot set {sorted(updates.keys() - set(END_FIELDS))}")
        i = 0
        for name in END_FIELDS:
            changed = name in updates
            value = updates.get(name)
            cols[i].append(changed)
            if name == "error":
                cols[i + 1].append(None if value is None else value.name)
                cols[i + 2].append(None if value is None else value.message)
                i += 3
            else:
                cols[i + 1].append(value)
                i += 2
        let_go.append(drop)
        notify.append(announce)
    return [pks, *was, *cols, let_go, notify]


def end_rollbacks(
    ends: Sequence[tuple[int, Held, Change, bool, str | None]],
) -> tuple[list[Any], list[Any]]:
    """``end_runs``' $28 and $29: whether each end sets the instance's ``rollback``, and to
    what (JSON text; see :mod:`..core.rollback`)."""
    sets: list[Any] = []
    values: list[Any] = []
    for _, _, change, _, _ in ends:
        updates = change.updates()
        sets.append("rollback" in updates)
        values.append(rollback_text(updates.get("rollback")))
    return sets, values


def end_tracebacks(ends: Sequence[tuple[int, Held, Change, bool, str | None]]) -> list[Any]:
    """``end_runs``' $27: the traceback of each end's error (the change's ``error``)."""
    out: list[Any] = []
    for _, _, change, _, _ in ends:
        error = change.updates().get("error")
        out.append(None if error is None else error.traceback)
    return out
