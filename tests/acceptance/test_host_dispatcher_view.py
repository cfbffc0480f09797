"""``dwf dev`` on a Cloudflare-style dispatcher whose platform routes (status page, webhook,
support actions) use only its own, unwrapped ``env.WORKFLOWS`` on instances that tenant code,
sandboxed, created through wrapped bindings; as on Cloudflare, the unwrapped binding finds them
by id. An id two tenants share is a clear error; a tenant still cannot see another's instance."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from host_support import Server, copy_project

PROJECT = Path(__file__).parent / "projects" / "dispatcherview"


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = copy_project(PROJECT, tmp_path_factory.mktemp("dev") / "dispatcherview")
    server = Server("dev", folder, "--no-reload")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def call(server: Server, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(method, server.url + path, json=body, timeout=30)


def wait_status(server: Server, id: str, want: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    body: Any = None
    while time.monotonic() < deadline:
        response = call(server, "GET", f"/status/{id}")
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] == want:
            return body
        time.sleep(0.05)
    raise AssertionError(f"{id} never reached {want}: {body}\n{server.log()}")


def test_the_dispatcher_manages_tenant_instances_with_its_unwrapped_binding(dev: Server) -> None:
    created = call(dev, "POST", "/t/acme/orders", {"id": "order-1", "params": {"sku": "A-1"}})
    assert created.json() == {"id": "order-1"}, created.text
    wait_status(dev, "order-1", "waiting")
    assert call(dev, "POST", "/support/order-1/pause").status_code == 200
    wait_status(dev, "order-1", "paused")
    assert call(dev, "POST", "/webhook/order-1/approved", {"by": "ops"}).status_code == 200
    assert call(dev, "POST", "/support/order-1/resume").status_code == 200
    done = wait_status(dev, "order-1", "complete")
    assert done["output"] == {"reserve": "reserved A-1", "approved_by": "ops"}
    assert call(dev, "POST", "/support/order-1/restart").status_code == 200
    wait_status(dev, "order-1", "waiting")
    assert call(dev, "POST", "/support/order-1/terminate").status_code == 200
    wait_status(dev, "order-1", "terminated")
    assert call(dev, "GET", "/status/no-such-order").status_code == 404


def test_a_shared_id_is_ambiguous_and_tenants_stay_confined(dev: Server) -> None:
    for tenant in ("acme", "globex"):
        response = call(dev, "POST", f"/t/{tenant}/orders", {"id": "dup", "params": {"sku": "X"}})
        assert response.status_code == 200, response.text
    ambiguous = call(dev, "GET", "/status/dup")
    assert ambiguous.status_code == 409
    assert ambiguous.json()["code"] == "instance.ambiguous"
    assert "wrap_workflow_binding(metadata)" in ambiguous.json()["error"]

    call(dev, "POST", "/t/acme/orders", {"id": "acme-only", "params": {"sku": "Y"}})
    peek = call(dev, "GET", "/t/globex/peek/acme-only").json()
    assert peek == {"found": False, "error": "(instance.not_found) Instance not found"}
    assert call(dev, "GET", "/t/acme/peek/acme-only").json() == {"found": True}
