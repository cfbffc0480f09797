"""The storage contract: every backend must pass every test here, unchanged.

A new backend (PostgreSQL) is added by adding a fixture parameter.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest

from dynamic_workflows.core.codec import decode
from dynamic_workflows.core.journal import ErrorInfo, JournalEntry, StepKind, StepState
from dynamic_workflows.storage import SQLiteStorage, Storage
from dynamic_workflows.storage.base import (
    ControlResult,
    InstanceRow,
    NewInstance,
    Status,
    WaitResult,
)
from dynamic_workflows.storage.sqlite import migrations

T0 = 1_000_000.0


def new(id: str, workflow: str = "wf", scope: str = "", params: bytes = b"null") -> NewInstance:
    return NewInstance(workflow, scope, id, params)


async def claim_one(storage: Storage, now: float = T0) -> tuple[int, int]:
    claims = await storage.claim_due(now, 1)
    assert len(claims) == 1
    row = claims[0].instance
    return row.pk, row.generation


async def record_step(
    storage: Storage, pk: int, generation: int, entry: JournalEntry, now: float
) -> bool:
    (kept,) = await storage.record_steps([(pk, generation, entry)], now)
    return kept


def done(name: str, count: int, value: bytes = b"1") -> JournalEntry:
    return JournalEntry(name, count, StepKind.DO, StepState.DONE, value=value, attempt=1)


# -- creating and reading -----------------------------------------------------------------------


async def test_create_returns_queued_rows_and_skips_existing(storage: Storage) -> None:
    rows = await storage.create_instances([new("a", params=b'{"x":1}'), new("b")], T0)
    assert [r.id if r else None for r in rows] == ["a", "b"]
    assert all(r is not None and r.status == Status.QUEUED and r.wake_at == T0 for r in rows)
    again = await storage.create_instances([new("a"), new("c"), new("c")], T0 + 1)
    assert again[0] is None
    assert again[1] is not None
    assert again[1].id == "c"
    assert again[2] is None  # the same id twice in one call is created once
    got = await storage.get_instance("wf", "", "a")
    assert got is not None
    assert got.params == b'{"x":1}'
    assert got.created_at == T0


async def test_ids_are_scoped_by_workflow_and_scope(storage: Storage) -> None:
    rows = await storage.create_instances(
        [new("same"), new("same", workflow="other"), new("same", scope="tenant-a")], T0
    )
    assert all(r is not None for r in rows)
    assert len({r.pk for r in rows if r}) == 3
    assert await storage.get_instance("wf", "tenant-b", "same") is None
    a = await storage.get_instance("wf", "tenant-a", "same")
    assert a is not None
    assert a.scope == "tenant-a"


async def test_get_missing_returns_none(storage: Storage) -> None:
    assert await storage.get_instance("wf", "", "nope") is None
    assert await storage.get_instance_by_pk(12345) is None


async def test_list_and_count_filter_and_order_newest_first(storage: Storage) -> None:
    for i in range(5):
        await storage.create_instances([new(f"i{i}")], T0 + i)
    await storage.create_instances([new("x", workflow="other")], T0)
    rows = await storage.list_instances("wf")
    assert [r.id for r in rows] == ["i4", "i3", "i2", "i1", "i0"]
    assert [r.id for r in await storage.list_instances("wf", limit=2, offset=1)] == ["i3", "i2"]
    await claim_one(storage, T0 + 10)
    running = await storage.list_instances("wf", status=Status.RUNNING)
    assert [r.id for r in running] == ["i0"]
    assert await storage.count_instances("wf") == {Status.QUEUED: 4, Status.RUNNING: 1}
    assert sum((await storage.count_instances()).values()) == 6


async def test_journal_reads_back_in_the_order_steps_were_first_recorded(
    storage: Storage,
) -> None:
    await storage.create_instances([new("a")], T0)
    pk, gen = await claim_one(storage)
    retrying = JournalEntry("zeta", 1, StepKind.DO, StepState.RETRYING, attempt=1, wake_at=T0 + 5)
    for i, entry in enumerate([retrying, done("beta", 1), done("alpha", 1), done("zeta", 1)]):
        assert await record_step(storage, pk, gen, entry, T0 + i)
    journal = await storage.load_journal(pk)
    assert [(e.name, e.state) for e in journal] == [
        ("zeta", StepState.DONE),  # updated in place: keeps its first position
        ("beta", StepState.DONE),
        ("alpha", StepState.DONE),
    ]


async def test_find_across_scopes_and_count_by_scope(storage: Storage) -> None:
    await storage.create_instances([new("same", scope="t-a")], T0)
    await storage.create_instances([new("same", scope="t-b"), new("other", scope="t-b")], T0 + 1)
    await storage.create_instances([new("same", workflow="elsewhere")], T0 + 2)
    found = await storage.find_instances("wf", "same")
    assert [(r.scope, r.id) for r in found] == [("t-a", "same"), ("t-b", "same")]
    assert await storage.find_instances("wf", "missing") == []
    assert await storage.count_instances("wf", scope="t-b") == {Status.QUEUED: 2}
    assert await storage.count_instances(scope="t-a") == {Status.QUEUED: 1}
    assert [r.id for r in await storage.list_instances("wf", scope="t-b")] == ["other", "same"]


# -- claiming -------------------------------------------------------------------------------------


async def test_claim_due_takes_earliest_first_and_only_due(storage: Storage) -> None:
    await storage.create_instances([new("late")], T0 + 5)
    await storage.create_instances([new("early")], T0)
    assert await storage.next_due() == T0
    assert await storage.claim_due(T0 - 1, 10) == []
    claims = await storage.claim_due(T0 + 10, 1)
    assert [c.instance.id for c in claims] == ["early"]
    assert claims[0].instance.status == Status.RUNNING
    assert claims[0].instance.wake_at is None
    assert claims[0].journal == []
    assert await storage.next_due() == T0 + 5
    assert [c.instance.id for c in await storage.claim_due(T0 + 10, 10)] == ["late"]
    assert await storage.claim_due(T0 + 10, 10) == []  # nothing is claimed twice
    assert await storage.next_due() is None


async def test_claim_returns_the_journal(storage: Storage) -> None:
    await storage.create_instances([new("a")], T0)
    pk, gen = await claim_one(storage)
    assert await record_step(storage, pk, gen, done("s", 1), T0)
    assert await storage.suspend_run(pk, gen, T0 + 5, False, T0) == Status.WAITING
    claims = await storage.claim_due(T0 + 5, 10)
    assert [(e.name, e.count, e.value) for e in claims[0].journal] == [("s", 1, b"1")]


# -- journal writes are fenced by generation and status ---------------------------------------


async def test_record_step_upserts_and_is_fenced(storage: Storage) -> None:
    await storage.create_instances([new("a")], T0)
    pk, gen = await claim_one(storage)
    retry = JournalEntry(
        "s",
        1,
        StepKind.DO,
        StepState.RETRYING,
        error=ErrorInfo("E", "m"),
        attempt=1,
        wake_at=T0 + 10,
    )
    assert await record_step(storage, pk, gen, retry, T0)
    assert await record_step(storage, pk, gen, done("s", 1, b'"ok"'), T0)
    journal = await storage.load_journal(pk)
    assert len(journal) == 1
    assert journal[0].state == StepState.DONE
    assert decode(journal[0].value or b"") == "ok"
    assert not await record_step(storage, pk, gen + 1, done("t", 1), T0)  # stale generation
    await storage.control(pk, "terminate", T0)
    assert not await record_step(storage, pk, gen, done("u", 1), T0)  # no longer running
    assert [e.name for e in await storage.load_journal(pk)] == ["s"]


async def test_record_steps_writes_a_batch_and_skips_only_the_stale(storage: Storage) -> None:
    await storage.create_instances([new("a"), new("b"), new("c")], T0)
    claims = await storage.claim_due(T0, 3)
    (pa, ga), (pb, gb), (pc, gc) = [(c.instance.pk, c.instance.generation) for c in claims]
    await storage.control(pc, "terminate", T0)
    kept = await storage.record_steps(
        [
            (pa, ga, done("s", 1)),
            (pb, gb + 1, done("s", 1)),  # stale generation
            (pc, gc, done("s", 1)),  # no longer running
            (pb, gb, done("s", 1, b'"b"')),
            (pa, ga, done("s", 2)),
        ],
        T0,
    )
    assert kept == [True, False, False, True, True]
    assert sorted((e.name, e.count) for e in await storage.load_journal(pa)) == [
        ("s", 1),
        ("s", 2),
    ]
    assert [e.value for e in await storage.load_journal(pb)] == [b'"b"']
    assert await storage.load_journal(pc) == []
    assert await storage.record_steps([], T0) == []


async def test_journal_entry_fields_round_trip(storage: Storage) -> None:
    await storage.create_instances([new("a")], T0)
    pk, gen = await claim_one(storage)
    entries = [
        JournalEntry("d", 1, StepKind.DO, StepState.FAILED, error=ErrorInfo("E", "msg"), attempt=6),
        JournalEntry("z", 1, StepKind.SLEEP, StepState.SLEEPING, wake_at=T0 + 3600),
        JournalEntry("d", 2, StepKind.DO, StepState.DONE, value=b'{"a":[1,2]}', attempt=2),
    ]
    for e in entries:
        assert await record_step(storage, pk, gen, e, T0)
    got = sorted(await storage.load_journal(pk), key=lambda e: (e.name, e.count))
    assert got == sorted(entries, key=lambda e: (e.name, e.count))


# -- events and waits ------------------------------------------------------------------------


async def test_buffered_event_is_consumed_by_a_later_wait(storage: Storage) -> None:
    await storage.create_instances([new("a")], T0)
    pk, gen = await claim_one(storage)
    assert await storage.add_event(pk, "approval", b'{"ok":true}', T0 + 1) is None
    result = await storage.register_wait(pk, gen, "w", 1, "approval", T0 + 100, T0 + 2)
    assert result is not None
    assert result.deadline == T0 + 100
    assert result.value is not None
    assert decode(result.value) == {
        "type": "approval",
        "payload": {"ok": True},
        "timestamp": T0 + 1,
    }
    # consumed: a second wait of that type does not get it again
    second = await storage.register_wait(pk, gen, "w", 2, "approval", T0 + 100, T0 + 3)
    assert second is not None
    assert second.value is None


async def test_event_of_another_type_is_not_consumed(storage: Storage) -> None:
    await storage.create_instances([new("a")], T0)
    pk, gen = await claim_one(storage)
    await storage.add_event(pk, "other", b"1", T0)
    first = await storage.register_wait(pk, gen, "w", 1, "approval", T0 + 100, T0)
    assert first is not None
    assert first.value is None
    later = await storage.register_wait(pk, gen, "v", 1, "other", T0 + 100, T0)
    assert later is not None
    assert later.value is not None


async def test_event_for_a_waiting_instance_consumes_and_wakes_it(storage: Storage) -> None:
    await storage.create_instances([new("a")], T0)
    pk, gen = await claim_one(storage)
    await storage.register_wait(pk, gen, "w", 1, "go", T0 + 100, T0)
    assert await storage.suspend_run(pk, gen, T0 + 100, False, T0) == Status.WAITING
    delivery = await storage.add_event(pk, "go", b'"p"', T0 + 5)
    assert delivery is not None
    assert (delivery.name, delivery.count) == ("w", 1)
    assert decode(delivery.value)["payload"] == "p"
    row = await storage.get_instance_by_pk(pk)
    assert row is not None
    assert row.status == Status.QUEUED
    assert row.wake_at == T0 + 5
    (entry,) = await storage.load_journal(pk)
    assert entry.state == StepState.DONE
    assert entry.value == delivery.value


async def test_event_during_a_live_run_makes_the_hibernation_wake_at_once(storage: Storage) -> None:
    await storage.create_instances([new("a")], T0)
    pk, gen = await claim_one(storage)
    await storage.register_wait(pk, gen, "w", 1, "go", T0 + 100, T0)
    delivery = await storage.add_event(pk, "go", b"1", T0 + 1)
    assert delivery is not None
    # the run decided to hibernate until T0 + 50 without seeing the event: it must not sleep
    assert await storage.suspend_run(pk, gen, T0 + 50, False, T0 + 2) == Status.WAITING
    row = await storage.get_instance_by_pk(pk)
    assert row is not None
    assert row.wake_at == T0 + 1


async def test_event_after_the_deadline_is_buffered_not_consumed(storage: Storage) -> None:
    await storage.create_instances([new("a")], T0)
    pk, gen = await claim_one(storage)
    await storage.register_wait(pk, gen, "w", 1, "go", T0 + 10, T0)
    assert await storage.add_event(pk, "go", b"1", T0 + 11) is None


async def test_expire_wait_times_out_unless_an_event_won(storage: Storage) -> None:
    await storage.create_instances([new("a"), new("b")], T0)
    pk, gen = await claim_one(storage)
    await storage.register_wait(pk, gen, "w", 1, "go", T0 + 10, T0)
    err = ErrorInfo("WorkflowTimeoutError", "timed out")
    assert await storage.expire_wait(pk, gen, "w", 1, err, T0 + 10) == (True, None)
    (entry,) = await storage.load_journal(pk)
    assert entry.state == StepState.FAILED
    assert entry.error == err

    pk2, gen2 = await claim_one(storage)
    await storage.register_wait(pk2, gen2, "w", 1, "go", T0 + 10, T0)
    delivery = await storage.add_event(pk2, "go", b"7", T0 + 5)
    assert delivery is not None
    assert await storage.expire_wait(pk2, gen2, "w", 1, err, T0 + 10) == (False, delivery.value)


async def test_events_to_finished_or_missing_instances(storage: Storage) -> None:
    await storage.create_instances([new("a")], T0)
    pk, gen = await claim_one(storage)
    assert await storage.finish_run(pk, gen, Status.COMPLETE, b"1", None, T0)
    assert await storage.add_event(pk, "go", b"1", T0) is None
    assert await storage.add_event(99999, "go", b"1", T0) is None


# -- ending and hibernating runs ------------------------------------------------------------------


async def test_finish_run_records_output_or_error_once(storage: Storage) -> None:
    await storage.create_instances([new("a"), new("b")], T0)
    pk, gen = await claim_one(storage)
    assert await storage.finish_run(pk, gen, Status.COMPLETE, b'{"r":1}', None, T0 + 1)
    assert not await storage.finish_run(pk, gen, Status.ERRORED, None, ErrorInfo("E", "m"), T0)
    row = await storage.get_instance_by_pk(pk)
    assert row is not None
    assert (row.status, row.output, row.error, row.ended_at) == (
        Status.COMPLETE,
        b'{"r":1}',
        None,
        T0 + 1,
    )
    pk2, gen2 = await claim_one(storage)
    assert await storage.finish_run(pk2, gen2, Status.ERRORED, None, ErrorInfo("E", "m"), T0)
    row2 = await storage.get_instance_by_pk(pk2)
    assert row2 is not None
    assert row2.error == ErrorInfo("E", "m")


async def test_suspend_sets_wake_at_and_paused_when_pause_was_asked(storage: Storage) -> None:
    await storage.create_instances([new("a"), new("b")], T0)
    pk, gen = await claim_one(storage)
    assert await storage.suspend_run(pk, gen, T0 + 60, False, T0) == Status.WAITING
    row = await storage.get_instance_by_pk(pk)
    assert row is not None
    assert (row.status, row.wake_at) == (Status.WAITING, T0 + 60)
    assert await storage.suspend_run(pk, gen, T0 + 60, False, T0) is None  # not live any more

    pk2, gen2 = await claim_one(storage)
    result = await storage.control(pk2, "pause", T0)
    assert result is not None
    assert result.after == Status.WAITING_FOR_PAUSE
    assert await storage.suspend_run(pk2, gen2, T0 + 60, True, T0) == Status.PAUSED
    row2 = await storage.get_instance_by_pk(pk2)
    assert row2 is not None
    assert row2.wake_at is None


async def test_suspend_held_by_a_lifted_pause_requeues_at_once(storage: Storage) -> None:
    await storage.create_instances([new("a")], T0)
    pk, gen = await claim_one(storage)
    await storage.control(pk, "pause", T0)
    await storage.control(pk, "resume", T0 + 1)  # back to running before the run wound down
    assert await storage.suspend_run(pk, gen, None, True, T0 + 2) == Status.WAITING
    row = await storage.get_instance_by_pk(pk)
    assert row is not None
    assert row.wake_at == T0 + 2


async def test_release_run_requeues(storage: Storage) -> None:
    await storage.create_instances([new("a")], T0)
    pk, gen = await claim_one(storage)
    assert await storage.release_run(pk, gen, T0 + 3)
    row = await storage.get_instance_by_pk(pk)
    assert row is not None
    assert (row.status, row.wake_at) == (Status.QUEUED, T0 + 3)
    assert not await storage.release_run(pk, gen, T0 + 3)


# -- control ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "action", "before", "after"),
    [
        ("queued", "pause", Status.QUEUED, Status.PAUSED),
        ("running", "pause", Status.RUNNING, Status.WAITING_FOR_PAUSE),
        ("waiting", "pause", Status.WAITING, Status.PAUSED),
        ("complete", "pause", Status.COMPLETE, Status.COMPLETE),
        ("paused", "resume", Status.PAUSED, Status.QUEUED),
        ("complete", "resume", Status.COMPLETE, Status.COMPLETE),
        ("running", "terminate", Status.RUNNING, Status.TERMINATED),
        ("waiting", "terminate", Status.WAITING, Status.TERMINATED),
        ("complete", "terminate", Status.COMPLETE, Status.COMPLETE),
        ("complete", "restart", Status.COMPLETE, Status.QUEUED),
        ("running", "restart", Status.RUNNING, Status.QUEUED),
    ],
)
async def test_control_transitions(
    storage: Storage, setup: str, action: str, before: str, after: str
) -> None:
    await storage.create_instances([new("a")], T0)
    row = await storage.get_instance("wf", "", "a")
    assert row is not None
    pk = row.pk
    if setup != "queued":
        pk, gen = await claim_one(storage)
        await record_step(storage, pk, gen, done("s", 1), T0)
        if setup == "waiting":
            await storage.suspend_run(pk, gen, T0 + 100, False, T0)
        elif setup == "complete":
            await storage.finish_run(pk, gen, Status.COMPLETE, b"1", None, T0)
        elif setup == "paused":
            await storage.control(pk, "pause", T0)
            await storage.suspend_run(pk, gen, None, True, T0)
    result = await storage.control(pk, action, T0 + 1)
    assert result is not None
    assert (result.before, result.after) == (before, after)
    current = await storage.get_instance_by_pk(pk)
    assert current is not None
    assert current.status == after
    if (action == "terminate" and before != after) or action == "restart":
        assert result.generation == row.generation + 1
    if action == "restart":
        assert await storage.load_journal(pk) == []
        assert current.output is None
        assert current.wake_at == T0 + 1
    if after in (Status.PAUSED, Status.TERMINATED, Status.COMPLETE):
        assert current.wake_at is None


async def test_control_of_missing_instance(storage: Storage) -> None:
    assert await storage.control(4242, "pause", T0) is None


async def test_restart_drops_consumed_events_and_keeps_buffered_ones(storage: Storage) -> None:
    await storage.create_instances([new("a")], T0)
    pk, gen = await claim_one(storage)
    await storage.add_event(pk, "x", b"1", T0)
    await storage.register_wait(pk, gen, "w", 1, "x", T0 + 100, T0)  # consumes it
    await storage.add_event(pk, "y", b"2", T0)  # buffered
    result = await storage.control(pk, "restart", T0)
    assert result is not None
    pk2, gen2 = await claim_one(storage, T0 + 1)
    again = await storage.register_wait(pk2, gen2, "w", 1, "x", T0 + 100, T0 + 1)
    assert again is not None
    assert again.value is None
    kept = await storage.register_wait(pk2, gen2, "v", 1, "y", T0 + 100, T0 + 1)
    assert kept is not None
    assert kept.value is not None


async def test_delete_removes_everything(storage: Storage) -> None:
    await storage.create_instances([new("a")], T0)
    pk, gen = await claim_one(storage)
    await record_step(storage, pk, gen, done("s", 1), T0)
    await storage.add_event(pk, "x", b"1", T0)
    assert await storage.delete_instance(pk)
    assert not await storage.delete_instance(pk)
    assert await storage.get_instance("wf", "", "a") is None
    assert await storage.load_journal(pk) == []
    # the id can be used again
    (row,) = await storage.create_instances([new("a")], T0)
    assert row is not None


async def test_recover_requeues_running_and_pauses_waiting_for_pause(storage: Storage) -> None:
    await storage.create_instances([new("a"), new("b"), new("c")], T0)
    pk_a, _ = await claim_one(storage)
    pk_b, _ = await claim_one(storage)
    await storage.control(pk_b, "pause", T0)
    assert await storage.recover(T0 + 9) == 1
    a = await storage.get_instance_by_pk(pk_a)
    b = await storage.get_instance_by_pk(pk_b)
    assert a is not None
    assert b is not None
    assert (a.status, a.wake_at) == (Status.QUEUED, T0 + 9)
    assert (b.status, b.wake_at) == (Status.PAUSED, None)


# -- SQLite specifics ---------------------------------------------------------------------------


async def test_sqlite_migrations_produce_the_schema_and_are_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    store = SQLiteStorage(path)
    await store.open()
    await store.close()
    await store.open()  # a second open migrates nothing and keeps the data layout
    await store.close()
    conn = sqlite3.connect(path)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()
    assert version == migrations()[-1][0]
    assert {"instances", "steps", "events"} <= tables
    assert mode == "wal"


async def test_sqlite_group_commit_batches_concurrent_writes(tmp_path: Path) -> None:
    import asyncio

    store = SQLiteStorage(tmp_path / "g.sqlite3")
    await store.open()
    try:
        await asyncio.gather(*(store.create_instances([new(f"i{i}")], T0) for i in range(200)))
        stats = store.stats
        assert stats["operations"] >= 200
        # 200 concurrent writes must not cost 200 fsyncs
        assert stats["commits"] < 100
    finally:
        await store.close()


async def test_sqlite_data_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite3"
    store = SQLiteStorage(path)
    await store.open()
    await store.create_instances([new("a", params=b'{"k":"v"}')], T0)
    pk, gen = await claim_one(store)
    await record_step(store, pk, gen, done("s", 1, b'"r"'), T0)
    await store.close()
    store2 = SQLiteStorage(path)
    await store2.open()
    try:
        row = await store2.get_instance("wf", "", "a")
        assert row is not None
        assert row.params == b'{"k":"v"}'
        assert [e.value for e in await store2.load_journal(pk)] == [b'"r"']
    finally:
        await store2.close()


async def test_sqlite_bad_path_is_a_clear_error(tmp_path: Path) -> None:
    from dynamic_workflows.errors import StorageError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = SQLiteStorage(blocker / "sub" / "db.sqlite3")
    with pytest.raises((StorageError, OSError)):
        await store.open()


async def test_restart_from_a_step_keeps_the_steps_recorded_before_it(storage: Storage) -> None:
    await storage.create_instances([new("a")], T0)
    pk, gen = await claim_one(storage)
    for i, name in enumerate(["one", "two", "three"]):
        assert await record_step(storage, pk, gen, done(name, 1), T0 + i)
    await storage.add_event(pk, "kept", b"1", T0)
    await storage.register_wait(pk, gen, "w", 1, "kept", T0 + 100, T0 + 3)  # consumes it
    result = await storage.control(pk, "restart", T0 + 5, restart_from=("two", 1))
    assert result is not None
    assert (result.after, result.generation) == (Status.QUEUED, gen + 1)
    assert [(e.name, e.count) for e in await storage.load_journal(pk)] == [("one", 1)]
    # a partial restart leaves events as they were: the consumed one is not offered again
    pk2, gen2 = await claim_one(storage, T0 + 6)
    again = await storage.register_wait(pk2, gen2, "w", 1, "kept", T0 + 100, T0 + 6)
    assert again is not None
    assert again.value is None


# -- every transition, from every status --------------------------------------------------------
#
# The rules are core/transitions' (tested alone in tests/unit/test_transitions.py); these tests
# check that each backend applies every one of them, from every status an instance can be in.

T1 = T0 + 1
ERR = ErrorInfo("E", "m")
SETUPS = (
    Status.QUEUED,
    Status.RUNNING,
    Status.WAITING,
    Status.PAUSED,
    Status.WAITING_FOR_PAUSE,
    Status.COMPLETE,
    Status.ERRORED,
    Status.TERMINATED,
)
LIVE = (Status.RUNNING, Status.WAITING_FOR_PAUSE)
FINITE = (Status.COMPLETE, Status.ERRORED, Status.TERMINATED)


async def put_in(storage: Storage, status: str, id: str = "a", *, wait: bool = False) -> int:
    """Create an instance and bring it to ``status`` with the storage's own actions; returns its
    pk. Its run (if it had one) has generation 0 and recorded the step ``s``; with ``wait`` the
    run also registered a wait ``("w", 1)`` for an event ``go`` until ``T0 + 100``."""
    (row,) = await storage.create_instances([new(id)], T0)
    assert row is not None
    pk = row.pk
    if status == Status.QUEUED and not wait:
        return pk
    claims = await storage.claim_due(T0, 1)
    assert [c.instance.pk for c in claims] == [pk]
    assert await record_step(storage, pk, 0, done("s", 1), T0)
    if wait:
        assert await storage.register_wait(pk, 0, "w", 1, "go", T0 + 100, T0) is not None
    if status == Status.QUEUED:
        assert await storage.release_run(pk, 0, T0)
    elif status == Status.WAITING:
        assert await storage.suspend_run(pk, 0, T0 + 100, False, T0) == Status.WAITING
    elif status in (Status.PAUSED, Status.WAITING_FOR_PAUSE):
        await storage.control(pk, "pause", T0)
        if status == Status.PAUSED:
            assert await storage.suspend_run(pk, 0, None, True, T0) == Status.PAUSED
    elif status == Status.COMPLETE:
        assert await storage.finish_run(pk, 0, Status.COMPLETE, b'"out"', None, T0)
    elif status == Status.ERRORED:
        assert await storage.finish_run(pk, 0, Status.ERRORED, None, ERR, T0)
    elif status == Status.TERMINATED:
        await storage.control(pk, "terminate", T0)
    current = await storage.get_instance_by_pk(pk)
    assert current is not None
    assert current.status == status
    return pk


async def put_all(storage: Storage) -> dict[str, int]:
    """One instance in each status (the queued one last: the others are claimed at ``T0``)."""
    pks = {s: await put_in(storage, s, s) for s in SETUPS if s != Status.QUEUED}
    pks[Status.QUEUED] = await put_in(storage, Status.QUEUED, Status.QUEUED)
    return pks


async def row_of(storage: Storage, pk: int) -> InstanceRow:
    row = await storage.get_instance_by_pk(pk)
    assert row is not None
    return row


CONTROL_MOVES = {
    "pause": {
        Status.QUEUED: Status.PAUSED,
        Status.WAITING: Status.PAUSED,
        Status.RUNNING: Status.WAITING_FOR_PAUSE,
    },
    "resume": {Status.PAUSED: Status.QUEUED, Status.WAITING_FOR_PAUSE: Status.RUNNING},
    "terminate": {s: Status.TERMINATED for s in SETUPS if s not in FINITE},
    "restart": dict.fromkeys(SETUPS, Status.QUEUED),
}


@pytest.mark.parametrize("action", list(CONTROL_MOVES))
@pytest.mark.parametrize("status", SETUPS)
async def test_control_from_every_status(storage: Storage, status: str, action: str) -> None:
    pk = await put_in(storage, status)
    before = await row_of(storage, pk)
    result = await storage.control(pk, action, T1)
    after = CONTROL_MOVES[action].get(status, status)
    bumped = action == "restart" or (action == "terminate" and status not in FINITE)
    assert result is not None
    assert (result.before, result.after) == (status, after)
    assert result.generation == before.generation + bumped
    row = await row_of(storage, pk)
    if status not in CONTROL_MOVES[action]:
        assert row == before  # nothing changed, not even updated_at
        return
    assert (row.status, row.generation, row.updated_at) == (after, result.generation, T1)
    if after in (Status.PAUSED, Status.TERMINATED):
        assert row.wake_at is None
    elif after == Status.QUEUED:
        assert row.wake_at == T1
    else:
        assert row.wake_at == before.wake_at
    if action == "restart":
        assert (row.output, row.error, row.started_at, row.ended_at) == (None, None, None, None)
        assert await storage.load_journal(pk) == []
    else:
        assert [e.name for e in await storage.load_journal(pk)] == (
            [] if status == Status.QUEUED else ["s"]
        )
        assert (row.output, row.error, row.started_at) == (
            before.output,
            before.error,
            before.started_at,
        )
        assert row.ended_at == (T1 if after == Status.TERMINATED else before.ended_at)


@pytest.mark.parametrize("stale", [False, True])
@pytest.mark.parametrize("action", ["suspend", "release", "finish"])
@pytest.mark.parametrize("status", SETUPS)
async def test_live_run_actions_from_every_status(
    storage: Storage, status: str, action: str, stale: bool
) -> None:
    pk = await put_in(storage, status)
    before = await row_of(storage, pk)
    generation = before.generation + 1 if stale else 0
    answer: object
    if action == "suspend":
        answer = await storage.suspend_run(pk, generation, T0 + 50, False, T1)
    elif action == "release":
        answer = await storage.release_run(pk, generation, T1)
    else:
        answer = await storage.finish_run(pk, generation, Status.COMPLETE, b"7", None, T1)
    row = await row_of(storage, pk)
    if stale or status not in LIVE:
        assert answer in (None, False)
        assert row == before
        return
    pausing = status == Status.WAITING_FOR_PAUSE
    if action == "suspend":
        assert answer == (Status.PAUSED if pausing else Status.WAITING)
        assert (row.status, row.wake_at) == (
            (Status.PAUSED, None) if pausing else (Status.WAITING, T0 + 50)
        )
    elif action == "release":
        assert answer is True
        assert (row.status, row.wake_at) == (
            (Status.PAUSED, None) if pausing else (Status.QUEUED, T1)
        )
    else:
        assert answer is True
        assert (row.status, row.output, row.wake_at, row.ended_at) == (
            Status.COMPLETE,
            b"7",
            None,
            T1,
        )
    assert row.updated_at == T1
    assert row.generation == before.generation


@pytest.mark.parametrize("status", SETUPS)
async def test_waits_from_every_status(storage: Storage, status: str) -> None:
    pk = await put_in(storage, status, wait=status != Status.QUEUED)
    before = await row_of(storage, pk)
    journal = await storage.load_journal(pk)
    live = status in LIVE
    stale = before.generation + 1
    assert await storage.register_wait(pk, stale, "v", 1, "go", T0 + 100, T1) is None
    assert await storage.expire_wait(pk, stale, "w", 1, ERR, T1) is None
    registered = await storage.register_wait(pk, 0, "v", 1, "go", T0 + 100, T1)
    expired = await storage.expire_wait(pk, 0, "w", 1, ERR, T0 + 100)
    if not live:
        assert registered is None
        assert expired is None
        assert await storage.load_journal(pk) == journal
    else:
        assert registered == WaitResult(T0 + 100, None)
        assert expired == (True, None)
        states = {(e.name, e.count): e.state for e in await storage.load_journal(pk)}
        assert states == {
            ("s", 1): StepState.DONE,
            ("w", 1): StepState.FAILED,
            ("v", 1): StepState.WAITING,
        }
    assert await row_of(storage, pk) == before  # waits never move the instance


async def test_claim_takes_queued_and_waiting_only_even_when_others_are_due(
    storage: Storage,
) -> None:
    # A running and a pausing run that were sent an event carry a wake-up time too.
    for status in LIVE:
        pk = await put_in(storage, status, f"{status}-woken", wait=True)
        assert await storage.add_event(pk, "go", b"1", T1) is not None
        assert (await row_of(storage, pk)).wake_at == T1
    pks = await put_all(storage)
    claims = await storage.claim_due(T0 + 1000, 100)
    assert sorted(c.instance.pk for c in claims) == sorted(
        [pks[Status.QUEUED], pks[Status.WAITING]]
    )
    for claim in claims:
        assert claim.instance == await row_of(storage, claim.instance.pk)
        assert (claim.instance.status, claim.instance.wake_at) == (Status.RUNNING, None)
        assert claim.instance.updated_at == T0 + 1000
    started = {c.instance.pk: c.instance.started_at for c in claims}
    assert started[pks[Status.WAITING]] == T0  # its first run's start stays
    assert started[pks[Status.QUEUED]] == T0 + 1000
    assert await storage.next_due() is None


async def test_recover_from_every_status(storage: Storage) -> None:
    pks = await put_all(storage)
    before = {s: await row_of(storage, pk) for s, pk in pks.items()}
    assert await storage.recover(T1) == 1
    for status, pk in pks.items():
        row = await row_of(storage, pk)
        if status == Status.RUNNING:
            assert (row.status, row.wake_at, row.updated_at) == (Status.QUEUED, T1, T1)
        elif status == Status.WAITING_FOR_PAUSE:
            assert (row.status, row.wake_at, row.updated_at) == (Status.PAUSED, None, T1)
        else:
            assert row == before[status]
        assert row.generation == before[status].generation


@pytest.mark.parametrize("status", SETUPS)
async def test_an_event_from_every_status(storage: Storage, status: str) -> None:
    pk = await put_in(storage, status, wait=True)
    before = await row_of(storage, pk)
    delivery = await storage.add_event(pk, "go", b'"p"', T1)
    row = await row_of(storage, pk)
    states = {(e.name, e.count): e for e in await storage.load_journal(pk)}
    if status in FINITE:
        assert delivery is None
        assert row == before
        assert states[("w", 1)].state == StepState.WAITING
        # buffered: a fresh run gets it (a restart drops consumed events, not buffered ones)
        await storage.control(pk, "restart", T1)
        claims = await storage.claim_due(T1, 1)
        generation = claims[0].instance.generation
        got = await storage.register_wait(pk, generation, "w", 1, "go", T0 + 100, T1)
        assert got is not None
        assert got.value is not None
        assert decode(got.value) == {"type": "go", "payload": "p", "timestamp": T1}
        return
    assert delivery is not None
    assert (delivery.name, delivery.count) == ("w", 1)
    assert decode(delivery.value) == {"type": "go", "payload": "p", "timestamp": T1}
    assert (states[("w", 1)].state, states[("w", 1)].value) == (StepState.DONE, delivery.value)
    if status == Status.WAITING:
        assert (row.status, row.wake_at, row.updated_at) == (Status.QUEUED, T1, T1)
    elif status in LIVE:  # the hibernation that follows must not miss it
        assert row == msgspec.structs.replace(before, wake_at=T1)
    else:  # queued (due already) or paused (stays so until resumed)
        assert row == before


@pytest.mark.parametrize("status", SETUPS)
async def test_an_event_nobody_waits_for_is_buffered_from_every_status(
    storage: Storage, status: str
) -> None:
    pk = await put_in(storage, status)
    before = await row_of(storage, pk)
    journal = await storage.load_journal(pk)
    assert await storage.add_event(pk, "go", b"1", T1) is None
    assert await row_of(storage, pk) == before
    assert await storage.load_journal(pk) == journal


async def test_waits_take_buffered_events_oldest_first(storage: Storage) -> None:
    await storage.create_instances([new("a")], T0)
    pk, gen = await claim_one(storage)
    for i, (event_type, payload) in enumerate([("go", b"1"), ("other", b"x"), ("go", b"2")]):
        assert await storage.add_event(pk, event_type, payload, T0 + 1 + i) is None
    values = []
    for count in (1, 2, 3):
        result = await storage.register_wait(pk, gen, "w", count, "go", T0 + 100, T0 + 5)
        assert result is not None
        values.append(None if result.value is None else decode(result.value))
    assert values == [
        {"type": "go", "payload": 1, "timestamp": T0 + 1},
        {"type": "go", "payload": 2, "timestamp": T0 + 3},
        None,
    ]
    journal = {(e.name, e.count): e.state for e in await storage.load_journal(pk)}
    assert journal == {
        ("w", 1): StepState.DONE,
        ("w", 2): StepState.DONE,
        ("w", 3): StepState.WAITING,
    }


async def test_an_event_goes_to_the_wait_due_first(storage: Storage) -> None:
    await storage.create_instances([new("a")], T0)
    pk, gen = await claim_one(storage)
    await storage.register_wait(pk, gen, "late", 1, "go", T0 + 200, T0)
    await storage.register_wait(pk, gen, "early", 1, "go", T0 + 50, T0)
    await storage.register_wait(pk, gen, "else", 1, "other", T0 + 10, T0)
    first = await storage.add_event(pk, "go", b"1", T1)
    second = await storage.add_event(pk, "go", b"2", T1)
    assert first is not None
    assert second is not None
    assert [(first.name, decode(first.value)["payload"])] == [("early", 1)]
    assert [(second.name, decode(second.value)["payload"])] == [("late", 2)]
    assert await storage.add_event(pk, "go", b"3", T1) is None  # nobody left: buffered
    got = await storage.register_wait(pk, gen, "again", 1, "go", T0 + 300, T1)
    assert got is not None
    assert got.value is not None
    assert decode(got.value)["payload"] == 3


async def test_an_event_at_the_deadline_is_too_late_for_the_wait(storage: Storage) -> None:
    await storage.create_instances([new("a")], T0)
    pk, gen = await claim_one(storage)
    await storage.register_wait(pk, gen, "w", 1, "go", T0 + 10, T0)
    assert await storage.add_event(pk, "go", b"1", T0 + 10) is None
    assert (await row_of(storage, pk)).wake_at is None  # nothing woken
    assert await storage.expire_wait(pk, gen, "w", 1, ERR, T0 + 10) == (True, None)
    later = await storage.register_wait(pk, gen, "w", 2, "go", T0 + 100, T0 + 11)
    assert later is not None
    assert later.value is not None  # the late event was kept for the next wait


async def test_an_expiry_that_lost_the_race_to_an_event_and_one_that_won(
    storage: Storage,
) -> None:
    await storage.create_instances([new("a")], T0)
    pk, gen = await claim_one(storage)
    await storage.register_wait(pk, gen, "lost", 1, "go", T0 + 10, T0)
    await storage.register_wait(pk, gen, "won", 1, "go", T0 + 20, T0)
    delivery = await storage.add_event(pk, "go", b"1", T0 + 5)
    assert delivery is not None
    assert delivery.name == "lost"
    assert await storage.expire_wait(pk, gen, "lost", 1, ERR, T0 + 10) == (False, delivery.value)
    assert await storage.expire_wait(pk, gen, "won", 1, ERR, T0 + 20) == (True, None)
    assert await storage.expire_wait(pk, gen, "won", 1, ERR, T0 + 21) == (True, None)  # again
    assert await storage.add_event(pk, "go", b"2", T0 + 22) is None  # too late: buffered
    assert await storage.expire_wait(pk, gen, "never", 1, ERR, T0 + 22) is None  # not recorded
    journal = {e.name: (e.state, e.error) for e in await storage.load_journal(pk)}
    assert journal == {"lost": (StepState.DONE, None), "won": (StepState.FAILED, ERR)}


async def test_a_restarted_run_refuses_every_write_of_the_old_one(storage: Storage) -> None:
    await storage.create_instances([new("a")], T0)
    pk, old = await claim_one(storage)
    await storage.register_wait(pk, old, "w", 1, "go", T0 + 100, T0)
    result = await storage.control(pk, "restart", T1)
    assert result is not None
    pk2, new_gen = await claim_one(storage, T1)
    assert (pk2, new_gen) == (pk, old + 1)
    # the instance is running again, but not for the old run
    assert not await record_step(storage, pk, old, done("s", 1), T1)
    assert await storage.register_wait(pk, old, "w", 1, "go", T0 + 100, T1) is None
    assert await storage.expire_wait(pk, old, "w", 1, ERR, T1) is None
    assert await storage.suspend_run(pk, old, None, False, T1) is None
    assert not await storage.release_run(pk, old, T1)
    assert not await storage.finish_run(pk, old, Status.COMPLETE, b"1", None, T1)
    assert not await storage.park_run(pk, old, None, T1)
    assert not await storage.unpark_run(pk, old, T1)
    assert await storage.load_journal(pk) == []
    assert await record_step(storage, pk, new_gen, done("s", 1), T1)
    assert await storage.park_run(pk, new_gen, None, T1)
    assert await storage.unpark_run(pk, new_gen, T1)
    assert await storage.finish_run(pk, new_gen, Status.COMPLETE, b"1", None, T1)


async def test_restart_from_a_step_never_recorded_is_a_full_restart(storage: Storage) -> None:
    await storage.create_instances([new("a")], T0)
    pk, gen = await claim_one(storage)
    for i, name in enumerate(["one", "two"]):
        assert await record_step(storage, pk, gen, done(name, 1), T0 + i)
    await storage.add_event(pk, "x", b"1", T0)
    await storage.register_wait(pk, gen, "w", 1, "x", T0 + 100, T0 + 3)  # consumes it
    await storage.add_event(pk, "y", b"2", T0 + 4)  # buffered
    result = await storage.control(pk, "restart", T0 + 5, restart_from=("nope", 1))
    assert result is not None
    assert await storage.load_journal(pk) == []
    pk2, gen2 = await claim_one(storage, T0 + 6)
    consumed = await storage.register_wait(pk2, gen2, "w", 1, "x", T0 + 100, T0 + 6)
    buffered = await storage.register_wait(pk2, gen2, "v", 1, "y", T0 + 100, T0 + 6)
    assert consumed == WaitResult(T0 + 100, None)
    assert buffered is not None
    assert buffered.value is not None


async def test_restart_from_a_step_keeps_the_steps_before_it_from_any_status(
    storage: Storage,
) -> None:
    await storage.create_instances([new("a")], T0)
    pk, gen = await claim_one(storage)
    for i, name in enumerate(["one", "two", "three"]):
        assert await record_step(storage, pk, gen, done(name, 1), T0 + i)
    await storage.finish_run(pk, gen, Status.ERRORED, None, ERR, T0 + 4)
    result = await storage.control(pk, "restart", T0 + 5, restart_from=("three", 1))
    assert result == ControlResult(Status.ERRORED, Status.QUEUED, gen + 1)
    assert [e.name for e in await storage.load_journal(pk)] == ["one", "two"]
    row = await row_of(storage, pk)
    assert (row.error, row.ended_at, row.wake_at) == (None, None, T0 + 5)


async def test_a_pause_keeps_a_pending_wake_up_until_the_run_winds_down(
    storage: Storage,
) -> None:
    pk = await put_in(storage, Status.RUNNING, wait=True)
    assert await storage.add_event(pk, "go", b"1", T1) is not None
    paused = await storage.control(pk, "pause", T1 + 1)
    assert paused is not None
    assert paused.after == Status.WAITING_FOR_PAUSE
    assert (await row_of(storage, pk)).wake_at == T1
    assert not await storage.park_run(pk, 0, None, T1 + 1)  # a pausing run suspends instead
    assert await storage.unpark_run(pk, 0, T1 + 1)
    assert await storage.suspend_run(pk, 0, T0 + 100, False, T1 + 2) == Status.PAUSED
    assert (await row_of(storage, pk)).wake_at is None
    resumed = await storage.control(pk, "resume", T1 + 3)
    assert resumed is not None
    assert (resumed.after, (await row_of(storage, pk)).wake_at) == (Status.QUEUED, T1 + 3)


async def test_unknown_control_actions_are_refused(storage: Storage) -> None:
    pk = await put_in(storage, Status.RUNNING)
    before = await row_of(storage, pk)
    with pytest.raises(ValueError, match="unknown control action"):
        await storage.control(pk, "explode", T1)
    with pytest.raises(ValueError, match="unknown control action"):
        await storage.control(4242, "explode", T1)
    assert await row_of(storage, pk) == before


async def test_renew_leases_names_the_runs_that_lost_their_instance(storage: Storage) -> None:
    running = await put_in(storage, Status.RUNNING, "r")
    pausing = await put_in(storage, Status.WAITING_FOR_PAUSE, "p")
    ended = await put_in(storage, Status.COMPLETE, "c")
    lost = await storage.renew_leases([running, pausing, ended, 4242], T1)
    assert lost == {ended, 4242}


@pytest.mark.parametrize("fair", [True, False])
async def test_a_claim_ahead_starts_the_run_now_not_at_the_horizon(
    storage: Storage, fair: bool
) -> None:
    # The engine claims what is due within its warm horizon (ahead=5.0): the rows due by then
    # are taken, but the run starts now. SQLite and memory recorded started_at and updated_at
    # 5 s in the future, so an instance that failed at once read "started" after it "ended".
    await storage.create_instances([new("now"), new("soon")], T0)
    row = await storage.get_instance("wf", "", "soon")
    assert row is not None
    await storage.control(row.pk, "pause", T0)
    await storage.control(row.pk, "resume", T0 + 3)  # due at T0 + 3
    claims = await storage.claim_due(T0 + 1, 10, ahead=5.0, fair=fair)
    assert sorted(c.instance.id for c in claims) == ["now", "soon"]
    for claim in claims:
        assert claim.instance.started_at == T0 + 1
        stored = await storage.get_instance("wf", "", claim.instance.id)
        assert stored is not None
        assert stored.started_at == T0 + 1
        assert stored.updated_at == T0 + 1
