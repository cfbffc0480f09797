"""Cloudflare's ``sensitive: "output"`` step option through ``dwf dev`` in a subprocess (tenant
code in the sandbox): ``dwf instances describe`` and ``wrangler workflows instances describe``
show ``[REDACTED]`` for the step's output, while the run still gets the real value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from host_support import API, ROOT, Server, copy_project, wrangler_env

PROJECT = ROOT / "tests" / "acceptance" / "projects" / "sensitive"
WF = "vault"
SECRET = "sk-live-0123456789"
DWF = [sys.executable, "-m", "dynamic_workflows.cli"]
WRANGLER = os.environ.get("DWF_TEST_WRANGLER")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = copy_project(PROJECT, tmp_path_factory.mktemp("sensitive") / "sensitive")
    started = Server("dev", folder, "--no-reload")
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()


def details(server: Server, id: str, want: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = httpx.get(f"{server.url}{API}/workflows/{WF}/instances/{id}")
        assert response.status_code == 200, response.text
        body = response.json()["result"]
        if body["status"] == want:
            return body
        assert body["status"] != "errored", body
        time.sleep(0.05)
    raise AssertionError(f"{id} never reached {want}: {body}\n{server.log()}")


def dwf(server: Server, *args: str) -> str:
    proc = subprocess.run(
        [*DWF, *args, "--url", server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_describe_redacts_the_output_and_the_run_still_gets_the_value(server: Server) -> None:
    made = httpx.post(f"{server.url}{API}/workflows/{WF}/instances", json={"id": "v1"})
    assert made.status_code == 200, made.text
    details(server, "v1", "waiting")
    sent = httpx.post(f"{server.url}{API}/workflows/{WF}/instances/v1/events/go", json="ok")
    assert sent.status_code == 200, sent.text
    done = details(server, "v1", "complete")
    assert done["output"] == "6789/ok"  # "fetch key" replayed from storage, unredacted

    shown = dwf(server, "instances", "describe", WF, "v1")
    assert "[REDACTED] (sensitive output)" in shown
    assert "public label" in shown
    assert SECRET not in shown
    as_json = json.loads(dwf(server, "instances", "describe", WF, "v1", "--json"))
    steps = {s["name"]: s for s in as_json["steps"]}
    assert (steps["fetch key"]["output"], steps["fetch key"]["sensitive"]) == (
        "[REDACTED]",
        "output",
    )
    assert SECRET not in json.dumps(as_json)


def test_wrangler_instances_describe_shows_it_redacted(server: Server) -> None:
    """Cloudflare's own CLI (installed by scripts/test) prints the step's output as it gets it."""
    if not WRANGLER:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run this: scripts/test installs wrangler (needs npm)")
        pytest.skip("set DWF_TEST_WRANGLER to a wrangler binary to run wrangler against dwf")
    assert WRANGLER is not None
    made = httpx.post(f"{server.url}{API}/workflows/{WF}/instances", json={"id": "w1"})
    assert made.status_code == 200, made.text
    details(server, "w1", "waiting")
    port = ["--local", "--port", str(server.port)]
    proc = subprocess.run(
        [WRANGLER, "workflows", "instances", "describe", WF, "w1", *port],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=wrangler_env(WRANGLER),
        cwd=Path(server.folder),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"[REDACTED]"' in proc.stdout  # wrangler prints JSON.stringify(step.output)
    assert '"public label"' in proc.stdout
    assert SECRET not in proc.stdout
