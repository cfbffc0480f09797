"""What tenant code prints, through ``dwf dev`` in a subprocess: kept through a ``kill -9`` and
a restart, read with ``dwf instances logs`` (and ``--follow``), its errors' tracebacks in
``dwf instances describe``; and the server's own log as JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from host_support import API, ROOT, Server, copy_project

PROJECT = ROOT / "tests" / "acceptance" / "projects" / "printing"
WF = "printing"
DWF = [sys.executable, "-m", "dynamic_workflows.cli"]


def start(server: Server, id: str, **params: str) -> None:
    response = httpx.post(f"{server.url}/", params={"id": id, **params}, timeout=10)
    assert response.status_code == 200, response.text


def logs(server: Server, id: str, **params: Any) -> dict[str, Any]:
    response = httpx.get(f"{server.url}{API}/workflows/{WF}/instances/{id}/logs", params=params)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


def status(server: Server, id: str) -> str:
    response = httpx.get(f"{server.url}{API}/workflows/{WF}/instances/{id}")
    assert response.status_code == 200, response.text
    return str(response.json()["result"]["status"])


def wait_until(check: Any, what: str, server: Server, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not reached in {timeout} s\n{server.log()}")


def dwf(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DWF, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def messages(page: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [
        (line["stream"], line["message"], line["step"] and line["step"]["name"])
        for line in page["lines"]
    ]


def test_logs_survive_kill_9_and_restart_and_the_cli_reads_them(tmp_path: Path) -> None:
    folder = copy_project(PROJECT, tmp_path / "printing")
    first = Server("dev", folder, "--no-reload")
    try:
        first.wait_ready()
        start(first, "k1", nap="4 seconds")
        # The first step's lines are stored with its result, before the nap.
        wait_until(
            lambda: any(m[1] == "first step says hi" for m in messages(logs(first, "k1"))),
            "the first step's lines",
            first,
        )
        first.kill9()
    finally:
        first.stop()
    second = Server("dev", folder, "--no-reload")
    try:
        second.wait_ready()
        wait_until(lambda: status(second, "k1") == "complete", "k1 complete", second)
        assert messages(logs(second, "k1")) == [
            ("stdout", "run begins k1", None),
            ("stdout", "first step says hi", "first"),
            ("WARNING", "first step warns", "first"),
            ("stdout", "second step says bye", "second"),
        ]
        url = ["--url", second.url]
        printed = dwf("instances", "logs", WF, "k1", *url)
        assert printed.returncode == 0, printed.stderr
        lines = printed.stdout.splitlines()
        assert len(lines) == 4
        assert "run begins k1" in lines[0]
        assert "[first #1 try 1]" in lines[1]
        assert "first step says hi" in lines[1]
        only = dwf("instances", "logs", WF, "k1", "--step", "second", "--json", *url)
        assert only.returncode == 0, only.stderr
        (line,) = [json.loads(text) for text in only.stdout.splitlines()]
        assert (line["message"], line["step"], line["attempt"]) == (
            "second step says bye",
            {"name": "second", "count": 1},
            1,
        )

        # --follow: prints as the instance goes, and returns once it has ended.
        start(second, "f1", nap="1 second")
        followed = dwf("instances", "logs", WF, "f1", "--follow", "--interval", "0.2", *url)
        assert followed.returncode == 0, followed.stderr
        assert "run begins f1" in followed.stdout
        assert followed.stdout.rstrip().endswith("second step says bye")
        assert status(second, "f1") == "complete"
    finally:
        second.stop()


def test_json_log_lines_and_a_tenants_traceback(tmp_path: Path) -> None:
    folder = copy_project(PROJECT, tmp_path / "printing")
    server = Server("dev", folder, "--no-reload", "--log-format", "json")
    try:
        server.wait_ready()
        start(server, "bad", nap="1 second", fail="1")
        wait_until(lambda: status(server, "bad") == "errored", "bad errored", server)
        described = dwf("instances", "describe", WF, "bad", "--url", server.url)
        assert described.returncode == 0, described.stderr
        assert "Error    KeyError: customer" in described.stdout
        assert 'File "orders.py", line 3, in customer_of' in described.stdout
        assert 'File "tenant.py", line 25, in second' in described.stdout
        details = httpx.get(f"{server.url}{API}/workflows/{WF}/instances/bad").json()["result"]
        assert details["error"]["name"] == "KeyError"
        assert details["error"]["message"] == "customer"
        assert "orders.py" in details["error"]["traceback"]
        assert server.terminate() == 0
    finally:
        server.stop()
    records = []
    for text in server.log().splitlines():
        if text.strip():
            records.append(json.loads(text))  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    events = {r.get("event"): r for r in records if r.get("event")}
    assert "node.start" in events
    assert "node.stop" in events
    errored = events["instance.errored"]
    assert errored["level"] == "WARNING"
    assert (errored["workflow"], errored["instance"], errored["error_name"]) == (
        WF,
        "bad",
        "KeyError",
    )
    assert errored["error_message"] == "customer"
    assert errored["scope"]
    # The tenant's own lines are its instance's log, never the server's.
    assert not any("first step says hi" in r["message"] for r in records)
