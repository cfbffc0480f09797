"""A cron schedule on three `dwf serve` nodes sharing one PostgreSQL database: every node
races for every tick, one instance is created per tick, and a node killed with ``kill -9``
changes nothing. Wall-clock minutes: about two."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from test_nodes import Node

ENTRY = """
from workers import Response, WorkerEntrypoint, WorkflowEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("ok")


class Ticks(WorkflowEntrypoint):
    async def run(self, event, step):
        return event["schedule"]
"""


def project(tmp_path: Path) -> Path:
    folder = tmp_path / "cron"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "entry.py").write_text(textwrap.dedent(ENTRY))
    config = {
        "name": "cron",
        "main": "src/entry.py",
        "workflows": [
            {"name": "ticks", "binding": "TICKS", "class_name": "Ticks", "schedules": "* * * * *"}
        ],
    }
    (folder / "wrangler.jsonc").write_text(json.dumps(config))
    return folder


def ticks(pg_url: str) -> list[tuple[str, str, str]]:
    """``(id, status, schedule JSON)`` of every instance, by id."""

    async def read() -> list[tuple[str, str, str]]:
        conn = await asyncpg.connect(pg_url.split("?")[0])
        try:
            schema = pg_url.split("schema=")[1].split("&")[0]
            rows = await conn.fetch(
                f'SELECT id, status, schedule FROM "{schema}".instances ORDER BY id'
            )
        finally:
            await conn.close()
        return [(r[0], r[1], bytes(r[2]).decode()) for r in rows]

    return asyncio.run(read())


def wait_for(pg_url: str, count: int, timeout: float, nodes: list[Node]) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = ticks(pg_url)
        if len(got) >= count and all(status == "complete" for _, status, _ in got):
            return got
        time.sleep(0.2)
    logs = "\n".join(node.log() for node in nodes)
    raise AssertionError(f"{count} tick(s) not fired and run in {timeout} s:\n{logs}")


@pytest.mark.slow
def test_three_nodes_fire_each_tick_once_even_when_one_is_killed(
    tmp_path: Path, pg_url: str
) -> None:
    folder = project(tmp_path)
    db = f"{pg_url}&lease_seconds=2"
    nodes = [Node(folder, db, name) for name in ("a", "b", "c")]
    try:
        for node in nodes:
            node.wait_ready()
        first = wait_for(pg_url, 1, 75, nodes)
        nodes[0].kill9()
        second = wait_for(pg_url, 2, 75, nodes[1:])
        time.sleep(1.0)  # (a tick fired twice would have a third instance by now)
        assert ticks(pg_url) == second
    finally:
        for node in nodes:
            node.stop()
    assert second[: len(first)] == first or set(first) <= set(second)
    schedules = [json.loads(s) for _, _, s in second]
    times = sorted(s["scheduledTime"] for s in schedules)
    assert times[1] - times[0] == 60_000  # consecutive ticks, one instance each
    assert {s["cron"] for s in schedules} == {"* * * * *"}
    assert len({iid for iid, _, _ in second}) == 2
