"""Tenant caps under concurrent creates and claims: never one over. On PostgreSQL, several nodes
(storages, each its own pool) on one database race; on SQLite and memory, concurrent calls of
one engine's storage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dynamic_workflows.core.tenancy import TenantPolicy
from dynamic_workflows.errors import TenantLimitError
from dynamic_workflows.storage import MemoryStorage, SQLiteStorage, Storage
from dynamic_workflows.storage.base import NewInstance, Status
from dynamic_workflows.storage.postgres import PostgresStorage

T0 = 1_000_000.0
NODES = 3


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[Storage]]:
    """The storages racing: three PostgreSQL nodes on one database, or one storage three times
    (SQLite allows one owner per file)."""
    stores: list[Storage]
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
        stores = [PostgresStorage(url, node_id=f"node{i}") for i in range(NODES)]
    elif request.param == "sqlite":
        stores = [SQLiteStorage(tmp_path / "race.sqlite3")]
    else:
        stores = [MemoryStorage()]
    for s in stores:
        await s.open()
    try:
        yield [stores[i % len(stores)] for i in range(NODES)]
    finally:
        for s in stores:
            await s.close()


async def test_concurrent_creates_never_pass_max_live_or_the_burst(nodes: list[Storage]) -> None:
    policy = {"t": TenantPolicy(max_live=25, create_rate=0.001, create_burst=40)}
    created = refused = 0

    async def create(i: int) -> None:
        nonlocal created, refused
        store = nodes[i % NODES]
        try:
            await store.create_instances(
                [NewInstance("wf", "t", f"{i}-{j}", b"null") for j in range(2)], T0, tenants=policy
            )
            created += 2
        except TenantLimitError:
            refused += 1

    await asyncio.gather(*(create(i) for i in range(60)))
    counts = await nodes[0].count_instances(scope="t")
    assert created == sum(counts.values()) == 24  # 12 pairs: the 13th would make 26 > 25
    assert refused == 48
    # The bucket, shared by every node, was charged for what was created only.
    state = await nodes[0].get_tenant("t")
    assert state is not None
    assert state.tokens == pytest.approx(40 - 24, abs=0.01)


async def test_concurrent_claims_never_pass_max_running_or_a_workflow_limit(
    nodes: list[Storage],
) -> None:
    await nodes[0].create_instances(
        [NewInstance("wf", "t", f"t{i}", b"null") for i in range(40)],
        T0,
        tenants={"t": TenantPolicy(max_running=7)},
    )
    await nodes[0].create_instances(
        [NewInstance("capped", f"u{i % 4}", f"c{i}", b"null") for i in range(40)], T0
    )
    limits = {"capped": 5}
    claimed: list[int] = []
    for _round in range(4):
        got = await asyncio.gather(
            *(nodes[i % NODES].claim_due(T0, 3, workflow_limits=limits) for i in range(12))
        )
        claimed += [c.instance.pk for claims in got for c in claims]
        running = await nodes[0].list_instances(None, status=Status.RUNNING, limit=1000)
        assert sum(r.scope == "t" for r in running) <= 7
        assert sum(r.workflow == "capped" for r in running) <= 5
    running = await nodes[0].list_instances(None, status=Status.RUNNING, limit=1000)
    assert sum(r.scope == "t" for r in running) == 7
    assert sum(r.workflow == "capped" for r in running) == 5
    assert len(claimed) == len(set(claimed)) == 12  # nothing claimed twice
