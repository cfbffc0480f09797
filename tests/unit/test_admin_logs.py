"""The admin API's logs routes (an instance's lines, paged by a cursor and filtered; a tenant
worker's ring) and the tracebacks in instance details, on a project in-process (``--trusted``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from unit_support import DevClientFactory

API = "/cdn-cgi/local/explorer/api"

CONFIG = """
{
  "name": "logs",
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
from workers import Response, WorkerEntrypoint, WorkflowEntrypoint

print("tenant module imported")


class Api(WorkerEntrypoint):
    async def fetch(self, request):
        print("tenant fetch")
        return Response("tenant ok")


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        print("run of", event["instanceId"])

        @step.do("work", config={"retries": {"limit": 1, "delay": 1}})
        async def work(ctx):
            print("working", ctx["attempt"])
            if ctx["attempt"] == 1:
                raise ValueError("first try fails")
            if event["payload"] == "fail":
                {}["missing"]
            return ctx["attempt"]

        return await work()
"""


def runner(args):
    code = {"main_module": "t.py", "modules": {"t.py": TENANT}}
    return args["env"].LOADER.get("t1", lambda: code).get_entrypoint("TenantWorkflow")


Dyn = create_dynamic_workflow_entrypoint(runner)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        q = {k: v[0] for k, v in parse_qs(urlparse(request.url).query).items()}
        if "api" in q:
            code = {"main_module": "t.py", "modules": {"t.py": TENANT}}
            stub = self.env.LOADER.get("t1", lambda: code)
            return await stub.get_entrypoint("Api").fetch(request)
        instance = await wrap_workflow_binding({"t": 1}, binding_name="DYN").create(
            id=q["id"], params=q.get("p")
        )
        return Response.json({"id": instance.id})
'''


class Host:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def get(self, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
        response = await self.client.get(API + path, params=params)
        body = response.json()
        assert set(body) >= {"success", "errors", "messages", "result"}
        return response.status_code, body

    async def finished(self, id: str) -> dict[str, Any]:
        for _ in range(500):
            code, body = await self.get(f"/workflows/dyn/instances/{id}")
            assert code == 200, body
            if body["result"]["status"] in ("complete", "errored"):
                return dict(body["result"])
            await asyncio.sleep(0.01)
        raise AssertionError(f"{id} did not finish")


@pytest.fixture
async def host(dev_client: DevClientFactory) -> Host:
    return Host(await dev_client(CONFIG, ENTRY))


async def test_an_instances_lines_paged_filtered_and_followed(host: Host) -> None:
    assert (await host.client.post("/?id=a1&p=ok")).status_code == 200
    await host.finished("a1")
    code, body = await host.get("/workflows/dyn/instances/a1/logs")
    assert code == 200
    result = body["result"]
    assert result["status"] == "complete"
    assert [(x["message"], x["step"], x["attempt"]) for x in result["lines"]] == [
        ("run of a1", None, None),
        ("working 1", {"name": "work", "count": 1}, 1),
        ("working 2", {"name": "work", "count": 1}, 2),
    ]
    assert all(x["time"].endswith("Z") and x["stream"] == "stdout" for x in result["lines"])
    assert (result["more"], result["dropped_lines"]) == (False, 0)
    assert result["bytes"] > 0
    # A follower's next poll: nothing new, the same cursor.
    code, again = await host.get("/workflows/dyn/instances/a1/logs", after=result["cursor"])
    assert (again["result"]["lines"], again["result"]["cursor"]) == ([], result["cursor"])
    # One page of one line, then the rest after its cursor.
    _, first = await host.get("/workflows/dyn/instances/a1/logs", limit=1)
    assert first["result"]["more"] is True
    _, rest = await host.get("/workflows/dyn/instances/a1/logs", after=first["result"]["cursor"])
    assert [x["message"] for x in rest["result"]["lines"]] == ["working 1", "working 2"]
    _, second = await host.get("/workflows/dyn/instances/a1/logs", step="work", attempt=2)
    assert [x["message"] for x in second["result"]["lines"]] == ["working 2"]


async def test_bad_queries_and_unknown_instances(host: Host) -> None:
    assert (await host.client.post("/?id=a2&p=ok")).status_code == 200
    await host.finished("a2")
    for params in ({"after": "x"}, {"limit": "0"}, {"limit": "5000"}, {"count": "2"}):
        code, body = await host.get("/workflows/dyn/instances/a2/logs", **params)
        assert (code, body["errors"][0]["code"]) == (400, 10400), params
    code, body = await host.get("/workflows/dyn/instances/ghost/logs")
    assert (code, body["errors"][0]["code"]) == (404, 10501)
    code, body = await host.get("/workflows/nope/instances/a2/logs")
    assert code == 404


async def test_errors_carry_their_traceback_beside_cloudflares_fields(host: Host) -> None:
    assert (await host.client.post("/?id=bad&p=fail")).status_code == 200
    details = await host.finished("bad")
    error = details["error"]
    assert (error["name"], error["message"]) == ("KeyError", "missing")
    assert 'File "t.py", line 23, in work' in error["traceback"]
    (step,) = details["steps"]
    assert step["error"]["traceback"] == error["traceback"]
    # An attempt's error is Cloudflare's pair: the history keeps no tracebacks.
    assert step["attempts"][0]["error"] == {"name": "ValueError", "message": "first try fails"}


async def test_a_tenant_workers_ring(host: Host) -> None:
    response = await host.client.get("/?api=1")
    assert response.text == "tenant ok"
    code, body = await host.get("/workers/t1/logs")
    assert code == 200
    texts = [x["message"] for x in body["result"]["lines"]]
    assert texts == ["tenant module imported", "tenant fetch"]
    cursor = body["result"]["cursor"]
    await host.client.get("/?api=1")
    _, later = await host.get("/workers/t1/logs", after=cursor)
    assert [x["message"] for x in later["result"]["lines"]] == ["tenant fetch"]
    code, _ = await host.get("/workers/nobody/logs")
    assert code == 404
