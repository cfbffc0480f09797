"""``Storage.scope_usage`` (the tenants view, ``/metrics``' per-tenant series) on a large store.

``python bench/scope_usage.py [--instances 200000] [--scopes 5000] [--steps 3] [--pg URL]``
fills a SQLite file and a PostgreSQL schema (made and dropped here) with that many instances
spread over that many scopes (tenants of unequal size), a tenth of them live, each with
``--steps`` steps on average, then times the call: one workflow and all of them, ordered by live
instances and by recent activity, a page of 20 (what ``/metrics`` reads, without the steps) and
of 100. Prints one JSON object; every figure is the median of 5 calls, in milliseconds.
``--without-index`` drops migration 0009's index from the SQLite file first, to see what it saves.

On the 2-core dev machine, shared with other work (so figures moved by 2x between runs),
200,000 instances, 600,000 steps, 5,000 scopes: SQLite 225-450 ms without the steps (680-1700
ms without the index), 840-1500 ms with them (1400-4800 ms without the index); PostgreSQL
155-215 ms without the steps, 520-800 ms with them (an index made no difference there: its
parallel sequential scan is as fast as an index-only scan).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from dynamic_workflows.storage import PostgresStorage, SQLiteStorage, Storage

STEP_COLUMNS = ["instance_pk", "name", "count", "kind", "state", "value", "attempt", "recorded_at"]
STATUSES = ["complete"] * 80 + ["errored"] * 8 + ["terminated"] * 2 + ["waiting"] * 6
STATUSES += ["queued"] * 2 + ["running"] * 1 + ["paused"] * 1


def rows(n: int, scopes: int, steps: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    rng = random.Random(7)
    # Tenants of unequal size: a few large ones, a long tail.
    weights = [1 / (k + 1) ** 0.8 for k in range(scopes)]
    chosen = rng.choices(range(scopes), weights, k=n)
    instances, journal = [], []
    for pk in range(1, n + 1):
        scope = f"{chosen[pk - 1]:032x}"
        workflow = "orders" if pk % 4 else "reports"
        status = rng.choice(STATUSES)
        t = 1_700_000_000.0 + pk
        params = json.dumps({"__dispatcherMetadata": {"tenant": scope[-6:]}, "params": pk})
        instances.append((pk, workflow, scope, f"i{pk}", status, params.encode(), t, t))
        for s in range(rng.randint(0, 2 * steps)):
            journal.append((pk, f"step-{s}", 1, "do", "done", b"1", 1, t))
    return instances, journal


async def timed(storage: Storage) -> dict[str, float]:
    out = {}
    for label, kwargs in {
        "one workflow, live, 20, no steps": {"workflow": "orders", "limit": 20, "steps": False},
        "all, live, 20, no steps": {"workflow": None, "limit": 20, "steps": False},
        "one workflow, live, 20": {"workflow": "orders", "limit": 20},
        "all, live, 20": {"workflow": None, "limit": 20},
        "all, recent, 100": {"workflow": None, "order": "recent", "limit": 100},
        "one workflow, steps, 100": {"workflow": "orders", "order": "steps", "limit": 100},
    }.items():
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            await storage.scope_usage(**kwargs)  # type: ignore[arg-type]
            runs.append((time.perf_counter() - start) * 1000)
        out[label] = round(statistics.median(runs), 1)
    return out


async def sqlite(
    instances: list[Any], journal: list[Any], folder: Path, *, index: bool = True
) -> dict[str, float]:
    path = folder / "bench.sqlite3"
    storage = SQLiteStorage(path, durability="normal")
    await storage.open()
    await storage.close()
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO instances (pk, workflow, scope, id, status, params, created_at, "
            "updated_at) VALUES (?,?,?,?,?,?,?,?)",
            instances,
        )
        conn.executemany(
            "INSERT INTO steps (instance_pk, name, count, kind, state, value, attempt, "
            "recorded_at) VALUES (?,?,?,?,?,?,?,?)",
            journal,
        )
    if not index:  # what migration 0009's index saves
        conn.execute("DROP INDEX instances_by_scope")
    conn.execute("ANALYZE")
    conn.close()
    storage = SQLiteStorage(path, durability="normal")
    await storage.open()
    try:
        return await timed(storage)
    finally:
        await storage.close()


async def postgres(instances: list[Any], journal: list[Any], url: str) -> dict[str, float]:
    schema = f"bench_{secrets.token_hex(4)}"
    storage = PostgresStorage(f"{url}{'&' if '?' in url else '?'}schema={schema}")
    await storage.open()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"SET search_path = {schema}")
        await conn.copy_records_to_table(
            "instances",
            records=[(r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in instances],
            columns=["workflow", "scope", "id", "status", "params", "created_at", "updated_at"],
        )
        await conn.copy_records_to_table(
            "steps",
            records=journal,
            columns=STEP_COLUMNS,
        )
        await conn.execute("VACUUM ANALYZE instances")
        await conn.execute("VACUUM ANALYZE steps")
        return await timed(storage)
    finally:
        await storage.close()
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200_000)
    parser.add_argument("--scopes", type=int, default=5000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test?sslmode=disable")
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument(
        "--without-index", action="store_true", help="SQLite without migration 0009's index"
    )
    args = parser.parse_args()
    instances, journal = rows(args.instances, args.scopes, args.steps)
    report: dict[str, Any] = {
        "instances": len(instances),
        "steps": len(journal),
        "scopes": len({r[2] for r in instances}),
    }
    with tempfile.TemporaryDirectory() as folder:
        report["sqlite_ms"] = await sqlite(
            instances, journal, Path(folder), index=not args.without_index
        )
    if not args.skip_pg:
        report["postgresql_ms"] = await postgres(instances, journal, args.pg)
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    asyncio.run(main())
