"""The attempt history through the admin API (Cloudflare's ``attempts`` of a step, with its
``start``/``end``) and ``dwf instances describe``."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
import pytest
from unit_support import DevClientFactory

from dynamic_workflows.host.client import Printer

API = "/cdn-cgi/local/explorer/api"

CONFIG = """
{
  "name": "attempts",
  "main": "src/entry.py",
  "workflows": [{"name": "flaky", "binding": "FLAKY", "class_name": "Flaky"}],
}
"""

ENTRY = """
from workers import Response, WorkerEntrypoint, WorkflowEntrypoint


class Flaky(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do("flaky", config={"retries": {"limit": 2, "delay": 100, "backoff": "constant"}})
        async def flaky(ctx):
            if ctx["attempt"] < 3:
                raise ValueError(f"attempt {ctx['attempt']} failed")
            return "done"

        @step.do("first try")
        async def first_try():
            return 1

        await first_try()
        return await flaky()


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("ok")
"""


@pytest.fixture
async def client(dev_client: DevClientFactory) -> httpx.AsyncClient:
    return await dev_client(CONFIG, ENTRY)


def _at(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def test_instance_details_show_each_attempt(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    made = await client.post(API + "/workflows/flaky/instances", json={"id": "f1"})
    assert made.status_code == 200, made.text
    details: dict[str, Any] = {}
    for _ in range(500):
        details = (await client.get(API + "/workflows/flaky/instances/f1")).json()["result"]
        if details["status"] == "complete":
            break
        await asyncio.sleep(0.01)
    assert details["status"] == "complete", details
    steps = {s["name"]: s for s in details["steps"]}
    flaky = steps["flaky"]
    attempts = flaky["attempts"]
    assert [(a["attempt"], a["success"]) for a in attempts] == [(1, False), (2, False), (3, True)]
    assert [a["error"] for a in attempts] == [
        {"name": "ValueError", "message": "attempt 1 failed"},
        {"name": "ValueError", "message": "attempt 2 failed"},
        None,
    ]
    assert [a["retry_delay_ms"] for a in attempts] == [100, 100, None]
    starts = [_at(a["start"]) for a in attempts]
    assert starts[1] - starts[0] >= 0.09
    assert starts[2] - starts[1] >= 0.09
    assert all(a["end"] for a in attempts)
    assert (flaky["start"], flaky["end"]) == (attempts[0]["start"], attempts[-1]["end"])
    assert (flaky["attempts_total"], flaky["attempts_omitted"]) == (3, 0)
    first = steps["first try"]
    assert [(a["attempt"], a["success"]) for a in first["attempts"]] == [(1, True)]
    assert first["start"]
    assert first["end"]

    printer = Printer(as_json=False)
    printer.instance({"id": "f1", **details})
    out = capsys.readouterr().out
    assert "Attempts of flaky #1" in out
    assert "ValueError: attempt 1 failed" in out
    assert "100 ms" in out  # the wait before the next attempt
    assert "Attempts of first try" not in out  # a first-try success needs no table
