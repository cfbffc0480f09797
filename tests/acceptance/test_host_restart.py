"""State survives ``kill -9`` of ``dwf dev``: a tenant sleeping and a tenant waiting for an
approval both complete after a restart on the same project folder."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
from host_support import API, ROOT, Server, copy_project

WF = "tenant-workflows"


def admin_status(server: Server, id: str, scope: str | None = None) -> str:
    params = {"scope": scope} if scope else {}
    response = httpx.get(f"{server.url}{API}/workflows/{WF}/instances/{id}", params=params)
    assert response.status_code == 200, response.text
    return str(response.json()["result"]["status"])


def wait_until(check: Callable[[], bool], what: str, server: Server, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not reached in {timeout} s\n{server.log()}")


def tenant_status(server: Server, tenant: str, id: str) -> dict[str, object]:
    response = httpx.get(
        server.url + "/api/status", params={"instanceId": id}, headers={"x-tenant-id": tenant}
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_kill_9_and_restart_resume_sleeping_and_waiting_tenants(tmp_path: Path) -> None:
    folder = copy_project(ROOT / "examples" / "saas", tmp_path / "saas")
    first = Server("dev", folder, "--no-reload")
    try:
        first.wait_ready()
        sleeper = httpx.post(
            first.url + "/?id=sleeper",
            headers={"x-tenant-id": "acme"},
            json={"sku": "kettle", "courier_delay": "3 seconds"},
        ).json()["id"]
        waiter = httpx.post(
            first.url + "/?id=waiter", headers={"x-tenant-id": "globex"}, json={"title": "memo"}
        ).json()["id"]
        wait_until(
            lambda: (
                admin_status(first, sleeper) == "waiting"
                and admin_status(first, waiter) == "waiting"
            ),
            "both hibernating",
            first,
        )
        first.kill9()  # no shutdown at all: the engine never hands anything back
    finally:
        first.stop()

    second = Server("dev", folder, "--no-reload")
    try:
        second.wait_ready()
        # Hibernating instances are rows with a wake-up time: nothing to recover, just due.
        assert admin_status(second, waiter) == "waiting"
        approve = httpx.post(
            second.url + "/api/approve",
            params={"instanceId": waiter},
            headers={"x-tenant-id": "globex"},
            json={"by": "after the crash"},
        )
        assert approve.status_code == 200, approve.text
        wait_until(
            lambda: (
                tenant_status(second, "globex", waiter)["status"] == "complete"
                and tenant_status(second, "acme", sleeper)["status"] == "complete"
            ),
            "both complete",
            second,
        )
        assert tenant_status(second, "globex", waiter)["output"] == {
            "tenant": "globex",
            "result": "published 'memo', approved by after the crash",
        }
        assert tenant_status(second, "acme", sleeper)["output"] == {
            "tenant": "acme",
            "shipment": "shipped 1 x kettle for 1999 cents",
            "charged": 1999,
        }
        steps = httpx.get(f"{second.url}{API}/workflows/{WF}/instances/{sleeper}").json()
        assert [s["name"] for s in steps["result"]["steps"]] == [
            "reserve",
            "charge",
            "wait for the courier",
            "ship",
        ]
        assert second.terminate() == 0
    finally:
        second.stop()


def test_dev_reloads_when_the_code_changes(tmp_path: Path) -> None:
    folder = copy_project(ROOT / "examples" / "saas", tmp_path / "saas")
    server = Server("dev", folder)
    try:
        server.wait_ready()

        def run_initech() -> object:
            id = httpx.post(server.url + "/", headers={"x-tenant-id": "initech"}, json={}).json()[
                "id"
            ]
            wait_until(
                lambda: tenant_status(server, "initech", id)["status"] == "complete",
                "initech complete",
                server,
            )
            return tenant_status(server, "initech", id)["output"]

        assert run_initech() == {"tenant": "initech", "invoices": 3, "total": 425}
        tenants = folder / "src" / "tenants.py"
        tenants.write_text(tenants.read_text().replace('"tenant": "initech"', '"tenant": "v2"'))
        wait_until(lambda: "reloaded" in server.log(), "reloaded", server)
        assert run_initech() == {"tenant": "v2", "invoices": 3, "total": 425}
    finally:
        server.stop()
