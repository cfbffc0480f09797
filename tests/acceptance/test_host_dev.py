"""``dwf dev examples/saas`` as a user runs it: a subprocess, tenant code in the sandbox.

The seed's curl session, tenants with different code side by side, tenant isolation through the
dispatcher, the admin API against the OpenAPI spec, and every ``dwf workflows``/``dwf instances``
command against the running server.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import host_support
import httpx
import pytest
from click.testing import CliRunner
from host_support import API, DWF, ROOT, SPEC, Server, check_response, copy_project, validate

from dynamic_workflows.cli import main

WF = "tenant-workflows"


@pytest.fixture(scope="module")
def saas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = copy_project(ROOT / "examples" / "saas", tmp_path_factory.mktemp("dev") / "saas")
    server = Server("dev", folder, "--no-reload")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def create(server: Server, tenant: str, params: Any, id: str | None = None) -> str:
    url = server.url + "/" + (f"?id={id}" if id else "")
    response = httpx.post(url, headers={"x-tenant-id": tenant}, json=params)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def status(server: Server, tenant: str, id: str) -> httpx.Response:
    return httpx.get(
        server.url + "/api/status", params={"instanceId": id}, headers={"x-tenant-id": tenant}
    )


def wait_status(server: Server, tenant: str, id: str, want: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    body: Any = None
    while time.monotonic() < deadline:
        response = status(server, tenant, id)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] == want:
            return body
        assert body["status"] not in ("errored", "terminated"), body
        time.sleep(0.05)
    raise AssertionError(f"{tenant}/{id} never reached {want}: {body}\n{server.log()}")


def test_the_readme_curl_session(saas: Server) -> None:
    order = create(saas, "acme", {"sku": "anvil", "qty": 2})
    doc = create(saas, "globex", {"title": "Q3 report", "body": "numbers went up"})
    assert wait_status(saas, "globex", doc, "waiting")["output"] is None
    approve = httpx.post(
        saas.url + "/api/approve",
        params={"instanceId": doc},
        headers={"x-tenant-id": "globex"},
        json={"by": "ada"},
    )
    assert approve.json() == {"id": doc, "sent": "approval"}
    assert wait_status(saas, "globex", doc, "complete")["output"] == {
        "tenant": "globex",
        "result": "published 'Q3 report', approved by ada",
    }
    assert wait_status(saas, "acme", order, "complete")["output"] == {
        "tenant": "acme",
        "shipment": "shipped 2 x anvil for 3998 cents",
        "charged": 3998,
    }
    assert (Path(saas.folder) / ".dwf" / "state.sqlite3").is_file()
    assert "sandbox: seccomp=" in saas.log()


def test_tenants_with_different_code_side_by_side(saas: Server) -> None:
    ids = {
        tenant: create(saas, tenant, {"amounts": [5, 7]}, id="side-by-side")
        for tenant in (
            "acme",
            "globex",
            "initech",
        )
    }
    assert set(ids.values()) == {"side-by-side"}  # one id, three tenants: no collision
    assert wait_status(saas, "initech", "side-by-side", "complete")["output"] == {
        "tenant": "initech",
        "invoices": 2,
        "total": 12,
    }
    assert wait_status(saas, "globex", "side-by-side", "waiting")["output"] is None
    assert wait_status(saas, "acme", "side-by-side", "complete")["output"]["tenant"] == "acme"


def test_a_tenant_cannot_reach_another_tenants_instance(saas: Server) -> None:
    secret = create(saas, "acme", {"sku": "secret"}, id="acme-only")
    assert status(saas, "acme", secret).status_code == 200
    refused = status(saas, "globex", secret)
    assert refused.status_code == 404
    assert refused.json() == {"error": "instance not found"}
    approve = httpx.post(
        saas.url + "/api/approve",
        params={"instanceId": secret},
        headers={"x-tenant-id": "initech"},
    )
    assert approve.status_code == 404
    nobody = httpx.get(saas.url + "/")
    assert nobody.status_code == 400
    assert nobody.json()["tenants"] == ["acme", "globex", "initech"]


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "code", "error"),
    [
        ("POST", "/", {"id": "m-1"}, b"{nope", 400, "the request body is not valid JSON: "),
        ("POST", "/", {}, b"\xff\xfe", 400, "the request body is not valid JSON: "),
        (
            "POST",
            "/",
            {"id": "-bad id"},
            b"{}",
            400,
            "Workflow instance has invalid id: an instance id is 1-100 characters",
        ),
        ("POST", "/", {"id": "x" * 101}, b"{}", 400, "Workflow instance has invalid id"),
        ("POST", "/", {"id": "taken"}, b"{}", 409, '"taken" already exists'),
        ("GET", "/api/status", {"instanceId": "ghost"}, None, 404, "instance not found"),
        ("POST", "/api/approve", {"instanceId": "ghost"}, b"{}", 404, "instance not found"),
        ("POST", "/api/approve", {"instanceId": "taken"}, b"[", 400, "not valid JSON"),
        ("GET", "/api/status", {}, None, 400, "instanceId is required"),
        ("GET", "/", {}, None, 405, "use POST /"),
    ],
)
def test_a_clients_mistakes_are_4xx_naming_the_problem(
    saas: Server,
    method: str,
    path: str,
    params: dict[str, str],
    body: bytes | None,
    code: int,
    error: str,
) -> None:
    # Malformed JSON, a bad id and an existing id were 500s "Worker threw exception": the
    # tenant's errors crossed the sandbox as StepError, which the dispatcher could not tell
    # from its own failures. Now the binding's errors come back as their own classes.
    if code == 409 or "taken" in params.values():
        headers = {"x-tenant-id": "acme"}
        httpx.post(saas.url + "/", params={"id": "taken"}, headers=headers, json={})
    response = httpx.request(
        method, saas.url + path, params=params, content=body, headers={"x-tenant-id": "acme"}
    )
    assert response.status_code == code, response.text
    assert error in response.json()["error"]
    if code == 405:
        assert response.headers["allow"] == "POST"
    assert "the dispatcher (Default.fetch) raised" not in saas.log()


def _raw_request(port: int, head: bytes, body: bytes) -> tuple[bytes, float]:
    """Send ``head`` and ``body`` on a fresh connection without finishing the request; the
    whole response, and how long it took to come."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        header, _, rest = answer.partition(b"\r\n\r\n")
        length = int(header.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += sock.recv(65536)
    return header + b"\r\n\r\n" + rest, time.monotonic() - started


def test_a_body_over_the_limit_is_a_quick_413(tmp_path: Path) -> None:
    # A 40-64 MiB body once reached a tenant's worker (limit: 100 MiB) and killed it.
    folder = copy_project(ROOT / "examples" / "saas", tmp_path / "saas")
    server = Server("dev", folder, "--no-reload", "--max-body-size", "1MiB")
    try:
        server.wait_ready()
        acme = {"x-tenant-id": "acme"}
        # Declared too large: refused before the body is read (only a little of it is sent).
        head = (
            b"POST /?id=huge HTTP/1.1\r\nHost: x\r\nx-tenant-id: acme\r\n"
            b"Content-Length: 1073741824\r\n\r\n"
        )
        answer, took = _raw_request(server.port, head, b"{" * 1000)
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert answer.endswith(
            b"request body of 1073741824 bytes is over the host's limit of 1 MiB"
        )
        assert took < 5
        # Chunked: read no further than the limit, then refused (the request never finishes).
        head = (
            b"POST /?id=huge HTTP/1.1\r\nHost: x\r\nx-tenant-id: acme\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * (768 << 10)
        answer, took = _raw_request(
            server.port, head, (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 2
        )
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert answer.endswith(b"request body is over the host's limit of 1 MiB")
        assert took < 5

        # The tenant's other requests, during big uploads, are answered as usual.
        def upload() -> int:
            return httpx.post(
                server.url + "/", headers=acme, content=b"[" + b"1," * (1 << 20) + b"1]"
            ).status_code

        with ThreadPoolExecutor(8) as pool:
            big = [pool.submit(upload) for _ in range(4)]
            small = [
                pool.submit(
                    lambda i=i: (
                        httpx.post(
                            server.url + "/", params={"id": f"c-{i}"}, headers=acme, json={"qty": i}
                        ).status_code
                    )
                )
                for i in range(8)
            ]
            assert [f.result() for f in big] == [413] * 4
            assert [f.result() for f in small] == [200] * 8
        for i in range(8):
            assert (
                wait_status(server, "acme", f"c-{i}", "complete")["output"]["charged"] == 1999 * i
            )
        # Within the limit the body reaches the tenant's worker whole.
        fits = httpx.post(server.url + "/", headers=acme, json={"pad": "x" * (900 << 10)})
        assert fits.status_code == 200, fits.text
        log = server.log()
        assert "the dispatcher (Default.fetch) raised" not in log
        assert "tenant 'acme': worker" not in log  # none of the tenant's workers died
    finally:
        server.stop()


def test_the_admin_api_matches_the_openapi_spec(saas: Server) -> None:
    api = saas.url + API
    doc = create(saas, "globex", {"title": "spec"}, id="spec-1")
    wait_status(saas, "globex", doc, "waiting")

    listing = check_response("GET", "/workflows", httpx.get(api + "/workflows"))
    assert listing["result"][0]["name"] == WF
    details = check_response(
        "GET", "/workflows/{workflow_name}", httpx.get(f"{api}/workflows/{WF}")
    )
    assert details["result"]["instances"]["waiting"] >= 1
    missing = check_response(
        "GET", "/workflows/{workflow_name}", httpx.get(f"{api}/workflows/nope")
    )
    assert missing["errors"][0]["code"] == 10501

    instances = f"{api}/workflows/{WF}/instances"
    page = check_response(
        "GET", "/workflows/{workflow_name}/instances", httpx.get(instances, params={"per_page": 2})
    )
    assert len(page["result"]) <= 2
    assert page["result_info"]["per_page"] == 2
    bad = httpx.get(instances, params={"status": "nope"})
    assert bad.status_code == 400
    check_response("GET", "/workflows/{workflow_name}/instances", bad)

    one = "/workflows/{workflow_name}/instances/{instance_id}"
    got = check_response("GET", one, httpx.get(f"{instances}/{doc}"))
    assert got["result"]["status"] == "waiting"
    assert [s["name"] for s in got["result"]["steps"]] == ["draft", "wait for approval"]
    assert got["result"]["params"]["__dispatcherMetadata"] == {"tenantId": "globex"}
    check_response("GET", one, httpx.get(f"{instances}/ghost"))

    status_path = one + "/status"
    paused = httpx.patch(f"{instances}/{doc}/status", json={"status": "pause"})
    assert check_response("PATCH", status_path, paused)["result"]["status"] == "paused"
    resumed = httpx.patch(f"{instances}/{doc}/status", json={"status": "resume"})
    check_response("PATCH", status_path, resumed)
    bad_action = httpx.patch(f"{instances}/{doc}/status", json={"status": "fly"})
    assert bad_action.status_code == 400
    check_response("PATCH", status_path, bad_action)
    ghost = httpx.patch(f"{instances}/ghost/status", json={"status": "pause"})
    assert ghost.status_code == 404
    check_response("PATCH", status_path, ghost)

    event = httpx.post(f"{instances}/{doc}/events/approval", json={"by": "the spec"})
    check_response("POST", one + "/events/{event_type}", event)
    wait_status(saas, "globex", doc, "complete")
    finished = httpx.patch(f"{instances}/{doc}/status", json={"status": "terminate"})
    assert finished.status_code == 409
    check_response("PATCH", status_path, finished)

    # A dynamic workflow's instance needs its tenant's envelope: without it, a 400 says so.
    plain = httpx.post(instances, json={"id": "spec-raw", "params": {"x": 1}})
    assert plain.status_code == 400
    assert "__dispatcherMetadata" in plain.json()["errors"][0]["message"]
    check_response("POST", "/workflows/{workflow_name}/instances", plain)
    envelope = {"__dispatcherMetadata": {"tenantId": "initech"}, "params": {"amounts": [1]}}
    made = httpx.post(instances, json={"id": "spec-raw", "params": envelope})
    assert (
        check_response("POST", "/workflows/{workflow_name}/instances", made)["result"]["id"]
        == "spec-raw"
    )
    again = httpx.post(instances, json={"id": "spec-raw", "params": envelope})
    assert again.status_code == 409
    check_response("POST", "/workflows/{workflow_name}/instances", again)

    batch = httpx.post(f"{instances}/batch/delete", json={"instances": ["spec-raw", "ghost"]})
    result = check_response("POST", "/workflows/{workflow_name}/instances/batch/delete", batch)
    assert result["result"]["deleted"] == [{"id": "spec-raw"}]
    empty = httpx.post(f"{instances}/batch/delete", json={"instances": []})
    assert empty.status_code == 400
    check_response("POST", "/workflows/{workflow_name}/instances/batch/delete", empty)

    # Ours, described too: tenants, logs, and the description itself.
    everyone = check_response("GET", "/tenants", httpx.get(f"{api}/tenants"))
    assert everyone["result"]
    assert everyone["result_info"]["total_count"] >= 1
    ordered = httpx.get(f"{api}/workflows/{WF}/tenants", params={"order": "steps"})
    assert check_response("GET", "/workflows/{workflow_name}/tenants", ordered)["result"]
    bad_order = httpx.get(f"{api}/tenants", params={"order": "nope"})
    assert bad_order.status_code == 400
    check_response("GET", "/tenants", bad_order)
    logs = check_response("GET", one + "/logs", httpx.get(f"{instances}/{doc}/logs"))
    assert logs["result"]["id"] == doc
    check_response("GET", one + "/logs", httpx.get(f"{instances}/{doc}/logs?limit=0"))
    no_worker = httpx.get(f"{api}/workers/ghost/logs")
    assert no_worker.status_code == 404
    check_response("GET", "/workers/{worker_id}/logs", no_worker)
    assert check_response("GET", "/openapi.json", httpx.get(f"{api}/openapi.json")) == SPEC

    deleted = httpx.delete(f"{instances}/{doc}")
    check_response("DELETE", one, deleted)
    assert httpx.get(f"{instances}/{doc}").status_code == 404


def test_the_validator_catches_a_wrong_shape() -> None:
    schema = {"$ref": "#/components/schemas/workflows_instance-details"}
    validate({"id": "x", "status": "complete"}, schema)
    with pytest.raises(AssertionError, match="required property 'status'"):
        validate({"id": "x"}, schema)
    with pytest.raises(AssertionError, match="is not one of"):
        validate({"id": "x", "status": "sleepy"}, schema)


def dwf(server: Server, *args: str) -> Any:
    result = CliRunner().invoke(main, [*args, "--url", server.url], catch_exceptions=False)
    return result


def test_every_workflows_and_instances_command(saas: Server) -> None:
    doc = create(saas, "globex", {"title": "cli"}, id="cli-1")
    wait_status(saas, "globex", doc, "waiting")

    out = dwf(saas, "workflows", "list")
    assert out.exit_code == 0, out.output
    assert WF in out.output
    assert "TenantWorkflows" in out.output
    out = dwf(saas, "workflows", "describe", WF)
    assert out.exit_code == 0
    assert "waiting" in out.output
    out = dwf(
        saas,
        "workflows",
        "trigger",
        WF,
        '{"__dispatcherMetadata": {"tenantId": "initech"}, "params": {"amounts": [1]}}',
        "--id",
        "cli-2",
    )
    assert out.exit_code == 0
    assert "Created instance cli-2" in out.output
    assert wait_status(saas, "initech", "cli-2", "complete")["output"]["total"] == 1

    out = dwf(saas, "instances", "list", WF)
    assert out.exit_code == 0
    assert "cli-1" in out.output
    assert "cli-2" in out.output
    out = dwf(saas, "instances", "list", WF, "--status", "complete", "--json")
    listed = json.loads(out.output)
    assert "cli-2" in {i["id"] for i in listed}
    assert all(i["status"] == "complete" for i in listed)
    out = dwf(saas, "workflows", "instances", "list", WF, "--per-page", "1", "--page", "1")
    assert "page 1 of" in out.output

    out = dwf(saas, "instances", "describe", WF, "cli-1")
    assert out.exit_code == 0
    assert "wait for approval" in out.output
    assert "waitForEvent" in out.output
    out = dwf(saas, "instances", "describe", WF, "latest", "--json")
    assert json.loads(out.output)["id"] == "cli-2"

    for action, after in (("pause", "paused"), ("resume", "queued")):
        out = dwf(saas, "instances", action, WF, "cli-1")
        assert out.exit_code == 0, out.output
        assert f"(status: {after})" in out.output
    wait_status(saas, "globex", "cli-1", "waiting")
    out = dwf(
        saas,
        "instances",
        "send-event",
        WF,
        "cli-1",
        "--type",
        "approval",
        "--payload",
        '{"by": "cli"}',
    )
    assert out.exit_code == 0
    assert "Sent event approval" in out.output
    assert wait_status(saas, "globex", "cli-1", "complete")["output"]["result"].endswith("by cli")
    out = dwf(saas, "instances", "restart", WF, "cli-1")
    assert out.exit_code == 0
    wait_status(saas, "globex", "cli-1", "waiting")
    out = dwf(saas, "instances", "terminate", WF, "cli-1", "--rollback")
    assert out.exit_code == 0, out.output
    assert "its rollback handlers run first" in out.output
    assert wait_status(saas, "globex", "cli-1", "terminated")["rollback"] == {"outcome": "complete"}
    out = dwf(saas, "instances", "describe", WF, "cli-1")
    assert "Rollback complete" in out.output
    out = dwf(saas, "instances", "terminate", WF, "cli-1")
    assert out.exit_code == 1
    assert "Cannot terminate instance since its on a finite state (HTTP 409)" in out.output
    out = dwf(saas, "instances", "delete", WF, "cli-1")
    assert out.exit_code == 0
    out = dwf(saas, "instances", "describe", WF, "cli-1")
    assert out.exit_code == 1
    assert "Workflow instance 'cli-1' not found. (HTTP 404)" in out.output
    out = dwf(saas, "instances", "list", "nope")
    assert out.exit_code == 1
    assert "Workflow 'nope' not found." in out.output


def test_dwf_tenants_lists_usage_sorted_paged_and_as_json(saas: Server) -> None:
    doc = create(saas, "globex", {"title": "tenants"}, id="tenants-1")
    wait_status(saas, "globex", doc, "waiting")
    create(saas, "initech", {"amounts": [2]}, id="tenants-2")
    wait_status(saas, "initech", "tenants-2", "complete")

    out = dwf(saas, "tenants")
    assert out.exit_code == 0, out.output
    for column in ("Tenant", "Live", "Running", "Waiting", "Finished", "Steps", "Limits"):
        assert column in out.output
    assert "globex" in out.output
    assert "initech" in out.output
    assert "by live" in out.output
    out = dwf(saas, "tenants", "--json", "--sort", "steps", "--workflow", WF)
    assert out.exit_code == 0, out.output
    listed = json.loads(out.output)
    steps = [t["steps"] for t in listed]
    assert steps == sorted(steps, reverse=True)
    globex = next(t for t in listed if t["tenant"] == "globex")
    assert globex["waiting"] >= 1
    assert globex["live"] >= globex["waiting"]
    # examples/saas caps its tenants: globex's plan over wrangler.jsonc's defaults.
    assert globex["limits"] == {
        "max_running": 5,
        "max_live": 1000,
        "create_rate": 20.0,
        "create_burst": 100,
        "weight": 1,
    }
    assert {"running", "finished", "throttled", "last_active_on"} <= set(globex)
    out = dwf(saas, "tenants", "--per-page", "1", "--page", "2")
    assert out.exit_code == 0, out.output
    assert "page 2 of" in out.output
    out = dwf(saas, "tenants", "--sort", "busiest")
    assert out.exit_code == 2
    assert "'busiest' is not one of" in out.output
    out = dwf(saas, "tenants", "--workflow", "nope")
    assert out.exit_code == 1
    assert "Workflow 'nope' not found" in out.output


def test_the_cli_as_a_subprocess_json_and_connection_refused(saas: Server) -> None:
    proc = subprocess.run(
        [*DWF, "workflows", "list", "--json", "--url", saas.url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["name"] == WF
    proc = subprocess.run(
        [*DWF, "instances", "list", WF, "--url", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("Error: cannot reach the admin API at http://127.0.0.1:9")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_dashboard_and_metrics(saas: Server) -> None:
    page = httpx.get(saas.url + "/cdn-cgi/local/explorer/")
    assert page.status_code == 200
    assert "workflows explorer" in page.text
    metrics = httpx.get(saas.url + "/cdn-cgi/local/metrics").text
    assert f'dwf_instances{{status="complete",workflow="{WF}"}}' in metrics
    assert "dwf_http_request_duration_seconds_bucket" in metrics
    assert 'dwf_tenant_instances{status="' in metrics
    assert "dwf_tenant_instances_created_total{tenant=" in metrics


WRANGLER = os.environ.get("DWF_TEST_WRANGLER")


def wrangler_env() -> dict[str, str]:
    assert WRANGLER is not None
    return host_support.wrangler_env(WRANGLER)


def test_wrangler_workflows_local_commands(saas: Server) -> None:
    """Cloudflare's own CLI against ``dwf dev`` (wrangler 4.127, installed by scripts/test)."""
    if not WRANGLER:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run this: scripts/test installs wrangler (needs npm)")
        pytest.skip("set DWF_TEST_WRANGLER to a wrangler binary to run wrangler against dwf")
    assert WRANGLER is not None
    create(saas, "globex", {"title": "wrangler"}, id="wr-1")
    wait_status(saas, "globex", "wr-1", "waiting")
    port = ["--local", "--port", str(saas.port)]

    def wrangler(*args: str) -> str:
        proc = subprocess.run(
            [WRANGLER, "workflows", *args, *port],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=wrangler_env(),
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    assert WF in wrangler("list")
    assert "waiting:" in wrangler("describe", WF)
    assert "wr-1" in wrangler("instances", "list", WF)
    assert "wait for approval" in wrangler("instances", "describe", WF, "wr-1")
    assert "paused successfully" in wrangler("instances", "pause", WF, "wr-1")
    assert "resumed successfully" in wrangler("instances", "resume", WF, "wr-1")
    wait_status(saas, "globex", "wr-1", "waiting")
    wrangler(
        "instances", "send-event", WF, "wr-1", "--type", "approval", "--payload", '{"by": "w"}'
    )
    assert wait_status(saas, "globex", "wr-1", "complete")["output"]["result"].endswith("by w")
    assert "Completed" in wrangler("instances", "describe", WF, "wr-1")
    # terminate --rollback (wrangler 4.109+): the tenant's handler runs in its worker first.
    create(saas, "globex", {"title": "doomed"}, id="wr-2")
    wait_status(saas, "globex", "wr-2", "waiting")
    assert "terminated" in wrangler("instances", "terminate", WF, "wr-2", "--rollback").lower()
    ended = wait_status(saas, "globex", "wr-2", "terminated")
    assert ended["rollback"] == {"outcome": "complete"}
    details = json.loads(dwf(saas, "instances", "describe", WF, "wr-2", "--json").output)
    undo = [s for s in details["steps"] if s["kind"] == "rollback"]
    assert [(s["name"], s["count"], s["state"]) for s in undo] == [("draft", -1, "done")]
    assert "wr-2" in wrangler("instances", "describe", WF, "wr-2")
