"""A cron schedule fires once per tick across ``kill -9`` of ``dwf dev``: the tick fired before
the kill is not fired again by the restart, and the tick that came while no process ran is
fired once, when it starts again. Wall-clock minutes: about two."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from host_support import API, Server

WF = "ticks"

ENTRY = """
from workers import Response, WorkerEntrypoint, WorkflowEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("ok")


class Ticks(WorkflowEntrypoint):
    async def run(self, event, step):
        return {"schedule": event.get("schedule"), "id": event["instanceId"]}
"""


def project(tmp_path: Path) -> Path:
    folder = tmp_path / "cron"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "entry.py").write_text(textwrap.dedent(ENTRY))
    config = {
        "name": "cron",
        "main": "src/entry.py",
        "workflows": [
            {"name": WF, "binding": "TICKS", "class_name": "Ticks", "schedules": "* * * * *"}
        ],
    }
    (folder / "wrangler.jsonc").write_text(json.dumps(config))
    return folder


def outputs(server: Server) -> list[dict[str, Any]]:
    """The outputs of the complete instances (each tick's schedule), by scheduled time."""
    listed = httpx.get(f"{server.url}{API}/workflows/{WF}/instances", params={"per_page": 100})
    assert listed.status_code == 200, listed.text
    out = []
    for item in listed.json()["result"]:
        detail = httpx.get(f"{server.url}{API}/workflows/{WF}/instances/{item['id']}")
        assert detail.status_code == 200, detail.text
        result = detail.json()["result"]
        if result["status"] == "complete":
            out.append(result["output"])
    return sorted(out, key=lambda o: o["schedule"]["scheduledTime"])


def wait_for_count(server: Server, count: int, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = outputs(server)
        if len(got) >= count:
            return got
        time.sleep(0.2)
    raise AssertionError(f"{count} tick(s) not fired in {timeout} s\n{server.log()}")


@pytest.mark.slow
def test_a_tick_fires_once_across_kill_9_and_the_missed_one_after_restart(
    tmp_path: Path,
) -> None:
    folder = project(tmp_path)
    first = Server("dev", folder, "--no-reload")
    try:
        first.wait_ready()
        assert "ticks: cron '* * * * *' (UTC)" in first.log()
        (tick1,) = wait_for_count(first, 1, 75)  # the next minute's tick
        first.kill9()
    finally:
        first.stop()

    # Started again at once: the tick fired before the kill is spent.
    second = Server("dev", folder, "--no-reload")
    try:
        second.wait_ready()
        time.sleep(1.0)  # (a tick fired twice would have a second instance by now)
        assert outputs(second) == [tick1]
        second.kill9()
    finally:
        second.stop()

    # Down across the next tick: it fires once when a process runs again.
    next_tick = tick1["schedule"]["scheduledTime"] / 1000 + 60
    time.sleep(max(0.0, next_tick + 1.0 - time.time()))
    third = Server("dev", folder, "--no-reload")
    try:
        third.wait_ready()
        got = wait_for_count(third, 2, 30)
        assert got[0] == tick1
        assert got[1]["schedule"] == {
            "cron": "* * * * *",
            "scheduledTime": tick1["schedule"]["scheduledTime"] + 60_000,
        }
        assert got[0]["id"] != got[1]["id"]
        assert len(outputs(third)) == 2
        listed = httpx.get(f"{third.url}{API}/workflows/{WF}").json()["result"]
        assert listed["schedules"] == ["* * * * *"]
    finally:
        third.stop()
