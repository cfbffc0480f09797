"""``scope_usage`` in SQL, one statement for SQLite and PostgreSQL alike (their dialects differ
here only in how parameters are written).

The statement groups the instances by scope (counting each status in a column of its own, so
that the order and the totals are plain SQL), counts the steps per scope with a join, ranks the
scopes, and reads the params of each listed scope's newest instance, for that page only. Window
sums over the ranked scopes give the totals of every matching scope in the same read: a page of
the 20 busiest tenants also says what the other 99,980 add up to.

Why no step counter on the instance row: the steps are counted from the journal at read time,
so the write path (``record_steps``, the hot one) stays as it is. The cost is measured by
``bench/scope_usage.py`` (figures in its docstring): the join is what the index of migration
0009 is for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..core.transitions import FINITE_STATUSES, Status
from .base import SCOPE_ORDERS, ScopeUsage, ScopeUsagePage, check_scope_order

__all__ = ["scope_usage_page", "scope_usage_sql"]

_STATUSES = Status.ALL
_FINISHED = [i for i, s in enumerate(_STATUSES) if s in FINITE_STATUSES]

_ORDER_BY = {
    "live": "live DESC, n DESC, u DESC, scope",
    "instances": "n DESC, u DESC, scope",
    "steps": "steps DESC, n DESC, u DESC, scope",
    "recent": "u DESC, n DESC, scope",
}
assert tuple(_ORDER_BY) == SCOPE_ORDERS


def scope_usage_sql(
    workflow: str | None,
    order: str,
    unscoped: bool,
    steps: bool,
    placeholder: Callable[[int], str],
    *,
    collate: str = "",
) -> tuple[str, list[Any]]:
    """The statement and its arguments before the page's ``limit`` and ``offset`` (the last two
    parameters); ``placeholder(n)`` writes the n-th parameter (1-based), ``collate`` is appended
    to the scope where it is ordered (PostgreSQL: ``COLLATE "C"``, as Python and SQLite order).
    Without ``steps`` the journal is not read (and every scope's steps are 0)."""
    check_scope_order(order, steps=steps)
    args: list[Any] = []
    where = []
    if workflow is not None:
        args.append(workflow)
        where.append(f"i.workflow = {placeholder(len(args))}")
    if not unscoped:
        where.append("i.scope <> ''")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    counts = ", ".join(
        f"count(*) FILTER (WHERE i.status = '{status}') AS s{n}"
        for n, status in enumerate(_STATUSES)
    )
    finished = " + ".join(f"s{n}" for n in _FINISHED)
    columns = ", ".join(f"s{n}" for n in range(len(_STATUSES)))
    sums = ", ".join(f"sum(s{n}) OVER () AS t{n}" for n in range(len(_STATUSES)))
    order_by = _ORDER_BY[order].replace("scope", f"scope{collate}")
    limit, offset = placeholder(len(args) + 1), placeholder(len(args) + 2)
    st = steps_column = steps_join = ""
    if steps:
        st = f"""st AS (
    SELECT i.scope AS scope, count(*) AS steps
    FROM steps s JOIN instances i ON i.pk = s.instance_pk {clause}
    GROUP BY i.scope
),"""
        steps_column = "coalesce(st.steps, 0)"
        steps_join = "LEFT JOIN st ON st.scope = g.scope"
    else:
        steps_column = "0"
    sql = f"""
WITH g AS (
    SELECT i.scope AS scope, {counts}, count(*) AS n, max(i.created_at) AS c,
           max(i.updated_at) AS u, max(i.pk) AS newest
    FROM instances i {clause}
    GROUP BY i.scope
),
{st}
ranked AS (
    SELECT g.scope AS scope, {columns}, n, c, u, newest, {steps_column} AS steps,
           n - ({finished}) AS live
    FROM g {steps_join}
),
page AS (
    SELECT scope, {columns}, n, c, u, newest, steps, live,
           count(*) OVER () AS total, sum(steps) OVER () AS tsteps, {sums}
    FROM ranked
    ORDER BY {order_by}
    LIMIT {limit} OFFSET {offset}
)
SELECT page.*, (SELECT p.params FROM instances p WHERE p.pk = page.newest) AS params
FROM page
ORDER BY {order_by}
"""
    return sql, args


def scope_usage_page(rows: Sequence[Any]) -> ScopeUsagePage:
    """The page from the statement's rows (which are a non-empty page, or an empty one whose
    totals are unknown: the caller reads the first row again for them)."""
    k = len(_STATUSES)
    usages = []
    for r in rows:
        by_status = {s: int(r[1 + n]) for n, s in enumerate(_STATUSES) if r[1 + n]}
        # scope, s0..sk-1, n, c, u, newest, steps, live, total, tsteps, t0..tk-1, params
        usages.append(ScopeUsage(r[0], by_status, int(r[k + 5]), r[k + 2], r[k + 3], bytes(r[-1])))
    if not rows:
        return ScopeUsagePage([], 0, {}, 0)
    first = rows[0]
    totals = {s: int(first[k + 9 + n]) for n, s in enumerate(_STATUSES) if first[k + 9 + n]}
    return ScopeUsagePage(usages, int(first[k + 7]), totals, int(first[k + 8]))
