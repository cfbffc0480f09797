"""Fair claims on PostgreSQL visit only the scopes with due work (``tenants.next_wake``,
migration 0009): the hint stays a lower bound of every claimable instance's ``wake_at`` on each
way an instance gets one, a claim that visits a scope for nothing raises it again, and
that raise never loses to a writer committing beside it.

Two ``PostgresStorage`` objects on one schema stand for two nodes; ``Sql`` is a plain
connection to the same schema, for what the storage does not expose (and for a writer held open
in the middle of its transaction).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from dynamic_workflows.core.journal import ErrorInfo
from dynamic_workflows.storage import PostgresStorage
from dynamic_workflows.storage.base import NewInstance, Status
from dynamic_workflows.storage.postgres_db import split_url
from dynamic_workflows.storage.postgres_sql import Q

T0 = 1_000_000.0
LEASE = 30.0  # the lease of conftest.py's two nodes (NODE_LEASE)
CLAIMABLE = ["queued", "waiting"]


async def connect(url: str) -> asyncpg.Connection:
    dsn, schema = split_url(url)
    assert schema is not None
    return await asyncpg.connect(dsn, server_settings={"search_path": f'"{schema}"'})


@pytest.fixture
async def sql(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(pg_url)
    try:
        yield conn
    finally:
        await conn.close()


async def hints(sql: asyncpg.Connection) -> dict[str, float | None]:
    return {r[0]: r[1] for r in await sql.fetch("SELECT scope, next_wake FROM tenants")}


async def unclaimable(sql: asyncpg.Connection) -> list[tuple[Any, ...]]:
    """The claimable instances the hints hide: a claim would never visit their scope."""
    rows = await sql.fetch(
        """SELECT i.pk, i.scope, i.status, i.wake_at, t.next_wake
        FROM instances i LEFT JOIN tenants t ON t.scope = i.scope
        WHERE i.status = ANY ($1::text[]) AND i.wake_at IS NOT NULL
          AND (t.next_wake IS NULL OR t.next_wake > i.wake_at)""",
        CLAIMABLE,
    )
    return [tuple(r) for r in rows]


def new(scope: str, id: str) -> NewInstance:
    return NewInstance("wf", scope, id, b"null")


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    out = [plan]
    for child in plan.get("Plans", []):
        out += plan_nodes(child)
    return out


async def explain_candidates(sql: asyncpg.Connection, now: float) -> list[dict[str, Any]]:
    raw = await sql.fetchval(
        "EXPLAIN (ANALYZE, FORMAT JSON) " + Q["claim_candidates"], now, CLAIMABLE, "x", 50, 0.0
    )
    return plan_nodes(json.loads(raw)[0]["Plan"])


async def test_a_fair_claim_reads_only_the_scopes_with_due_work(
    nodes: tuple[PostgresStorage, PostgresStorage], sql: asyncpg.Connection
) -> None:
    a, _ = nodes
    idle = [f"t{i:03d}" for i in range(300)]
    await a.create_instances([new(s, "x") for s in idle], T0)
    assert len(await a.claim_due(T0, 1000)) == 300
    assert set((await hints(sql)).values()) == {T0}  # stale now: nothing of theirs is due
    assert await a.claim_due(T0, 1000) == []  # visits them for nothing: raises their hints
    assert set((await hints(sql)).values()) == {None}
    await a.create_instances([new("main", f"m{i}") for i in range(5)], T0 + 1)
    assert (await hints(sql))["main"] == T0 + 1

    scans = [n for n in await explain_candidates(sql, T0 + 2) if n.get("Relation Name")]
    probes = [n for n in scans if n["Relation Name"] == "instances"]
    tenants = [n for n in scans if n["Relation Name"] == "tenants"]
    # One scope probed, not 301 (and its earliest wake_at not looked up: it had due work).
    assert [n["Actual Loops"] for n in probes] == [1, 0]
    assert [n["Actual Rows"] for n in tenants] == [1]
    # With statistics (autovacuum's, or the migration's ANALYZE), through the partial index.
    await sql.execute("ANALYZE tenants")
    scans = [n for n in await explain_candidates(sql, T0 + 2) if n.get("Relation Name")]
    assert [n.get("Index Name") for n in scans if n["Relation Name"] == "tenants"] == [
        "tenants_next_wake"
    ]

    assert len(await a.claim_due(T0 + 2, 50)) == 5
    assert await a.claim_due(T0 + 2, 50) == []
    assert (await hints(sql))["main"] is None


async def test_a_claim_that_leaves_due_work_makes_no_extra_round_trip(
    nodes: tuple[PostgresStorage, PostgresStorage], sql: asyncpg.Connection
) -> None:
    a, _ = nodes
    await a.create_instances([new("s", f"i{i}") for i in range(5)], T0)
    ops = a.stats["operations"]
    assert len(await a.claim_due(T0, 2)) == 2  # a backlog: three left
    assert a.stats["operations"] == ops + 1
    assert (await hints(sql))["s"] == T0
    assert len(await a.claim_due(T0, 10)) == 3  # the last ones
    assert a.stats["operations"] == ops + 2
    assert (await hints(sql))["s"] == T0
    assert await a.claim_due(T0, 10) == []  # "s" visited for nothing: one raise
    assert a.stats["operations"] == ops + 4
    assert (await hints(sql))["s"] is None
    assert await a.claim_due(T0, 10) == []  # a scope not visited costs nothing
    assert a.stats["operations"] == ops + 5


async def test_a_scope_with_a_due_row_the_claim_may_not_take_is_not_raised_in_vain(
    nodes: tuple[PostgresStorage, PostgresStorage], sql: asyncpg.Connection
) -> None:
    # A run parked warm by its node, its wake-up time come: due, but its holder's to resume.
    # Visiting the scope finds nothing to take, and a raise would find the hint right.
    a, b = nodes
    await a.create_instances([new("s", "x")], T0)
    (claim,) = await a.claim_due(T0, 10)
    assert await a.park_run(claim.instance.pk, 0, T0 + 1, T0)
    ops = b.stats["operations"]
    assert await b.claim_due(T0 + 2, 10) == []
    assert await a.claim_due(T0 + 2, 10) == []
    assert b.stats["operations"] == ops + 1
    assert (await hints(sql))["s"] == T0


async def test_the_hint_is_a_lower_bound_on_every_path_that_gives_a_wake_at(
    nodes: tuple[PostgresStorage, PostgresStorage], sql: asyncpg.Connection, pg_url: str
) -> None:
    a, b = nodes

    async def check(scope: str, expected: float | None) -> None:
        assert await unclaimable(sql) == []
        assert (await hints(sql))[scope] == expected

    async def settled(store: PostgresStorage, now: float, scope: str) -> None:
        """A claim that finds nothing raises the hint of a scope it visits for nothing."""
        assert await store.claim_due(now, 10) == []
        await check(scope, None)

    # create
    await a.create_instances([new("s", i) for i in ("sleep", "event", "pause", "end")], T0)
    await check("s", T0)
    claims = {c.instance.id: c.instance for c in await a.claim_due(T0, 10)}
    await check("s", T0)  # nothing claimable left: stale, a lower bound still
    await settled(a, T0, "s")

    # a sleep (a suspension with a wake-up time to come): not visited until then
    sleeper = claims["sleep"]
    assert await a.suspend_run(sleeper.pk, 0, T0 + 100, False, T0 + 1) == Status.WAITING
    await check("s", T0 + 100)
    assert await a.claim_due(T0 + 50, 10) == []
    (woken,) = await a.claim_due(T0 + 100, 10)
    assert woken.instance.pk == sleeper.pk
    await settled(a, T0 + 100, "s")
    assert await a.finish_run(sleeper.pk, 0, Status.COMPLETE, b"1", None, T0 + 100)

    # an event wakes a waiting instance (its wait's timeout first lowered the hint)
    waiter = claims["event"]
    assert await a.register_wait(waiter.pk, 0, "w", 1, "go", T0 + 500, T0 + 2) is not None
    assert await a.suspend_run(waiter.pk, 0, T0 + 500, False, T0 + 2) == Status.WAITING
    await check("s", T0 + 500)
    assert await b.add_event(waiter.pk, "go", b"1", T0 + 3) is not None
    await check("s", T0 + 3)
    (woken,) = await b.claim_due(T0 + 4, 10)
    assert woken.instance.pk == waiter.pk
    await settled(b, T0 + 4, "s")
    assert await b.finish_run(waiter.pk, 0, Status.COMPLETE, b"1", None, T0 + 4)

    # a paused instance resumed
    paused = claims["pause"]
    await b.control(paused.pk, "pause", T0 + 5)
    assert await a.suspend_run(paused.pk, 0, None, True, T0 + 6) == Status.PAUSED
    await check("s", None)
    await b.control(paused.pk, "resume", T0 + 7)
    await check("s", T0 + 7)
    (resumed,) = await b.claim_due(T0 + 7, 10)
    await settled(b, T0 + 7, "s")
    assert await b.finish_run(
        paused.pk, resumed.instance.generation, Status.COMPLETE, b"1", None, T0 + 7
    )

    # a finished instance restarted; a queued one terminated
    ended = claims["end"]
    assert await a.finish_run(ended.pk, 0, Status.COMPLETE, b"1", None, T0 + 8)
    await b.control(ended.pk, "restart", T0 + 9)
    await check("s", T0 + 9)
    await b.control(ended.pk, "terminate", T0 + 10)
    await check("s", T0 + 9)  # a lower bound, stale: the next claim visits and raises it
    assert await b.claim_due(T0 + 10, 10) == []
    await check("s", None)

    # a cron tick's instance
    item = NewInstance("wf", "cron", "tick-1", b"null")
    assert await a.fire_schedule("wf", "* * * * *", T0 + 60, item, T0 + 11) is None  # first seen
    assert await a.fire_schedule("wf", "* * * * *", T0 + 120, item, T0 + 121) is not None
    await check("cron", T0 + 121)
    (ticked,) = await b.claim_due(T0 + 121, 10)
    assert ticked.instance.id == "tick-1"
    await settled(b, T0 + 121, "cron")
    assert await b.finish_run(ticked.instance.pk, 0, Status.COMPLETE, b"1", None, T0 + 121)

    # a node that dies: its parked run is taken over once the lease lapses, its running one is
    # requeued when it comes back under its id (recover)
    await a.create_instances([new("n", "parked"), new("n", "running")], T0 + 200)
    got = {c.instance.id: c.instance for c in await a.claim_due(T0 + 200, 10)}
    await settled(a, T0 + 200, "n")
    assert await a.park_run(got["parked"].pk, 0, T0 + 210, T0 + 201)
    await check("n", T0 + 210)
    assert await b.claim_due(T0 + 210, 10) == []  # the lease lives
    assert await a.renew_leases([got["running"].pk], T0 + 220) == set()  # (this one's does)
    (taken,) = await b.claim_due(T0 + 201 + LEASE + 1, 10)
    assert taken.instance.pk == got["parked"].pk
    assert taken.instance.generation == 1
    await settled(b, T0 + 201 + LEASE + 1, "n")
    revived = PostgresStorage(pg_url, node_id="node-a", lease_seconds=LEASE)
    await revived.open()
    try:
        assert await revived.recover(T0 + 300) == 1
        await check("n", T0 + 300)
        (again,) = await b.claim_due(T0 + 300, 10)
        assert again.instance.pk == got["running"].pk
    finally:
        await revived.close()
    await settled(b, T0 + 300, "n")


async def test_a_scope_without_a_tenants_row_gets_one_with_its_hint(
    nodes: tuple[PostgresStorage, PostgresStorage], sql: asyncpg.Connection
) -> None:
    # Every create inserts its scope's row; a row gone all the same (an operator's DELETE) is
    # made again by the next write that gives the scope a wake-up time.
    a, _ = nodes
    await a.create_instances([new("s", "x")], T0)
    (claim,) = await a.claim_due(T0, 10)
    await sql.execute("DELETE FROM tenants")
    assert await a.suspend_run(claim.instance.pk, 0, T0 + 5, False, T0 + 1) == Status.WAITING
    assert await hints(sql) == {"s": T0 + 5}
    await sql.execute(
        "INSERT INTO instances (workflow, scope, id, status, params, created_at, updated_at,"
        " wake_at) VALUES ('wf', 'u', 'y', 'queued', 'null', $1, $1, $1)",
        T0,
    )
    assert await hints(sql) == {"s": T0 + 5, "u": T0}  # (an insert of another kind)
    assert await unclaimable(sql) == []


# -- the raise against a writer committing beside it -----------------------------------------


async def stale(a: PostgresStorage, sql: asyncpg.Connection) -> int:
    """Scope "s" with a stale hint (T0) and no claimable instance; one of its instances ended
    (terminated), which a restart can queue again. Answers that instance's pk."""
    await a.create_instances([new("s", "old")], T0)
    await sql.execute("UPDATE instances SET status = 'terminated', wake_at = NULL")
    assert (await hints(sql))["s"] == T0
    return int(await sql.fetchval("SELECT pk FROM instances"))


async def write(conn: asyncpg.Connection, how: str, pk: int, wake_at: float) -> None:
    """A writer giving an instance of "s" a wake-up time: a create, or a requeue."""
    if how == "insert":
        await conn.execute(
            "INSERT INTO instances (workflow, scope, id, status, params, created_at, updated_at,"
            " wake_at) VALUES ('wf', 's', 'new', 'queued', 'null', $1, $1, $1)",
            wake_at,
        )
    else:
        await conn.execute(
            "UPDATE instances SET status = 'queued', wake_at = $2 WHERE pk = $1", pk, wake_at
        )


async def raise_hint(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval(Q["raise_next_wake"], ["s"], CLAIMABLE))


@pytest.mark.parametrize("how", ["insert", "update"])
async def test_a_raise_leaves_alone_a_scope_whose_writer_has_not_committed(
    nodes: tuple[PostgresStorage, PostgresStorage], sql: asyncpg.Connection, pg_url: str, how: str
) -> None:
    # The writer's wake-up time is after the hint, so it changes no tenants row: only its lock
    # on the scope's bucket tells the raise it is there. Raised meanwhile, the hint would pass
    # the writer's instance (which the raise cannot see) and it would never be claimed.
    a, _ = nodes
    pk = await stale(a, sql)
    writer = await connect(pg_url)
    try:
        tx = writer.transaction()
        await tx.start()
        await write(writer, how, pk, T0 + 10)
        assert await raise_hint(sql) == 0
        assert (await hints(sql))["s"] == T0
        await tx.commit()
    finally:
        await writer.close()
    assert await unclaimable(sql) == []
    assert await raise_hint(sql) == 1  # now it may
    assert (await hints(sql))["s"] == T0 + 10
    (claim,) = await a.claim_due(T0 + 10, 10)
    assert claim.instance.scope == "s"


@pytest.mark.parametrize("how", ["insert", "update"])
async def test_a_writer_behind_a_raise_waits_for_it_and_lowers_the_hint_itself(
    nodes: tuple[PostgresStorage, PostgresStorage], sql: asyncpg.Connection, pg_url: str, how: str
) -> None:
    a, _ = nodes
    pk = await stale(a, sql)
    raiser = await connect(pg_url)
    writer = await connect(pg_url)
    try:
        tx = raiser.transaction()  # the raise held open between its locks and its commit
        await tx.start()
        assert await raise_hint(raiser) == 1
        writing = asyncio.ensure_future(write(writer, how, pk, T0 + 10))
        for _ in range(500):
            waiting = await sql.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            if waiting:
                break
            await asyncio.sleep(0.01)
        assert waiting == 1
        assert not writing.done()
        await tx.commit()
        await writing
    finally:
        await raiser.close()
        await writer.close()
    assert await unclaimable(sql) == []
    assert (await hints(sql))["s"] == T0 + 10


async def test_a_raise_skips_a_tenants_row_another_transaction_holds(
    nodes: tuple[PostgresStorage, PostgresStorage], sql: asyncpg.Connection, pg_url: str
) -> None:
    # A create under a policy holds its tenant's row to its commit (lock_tenant): the raise
    # does not wait for it (it never waits: it can close no deadlock).
    a, _ = nodes
    await stale(a, sql)
    holder = await connect(pg_url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM tenants WHERE scope = 's' FOR UPDATE")
            assert await asyncio.wait_for(raise_hint(sql), 5) == 0
    finally:
        await holder.close()
    assert await raise_hint(sql) == 1
    assert (await hints(sql))["s"] is None


async def test_a_failed_raise_costs_the_claims_nothing(
    nodes: tuple[PostgresStorage, PostgresStorage], sql: asyncpg.Connection
) -> None:
    a, _ = nodes
    await a.create_instances([new("s", "x")], T0)
    await sql.execute("ALTER FUNCTION dwf_raise_next_wake(text[], text[]) RENAME TO gone")
    try:
        (claim,) = await a.claim_due(T0, 10)  # the raise fails after the claim's commit
    finally:
        await sql.execute("ALTER FUNCTION gone(text[], text[]) RENAME TO dwf_raise_next_wake")
    assert claim.instance.id == "x"
    assert (await hints(sql))["s"] == T0  # left low: safe, and raised at the next visit
    assert await a.claim_due(T0, 10) == []
    assert (await hints(sql))["s"] is None
    assert await a.finish_run(claim.instance.pk, 0, Status.ERRORED, None, ErrorInfo("E", "m"), T0)


async def test_three_nodes_creating_sleeping_and_claiming_at_once_strand_nothing(
    pg_url: str, sql: asyncpg.Connection
) -> None:
    # Creates, sleeps (suspensions with a wake-up to come) and fair claims of three nodes at
    # once, each its own pool: raises race with the writers for real. An instance hidden by a
    # hint raised past it would never finish.
    import random

    rng = random.Random(7)
    stores = [PostgresStorage(pg_url, node_id=f"n{i}", lease_seconds=LEASE) for i in range(3)]
    for store in stores:
        await store.open()
    clock = [T0]
    total = 240
    created = 0
    finished: set[int] = set()
    slept: set[int] = set()

    async def create() -> None:
        nonlocal created
        while created < total:
            batch = [new(f"s{rng.randrange(12)}", f"i{created + j}") for j in range(4)]
            created += len(batch)
            await stores[created % 3].create_instances(batch, clock[0])
            await asyncio.sleep(rng.random() * 0.004)

    async def work(store: PostgresStorage) -> None:
        while len(finished) < total:
            clock[0] += 0.01
            now = clock[0]
            for c in await store.claim_due(now, 5):
                pk, generation = c.instance.pk, c.instance.generation
                if pk not in slept and rng.random() < 0.5:
                    slept.add(pk)
                    wake = now + 1 + rng.random() * 2  # (far enough for its scope's hint to rise)
                    assert await store.suspend_run(pk, generation, wake, False, now) is not None
                else:
                    assert await store.finish_run(pk, generation, Status.COMPLETE, b"1", None, now)
                    finished.add(pk)
            await asyncio.sleep(0)

    raises = 0
    for store in stores:
        original = store._raise_next_wake

        async def counted(scopes: list[str], original: Any = original) -> None:
            nonlocal raises
            raises += 1
            await original(scopes)

        store._raise_next_wake = counted  # type: ignore[method-assign]
    try:
        await asyncio.wait_for(asyncio.gather(create(), *(work(s) for s in stores)), 30)
        assert raises > 10
        assert await unclaimable(sql) == []
        counts = await stores[0].count_instances()
        assert counts == {"complete": total}
        assert len(slept) > total // 4
    finally:
        for store in stores:
            await store.close()
