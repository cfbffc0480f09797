"""The host in-process: dispatcher requests, the admin API (envelope, errors, scopes, paging),
the token of the admin port, metrics and the dashboard. Tenant code runs in-process here; the
acceptance tests run the same through the sandbox."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import re
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from dynamic_workflows.core.tenancy import TenantPolicy
from dynamic_workflows.dispatch import scope_of
from dynamic_workflows.errors import AdminError, ConfigurationError
from dynamic_workflows.host import (
    HostMetrics,
    LiveProject,
    Project,
    create_admin_app,
    create_dev_app,
    create_public_app,
    load_config,
)
from dynamic_workflows.host.admin import CODE_TENANT_LIMIT, AdminAPI
from dynamic_workflows.host.auth import bearer_matches
from dynamic_workflows.host.client import AdminClient
from dynamic_workflows.host.metrics import OTHER_TENANT

API = "/cdn-cgi/local/explorer/api"

CONFIG = """
// a test project
{
  "name": "unit",
  "main": "src/entry.py",
  "worker_loaders": [{"binding": "LOADER"}],
  "workflows": [
    {"name": "plain", "binding": "PLAIN", "class_name": "Plain"},
    {"name": "dyn", "binding": "DYN", "class_name": "Dyn"},
  ],
  "vars": {"GREETING": "hi"},
}
"""

ENTRY = '''
import asyncio
from urllib.parse import parse_qs, urlparse

from workers import Response, WorkerEntrypoint, WorkflowEntrypoint

from dynamic_workflows.dispatch import create_dynamic_workflow_entrypoint, wrap_workflow_binding

DONE = []
UNDONE = []


class Plain(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do("first")
        async def first():
            return {"got": event["payload"]}

        @first.rollback
        async def undo_first(output, step_name):
            UNDONE.append((step_name, output))

        await first()
        ev = await step.wait_for_event("go", "go", timeout="1 hour")
        return {"payload": event["payload"], "event": ev["payload"]}


TENANT = """
from workers import WorkflowEntrypoint

class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do("hello")
        async def hello():
            return "TENANT says " + str(event["payload"])

        return await hello()
"""


def runner(args):
    tenant = args["metadata"]["t"]
    code = {"main_module": "t.py", "modules": {"t.py": TENANT.replace("TENANT", tenant)}}
    return args["env"].LOADER.get("t-" + tenant, lambda: code).get_entrypoint("TenantWorkflow")


Dyn = create_dynamic_workflow_entrypoint(runner)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/create":
            binding = wrap_workflow_binding({"t": q["t"]}, binding_name="DYN")
            instance = await binding.create(id=q.get("id"), params=q.get("p"))
            return Response.json({"id": instance.id})
        if url.path == "/boom":
            raise RuntimeError("kaboom")
        if url.path == "/vars":
            return Response.json({"greeting": self.env.GREETING})
        if url.path == "/later":
            async def later():
                await asyncio.sleep(0.01)
                DONE.append(1)
            self.ctx.wait_until(later())
            return Response("scheduled")
        return Response(f"ok {request.method} {request.headers.get('x-test')}")
'''


@dataclass
class Host:
    live: LiveProject
    client: httpx.AsyncClient
    metrics: HostMetrics

    async def api(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        response = await self.client.request(method, API + path, **kwargs)
        body = response.json()
        assert set(body) >= {"success", "errors", "messages", "result"}, body
        assert body["success"] is (response.status_code < 400)
        if not body["success"]:
            assert body["result"] is None
            assert body["errors"]
            assert all(isinstance(e["code"], int) and e["code"] >= 1000 for e in body["errors"])
        return response.status_code, body

    async def wait_for(self, workflow: str, id: str, status: str, **params: str) -> dict[str, Any]:
        for _ in range(500):
            code, body = await self.api(
                "GET", f"/workflows/{workflow}/instances/{id}", params=params
            )
            assert code == 200, body
            if body["result"]["status"] == status:
                return dict(body["result"])
            await asyncio.sleep(0.01)
        raise AssertionError(f"{id} never reached {status}: {body['result']['status']}")


def write_project(folder: Path) -> Path:
    (folder / "src").mkdir(parents=True)
    (folder / "wrangler.jsonc").write_text(CONFIG)
    (folder / "src" / "entry.py").write_text(textwrap.dedent(ENTRY))
    return folder


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[Host]:
    folder = write_project(tmp_path / "project")
    live = LiveProject(
        lambda: Project(load_config(folder), storage_url="memory://", loader_mode="in-process")
    )
    await live.start()
    metrics = HostMetrics(live)
    transport = httpx.ASGITransport(app=create_dev_app(live, metrics))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://dev.test") as client:
            yield Host(live, client, metrics)
    finally:
        await live.stop()


# -- the dispatcher -------------------------------------------------------------------------------


async def test_requests_go_to_default_fetch(host: Host) -> None:
    response = await host.client.put("/anything?x=1", headers={"x-test": "yes"})
    assert (response.status_code, response.text) == (200, "ok PUT yes")
    assert (await host.client.get("/vars")).json() == {"greeting": "hi"}
    head = await host.client.head("/")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len("ok HEAD None"))


async def test_a_dispatcher_exception_is_a_short_500(host: Host) -> None:
    response = await host.client.get("/boom")
    assert response.status_code == 500
    assert response.text == "Worker threw exception: RuntimeError: kaboom"


async def test_the_public_port_in_plain_asgi(host: Host) -> None:
    app = create_public_app(host.live, host.metrics)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://public.test") as public:
        boom = await public.get("/boom")
        assert (boom.status_code, boom.text) == (500, "Worker threw exception")  # no details
        assert boom.headers["content-type"] == "text/plain; charset=utf-8"
        ok = await public.post("/anything", content=b"body", headers={"x-test": "1"})
        assert (ok.status_code, ok.text) == (200, "ok POST 1")

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "scheme": "http",
        "path": "/",
        "query_string": b"",
        "headers": [(b"host", b"public.test"), (b"content-length", b"999999999999")],
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 413
    assert (
        sent[1]["body"] == b"request body of 999999999999 bytes is over the host's limit of 10 MiB"
    )
    text = generate_latest(host.metrics.registry).decode()
    for method, status in (("GET", 500), ("POST", 200), ("POST", 413)):
        assert (
            f'dwf_http_request_duration_seconds_count{{handler="dispatcher",method="{method}",'
            f'status="{status}"}} 1.0' in text
        )


async def test_the_body_limit_is_the_apps(host: Host) -> None:
    for app in (
        create_public_app(host.live, host.metrics, max_body=8),
        create_dev_app(host.live, host.metrics, max_body=8),
    ):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://limit.test") as client:
            assert (await client.post("/x", content=b"12345678")).text == "ok POST None"
            over = await client.post("/x", content=b"123456789")
            assert (over.status_code, over.text) == (
                413,
                "request body of 9 bytes is over the host's limit of 8 bytes",
            )


async def test_wait_until_work_outlives_the_response(host: Host) -> None:
    assert (await host.client.get("/later")).text == "scheduled"
    main = host.live.project.modules.load("entry")
    for _ in range(100):
        if main.DONE:
            break
        await asyncio.sleep(0.01)
    assert main.DONE == [1]


# -- workflows -------------------------------------------------------------------------------------


async def test_list_and_describe_workflows(host: Host) -> None:
    code, body = await host.api("GET", "/workflows")
    assert code == 200
    assert [w["name"] for w in body["result"]] == ["plain", "dyn"]
    assert body["result_info"] == {"count": 2}
    plain = body["result"][0]
    assert plain["class_name"] == "Plain"
    assert plain["script_name"] == "unit"
    assert plain["schedules"] == []
    code, body = await host.api("GET", "/workflows/plain")
    assert code == 200
    assert body["result"]["schedules"] == []
    assert body["result"]["instances"] == {
        "queued": 0,
        "running": 0,
        "paused": 0,
        "errored": 0,
        "terminated": 0,
        "complete": 0,
        "waitingForPause": 0,
        "waiting": 0,
    }
    code, body = await host.api("GET", "/workflows/nope")
    assert code == 404
    assert body["errors"] == [{"code": 10501, "message": "Workflow 'nope' not found."}]


async def test_create_describe_send_event(host: Host) -> None:
    code, body = await host.api(
        "POST", "/workflows/plain/instances", json={"id": "p-1", "params": {"n": 1}}
    )
    assert code == 200
    assert body["result"]["id"] == "p-1"
    waiting = await host.wait_for("plain", "p-1", "waiting")
    assert waiting["params"] == {"n": 1}
    assert waiting["scope"] == ""
    assert [(s["name"], s["type"], s["state"]) for s in waiting["steps"]] == [
        ("first", "step", "done"),
        ("go", "waitForEvent", "waiting"),
    ]
    assert waiting["steps"][0]["output"] == {"got": {"n": 1}}
    assert waiting["steps"][1]["wake_at"].endswith("Z")
    code, body = await host.api("POST", "/workflows/plain/instances/p-1/events/go", json="yes")
    assert (code, body["result"]) == (200, {"success": True})
    done = await host.wait_for("plain", "p-1", "complete")
    assert done["output"] == {"payload": {"n": 1}, "event": "yes"}
    assert "error" not in done  # the spec: an object when errored, absent otherwise
    assert done["step_count"] == 2
    assert (done["schedule"], done["retain_until"]) == (None, None)  # not a tick's; kept
    event = done["steps"][1]["output"]
    assert (event["type"], event["payload"]) == ("go", "yes")
    assert event["timestamp"].endswith("Z")
    # wrangler iterates it: Cloudflare's {start, end, success, error} per attempt
    (attempt,) = done["steps"][0]["attempts"]
    assert (attempt["attempt"], attempt["success"], attempt["error"]) == (1, True, None)
    assert attempt["start"].endswith("Z")
    # wrangler 4 sends the same requests under /cdn-cgi/explorer/api, and "action", not "status"
    again = await host.client.get("/cdn-cgi/explorer/api/workflows/plain/instances/p-1")
    assert again.json()["result"]["output"] == done["output"]
    assert done["end"] is not None
    code, body = await host.api("POST", "/workflows/plain/instances", json={})
    assert code == 200
    assert len(body["result"]["id"]) == 36  # a generated UUID
    code, body = await host.api("POST", "/workflows/plain/instances")  # no body at all
    assert code == 200


@pytest.mark.parametrize(
    ("kwargs", "code", "message"),
    [
        ({"json": {"id": "dup"}}, 409, "(instance.already_exists)"),
        ({"json": {"id": "-bad id"}}, 400, "Workflow instance has invalid id"),
        ({"json": {"id": 3}}, 400, "id: must be a string"),
        ({"json": [1]}, 400, "request body: must be a JSON object"),
        ({"json": {"params": 1, "extra": 2}}, 400, "unknown field(s) ['extra']"),
        ({"content": b"{nope"}, 400, "request body: not valid JSON"),
        # Cloudflare's retention create option: a bad value names its field.
        ({"json": {"retention": 5}}, 400, "retention: must be an object"),
        ({"json": {"retention": {"success": 1}}}, 400, "retention: unknown field(s) success"),
        (
            {"json": {"retention": {"successRetention": "soon"}}},
            400,
            "retention.successRetention: cannot parse 'soon'",
        ),
        (
            {"json": {"retention": {"errorRetention": -1}}},
            400,
            "retention.errorRetention: must be a finite, non-negative number of ms",
        ),
        (
            {"json": {"retention": {"errorRetention": True}}},
            400,
            "retention.errorRetention: expected a duration, got True",
        ),
    ],
)
async def test_create_errors(host: Host, kwargs: dict[str, Any], code: int, message: str) -> None:
    assert (await host.api("POST", "/workflows/plain/instances", json={"id": "dup"}))[0] == 200
    status, body = await host.api("POST", "/workflows/plain/instances", **kwargs)
    assert status == code
    assert message in body["errors"][0]["message"]


def _seconds(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def test_create_takes_cloudflares_retention_option(host: Host) -> None:
    # The binding's create took it; the admin API's (wrangler's) answered 400 unknown field.
    code, body = await host.api(
        "POST",
        "/workflows/plain/instances",
        json={"id": "kept", "params": 1, "retention": {"successRetention": "1 hour"}},
    )
    assert code == 200, body
    code, body = await host.api(
        "POST",
        "/workflows/plain/instances",
        json={"id": "brief", "retention": {"successRetention": "1 day", "errorRetention": 90000}},
    )
    assert code == 200, body
    await host.wait_for("plain", "kept", "waiting")
    await host.api("POST", "/workflows/plain/instances/kept/events/go", json="yes")
    done = await host.wait_for("plain", "kept", "complete")
    assert _seconds(done["retain_until"]) - _seconds(done["end"]) == pytest.approx(3600, abs=0.01)
    await host.wait_for("plain", "brief", "waiting")
    code, _ = await host.api(
        "PATCH", "/workflows/plain/instances/brief/status", json={"status": "terminate"}
    )
    assert code == 200
    ended = await host.wait_for("plain", "brief", "terminated")
    assert _seconds(ended["retain_until"]) - _seconds(ended["end"]) == pytest.approx(90, abs=0.01)
    # Without the option (and no default anywhere), kept forever.
    await host.api("POST", "/workflows/plain/instances", json={"id": "forever"})
    details = await host.wait_for("plain", "forever", "waiting")
    assert details["retain_until"] is None


def test_dwf_trigger_sends_the_retention_option(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from dynamic_workflows.cli import main

    sent: list[tuple[str, str, Any]] = []

    def call(self: AdminClient, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        sent.append((method, path, kwargs.get("body")))
        return {"success": True, "result": {"id": "r1", "scope": "", "status": "queued"}}

    monkeypatch.setattr(AdminClient, "call", call)
    args = ["workflows", "trigger", "plain", '{"n": 1}', "--id", "r1"]
    out = CliRunner().invoke(
        main, [*args, "--success-retention", "7 days", "--error-retention", "60000"]
    )
    assert out.exit_code == 0, out.output
    assert "Created instance r1" in out.output
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    assert sent == [
        (
            "POST",
            "/workflows/plain/instances",
            {
                "id": "r1",
                "params": {"n": 1},
                "retention": {"successRetention": "7 days", "errorRetention": 60000},
            },
        ),
        ("POST", "/workflows/plain/instances", {"id": "r1", "params": {"n": 1}}),
    ]


async def test_listing_pages_and_filters(host: Host) -> None:
    for i in range(5):
        await host.api("POST", "/workflows/plain/instances", json={"id": f"i{i}"})
    await host.wait_for("plain", "i0", "waiting")
    for i in range(5):
        await host.wait_for("plain", f"i{i}", "waiting")
    code, body = await host.api(
        "GET", "/workflows/plain/instances", params={"page": 2, "per_page": 2}
    )
    assert code == 200
    assert [i["id"] for i in body["result"]] == ["i2", "i1"]  # newest first
    info = body["result_info"]
    assert (info["page"], info["per_page"], info["total_count"], info["total_pages"]) == (
        2,
        2,
        5,
        3,
    )
    assert info["count"] == 2
    assert all(set(i) >= {"id", "status", "created_on", "scope"} for i in body["result"])
    code, body = await host.api("GET", "/workflows/plain/instances", params={"status": "complete"})
    assert (body["result"], body["result_info"]["total_count"]) == ([], 0)
    code, body = await host.api(
        "GET", "/workflows/plain/instances", params={"date_start": "2999-01-01T00:00:00Z"}
    )
    assert body["result_info"]["total_count"] == 0
    code, body = await host.api(
        "GET", "/workflows/plain/instances", params={"date_end": "2999-01-01T00:00:00"}
    )
    assert body["result_info"]["total_count"] == 5
    for params, field in [
        ({"page": 0}, "page"),
        ({"per_page": 101}, "per_page"),
        ({"per_page": "x"}, "per_page"),
        ({"status": "sleepy"}, "status"),
        ({"date_start": "monday"}, "date_start"),
    ]:
        code, body = await host.api("GET", "/workflows/plain/instances", params=params)
        assert code == 400
        assert body["errors"][0]["message"].startswith(f"{field}: ")


async def test_terminate_with_rollback(host: Host) -> None:
    await host.api("POST", "/workflows/plain/instances", json={"id": "r", "params": 5})
    await host.wait_for("plain", "r", "waiting")
    path = "/workflows/plain/instances/r/status"
    code, body = await host.api("PATCH", path, json={"status": "terminate", "rollback": True})
    assert code == 200, body
    details = await host.wait_for("plain", "r", "terminated")
    assert details["rollback"] == {"outcome": "complete"}
    assert "error" not in details
    undo = [s for s in details["steps"] if s["kind"] == "rollback"]
    assert [(s["name"], s["count"], s["state"]) for s in undo] == [("first", -1, "done")]
    assert [s["name"] for s in details["steps"] if s.get("has_rollback")] == ["first"]


async def test_status_changes(host: Host) -> None:
    await host.api("POST", "/workflows/plain/instances", json={"id": "s"})
    await host.wait_for("plain", "s", "waiting")
    path = "/workflows/plain/instances/s/status"
    code, body = await host.api("PATCH", path, json={"status": "pause"})
    assert (code, body["result"]["status"]) == (200, "paused")
    assert body["result"]["timestamp"].endswith("Z")
    code, body = await host.api("PATCH", path, json={"action": "resume"})  # newer wrangler
    assert (code, body["result"]["status"]) == (200, "queued")
    await host.wait_for("plain", "s", "waiting")
    code, body = await host.api("PATCH", path, json={"status": "restart"})
    assert code == 200
    await host.wait_for("plain", "s", "waiting")
    code, body = await host.api("PATCH", path, json={"status": "terminate"})
    assert (code, body["result"]["status"]) == (200, "terminated")
    code, body = await host.api("PATCH", path, json={"status": "terminate"})
    assert code == 409
    assert "(instance.cannot_terminate)" in body["errors"][0]["message"]
    for payload, message in [
        ({"status": "explode"}, "status: must be one of pause, resume, terminate, restart"),
        ({"status": "pause", "rollback": True}, "'rollback' is only valid when terminating."),
        ({"status": "terminate", "rollback": "yes"}, "rollback: must be true or false"),
        ({"status": "restart", "from": {"name": "nope"}}, "(instance.step_not_found)"),
        ({"status": "restart", "from": {"name": "x", "count": 0}}, "from: restart(): from.count"),
        ({"status": "pause", "from": {"name": "x"}}, "from: only valid when restarting"),
    ]:
        code, body = await host.api("PATCH", path, json=payload)
        assert code == 400
        assert message in body["errors"][0]["message"]
    code, body = await host.api(
        "PATCH", "/workflows/plain/instances/ghost/status", json={"status": "pause"}
    )
    assert code == 404
    assert body["errors"][0] == {"code": 10501, "message": "Workflow instance 'ghost' not found."}


async def test_scopes_tell_tenants_apart(host: Host) -> None:
    for tenant in ("a", "b"):
        response = await host.client.get(f"/create?t={tenant}&id=same&p={tenant}-params")
        assert response.json() == {"id": "same"}
    code, body = await host.api("GET", "/workflows/dyn/instances")
    scopes = {i["scope"] for i in body["result"]}
    assert len(scopes) == 2
    assert "" not in scopes
    code, body = await host.api("GET", "/workflows/dyn/instances/same")
    assert code == 400
    message = body["errors"][0]["message"]
    assert message.startswith("scope: instance id 'same' exists in 2 scopes")
    outputs = set()
    for scope in scopes:
        done = await host.wait_for("dyn", "same", "complete", scope=scope)
        assert done["scope"] == scope
        outputs.add(done["output"])
        code, body = await host.api("GET", "/workflows/dyn/instances", params={"scope": scope})
        assert [i["id"] for i in body["result"]] == ["same"]
    assert outputs == {"a says a-params", "b says b-params"}
    # An instance created by the admin API in a tenant's envelope lands in that tenant's scope.
    code, body = await host.api(
        "POST",
        "/workflows/dyn/instances",
        json={"id": "adm", "params": {"__dispatcherMetadata": {"t": "a"}, "params": "x"}},
    )
    assert code == 200
    a_scope = body["result"]["scope"]
    assert a_scope in scopes
    done = await host.wait_for("dyn", "adm", "complete")
    assert done["output"] == "a says x"
    # Without the envelope, a dynamic workflow's instance is refused up front, saying what it
    # needs (it would only fail at once with MissingDispatcherMetadataError).
    code, body = await host.api(
        "POST", "/workflows/dyn/instances", json={"id": "raw", "params": {"x": 1}}
    )
    assert code == 400
    message = body["errors"][0]["message"]
    assert message.startswith("params: workflow 'dyn' is a dynamic workflow")
    assert '{"__dispatcherMetadata": <the tenant\'s metadata>, "params": ' in message
    assert (await host.api("GET", "/workflows/dyn/instances/raw"))[0] == 404


async def test_deleting(host: Host) -> None:
    for i in range(3):
        await host.api("POST", "/workflows/plain/instances", json={"id": f"d{i}"})
    code, body = await host.api(
        "POST", "/workflows/plain/instances/batch/delete", json={"instances": ["d0", "ghost"]}
    )
    assert code == 200
    assert body["result"]["deleted"] == [{"id": "d0"}]
    assert body["result"]["errors"] == [
        {"id": "ghost", "code": 10501, "message": "Workflow instance 'ghost' not found."}
    ]
    for payload in ({"instances": []}, {"instances": "d1"}, {}):
        code, body = await host.api("POST", "/workflows/plain/instances/batch/delete", json=payload)
        assert code == 400
        assert body["errors"][0]["message"].startswith("instances: ")
    code, body = await host.api("DELETE", "/workflows/plain/instances/d1")
    assert (code, body["result"]) == (200, {"success": True})
    assert (await host.api("GET", "/workflows/plain/instances/d1"))[0] == 404
    code, body = await host.api("DELETE", "/workflows/plain")
    assert code == 200
    assert body["result"]["success"] is True
    code, body = await host.api("GET", "/workflows/plain/instances")
    assert body["result_info"]["total_count"] == 0


async def test_unknown_routes_and_methods(host: Host) -> None:
    code, body = await host.api("GET", "/nothing/here")
    assert code == 404
    assert body["errors"] == [{"code": 7003, "message": "No route for the URI"}]
    code, body = await host.api("PUT", "/workflows")
    assert code == 405
    # No slash redirects in the API: "instances/%2F" (an id "/") was a 307 to "instances",
    # which a POST follows to create an instance.
    for method, path in (("POST", "/workflows/plain/instances/%2F"), ("GET", "/workflows/")):
        code, body = await host.api(method, path)
        assert code == 404
        assert body["errors"][0]["code"] == 7003
    code, body = await host.api("GET", "/workflows/plain/instances")
    assert body["result"] == []


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", API + "/workflows", "GET, HEAD"),
        ("POST", API + "/workflows/plain", "GET, DELETE, HEAD"),
        ("DELETE", API + "/workflows/plain/instances", "GET, POST, HEAD"),
        ("GET", API + "/workflows/plain/instances/batch/delete", "POST"),
        ("PATCH", API + "/workflows/plain/instances/x", "GET, DELETE, HEAD"),
        ("GET", API + "/workflows/plain/instances/x/status", "PATCH"),
        ("GET", API + "/workflows/plain/instances/x/events/go", "POST"),
        ("PUT", "/cdn-cgi/explorer/api/workflows/plain", "GET, DELETE, HEAD"),
        ("POST", "/cdn-cgi/local/explorer/", "GET, HEAD"),
        ("DELETE", "/cdn-cgi/local/metrics", "GET, HEAD"),
    ],
)
async def test_a_405_names_every_method_of_the_path(
    host: Host, method: str, path: str, allow: str
) -> None:
    # RFC 9110 15.5.6: a 405 carries Allow, listing all the methods the path answers (a path
    # with two routes once named only the first's).
    response = await host.client.request(method, path)
    assert response.status_code == 405
    assert response.json()["success"] is False
    assert response.headers["allow"] == allow
    app = create_admin_app(host.live, host.metrics, "s3cret")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://admin.test",
        headers={"authorization": "Bearer s3cret"},
    ) as admin:
        for how, where, methods in (
            (method, path, allow),
            ("PUT", "/metrics", "GET, HEAD"),
            ("POST", "/", "GET, HEAD"),
        ):
            response = await admin.request(how, where)
            assert response.status_code == 405
            assert response.headers["allow"] == methods


@pytest.mark.parametrize("field", ["type", "name", "count"])
@pytest.mark.parametrize("value", [[1], {"a": 1}, ["do"], {}])
async def test_a_restart_point_of_the_wrong_type_is_a_400(
    host: Host, field: str, value: Any
) -> None:
    # from.type as a list or object was looked up in a dict: TypeError, a 500.
    await host.api("POST", "/workflows/plain/instances", json={"id": "r"})
    point = {"name": "first", field: value}
    code, body = await host.api(
        "PATCH", "/workflows/plain/instances/r/status", json={"status": "restart", "from": point}
    )
    assert code == 400
    assert body["errors"][0]["message"].startswith(f"from: restart(): from.{field} ")


_WRONG = [None, True, 0, -1, 1.5, 10**30, "", "x", [], [1], ["x"], {}, {"a": 1}]
_FIELDS = [
    ("POST", "/workflows/plain/instances", {"id": "w", "params": {}}, ("id",)),
    ("POST", "/workflows/plain/instances", {"id": "w", "params": {}}, ("params",)),
    ("POST", "/workflows/plain/instances", {"id": "w", "retention": {}}, ("retention",)),
    *(
        (
            "POST",
            "/workflows/plain/instances",
            {"id": "w", "retention": {"successRetention": 1, "errorRetention": 1}},
            ("retention", field),
        )
        for field in ("successRetention", "errorRetention")
    ),
    ("POST", "/workflows/plain/instances/batch/delete", {"instances": ["ghost"]}, ("instances",)),
    ("POST", "/workflows/plain/instances/batch/delete", {"instances": ["ghost"]}, ("instances", 0)),
    ("PATCH", "/workflows/plain/instances/w/status", {"status": "pause"}, ("status",)),
    ("PATCH", "/workflows/plain/instances/w/status", {"action": "pause"}, ("action",)),
    ("PATCH", "/workflows/plain/instances/w/status", {"status": "terminate"}, ("rollback",)),
    *(
        (
            "PATCH",
            "/workflows/plain/instances/w/status",
            {"status": "restart", "from": {"name": "first", "count": 1, "type": "do"}},
            ("from", *field),
        )
        for field in ((), ("name",), ("count",), ("type",))
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    _FIELDS,
    ids=[f"{m} {p.rsplit('/', 1)[1]} {'.'.join(map(str, f))}" for m, p, _, f in _FIELDS],
)
async def test_every_field_of_the_wrong_json_type_is_a_4xx(
    host: Host, method: str, path: str, body: dict[str, Any], field: tuple[Any, ...]
) -> None:
    # from.type as a list or object was looked up in a dict: TypeError, a 500.
    for value in _WRONG:
        await host.client.post(API + "/workflows/plain/instances", json={"id": "w"})
        sent = json.loads(json.dumps(body))
        inner = sent
        for key in field[:-1]:
            inner = inner[key]
        inner[field[-1]] = value
        status, answer = await host.api(method, path, json=sent)
        assert status < 500, (value, answer)


_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)
_NOT_JSON = st.binary(max_size=20).map(lambda raw: raw.decode("latin-1"))
_POINT = st.fixed_dictionaries(
    {"name": st.just("first") | _JSON, "type": _JSON}, optional={"count": _JSON}
)
# Each route with the body it expects, every field of it any JSON.
_ROUTES = {
    ("GET", "/workflows"): st.nothing(),
    ("GET", "/workflows/{wf}"): st.nothing(),
    ("DELETE", "/workflows/{wf}"): st.nothing(),
    ("GET", "/workflows/{wf}/instances"): st.nothing(),
    ("POST", "/workflows/{wf}/instances"): st.fixed_dictionaries(
        {"id": st.none() | _TEXT | _JSON, "params": _JSON},
        optional={
            "x": _JSON,
            "retention": _JSON
            | st.dictionaries(st.sampled_from(["successRetention", "errorRetention"]), _JSON),
        },
    ),
    ("POST", "/workflows/{wf}/instances/batch/delete"): st.fixed_dictionaries(
        {"instances": st.lists(st.just("ghost") | _JSON, max_size=3) | _JSON}
    ),
    ("GET", "/workflows/{wf}/instances/{id}"): st.nothing(),
    ("DELETE", "/workflows/{wf}/instances/{id}"): st.nothing(),
    ("PATCH", "/workflows/{wf}/instances/{id}/status"): st.fixed_dictionaries(
        {
            "status": st.sampled_from(["restart", "pause", "resume", "terminate"]) | _JSON,
            "from": st.none() | _POINT | _JSON,
        },
        optional={"action": _JSON, "rollback": _JSON},
    ),
    ("POST", "/workflows/{wf}/instances/{id}/events/{type}"): _JSON,
}
_QUERIES = st.dictionaries(
    st.sampled_from(["page", "per_page", "status", "scope", "date_start", "date_end"]),
    _TEXT | st.integers().map(str),
    max_size=3,
)


@pytest.mark.parametrize("route", sorted(_ROUTES), ids=" ".join)
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), query=_QUERIES)
async def test_no_admin_request_is_a_500(
    host: Host, route: tuple[str, str], data: st.DataObject, query: dict[str, str]
) -> None:
    """Whatever JSON (or not) a client sends in any field of any route, with any query and
    any names in the path: an answer in the envelope, below 500."""
    await host.client.post(API + "/workflows/plain/instances", json={"id": "fuzzed"})
    method, template = route
    body = data.draw(_ROUTES[route] | st.none() | _JSON | _NOT_JSON, "body")
    path = template.format(
        wf=data.draw(st.sampled_from(["plain", "plain", "dyn", "nope"]), "workflow"),
        id=quote(data.draw(st.sampled_from(["fuzzed", "ghost"]) | _TEXT.filter(bool)), ""),
        type=quote(data.draw(st.just("go") | _TEXT.filter(bool)), safe=""),
    )
    if body is None:
        content = None
    elif isinstance(body, str) and body and not body.startswith('"'):
        content = body.encode()  # as it is: mostly not JSON
    else:
        content = json.dumps(body).encode()
    status, _ = await host.api(method, path, content=content, params=query)
    assert status < 500


# -- the admin token -------------------------------------------------------------------------------

_BAD_TOKENS = [
    ("", "is empty"),
    ("   ", "is only whitespace"),
    ("\t\n", "is only whitespace"),
    ("s3cr\u00e9t", "must be printable ASCII without spaces (characters ! to ~): character 5 is"),
    ("two words", "character 4 is a space"),
    (" padded", "character 1 is a space"),
    ("nul\x00", "character 4 is '\\x00'"),
]


@pytest.mark.parametrize(("token", "problem"), _BAD_TOKENS)
async def test_an_unusable_admin_token_is_refused_at_start(
    host: Host, token: str, problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=r"^the admin token ") as caught:
        create_admin_app(host.live, host.metrics, token)
    assert problem in str(caught.value)
    if token:  # an empty one means no token to the client
        with pytest.raises(AdminError, match=r"^the admin token \(--token or DWF_ADMIN_TOKEN\) "):
            AdminClient("http://127.0.0.1:9", token)


@given(st.binary(max_size=40), st.sampled_from([b"", b"Bearer ", b"bearer  ", b"Basic "]))
def test_any_authorization_header_is_checked_without_crashing(raw: bytes, prefix: bytes) -> None:
    assert bearer_matches(prefix + raw, "s3cret") == (
        prefix.strip().lower() == b"bearer" and raw.strip(b" \t") == b"s3cret"
    )


async def test_non_ascii_authorization_headers_are_a_401(host: Host) -> None:
    app = create_admin_app(host.live, host.metrics, "s3cret")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin.test") as admin:
        for value in (
            "Bearer s3cr\u00e9t".encode(),
            "Bearer s3cr\u00e9t".encode("latin-1"),
            b"\xff",
        ):
            response = await admin.get(API + "/workflows", headers={"authorization": value})
            assert response.status_code == 401
        ok = await admin.get(API + "/workflows", headers={"authorization": b"bEaReR  s3cret "})
        assert ok.status_code == 200


async def test_metrics_and_dashboard(host: Host) -> None:
    await host.api("POST", "/workflows/plain/instances", json={"id": "m"})
    await host.wait_for("plain", "m", "waiting")
    await host.client.get("/vars")
    text = (await host.client.get("/cdn-cgi/local/metrics")).text
    assert 'dwf_instances{status="waiting",workflow="plain"} 1.0' in text
    assert "dwf_steps_committed_total" in text
    assert "dwf_live_runs" in text
    assert "dwf_parked_runs" in text
    assert (
        'dwf_http_request_duration_seconds_count{handler="dispatcher",method="GET",status="200"}'
        in text
    )
    page = await host.client.get("/cdn-cgi/local/explorer/")
    assert page.status_code == 200
    assert "<title>dwf" in page.text
    assert (await host.client.get("/cdn-cgi/local/explorer")).status_code == 307


@dataclass
class FixedPolicy:
    """A tenant policy (``queries.tenant_policy``) with fixed throttled counts and limits."""

    counts: dict[str, int]
    caps: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    async def limits(self, scope: str) -> dict[str, Any] | None:
        return self.caps.get(scope)

    async def throttled(self) -> dict[str, int]:
        return self.counts


async def test_metrics_name_workflows_and_the_top_tenants(host: Host) -> None:
    for tenant in ("a", "b", "c"):
        for i in range({"a": 3, "b": 2, "c": 1}[tenant]):
            code, body = await host.api(
                "POST",
                "/workflows/dyn/instances",
                json={
                    "id": f"{tenant}{i}",
                    "params": {
                        "__dispatcherMetadata": {"t": tenant, "tenant": tenant},
                        "params": i,
                    },
                },
            )
            assert code == 200, body
            await host.wait_for("dyn", f"{tenant}{i}", "complete")
    await host.api("POST", "/workflows/plain/instances", json={"id": "p"})
    await host.wait_for("plain", "p", "waiting")

    # The throttled creates come from the tenants' policy (caps), when the engine has one.
    host.live.project.engine.queries.tenant_policy = FixedPolicy(
        {scope_of({"t": "a", "tenant": "a"}): 4, scope_of({"t": "c", "tenant": "c"}): 2}
    )
    metrics = HostMetrics(host.live, top_tenants=2)
    await metrics.refresh()
    assert metrics.tenants == 3
    assert {k: v.by_status for k, v in metrics.tenant_figures.items()} == {
        "a": {"complete": 3},
        "b": {"complete": 2},
        OTHER_TENANT: {"complete": 1},
    }
    text = generate_latest(metrics.registry).decode()
    assert 'dwf_tenant_instances{status="complete",tenant="a"} 3.0' in text
    assert 'dwf_tenant_instances{status="complete",tenant="other"} 1.0' in text
    assert "dwf_tenants 3.0" in text
    for tenant, created, throttled in (("a", 3, 4), ("b", 2, 0), ("other", 1, 2)):
        assert f'dwf_tenant_instances_created_total{{tenant="{tenant}"}} {created}.0' in text
        assert f'dwf_tenant_steps_committed_total{{tenant="{tenant}"}} {created}.0' in text
        assert f'dwf_tenant_creates_throttled_total{{tenant="{tenant}"}} {throttled}.0' in text
    assert 'tenant="c"' not in text
    # The unscoped instance of `plain` belongs to no tenant.
    assert 'dwf_instances{status="waiting",workflow="plain"} 1.0' in text
    assert 'dwf_instances{status="complete",workflow="dyn"} 6.0' in text
    assert 'dwf_workflow_runs_total{workflow="dyn"} 6.0' in text
    assert 'dwf_workflow_runs_total{workflow="plain"} 1.0' in text
    assert 'dwf_workflow_steps_committed_total{workflow="dyn"} 6.0' in text
    assert 'dwf_workflow_steps_committed_total{workflow="plain"} 1.0' in text

    # The default endpoint shows every tenant (three, under the default bound of 20).
    page = (await host.client.get("/cdn-cgi/local/metrics")).text
    assert 'dwf_tenant_instances{status="complete",tenant="c"} 1.0' in page
    assert 'tenant="other"' not in page


async def test_the_admin_port_needs_the_token(host: Host) -> None:
    app = create_admin_app(host.live, host.metrics, "s3cret")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin.test") as admin:
        response = await admin.get(API + "/workflows")
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["errors"] == [{"code": 10000, "message": "Authentication error"}]
        wrong = await admin.get(API + "/workflows", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        auth = {"authorization": "Bearer s3cret"}
        assert (await admin.get(API + "/workflows", headers=auth)).status_code == 200
        assert (await admin.get("/metrics")).status_code == 401
        assert "dwf_runs_total" in (await admin.get("/metrics", headers=auth)).text
        # The page itself holds no data; the API calls it makes carry the token.
        assert (await admin.get("/cdn-cgi/local/explorer/")).status_code == 200
        # The admin port has no dispatcher.
        assert (await admin.get("/vars", headers=auth)).status_code == 404


async def test_a_page_past_the_end_is_empty_however_large(tmp_path: Path) -> None:
    # On SQLite, whose OFFSET stops at 2**63 - 1, a huge page once answered 500 (an overflow).
    folder = write_project(tmp_path / "project")
    url = str(tmp_path / "state.sqlite3")
    live = LiveProject(
        lambda: Project(load_config(folder), storage_url=url, loader_mode="in-process")
    )
    await live.start()
    app = create_dev_app(live, HostMetrics(live))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://dev.test"
        ) as client:
            host = Host(live, client, HostMetrics(live))
            await host.api("POST", "/workflows/plain/instances", json={"id": "only"})
            for page in ("9223372036854775807", "9223372036854775808", str(10**30)):
                for extra in ({}, {"status": "queued"}, {"date_end": "2999-01-01T00:00:00Z"}):
                    code, body = await host.api(
                        "GET", "/workflows/plain/instances", params={"page": page, **extra}
                    )
                    assert code == 200, body
                    assert body["result"] == []
                    assert body["result_info"]["page"] == int(page)
            code, body = await host.api("GET", "/workflows/plain/instances")
            assert [i["id"] for i in body["result"]] == ["only"]
    finally:
        await live.stop()


# -- the OpenAPI description ---------------------------------------------------------------------

_OPERATIONS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _spec() -> dict[str, Any]:
    text = resources.files("dynamic_workflows.host").joinpath("openapi.json").read_text()
    spec: dict[str, Any] = json.loads(text)
    return spec


async def test_openapi_json_describes_every_route_and_method_the_admin_api_serves(
    host: Host,
) -> None:
    # /tenants, the logs routes and /openapi.json itself were served but not described, so
    # the clients and fuzzers made from the description never saw them.
    served: dict[str, set[str]] = {}
    for route in AdminAPI(host.live).routes():
        template = getattr(route, "path", None)
        assert isinstance(template, str), route
        # A method no route serves: the 405's Allow names the methods the path serves.
        response = await host.client.request("TRACE", API + re.sub(r"\{\w+\}", "x", template))
        assert response.status_code == 405, template
        served[template] = {m.strip().lower() for m in response.headers["allow"].split(",")}
        served[template].discard("head")  # (GET's, by HTTP's rules)
    spec = _spec()
    described = {path: set(item) & _OPERATIONS for path, item in spec["paths"].items()}
    assert served == described
    # It serves that description, as it is.
    response = await host.client.get(API + "/openapi.json")
    assert response.json() == spec
    # Ours on Cloudflare's routes too: ?scope= wherever instances are listed, made or addressed.
    for path, item in spec["paths"].items():
        for method in set(item) & _OPERATIONS if "/instances" in path else ():
            query = {p["name"] for p in item[method].get("parameters", []) if p["in"] == "query"}
            assert "scope" in query, (method, path)


def test_openapi_json_describes_the_429_of_a_tenants_caps_and_the_retention_option() -> None:
    create = _spec()["paths"]["/workflows/{workflow_name}/instances"]["post"]
    refused = create["responses"]["429"]
    assert set(refused["headers"]) == {"Retry-After"}
    schema = refused["content"]["application/json"]["schema"]
    assert schema["allOf"][0] == {
        "$ref": "#/components/schemas/workers_api-response-common-failure"
    }
    assert schema["allOf"][1]["example"]["errors"][0]["code"] == CODE_TENANT_LIMIT
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]["retention"]["properties"]) == {
        "successRetention",
        "errorRetention",
    }


async def test_a_create_over_the_tenants_rate_is_a_429(host: Host) -> None:
    engine = host.live.project.engine
    engine.tenant_defaults = TenantPolicy(create_rate=0.5, create_burst=1)
    code, _ = await host.api("POST", "/workflows/plain/instances", json={"id": "first"})
    assert code == 200
    response = await host.client.post(API + "/workflows/plain/instances", json={"id": "second"})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    error = response.json()["errors"][0]
    assert error["code"] == 10429
    assert "create_rate of 0.5/s (burst 1)" in error["message"]
    # Through the dispatcher, uncaught: a 429 too, not a 500.
    assert (await host.client.get("/create?t=a&id=x&p=1")).status_code == 200
    throttled = await host.client.get("/create?t=a&id=y&p=1")
    assert throttled.status_code == 429
    assert "create_rate" in throttled.text
    assert engine.throttled_creates() == 2
