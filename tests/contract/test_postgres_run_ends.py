"""The PostgreSQL backend ends runs in batches (finish_run, suspend_run, release_run): the rows
of every run that ended meanwhile are read in one statement, each run's transition decides, and
one statement writes the changes of the rows that still read as they were. A row changed in
between, or a second end of one row, ends the locked way; a call that breaks the statement
fails alone; a statement cut off has an unknown outcome, as any write's.

Two ``PostgresStorage`` objects on one schema stand for two nodes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

import pg_support
from dynamic_workflows.core.journal import ErrorInfo
from dynamic_workflows.errors import StorageError
from dynamic_workflows.storage import PostgresStorage
from dynamic_workflows.storage.base import NewInstance, Status

T0 = 1_000_000.0


def new(id: str) -> NewInstance:
    return NewInstance("wf", "", id, b"null")


async def claimed(store: PostgresStorage, n: int) -> list[tuple[int, int]]:
    await store.create_instances([new(f"i{i}") for i in range(n)], T0)
    claims = await store.claim_due(T0, n)
    assert len(claims) == n
    return [(c.instance.pk, c.instance.generation) for c in claims]


async def test_the_ends_of_many_runs_are_two_statements(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = nodes
    runs = await claimed(a, 20)
    heard: list[tuple[str, str]] = []
    await b.listen(lambda kind, subject: heard.append((kind, subject)))
    before = a.stats
    results = await asyncio.gather(
        *(a.finish_run(pk, g, Status.COMPLETE, b"1", None, T0 + 1) for pk, g in runs[:8]),
        *(
            a.finish_run(pk, g, Status.ERRORED, None, ErrorInfo("E", "boom"), T0 + 1)
            for pk, g in runs[8:10]
        ),
        *(a.suspend_run(pk, g, T0 + 2, False, T0 + 1) for pk, g in runs[10:13]),  # due soon
        *(a.suspend_run(pk, g, T0 + 3600, False, T0 + 1) for pk, g in runs[13:15]),
        *(a.release_run(pk, g, T0 + 1) for pk, g in runs[15:18]),
        a.finish_run(runs[18][0], runs[18][1] + 1, Status.COMPLETE, b"1", None, T0 + 1),  # stale
        a.suspend_run(runs[19][0], runs[19][1] + 1, T0 + 2, False, T0 + 1),  # stale
    )
    after = a.stats
    assert results == [True] * 10 + [Status.WAITING] * 5 + [True] * 3 + [False, None]
    assert after["round_trips"] - before["round_trips"] == 2  # read, then write: no BEGIN
    assert after["commits"] - before["commits"] == 1

    rows = {pk: await b.get_instance_by_pk(pk) for pk, _ in runs}
    expected: list[tuple[Any, ...]] = (
        [(Status.COMPLETE, b"1", None, None, T0 + 1)] * 8
        + [(Status.ERRORED, None, ErrorInfo("E", "boom"), None, T0 + 1)] * 2
        + [(Status.WAITING, None, None, T0 + 2, None)] * 3
        + [(Status.WAITING, None, None, T0 + 3600, None)] * 2
        + [(Status.QUEUED, None, None, T0 + 1, None)] * 3
        + [(Status.RUNNING, None, None, None, None)] * 2
    )
    for (pk, _), want in zip(runs, expected, strict=True):
        row = rows[pk]
        assert row is not None
        assert (row.status, row.output, row.error, row.wake_at, row.ended_at) == want
    # the ended runs' rows are nobody's now; the stale ones' are still A's
    b_claims = await b.claim_due(T0 + 1, 100)
    assert sorted(c.instance.pk for c in b_claims) == sorted(pk for pk, _ in runs[15:18])
    # near wake-ups and requeued runs are announced, at the commit
    due = {f"due:{pk}" for pk, _ in runs[10:13] + runs[15:18]}
    await until(lambda: due <= {f"{k}:{s}" for k, s in heard})
    assert not {f"due:{pk}" for pk, _ in runs[13:15]} & {f"{k}:{s}" for k, s in heard}


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def after_the_read(store: PostgresStorage, meanwhile: Callable[[], Awaitable[object]]) -> list[str]:
    """Run ``meanwhile`` once, between a batch's read of its rows and its write; the storage
    operations run, in order."""
    db = store._db
    original = db.run
    ops: list[str] = []

    async def run(op: str, fn: Any, **kwargs: Any) -> Any:
        ops.append(op)
        result = await original(op, fn, **kwargs)
        if op == "end_runs" and not kwargs["write"] and ops.count("end_runs") == 1:
            await meanwhile()
        return result

    db.run = run  # type: ignore[method-assign]
    return ops


async def test_a_run_paused_between_the_read_and_the_write_ends_paused(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = nodes
    [(pk, gen)] = await claimed(a, 1)
    ops = after_the_read(a, lambda: b.control(pk, "pause", T0 + 1))
    assert await a.suspend_run(pk, gen, T0 + 100, False, T0 + 2) == Status.PAUSED
    assert ops == ["end_runs", "end_runs", "suspend_run"]  # read, write (missed), locked
    row = await b.get_instance_by_pk(pk)
    assert row is not None
    assert (row.status, row.wake_at) == (Status.PAUSED, None)


async def test_a_run_terminated_between_the_read_and_the_write_is_stale(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = nodes
    [(pk, gen)] = await claimed(a, 1)
    after_the_read(a, lambda: b.control(pk, "terminate", T0 + 1))
    assert not await a.finish_run(pk, gen, Status.COMPLETE, b"1", None, T0 + 2)
    row = await b.get_instance_by_pk(pk)
    assert row is not None
    assert (row.status, row.output, row.generation) == (Status.TERMINATED, None, gen + 1)


async def test_an_event_between_the_read_and_the_write_is_not_missed(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = nodes
    [(pk, gen)] = await claimed(a, 1)
    await a.register_wait(pk, gen, "w", 1, "go", T0 + 100, T0)
    after_the_read(a, lambda: b.add_event(pk, "go", b"1", T0 + 1))
    # the run saw no event and hibernates until its deadline: the event's wake-up wins
    assert await a.suspend_run(pk, gen, T0 + 100, False, T0 + 2) == Status.WAITING
    row = await b.get_instance_by_pk(pk)
    assert row is not None
    assert (row.status, row.wake_at) == (Status.WAITING, T0 + 1)


async def test_parked_runs_end_in_the_batch(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = nodes
    (x, gx), (y, gy) = await claimed(a, 2)
    assert await a.park_run(x, gx, T0 + 5, T0)
    assert await a.park_run(y, gy, T0 + 100, T0)
    await b.control(y, "pause", T0 + 1)  # taken from its owner: its run is stale
    before = a.stats["round_trips"]
    finished = await asyncio.gather(
        a.finish_run(x, gx, Status.COMPLETE, b"1", None, T0 + 5),
        a.finish_run(y, gy, Status.COMPLETE, b"1", None, T0 + 5),
    )
    assert finished == [True, False]
    assert a.stats["round_trips"] - before == 2
    row = await b.get_instance_by_pk(x)
    assert row is not None
    assert (row.status, row.wake_at) == (Status.COMPLETE, None)
    assert await a.renew_leases([x], T0 + 6) == {x}  # A let go of it


async def test_two_ends_of_one_row_in_a_batch(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = nodes
    [(pk, gen)] = await claimed(a, 1)
    results = await asyncio.gather(
        a.finish_run(pk, gen + 1, Status.COMPLETE, b"2", None, T0 + 1),  # a stale run's
        a.finish_run(pk, gen, Status.COMPLETE, b"1", None, T0 + 1),
        a.release_run(pk, gen, T0 + 1),  # ended already
    )
    assert results == [False, True, False]
    row = await b.get_instance_by_pk(pk)
    assert row is not None
    assert (row.status, row.output) == (Status.COMPLETE, b"1")


async def test_a_bad_end_merged_with_others_fails_alone(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = nodes
    (x, gx), (y, gy), (z, gz) = await claimed(a, 3)
    results = await asyncio.gather(
        a.finish_run(x, gx, Status.COMPLETE, b"1", None, T0 + 1),
        # PostgreSQL text holds no NUL
        a.finish_run(y, gy, Status.ERRORED, None, ErrorInfo("E", "nul\x00"), T0 + 1),
        a.suspend_run(z, gz, None, False, T0 + 1),
        return_exceptions=True,
    )
    assert results[0] is True
    assert isinstance(results[1], StorageError)
    assert results[2] == Status.WAITING
    statuses = [(r.status if (r := await b.get_instance_by_pk(pk)) else None) for pk in (x, y, z)]
    assert statuses == [Status.COMPLETE, Status.RUNNING, Status.WAITING]


async def test_an_end_cut_off_midway_has_an_unknown_outcome_and_may_be_made_again(
    pg_url: str, pg_server: pg_support.PgServer
) -> None:
    store = PostgresStorage(pg_url)
    await store.open()
    locker = await asyncpg.connect(
        pg_server.url, server_settings={"search_path": pg_url.rsplit("schema=", 1)[1]}
    )
    try:
        [(pk, gen)] = await claimed(store, 1)
        async with locker.transaction():
            await locker.execute("SELECT 1 FROM instances WHERE pk = $1 FOR UPDATE", pk)
            task = asyncio.create_task(
                store.finish_run(pk, gen, Status.COMPLETE, b"1", None, T0 + 1)
            )
            await until(lambda: kill_waiting(pg_server) == 1)
            with pytest.raises(StorageError, match="outcome is unknown"):
                await task
        # the engine makes a run's end again until it is recorded
        assert await store.finish_run(pk, gen, Status.COMPLETE, b"1", None, T0 + 2)
        row = await store.get_instance_by_pk(pk)
        assert row is not None
        assert (row.status, row.ended_at) == (Status.COMPLETE, T0 + 2)
    finally:
        await locker.close()
        await store.close()


def kill_waiting(pg_server: pg_support.PgServer) -> int:
    rows = pg_server.fetch(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'dynamic-workflows' AND datname = current_database() "
        "AND wait_event_type = 'Lock'"
    )
    return len(rows)
