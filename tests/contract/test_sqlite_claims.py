"""SQLite's fair claim reads only the tenants that have due work (migration 0011): its cost is
the number of tenants with work due, not the number of tenants."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dynamic_workflows import SQLiteStorage
from dynamic_workflows.storage.base import NewInstance, Status

T0 = 1_000_000.0


async def test_a_claim_reads_only_the_scopes_with_due_work(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "db.sqlite3")
    await storage.open()
    try:
        for i in range(300):  # 300 tenants, each with an instance run and done
            await storage.create_instances([NewInstance("wf", f"t{i}", "x", b"null")], T0)
        for c in await storage.claim_due(T0, 1000):
            row = c.instance
            await storage.finish_run(row.pk, row.generation, Status.COMPLETE, b"1", None, T0)
        await storage.create_instances([NewInstance("wf", "main", "y", b"null")], T0 + 1)
        statements: list[str] = []

        def trace(conn: sqlite3.Connection) -> None:
            conn.set_trace_callback(statements.append)

        await storage._submit(trace)
        (claim,) = await storage.claim_due(T0 + 1, 10)
        await storage._submit(lambda conn: conn.set_trace_callback(None))
        assert claim.instance.scope == "main"
        per_scope = [s for s in statements if "FROM instances WHERE scope=" in s]
        assert len(per_scope) == 1, per_scope  # main's, not 301
    finally:
        await storage.close()
