"""What the dashboard (the run viewer) needs from the host: its pages and files, the tenant of
each listed instance, counts per tenant, and the search by id. The pages themselves are tested
in a real browser (tests/browser)."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from dynamic_workflows.dispatch import scope_of
from dynamic_workflows.host import HostMetrics, LiveProject, Project, create_dev_app, load_config
from dynamic_workflows.host.tenants import tenant_label

API = "/cdn-cgi/local/explorer/api"
EXPLORER = "/cdn-cgi/local/explorer/"

CONFIG = """
{
  "name": "dash",
  "main": "src/entry.py",
  "worker_loaders": [{"binding": "LOADER"}],
  "workflows": [{"name": "dyn", "binding": "DYN", "class_name": "Dyn"}],
}
"""

ENTRY = '''
from urllib.parse import parse_qs, urlparse

from workers import Response, WorkerEntrypoint

from dynamic_workflows.dispatch import create_dynamic_workflow_entrypoint, wrap_workflow_binding

TENANT = """
from workers import WorkflowEntrypoint

class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do("hello")
        async def hello():
            return event["payload"]

        if event["payload"] == "wait":
            await step.wait_for_event("go", "go", timeout="1 hour")
        return await hello()
"""


def runner(args):
    code = {"main_module": "t.py", "modules": {"t.py": TENANT}}
    return args["env"].LOADER.get("t", lambda: code).get_entrypoint("TenantWorkflow")


Dyn = create_dynamic_workflow_entrypoint(runner)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        q = {k: v[0] for k, v in parse_qs(urlparse(request.url).query).items()}
        metadata = {"customer": q["c"], "tenantId": q["t"]}
        binding = wrap_workflow_binding(metadata, binding_name="DYN")
        instance = await binding.create(id=q["id"], params=q["p"])
        return Response.json({"id": instance.id})
'''


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveProject]:
    folder = tmp_path / "project"
    (folder / "src").mkdir(parents=True)
    (folder / "wrangler.jsonc").write_text(CONFIG)
    (folder / "src" / "entry.py").write_text(textwrap.dedent(ENTRY))
    live = LiveProject(
        lambda: Project(load_config(folder), storage_url="memory://", loader_mode="in-process")
    )
    await live.start()
    try:
        yield live
    finally:
        await live.stop()


@pytest.fixture
async def client(live: LiveProject) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_dev_app(live, HostMetrics(live)))
    async with httpx.AsyncClient(transport=transport, base_url="http://dev.test") as c:
        yield c


async def result(client: httpx.AsyncClient, path: str, **params: str) -> tuple[Any, Any]:
    response = await client.get(API + path, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    return body["result"], body.get("result_info")


async def settle(client: httpx.AsyncClient, want: dict[str, str]) -> None:
    for _ in range(500):
        listed, _ = await result(client, "/workflows/dyn/instances", per_page="100")
        if {(i["tenant"], i["id"]): i["status"] for i in listed} == want:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(listed)


@pytest.mark.parametrize(
    ("metadata", "label"),
    [
        (None, None),
        ({"tenantId": "acme"}, "acme"),
        ({"tenant": "globex", "id": "x"}, "globex"),
        ({"tenant_id": 42}, "42"),
        ({"region": "eu", "id": "org-7"}, "org-7"),
        ({"name": "initech"}, "initech"),
        ({"tenant": ""}, '{"tenant":""}'),
        ({"region": "eu", "plan": "pro"}, '{"region":"eu","plan":"pro"}'),
        ("just-a-string", "just-a-string"),
        ([1, 2], "[1,2]"),
        ({"tenant": True}, '{"tenant":true}'),
    ],
)
def test_a_tenants_readable_form(metadata: Any, label: str | None) -> None:
    assert tenant_label(metadata) == label


async def test_listings_name_tenants_and_count_them(client: httpx.AsyncClient) -> None:
    for tenant, id, payload in [
        ("acme", "a-1", "wait"),
        ("acme", "same", "done"),
        ("globex", "same", "wait"),
    ]:
        response = await client.get(f"/?c=c-{tenant}&t={tenant}&id={id}&p={payload}")
        assert response.status_code == 200, response.text
    await settle(
        client,
        {("acme", "a-1"): "waiting", ("acme", "same"): "complete", ("globex", "same"): "waiting"},
    )
    tenants, info = await result(client, "/workflows/dyn/tenants")
    assert (info["count"], info["total_count"], info["page"], info["total_pages"]) == (2, 2, 1, 1)
    assert info["totals"] == {"instances": {"waiting": 2, "complete": 1}, "steps": 3}
    assert [(t["tenant"], t["total"]) for t in tenants] == [("acme", 2), ("globex", 1)]
    acme = tenants[0]
    assert acme["metadata"] == {"customer": "c-acme", "tenantId": "acme"}
    assert acme["instances"] == {"waiting": 1, "complete": 1}
    assert (acme["live"], acme["running"], acme["waiting"], acme["finished"]) == (1, 0, 1, 1)
    assert (acme["steps"], acme["created"], acme["throttled"], acme["limits"]) == (2, 2, 0, None)
    # The per-tenant filter is the scope; the listing's status counts follow it.
    listed, info = await result(client, "/workflows/dyn/instances", scope=acme["scope"])
    assert sorted(i["id"] for i in listed) == ["a-1", "same"]
    assert info["status_counts"]["waiting"] == 1
    assert info["status_counts"]["complete"] == 1
    # Search by id: every scope holding it, filtered like any listing.
    found, info = await result(client, "/workflows/dyn/instances", id="same")
    assert sorted(i["tenant"] for i in found) == ["acme", "globex"]
    assert info["total_count"] == 2
    found, _ = await result(client, "/workflows/dyn/instances", id="same", status="waiting")
    assert [i["tenant"] for i in found] == ["globex"]
    found, info = await result(client, "/workflows/dyn/instances", id="nobody")
    assert (found, info["total_count"], info["total_pages"]) == ([], 0, 1)
    details, _ = await result(client, "/workflows/dyn/instances/a-1")
    assert details["tenant"] == "acme"
    # An instance without dispatcher metadata has no tenant.
    created = await client.post(API + "/workflows/dyn/instances", json={"id": "raw"})
    assert created.status_code == 400  # a dynamic workflow needs the envelope
    missing = await client.get(API + "/workflows/nope/tenants")
    assert missing.status_code == 404


@dataclass
class Caps:
    """A tenant policy (``queries.tenant_policy``): limits per scope, throttled creates."""

    caps: dict[str, dict[str, Any]]
    counts: dict[str, int]

    async def limits(self, scope: str) -> dict[str, Any] | None:
        return self.caps.get(scope)

    async def throttled(self) -> dict[str, int]:
        return self.counts


async def test_every_tenant_is_counted_paged_and_ordered(
    client: httpx.AsyncClient, live: LiveProject
) -> None:
    # More instances than a page and than any scan bound: every one is counted.
    want = {}
    for i in range(12):
        tenant = f"t{i % 4}"
        payload = "wait" if i % 4 == 0 else "done"
        await client.get(f"/?c=c&t={tenant}&id=n-{i}&p={payload}")
        want[(tenant, f"n-{i}")] = "waiting" if payload == "wait" else "complete"
    await settle(client, want)
    t0 = scope_of({"customer": "c", "tenantId": "t0"})
    live.project.engine.queries.tenant_policy = Caps({t0: {"max_running": 2}}, {t0: 5})
    tenants, info = await result(client, "/tenants", per_page="3")
    assert (info["total_count"], info["total_pages"], info["order"]) == (4, 2, "live")
    assert info["totals"]["instances"] == {"waiting": 3, "complete": 9}
    # t0 has the live instances; the others tie and go by their latest change.
    assert tenants[0]["tenant"] == "t0"
    assert (tenants[0]["limits"], tenants[0]["throttled"]) == ({"max_running": 2}, 5)
    rest, info = await result(client, "/tenants", per_page="3", page="2")
    assert info["count"] == 1
    names = [t["tenant"] for t in tenants + rest]
    assert sorted(names) == ["t0", "t1", "t2", "t3"]
    by_steps, _ = await result(client, "/workflows/dyn/tenants", order="steps")
    assert {t["tenant"]: t["steps"] for t in by_steps} == {"t0": 3, "t1": 3, "t2": 3, "t3": 3}
    recent, _ = await result(client, "/tenants", workflow="dyn", order="recent")
    active = [t["last_active_on"] for t in recent]
    assert active == sorted(active, reverse=True)
    one, _ = await result(client, "/tenants", workflow="dyn", order="recent", per_page="1")
    assert one[0]["tenant"] == recent[0]["tenant"]
    unstepped, _ = await result(client, "/workflows/dyn/tenants", steps="false")
    assert {t["steps"] for t in unstepped} == {0}
    assert sorted(t["tenant"] for t in unstepped) == ["t0", "t1", "t2", "t3"]
    far, info = await result(client, "/tenants", page=str(10**20))
    assert (far, info["total_count"]) == ([], 4)
    for params, message in [
        ({"order": "busiest"}, "order: 'busiest' is not one of live, instances, steps, recent"),
        ({"per_page": "0"}, "per_page: must be between 1 and 1000, got 0"),
        ({"page": "x"}, "page: 'x' is not an integer"),
        ({"steps": "no"}, "steps: must be true or false, got 'no'"),
        ({"order": "steps", "steps": "false"}, "order: 'steps' needs the steps counted"),
    ]:
        response = await client.get(API + "/tenants", params=params)
        assert response.status_code == 400
        assert response.json()["errors"][0]["message"] == message
    missing = await client.get(API + "/tenants", params={"workflow": "nope"})
    assert missing.status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        EXPLORER,
        EXPLORER + "workflows/dyn",
        EXPLORER + "workflows/dyn/instances/a-1",
        EXPLORER + "tenants",
        "/cdn-cgi/explorer/workflows/dyn/instances/a-1",
    ],
)
async def test_every_page_is_the_shell(client: httpx.AsyncClient, path: str) -> None:
    page = await client.get(path, params={"scope": "x"})
    assert page.status_code == 200
    assert "<title>dwf · workflows explorer</title>" in page.text
    base = "/cdn-cgi/explorer/" if path.startswith("/cdn-cgi/explorer/") else EXPLORER
    assert f'data-base="{base}"' in page.text
    assert f'src="{base}static/app.js"' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy  # nothing from elsewhere, no inline script
    assert page.headers["cache-control"] == "no-store"


async def test_the_front_ends_files(client: httpx.AsyncClient) -> None:
    for name, kind in [
        ("app.js", "text/javascript"),
        ("views/instance.js", "text/javascript"),
        ("views/tenants.js", "text/javascript"),
        ("poll.js", "text/javascript"),
        ("style.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ]:
        response = await client.get(EXPLORER + "static/" + name)
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith(kind)
        etag = response.headers["etag"]
        again = await client.get(EXPLORER + "static/" + name, headers={"if-none-match": etag})
        assert again.status_code == 304
    # Every module the page imports is served (a missing one is a blank page).
    app = (await client.get(EXPLORER + "static/app.js")).text
    assert 'from "./views/instance.js"' in app
    assert 'from "./views/tenants.js"' in app
    for missing in ("nope.js", "../__init__.py", "views/../../index.html"):
        assert (await client.get(EXPLORER + "static/" + missing)).status_code == 404
    assert (await client.get(EXPLORER + "elsewhere")).status_code == 404
