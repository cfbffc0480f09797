"""The storage contract for retention (``delete_retained``) and cron ticks (``fire_schedule``):
every backend, the same answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from dynamic_workflows.core.codec import decode
from dynamic_workflows.core.journal import ErrorInfo, JournalEntry, StepKind, StepState
from dynamic_workflows.core.logs import LogLine
from dynamic_workflows.storage import Storage
from dynamic_workflows.storage.base import LogWrite, NewInstance, Status

T0 = 1_000_000.0
DAY = 86400.0


def new(
    id: str,
    *,
    success: float | None = None,
    error: float | None = None,
    schedule: bytes | None = None,
) -> NewInstance:
    return NewInstance(
        "wf", "", id, b"null", schedule=schedule, success_retention=success, error_retention=error
    )


async def finish(storage: Storage, id: str, status: str, at: float) -> int:
    """Claim the instance ``id`` (it must be the only one due) and end it as ``status`` at
    ``at``, with a step, an event and a log line stored meanwhile; returns its pk."""
    (claim,) = await storage.claim_due(at, 1)
    row = claim.instance
    assert row.id == id
    entry = JournalEntry("s", 1, StepKind.DO, StepState.DONE, value=b"1", attempt=1)
    line = LogLine(at, "stdout", "hello", "s", 1, 1)
    logs = [LogWrite(row.pk, row.generation, [line], 5, 0)]
    assert await storage.record_steps([(row.pk, row.generation, entry)], at, logs=logs) == [True]
    await storage.add_event(row.pk, "ping", b"{}", at)
    if status == Status.TERMINATED:
        await storage.control(row.pk, "terminate", at)
    else:
        error = ErrorInfo("Error", "boom") if status == Status.ERRORED else None
        output = b"1" if status == Status.COMPLETE else None
        assert await storage.finish_run(row.pk, row.generation, status, output, error, at)
    return row.pk


async def test_rows_carry_their_schedule_and_retention(storage: Storage) -> None:
    schedule = b'{"cron":"*/5 * * * *","scheduledTime":1000000000}'
    (row,) = await storage.create_instances(
        [new("a", success=5.0, error=7.0, schedule=schedule)], T0
    )
    assert row is not None
    stored = await storage.get_instance("wf", "", "a")
    assert stored is not None
    assert (stored.schedule, stored.success_retention, stored.error_retention) == (
        schedule,
        5.0,
        7.0,
    )
    assert (row.schedule, row.success_retention, row.error_retention) == (schedule, 5.0, 7.0)
    (plain,) = await storage.create_instances([new("b")], T0)
    assert plain is not None
    got = await storage.get_instance_by_pk(plain.pk)
    assert got is not None
    assert (got.schedule, got.success_retention, got.error_retention) == (
        None,
        None,
        None,
    )


async def test_retention_deletes_what_is_due_per_outcome_and_nothing_else(storage: Storage) -> None:
    # Finished at T0: complete kept 1 day, errored and terminated kept 2 days.
    ends = {}
    for id, status in [
        ("ok", Status.COMPLETE),
        ("bad", Status.ERRORED),
        ("stop", Status.TERMINATED),
    ]:
        await storage.create_instances([new(id, success=DAY, error=2 * DAY)], T0)
        ends[id] = await finish(storage, id, status, T0)
    # Finished, no retention at all / no retention for its outcome: kept forever.
    await storage.create_instances([new("forever")], T0)
    await finish(storage, "forever", Status.COMPLETE, T0)
    await storage.create_instances([new("ok-no-success", error=0.0)], T0)
    await finish(storage, "ok-no-success", Status.COMPLETE, T0)
    await storage.create_instances([new("bad-no-error", success=0.0)], T0)
    await finish(storage, "bad-no-error", Status.ERRORED, T0)
    # Not finished, with a retention of 0: never deleted while it lives.
    await storage.create_instances([new("queued", success=0.0, error=0.0)], T0)
    await storage.create_instances([new("running", success=0.0, error=0.0)], T0)
    await storage.claim_due(T0 + 1, 1)  # one of "queued" and "running" is running now
    (paused,) = await storage.create_instances([new("paused", success=0.0, error=0.0)], T0)
    assert paused is not None
    await storage.control(paused.pk, "pause", T0)

    async def ids() -> set[str]:
        return {r.id for r in await storage.list_instances("wf", limit=1000)}

    everything = await ids()
    assert await storage.delete_retained(T0 + DAY - 1, 100) == 0
    assert await ids() == everything

    assert await storage.delete_retained(T0 + DAY, 100) == 1  # due at exactly its time
    assert await ids() == everything - {"ok"}
    assert await storage.get_instance("wf", "", "ok") is None
    assert await storage.load_journal(ends["ok"]) == []
    assert await storage.load_logs(ends["ok"]) == []

    assert await storage.delete_retained(T0 + 2 * DAY, 100) == 2
    assert await ids() == everything - {"ok", "bad", "stop"}
    for id in ("bad", "stop"):
        assert await storage.load_journal(ends[id]) == []
        assert await storage.load_logs(ends[id]) == []

    assert await storage.delete_retained(T0 + 1000 * DAY, 100) == 0
    assert await ids() == {
        "forever",
        "ok-no-success",
        "bad-no-error",
        "queued",
        "running",
        "paused",
    }


async def test_retention_is_counted_from_the_end_and_a_restart_keeps_it(storage: Storage) -> None:
    (row,) = await storage.create_instances([new("a", success=10.0)], T0)
    assert row is not None
    await finish(storage, "a", Status.COMPLETE, T0 + 100)  # ended at T0 + 100
    assert await storage.delete_retained(T0 + 109, 10) == 0
    # Restarted: running again, so not due whatever its old end said.
    await storage.control(row.pk, "restart", T0 + 109)
    assert await storage.delete_retained(T0 + 1000, 10) == 0
    assert await storage.get_instance("wf", "", "a") is not None
    await finish(storage, "a", Status.COMPLETE, T0 + 2000)
    assert await storage.delete_retained(T0 + 2009, 10) == 0
    assert await storage.delete_retained(T0 + 2010, 10) == 1


async def test_a_backlog_is_deleted_in_batches_of_the_limit(storage: Storage) -> None:
    rows = await storage.create_instances([new(f"i{n}", error=0.0) for n in range(25)], T0)
    for row in rows:
        assert row is not None
        await storage.control(row.pk, "terminate", T0)
    await storage.create_instances([new("alive", error=0.0)], T0)
    assert await storage.delete_retained(T0, 10) == 10
    assert await storage.delete_retained(T0, 10) == 10
    assert await storage.delete_retained(T0, 10) == 5
    assert await storage.delete_retained(T0, 10) == 0
    assert [r.id for r in await storage.list_instances("wf")] == ["alive"]


async def test_sweeps_at_once_delete_each_instance_once(storage: Storage) -> None:
    rows = await storage.create_instances([new(f"i{n}", error=0.0) for n in range(60)], T0)
    for row in rows:
        assert row is not None
        await storage.control(row.pk, "terminate", T0)
    counts = await asyncio.gather(*(storage.delete_retained(T0, 7) for _ in range(4)))
    while (n := await storage.delete_retained(T0, 7)) > 0:
        counts.append(n)
    assert sum(counts) == 60
    assert await storage.list_instances("wf") == []


# -- cron ticks ----------------------------------------------------------------------------------


def tick_item(tick: float) -> NewInstance:
    schedule = b'{"cron":"* * * * *","scheduledTime":%d}' % round(tick * 1000)
    return new(f"cron-{int(tick)}", schedule=schedule)


async def test_a_new_schedule_starts_after_now_and_each_tick_fires_once(storage: Storage) -> None:
    cron = "* * * * *"
    # First seen at T0 + 30: recorded, nothing fired, not even the tick at T0.
    assert await storage.fire_schedule("wf", cron, T0, tick_item(T0), T0 + 30) is None
    assert await storage.fire_schedule("wf", cron, T0, tick_item(T0), T0 + 31) is None
    row = await storage.fire_schedule("wf", cron, T0 + 60, tick_item(T0 + 60), T0 + 60)
    assert row is not None
    assert row.id == f"cron-{int(T0 + 60)}"
    assert row.status == Status.QUEUED
    assert decode(row.schedule or b"") == {"cron": cron, "scheduledTime": round((T0 + 60) * 1000)}
    # The same tick again (another node, or this one after a restart): nothing.
    assert await storage.fire_schedule("wf", cron, T0 + 60, tick_item(T0 + 60), T0 + 61) is None
    # An older tick: nothing.
    assert await storage.fire_schedule("wf", cron, T0, tick_item(T0), T0 + 62) is None
    # Other schedules and workflows have their own ticks.
    assert await storage.fire_schedule("wf", "*/5 * * * *", T0 + 60, tick_item(T0), T0 + 60) is None
    nxt = await storage.fire_schedule("wf", cron, T0 + 120, tick_item(T0 + 120), T0 + 120)
    assert nxt is not None
    assert len(await storage.list_instances("wf")) == 2


async def test_a_tick_whose_id_exists_is_spent_without_an_instance(storage: Storage) -> None:
    cron = "* * * * *"
    await storage.fire_schedule("wf", cron, T0, tick_item(T0), T0)
    await storage.create_instances([tick_item(T0 + 60)], T0 + 1)  # the id is taken
    assert await storage.fire_schedule("wf", cron, T0 + 60, tick_item(T0 + 60), T0 + 60) is None
    assert await storage.fire_schedule("wf", cron, T0 + 120, tick_item(T0 + 120), T0 + 120)


async def test_a_ticks_instance_is_claimed_by_a_fair_claim(storage: Storage) -> None:
    # The tick's instance is the only one of its scope: a fair claim (which picks due work
    # scope by scope) found it on no backend's list but memory's and left it queued for good.
    cron = "* * * * *"
    await storage.fire_schedule("wf", cron, T0, tick_item(T0), T0)
    row = await storage.fire_schedule("wf", cron, T0 + 60, tick_item(T0 + 60), T0 + 60)
    assert row is not None
    (claim,) = await storage.claim_due(T0 + 61, 10, fair=True)
    assert claim.instance.id == row.id
    assert row.scope in {t.scope for t in await storage.list_tenants()}


async def test_ticks_fired_at_once_create_one_instance(storage: Storage) -> None:
    cron = "* * * * *"
    await storage.fire_schedule("wf", cron, T0, tick_item(T0), T0)
    got = await asyncio.gather(
        *(storage.fire_schedule("wf", cron, T0 + 60, tick_item(T0 + 60), T0 + 60) for _ in range(8))
    )
    assert sum(r is not None for r in got) == 1
    assert len(await storage.list_instances("wf")) == 1


def test_sqlite_finds_due_instances_through_the_retention_index(tmp_path: Path) -> None:
    import sqlite3

    from dynamic_workflows.storage.sqlite import migrations

    conn = sqlite3.connect(tmp_path / "plan.sqlite3")
    for _, sql in migrations():
        conn.executescript(sql)
    from dynamic_workflows.storage import sqlite as backend

    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT pk FROM instances WHERE (success_retention IS NOT NULL OR "
        f"error_retention IS NOT NULL) AND {backend._RETAIN_UNTIL} <= ? "
        f"ORDER BY {backend._RETAIN_UNTIL} LIMIT ?",
        (T0, 10),
    ).fetchall()
    assert any("instances_retained" in str(step) for step in plan), plan
    assert not any("TEMP B-TREE" in str(step) for step in plan), (
        plan
    )  # (no sort: the index's order)


def test_sqlite_migration_gives_stuck_tick_instances_their_tenants_row(tmp_path: Path) -> None:
    # A file written before the fix holds tick instances with no row in tenants (never claimed);
    # migration 0010 gives their scope one.
    import sqlite3

    from dynamic_workflows.storage.sqlite import migrations

    conn = sqlite3.connect(tmp_path / "old.sqlite3")
    later = []
    for version, sql in migrations():
        if version < 10:
            conn.executescript(sql)
        else:
            later.append(sql)
    conn.execute(
        "INSERT INTO instances (workflow, scope, id, status, params, created_at, updated_at, "
        "wake_at) VALUES ('wf', '', 'cron-1', 'queued', 'null', 1, 1, 1)"
    )
    assert conn.execute("SELECT count(*) FROM tenants").fetchone() == (0,)
    for sql in later:
        conn.executescript(sql)
    assert conn.execute("SELECT scope FROM tenants").fetchall() == [("",)]
