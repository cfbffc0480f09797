"""Helpers of the browser tests (imported as ``browser_support``): the ``dwf dev`` subprocess of
the acceptance tests, the dashboard's URLs, and instances created as tenants create them."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

sys.path.insert(0, str(Path(__file__).parents[1] / "acceptance"))

from host_support import API, ROOT, Server, copy_project, free_port

__all__ = [
    "API",
    "CHROMIUM",
    "EXPLORER",
    "ROOT",
    "WF",
    "Server",
    "admin",
    "copy_project",
    "create",
    "free_port",
    "instance_url",
    "wait_admin_status",
]

CHROMIUM = "/usr/bin/chromium"
EXPLORER = "/cdn-cgi/local/explorer/"
WF = "tenant-workflows"


def create(server: Server, tenant: str, params: Any, id: str) -> str:
    """An instance created by ``tenant``'s own code (``POST /?id=`` with ``x-tenant-id``)."""
    response = httpx.post(f"{server.url}/?id={id}", headers={"x-tenant-id": tenant}, json=params)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def admin(server: Server, path: str, **params: str) -> Any:
    """The result of ``GET`` on the admin API."""
    response = httpx.get(server.url + API + path, params=params)
    assert response.status_code == 200, response.text
    return response.json()["result"]


def wait_admin_status(server: Server, id: str, want: str, timeout: float = 20) -> Any:
    """The admin API's details of ``id`` once its status is ``want``."""
    deadline = time.monotonic() + timeout
    details: Any = None
    while time.monotonic() < deadline:
        details = admin(server, f"/workflows/{WF}/instances/{id}")
        if details["status"] == want:
            return details
        time.sleep(0.05)
    raise AssertionError(f"{id} never reached {want}: {details}\n{server.log()}")


def instance_url(server: Server, id: str, scope: str | None = None) -> str:
    """The dashboard's page of instance ``id``."""
    url = f"{server.url}{EXPLORER}workflows/{WF}/instances/{quote(id, safe='')}"
    return url if scope is None else f"{url}?scope={quote(scope, safe='')}"
