"""What the PostgreSQL backend adds to the contract: several nodes over one database (leases,
takeovers, parked runs, notifications), batched writes, and driver errors made StorageErrors.

Two ``PostgresStorage`` objects on one schema stand for two nodes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest

import pg_support
from dynamic_workflows.core.journal import JournalEntry, StepKind, StepState
from dynamic_workflows.errors import StorageError
from dynamic_workflows.storage import PostgresStorage, open_storage
from dynamic_workflows.storage.base import NewInstance, Status

T0 = 1_000_000.0
LEASE = 30.0  # the lease of conftest.py's two nodes (NODE_LEASE)


def new(id: str, workflow: str = "wf") -> NewInstance:
    return NewInstance(workflow, "", id, b"null")


def done(name: str, count: int = 1, value: bytes = b"1") -> JournalEntry:
    return JournalEntry(name, count, StepKind.DO, StepState.DONE, value=value, attempt=1)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def claim(store: PostgresStorage, now: float = T0) -> tuple[int, int]:
    (c,) = await store.claim_due(now, 1)
    return c.instance.pk, c.instance.generation


def test_urls_choose_postgres() -> None:
    for url in ("postgresql://u@h/db", "postgres://u@h/db"):
        store = open_storage(url)
        assert isinstance(store, PostgresStorage)
        assert store.shared
    assert (
        PostgresStorage("postgresql://h/db").node_id != PostgresStorage("postgresql://h/db").node_id
    )


# -- leases and takeovers -----------------------------------------------------------------------


async def test_a_lapsed_lease_is_taken_over_and_fences_the_old_owner(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = nodes
    await a.create_instances([new("x")], T0)
    pk, gen = await claim(a)
    assert await a.record_steps([(pk, gen, done("one"))], T0 + 1) == [True]
    assert await b.claim_due(T0 + LEASE - 1, 10) == []  # A's lease still lives
    assert await b.next_due() == T0 + LEASE  # when it lapses
    (taken,) = await b.claim_due(T0 + LEASE + 1, 10)
    assert taken.instance.pk == pk
    assert taken.instance.status == Status.RUNNING
    assert taken.instance.generation == gen + 1
    assert [e.name for e in taken.journal] == ["one"]
    # every write of the old owner is refused from now on
    assert await a.record_steps([(pk, gen, done("two"))], T0 + 32) == [False]
    assert not await a.finish_run(pk, gen, Status.COMPLETE, b"1", None, T0 + 32)
    assert await a.suspend_run(pk, gen, T0 + 99, False, T0 + 32) is None
    assert await a.renew_leases([pk], T0 + 32) == {pk}
    # the new owner's go through
    assert await b.record_steps([(pk, gen + 1, done("two"))], T0 + 33) == [True]
    assert await b.finish_run(pk, gen + 1, Status.COMPLETE, b'"ok"', None, T0 + 34)
    row = await a.get_instance_by_pk(pk)
    assert row is not None
    assert (row.status, row.output) == (Status.COMPLETE, b'"ok"')


async def test_a_node_never_takes_over_its_own_runs(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, _ = nodes
    await a.create_instances([new("x")], T0)
    pk, gen = await claim(a)
    assert await a.claim_due(T0 + 10 * LEASE, 10) == []  # its runs are in its memory
    assert await a.next_due() is None
    assert await a.record_steps([(pk, gen, done("s"))], T0 + 10 * LEASE) == [True]


async def test_a_pausing_run_taken_over_ends_paused(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = nodes
    await a.create_instances([new("x"), new("y")], T0)
    pk, _ = await claim(a)
    await a.control(pk, "pause", T0 + 1)
    (other,) = await b.claim_due(T0 + LEASE + 1, 10)  # takes y; x only changes
    assert other.instance.id == "y"
    row = await b.get_instance_by_pk(pk)
    assert row is not None
    assert (row.status, row.wake_at) == (Status.PAUSED, None)
    assert await b.control(pk, "resume", T0 + 40) is not None
    (again,) = await b.claim_due(T0 + 40, 10)
    assert again.instance.pk == pk


async def test_renew_leases_extends_and_reports_the_lost(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = nodes
    await a.create_instances([new("x"), new("y"), new("z")], T0)
    claims = await a.claim_due(T0, 3)
    x, y, z = (c.instance.pk for c in claims)
    assert await a.renew_leases([x, y, z], T0 + 20) == set()
    assert await b.claim_due(T0 + LEASE + 1, 10) == []  # leases now end at T0 + 50
    await b.control(y, "terminate", T0 + 21)
    assert await b.delete_instance(z)
    assert await a.renew_leases([x, y, z, 999_999], T0 + 22) == {y, z, 999_999}
    assert await a.renew_leases([], T0 + 22) == set()
    (taken,) = await b.claim_due(T0 + 53, 10)  # the lease ran from T0 + 22
    assert taken.instance.pk == x


async def test_recover_leaves_other_nodes_runs_alone(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = nodes
    await a.create_instances([new("x")], T0)
    pk, _ = await claim(a)
    assert await b.recover(T0 + 1) == 0
    row = await b.get_instance_by_pk(pk)
    assert row is not None
    assert row.status == Status.RUNNING
    assert await a.recover(T0 + 2) == 1  # a node restarting under its own id lets go
    (again,) = await b.claim_due(T0 + 2, 10)
    assert (again.instance.pk, again.instance.generation) == (pk, 0)  # nobody held it


# -- parked runs -------------------------------------------------------------------------------


async def test_a_parked_run_reads_waiting_and_stays_its_owners(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = nodes
    await a.create_instances([new("x")], T0)
    pk, gen = await claim(a)
    assert await a.park_run(pk, gen, T0 + 5, T0 + 1)
    row = await b.get_instance_by_pk(pk)
    assert row is not None
    assert (row.status, row.wake_at) == (Status.WAITING, T0 + 5)
    assert await b.claim_due(T0 + 10, 10) == []  # due, but held under a live lease
    assert await a.claim_due(T0 + 10, 10) == []  # its owner resumes it itself
    assert await b.next_due() == T0 + 1 + LEASE
    assert await a.renew_leases([pk], T0 + 10) == set()
    assert await a.unpark_run(pk, gen, T0 + 10)
    row = await b.get_instance_by_pk(pk)
    assert row is not None
    assert (row.status, row.wake_at) == (Status.RUNNING, None)
    assert await a.unpark_run(pk, gen, T0 + 11)  # running already: nothing to do
    assert await a.record_steps([(pk, gen, done("s"))], T0 + 11) == [True]


async def test_a_parked_run_whose_owner_died_is_taken_over(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = nodes
    await a.create_instances([new("x")], T0)
    pk, gen = await claim(a)
    assert await a.park_run(pk, gen, T0 + 100, T0)
    assert await b.claim_due(T0 + LEASE + 1, 10) == []  # lapsed, but not due yet
    (taken,) = await b.claim_due(T0 + 100, 10)
    assert (taken.instance.pk, taken.instance.generation) == (pk, gen + 1)
    assert not await a.unpark_run(pk, gen, T0 + 100)


async def test_park_refuses_a_pausing_or_stale_run(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = nodes
    await a.create_instances([new("x")], T0)
    pk, gen = await claim(a)
    assert not await b.park_run(pk, gen, T0 + 5, T0)  # not B's
    assert not await a.park_run(pk, gen + 1, T0 + 5, T0)  # stale generation
    await a.control(pk, "pause", T0)
    assert not await a.park_run(pk, gen, T0 + 5, T0)  # it must suspend (and pause) instead
    assert await a.suspend_run(pk, gen, T0 + 5, True, T0) == Status.PAUSED


async def test_an_event_for_a_parked_wait_wakes_it_for_its_owner(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = nodes
    await a.create_instances([new("x")], T0)
    pk, gen = await claim(a)
    await a.register_wait(pk, gen, "w", 1, "go", T0 + 100, T0)
    assert await a.park_run(pk, gen, T0 + 100, T0)
    delivery = await b.add_event(pk, "go", b'"p"', T0 + 2)  # the event arrives through B
    assert delivery is not None
    row = await b.get_instance_by_pk(pk)
    assert row is not None
    assert (row.status, row.wake_at) == (Status.QUEUED, T0 + 2)
    assert await b.claim_due(T0 + 3, 10) == []  # still A's: it is told and resumes warm
    assert await a.unpark_run(pk, gen, T0 + 3)
    (entry,) = await a.load_journal(pk)
    assert (entry.state, entry.value) == (StepState.DONE, delivery.value)


async def test_pausing_a_parked_run_takes_it_from_its_owner(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = nodes
    await a.create_instances([new("x")], T0)
    pk, gen = await claim(a)
    assert await a.park_run(pk, gen, T0 + 100, T0)
    result = await b.control(pk, "pause", T0 + 1)
    assert result is not None
    assert (result.before, result.after) == (Status.WAITING, Status.PAUSED)
    assert not await a.unpark_run(pk, gen, T0 + 2)
    assert await a.renew_leases([pk], T0 + 2) == {pk}


# -- notifications ------------------------------------------------------------------------------


async def test_listen_hears_new_instances_events_control_and_near_wake_ups(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = nodes
    heard: list[tuple[str, str]] = []
    await b.listen(lambda kind, subject: heard.append((kind, subject)))
    (row,) = await a.create_instances([new("x", workflow="greet")], T0)
    assert row is not None
    pk = row.pk
    await until(lambda: ("new", "greet") in heard)
    await a.add_event(pk, "go", b"1", T0)
    await until(lambda: ("event", str(pk)) in heard)
    await a.control(pk, "pause", T0)
    await until(lambda: ("control", str(pk)) in heard)
    await a.control(pk, "resume", T0)
    pk, gen = await claim(a)
    assert await a.suspend_run(pk, gen, T0 + 3600, False, T0) == Status.WAITING
    await a.create_instances([new("y", workflow="marker")], T0)
    await until(lambda: ("new", "marker") in heard)
    assert ("due", str(pk)) not in heard  # an hour away: nobody needs waking
    pk, gen = await claim(a, T0 + 3600)
    assert await a.suspend_run(pk, gen, T0 + 3601, False, T0 + 3600) == Status.WAITING
    await until(lambda: ("due", str(pk)) in heard)


async def test_nothing_is_heard_of_a_rolled_back_change(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = nodes
    heard: list[tuple[str, str]] = []
    await b.listen(lambda kind, subject: heard.append((kind, subject)))
    assert await a.control(12345, "pause", T0) is None
    assert await a.create_instances([new("x")], T0) != [None]
    assert await a.create_instances([new("x")], T0) == [None]  # exists: nothing new
    await a.create_instances([new("marker", workflow="m")], T0)
    await until(lambda: ("new", "m") in heard)
    assert heard == [("new", "wf"), ("new", "m")]


async def test_listener_reconnects_and_says_so(
    nodes: tuple[PostgresStorage, PostgresStorage], pg_server: pg_support.PgServer
) -> None:
    a, b = nodes
    heard: list[tuple[str, str]] = []
    await b.listen(lambda kind, subject: heard.append((kind, subject)))
    listener = b._listener
    assert listener is not None
    assert listener._conn is not None
    pid = listener._conn.get_server_pid()
    pg_server.execute("SELECT pg_terminate_backend($1)", pid)
    await until(lambda: ("reconnected", "") in heard)
    await a.create_instances([new("after", workflow="later")], T0)
    await until(lambda: ("new", "later") in heard)


async def test_schemas_of_one_database_do_not_hear_each_other(
    pg_server: pg_support.PgServer, pg_url: str
) -> None:
    other = pg_server.acquire()
    try:
        a = PostgresStorage(pg_url)
        b = PostgresStorage(pg_server.schema_url(other))
        await a.open()
        await b.open()
        try:
            assert a.channel != b.channel
            heard: list[tuple[str, str]] = []
            await b.listen(lambda kind, subject: heard.append((kind, subject)))
            await a.create_instances([new("x", workflow="mine")], T0)
            await b.create_instances([new("x", workflow="theirs")], T0)
            await until(lambda: ("new", "theirs") in heard)
            assert ("new", "mine") not in heard
        finally:
            await a.close()
            await b.close()
    finally:
        pg_server.release(other)


# -- batched writes -----------------------------------------------------------------------------


async def test_record_steps_is_one_round_trip_for_many_runs(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, _ = nodes
    await a.create_instances([new(f"i{i}") for i in range(20)], T0)
    claims = await a.claim_due(T0, 20)
    before = a.stats
    writes = [(c.instance.pk, c.instance.generation, done(f"s{j}")) for c in claims for j in (1, 2)]
    assert await a.record_steps(writes, T0) == [True] * 40
    after = a.stats
    assert after["round_trips"] - before["round_trips"] == 1
    assert after["commits"] - before["commits"] == 1


async def test_concurrent_record_steps_are_merged(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, _ = nodes
    await a.create_instances([new(f"i{i}") for i in range(50)], T0)
    claims = await a.claim_due(T0, 50)
    before = a.stats["round_trips"]
    results = await asyncio.gather(
        *(a.record_steps([(c.instance.pk, c.instance.generation, done("s"))], T0) for c in claims),
        a.record_steps([(claims[0].instance.pk, 99, done("stale"))], T0),
    )
    assert results == [[True]] * 50 + [[False]]
    assert a.stats["round_trips"] - before < 10
    for c in claims:
        assert [e.name for e in await a.load_journal(c.instance.pk)] == ["s"]


async def test_a_bad_call_merged_with_others_fails_alone(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, _ = nodes
    await a.create_instances([new("x"), new("y")], T0)
    (x, gx), (y, gy) = [(c.instance.pk, c.instance.generation) for c in await a.claim_due(T0, 2)]
    before = a.stats["round_trips"]
    results = await asyncio.gather(
        a.record_steps([(x, gx, done("fine"))], T0),
        a.record_steps([(y, gy, done("nul\x00"))], T0),  # PostgreSQL text holds no NUL
        a.record_steps([(y, gy, done("also fine"))], T0),
        return_exceptions=True,
    )
    assert results[0] == [True]
    assert isinstance(results[1], StorageError)
    assert results[2] == [True]
    assert a.stats["round_trips"] - before == 4  # merged, then each alone
    assert [e.name for e in await a.load_journal(y)] == ["also fine"]


async def test_the_same_step_twice_in_a_batch_keeps_the_last_write(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, _ = nodes
    await a.create_instances([new("x")], T0)
    pk, gen = await claim(a)
    retrying = JournalEntry("s", 1, StepKind.DO, StepState.RETRYING, attempt=1, wake_at=T0 + 1)
    assert await a.record_steps([(pk, gen, retrying), (pk, gen, done("s"))], T0) == [True, True]
    (entry,) = await a.load_journal(pk)
    assert entry.state == StepState.DONE


async def test_heartbeat_keeps_a_row_per_node(
    nodes: tuple[PostgresStorage, PostgresStorage], pg_server: pg_support.PgServer, pg_url: str
) -> None:
    a, b = nodes
    await a.heartbeat(T0)
    await b.heartbeat(T0 + 1)
    await a.heartbeat(T0 + 5)
    rows = pg_server.fetch(
        f"SELECT id, started_at, heartbeat_at, pid FROM {schema_of(pg_url)}.nodes ORDER BY id"
    )
    assert [tuple(r)[:3] for r in rows] == [("node-a", T0, T0 + 5), ("node-b", T0 + 1, T0 + 1)]


# -- errors ------------------------------------------------------------------------------------


async def test_no_server_is_a_clear_storage_error() -> None:
    store = PostgresStorage("postgresql://nobody:secret@127.0.0.1:1/nothing")
    with pytest.raises(StorageError, match="cannot connect to PostgreSQL") as info:
        await store.open()
    assert "secret" not in str(info.value)  # the password is not printed


async def test_calls_on_a_closed_storage_are_storage_errors(pg_url: str) -> None:
    store = PostgresStorage(pg_url)
    with pytest.raises(StorageError, match="not open"):
        await store.get_instance_by_pk(1)
    with pytest.raises(StorageError, match="not open"):
        await store.record_steps([(1, 0, done("s"))], T0)


def schema_of(url: str) -> str:
    return url.rsplit("schema=", 1)[1]


def kill_storage_connections(pg_server: pg_support.PgServer, waiting: bool = False) -> int:
    """Terminate the storage's server processes in this session's database (only those waiting
    for a lock, if ``waiting``); how many."""
    rows = pg_server.fetch(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'dynamic-workflows' AND datname = current_database() "
        "AND ($1 = false OR wait_event_type = 'Lock')",
        waiting,
    )
    return len(rows)


async def test_a_read_goes_on_over_a_new_connection(
    pg_url: str, pg_server: pg_support.PgServer
) -> None:
    store = PostgresStorage(pg_url, pool_size=1)
    await store.open()
    try:
        (row,) = await store.create_instances([new("x")], T0)
        assert row is not None
        assert kill_storage_connections(pg_server) == 1
        again = await store.get_instance_by_pk(row.pk)
        assert again is not None
        assert again.id == "x"
    finally:
        await store.close()


async def test_a_write_cut_off_midway_has_an_unknown_outcome(
    pg_url: str, pg_server: pg_support.PgServer
) -> None:
    store = PostgresStorage(pg_url)
    await store.open()
    locker = await asyncpg.connect(
        pg_server.url, server_settings={"search_path": schema_of(pg_url)}
    )
    try:
        await store.create_instances([new("x")], T0)
        pk, gen = await claim(store)
        async with locker.transaction():
            await locker.execute("SELECT 1 FROM instances WHERE pk = $1 FOR UPDATE", pk)
            # a single-statement write (it commits by itself), waiting for the row
            task = asyncio.create_task(store.record_steps([(pk, gen, done("s"))], T0))
            await until(lambda: kill_storage_connections(pg_server, waiting=True) == 1)
            with pytest.raises(StorageError, match="outcome is unknown"):
                await task
    finally:
        await locker.close()
        await store.close()


async def test_a_transaction_cut_off_before_its_commit_runs_again(
    pg_url: str, pg_server: pg_support.PgServer
) -> None:
    store = PostgresStorage(pg_url)
    await store.open()
    locker = await asyncpg.connect(
        pg_server.url, server_settings={"search_path": schema_of(pg_url)}
    )
    try:
        (row,) = await store.create_instances([new("x")], T0)
        assert row is not None
        async with locker.transaction():
            await locker.execute("SELECT 1 FROM instances WHERE pk = $1 FOR UPDATE", row.pk)
            task = asyncio.create_task(store.control(row.pk, "pause", T0))
            await until(lambda: kill_storage_connections(pg_server, waiting=True) == 1)
            await asyncio.sleep(0.05)
            assert not task.done()  # retried: waiting for the row again
        result = await task
        assert result is not None
        assert (result.before, result.after) == (Status.QUEUED, Status.PAUSED)
    finally:
        await locker.close()
        await store.close()


async def test_sql_errors_are_storage_errors(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, _ = nodes
    with pytest.raises(StorageError, match="PostgreSQL: create failed"):
        await a.create_instances([NewInstance("wf", "", "nul\x00", b"null")], T0)


def test_without_a_server_tests_skip_but_fail_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        pg_support.unavailable("nobody home")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required under CI=true"):
        pg_support.unavailable("nobody home")


async def test_delete_leaves_no_step_of_a_write_in_flight(
    pg_url: str, pg_server: pg_support.PgServer
) -> None:
    store = PostgresStorage(pg_url)
    await store.open()
    locker = await asyncpg.connect(
        pg_server.url, server_settings={"search_path": schema_of(pg_url)}
    )
    try:
        await store.create_instances([new("x")], T0)
        pk, _ = await claim(store)
        async with locker.transaction():  # what record_steps does, caught in the middle
            await locker.execute("SELECT 1 FROM instances WHERE pk = $1 FOR SHARE", pk)
            await locker.execute(
                "INSERT INTO steps (instance_pk, name, count, kind, state, recorded_at) "
                "VALUES ($1, 's', 1, 'do', 'done', 0)",
                pk,
            )
            task = asyncio.create_task(store.delete_instance(pk))
            await asyncio.sleep(0.05)
            assert not task.done()  # waits for the write to commit
        assert await task
        assert await locker.fetchval("SELECT count(*) FROM steps WHERE instance_pk = $1", pk) == 0
    finally:
        await locker.close()
        await store.close()
