"""Cron-triggered workflows on the engine, in virtual time, on every backend: each tick creates
one instance whose event carries ``schedule``; a restart fires only the latest missed tick; two
engines on one PostgreSQL database fire each tick once."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from unit_support import workflow

from dynamic_workflows.core.clock import MockClock
from dynamic_workflows.core.codec import decode
from dynamic_workflows.core.cron import tick_instance_id
from dynamic_workflows.errors import StorageError
from dynamic_workflows.storage import MemoryStorage, SQLiteStorage, Storage, open_storage
from dynamic_workflows.testing import WorkflowTestEnv

EVERY5 = "*/5 * * * *"


def at(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


def ms(*args: int) -> int:
    return round(at(*args) * 1000)


@workflow
async def echo(event: Any, step: Any) -> Any:
    return {
        "schedule": event.get("schedule"),
        "instanceId": event["instanceId"],
        "payload": event["payload"],
    }


@pytest.fixture
def stores(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[], Storage]]:
    """A factory of storages that all open the same database (a restart, or another node)."""
    memory = MemoryStorage()
    pg = request.getfixturevalue("pg_server") if backend == "postgresql" else None
    schema = pg.acquire() if pg is not None else None

    def make() -> Storage:
        if backend == "memory":
            return memory
        if backend == "sqlite":
            return SQLiteStorage(tmp_path / "dwf.sqlite3", durability="normal")
        assert pg is not None
        assert schema is not None
        return open_storage(pg.schema_url(schema), durability="normal")

    yield make
    if pg is not None and schema is not None:
        pg.release(schema)


async def outputs(wf: WorkflowTestEnv, count: int) -> list[dict[str, Any]]:
    """The outputs of the workflow's instances, once ``count`` of them completed (oldest first)."""

    async def rows() -> list[Any]:
        return await wf.storage.list_instances("workflow", limit=1000)

    found: list[Any] = []

    async def complete() -> bool:
        nonlocal found
        found = await rows()
        return len(found) >= count and all(r.status == "complete" for r in found)

    for _ in range(5000):
        if await complete():
            break
        await asyncio.sleep(0.001)
    assert len(found) == count, [r.id for r in found]
    out = []
    for r in reversed(found):
        status = await (await wf.binding.get(r.id)).status()
        out.append(status["output"])
    return out


async def test_each_tick_creates_one_instance_with_the_schedule_in_its_event(
    stores: Callable[[], Storage],
) -> None:
    clock = MockClock(at(2026, 1, 1, 0, 1), autojump=False)
    async with WorkflowTestEnv(echo, storage=stores(), clock=clock, schedules=EVERY5) as wf:
        # Seen first at 00:01: nothing fires until 00:05.
        assert await outputs(wf, 0) == []
        clock.advance(240)  # 00:05
        (first,) = await outputs(wf, 1)
        assert first["schedule"] == {"cron": EVERY5, "scheduledTime": ms(2026, 1, 1, 0, 5)}
        assert first["instanceId"].startswith("cron-20260101T0005Z-")
        assert first["payload"] is None
        clock.advance(299)  # 00:09:59: no tick
        assert len(await outputs(wf, 1)) == 1
        clock.advance(1)  # 00:10
        got = await outputs(wf, 2)
        assert [o["schedule"]["scheduledTime"] for o in got] == [
            ms(2026, 1, 1, 0, 5),
            ms(2026, 1, 1, 0, 10),
        ]


async def test_a_restart_fires_the_latest_missed_tick_once_and_no_tick_twice(
    stores: Callable[[], Storage],
) -> None:
    clock = MockClock(at(2026, 1, 1, 0, 1), autojump=False)
    async with WorkflowTestEnv(echo, storage=stores(), clock=clock, schedules=EVERY5) as wf:
        clock.advance(240)  # 00:05 fires
        await outputs(wf, 1)
    # Down from 00:05 to 00:22: the ticks of 00:10, 00:15 and 00:20 are missed.
    clock.advance(17 * 60)
    async with WorkflowTestEnv(echo, storage=stores(), clock=clock, schedules=EVERY5) as wf:
        got = await outputs(wf, 2)
        assert got[1]["schedule"]["scheduledTime"] == ms(2026, 1, 1, 0, 20)
    # Started again before the next tick: the 00:20 tick is spent, nothing fires.
    async with WorkflowTestEnv(echo, storage=stores(), clock=clock, schedules=EVERY5) as wf:
        assert len(await outputs(wf, 2)) == 2
        clock.advance(3 * 60)  # 00:25
        got = await outputs(wf, 3)
    assert [o["schedule"]["scheduledTime"] for o in got] == [
        ms(2026, 1, 1, 0, 5),
        ms(2026, 1, 1, 0, 20),
        ms(2026, 1, 1, 0, 25),
    ]


async def test_several_schedules_fire_their_own_instances(stores: Callable[[], Storage]) -> None:
    clock = MockClock(at(2026, 1, 1, 0, 59), autojump=False)
    crons = ["0 * * * *", EVERY5]
    async with WorkflowTestEnv(echo, storage=stores(), clock=clock, schedules=crons) as wf:
        clock.advance(60)  # 01:00: both
        got = await outputs(wf, 2)
    assert sorted(o["schedule"]["cron"] for o in got) == sorted(crons)
    assert {o["schedule"]["scheduledTime"] for o in got} == {ms(2026, 1, 1, 1)}


async def test_two_engines_on_one_database_fire_each_tick_once(
    backend: str, stores: Callable[[], Storage]
) -> None:
    if backend != "postgresql":
        pytest.skip(
            "several nodes share PostgreSQL only (SQLite has one owner, memory one process)"
        )
    clock = MockClock(at(2026, 1, 1, 0, 1), autojump=False)
    a = WorkflowTestEnv(echo, storage=stores(), clock=clock, schedules=["* * * * *", EVERY5])
    b = WorkflowTestEnv(echo, storage=stores(), clock=clock, schedules=["* * * * *", EVERY5])
    async with a, b:
        expected = 0
        for minute in range(2, 22):
            clock.advance(60)
            expected += 1 + (minute % 5 == 0)
            got = await outputs(a, expected)
        ticks = [(o["schedule"]["cron"], o["schedule"]["scheduledTime"]) for o in got]
        assert len(ticks) == len(set(ticks)) == 24
        assert len({o["instanceId"] for o in got}) == 24


async def test_schedules_registered_while_running_start_and_stop_at_once(
    stores: Callable[[], Storage],
) -> None:
    clock = MockClock(at(2026, 1, 1, 0, 1), autojump=False)
    async with WorkflowTestEnv(echo, storage=stores(), clock=clock) as wf:
        wf.engine.register("workflow", echo, schedules=EVERY5)
        # Seen at 00:01 (as its task does when it first runs, which may be after the advance).
        assert await wf.engine.triggers.fire_due("workflow", EVERY5) is None
        clock.advance(240)  # 00:05
        (first,) = await outputs(wf, 1)
        assert first["schedule"]["scheduledTime"] == ms(2026, 1, 1, 0, 5)
        wf.engine.register("workflow", echo)  # no schedules any more
        clock.advance(300)  # 00:10: nothing
        await asyncio.sleep(0.05)
        assert len(await outputs(wf, 1)) == 1


class FlakyTicks(MemoryStorage):
    """A storage whose first ``fail`` tick writes fail, as a database that is down."""

    def __init__(self, fail: int) -> None:
        super().__init__()
        self.fail = fail
        self.calls = 0

    async def fire_schedule(self, *args: Any) -> Any:
        self.calls += 1
        if self.calls <= self.fail:
            raise StorageError("the database is down")
        return await super().fire_schedule(*args)


async def test_tick_writes_that_fail_are_retried_and_the_tick_still_fires_once() -> None:
    storage = FlakyTicks(fail=3)
    clock = MockClock(at(2026, 1, 1, 0, 1))  # autojump: every retry's timer is jumped to
    async with WorkflowTestEnv(echo, storage=storage, clock=clock, schedules=EVERY5) as wf:
        first_id = tick_instance_id(EVERY5, at(2026, 1, 1, 0, 5))
        for _ in range(5000):
            row = await storage.get_instance("workflow", "", first_id)
            if row is not None and row.status == "complete":
                break
            await asyncio.sleep(0.001)
        wf.clock.autojump = False
        status = await (await wf.binding.get(first_id)).status()
        rows = await storage.list_instances("workflow", limit=1000)
    assert status["output"]["schedule"]["scheduledTime"] == ms(2026, 1, 1, 0, 5)
    # The first sighting came after the failures (00:01 and a few seconds): nothing before 00:05,
    # and each later tick once.
    times = [decode(r.schedule or b"")["scheduledTime"] for r in rows]
    assert min(times) == ms(2026, 1, 1, 0, 5)
    assert len(times) == len(set(times))
    assert storage.calls >= 5  # 3 failures, the first sighting, the tick
