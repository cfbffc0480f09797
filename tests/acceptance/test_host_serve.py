"""``dwf serve``: the production form. A test-only project (wrangler.toml) run with --trusted:
the public port serves only the dispatcher, the admin port wants the token, a raw binding is
reported as MissingDispatcherMetadataError, and SIGTERM lets requests in flight finish."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from host_support import API, DWF, Server, check_response, copy_project, free_port

from dynamic_workflows.cli import main

PROJECT = Path(__file__).parent / "projects" / "rawbinding"
TOKEN = "t0ken-for-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def test_serve_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DWF_ADMIN_TOKEN"}
    proc = subprocess.run(
        [*DWF, "serve", str(PROJECT), "--db", str(tmp_path / "s.db")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env,
    )
    assert proc.returncode == 2
    assert "dwf serve needs an admin token" in proc.stderr
    assert "DWF_ADMIN_TOKEN" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "env", "problem"),
    [
        (["--admin-token", "   "], {}, "--admin-token (or DWF_ADMIN_TOKEN) is only whitespace"),
        (
            [],
            {"DWF_ADMIN_TOKEN": "s3cr\u00e9t"},
            "--admin-token (or DWF_ADMIN_TOKEN) must be printable ASCII without spaces "
            "(characters ! to ~): character 5 is '\u00e9'",
        ),
        (["--admin-token", "a b"], {}, "character 2 is a space"),
    ],
)
def test_serve_refuses_an_unusable_token(
    tmp_path: Path, args: list[str], env: dict[str, str], problem: str
) -> None:
    # A whitespace-only token was accepted, and then nothing authenticated; a non-ASCII one
    # matched or not depending on how the client encoded it.
    out = CliRunner().invoke(
        main, ["serve", str(PROJECT), "--db", str(tmp_path / "s.db"), *args], env=env
    )
    assert out.exit_code == 2, out.output
    assert problem in out.output
    assert not (tmp_path / "s.db").exists()  # refused before anything started


@pytest.mark.parametrize("token", ["s3cr\u00e9t", " ", "to ken"])
def test_the_client_refuses_an_unusable_token(token: str) -> None:
    # A non-ASCII token crashed httpx with a UnicodeEncodeError traceback.
    out = CliRunner().invoke(
        main, ["workflows", "list", "--url", "http://127.0.0.1:9", "--token", token]
    )
    assert out.exit_code == 1, out.output
    assert "Error: the admin token (--token or DWF_ADMIN_TOKEN) " in out.output
    assert "Traceback" not in out.output


class Serve:
    def __init__(self, server: Server, admin: str) -> None:
        self.server = server
        self.public = server.url
        self.admin = admin

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.admin + API + path, headers=AUTH, **kwargs)

    def wait(self, id: str, want: str) -> dict[str, Any]:
        deadline = time.monotonic() + 20
        result: dict[str, Any] = {}
        while time.monotonic() < deadline:
            result = self.api("GET", f"/workflows/dynamic/instances/{id}").json()["result"]
            if result["status"] == want:
                return result
            time.sleep(0.05)
        raise AssertionError(f"{id} never reached {want}: {result}")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    folder = copy_project(PROJECT, tmp_path / "rawbinding")
    admin_port = free_port()
    server = Server(
        "serve",
        folder,
        "--db",
        f"sqlite:///{tmp_path / 'state.db'}",
        "--admin-port",
        str(admin_port),
        "--admin-token",
        TOKEN,
        "--trusted",
    )
    admin = f"http://127.0.0.1:{admin_port}"
    try:
        server.wait_ready(admin, headers=AUTH)
        yield Serve(server, admin)
    finally:
        server.stop()


def test_public_and_admin_ports(serve: Serve) -> None:
    assert httpx.get(serve.public + "/vars").json() == {"greeting": "hello from vars"}
    boom = httpx.get(serve.public + "/boom")
    assert (boom.status_code, boom.text) == (500, "Worker threw exception")  # no details
    # The public port has no admin API: the path is the dispatcher's like any other.
    assert httpx.get(serve.public + API + "/workflows").text == "ok"
    refused = httpx.get(serve.admin + API + "/workflows")
    assert refused.status_code == 401
    assert httpx.get(serve.admin + "/metrics").status_code == 401
    assert "dwf_runs_total" in httpx.get(serve.admin + "/metrics", headers=AUTH).text
    listing = check_response("GET", "/workflows", serve.api("GET", "/workflows"))
    assert listing["result"][0]["name"] == "dynamic"
    assert "sandbox: off (--trusted)" in serve.server.log()

    runner = CliRunner()
    out = runner.invoke(main, ["workflows", "list", "--url", serve.admin, "--token", TOKEN])
    assert out.exit_code == 0, out.output
    assert "dynamic" in out.output
    out = runner.invoke(
        main, ["workflows", "list", "--url", serve.admin], env={"DWF_ADMIN_TOKEN": ""}
    )
    assert out.exit_code == 1
    assert "HTTP 401" in out.output


def test_the_raw_binding_is_refused_with_missing_dispatcher_metadata(serve: Serve) -> None:
    raw = httpx.post(serve.public + "/raw").json()["id"]
    errored = serve.wait(raw, "errored")
    assert errored["error"] == {
        "name": "MissingDispatcherMetadataError",
        "message": "dynamic-workflows: workflow event is missing dispatcher metadata. Did you "
        "forget to wrap the Workflow binding with wrap_workflow_binding()?",
    }
    wrapped = httpx.post(serve.public + "/wrapped").json()["id"]
    assert serve.wait(wrapped, "complete")["output"] == {"got": {"x": 2}}
    deleted = serve.api("DELETE", "/workflows/dynamic")
    assert check_response("DELETE", "/workflows/{workflow_name}", deleted)["result"]["success"]
    after = serve.api("GET", "/workflows/dynamic").json()["result"]["instances"]
    assert sum(after.values()) == 0


def test_sigterm_lets_a_request_in_flight_finish(serve: Serve) -> None:
    answers: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: answers.append(httpx.get(serve.public + "/slow", timeout=20))
    )
    thread.start()
    time.sleep(0.5)  # the request is in flight
    assert serve.server.terminate() == 0
    thread.join(10)
    assert [(a.status_code, a.text) for a in answers] == [(200, "finished")]
    log = serve.server.log()
    assert "SIGTERM: finishing requests in flight, then stopping" in log
    assert log.rstrip().endswith("stopped")


def run_dwf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DWF, *args], capture_output=True, text=True, timeout=60, check=False)


def test_a_config_mistake_is_one_clear_line(tmp_path: Path) -> None:
    folder = copy_project(PROJECT, tmp_path / "broken")
    toml = folder / "wrangler.toml"
    toml.write_text(toml.read_text().replace('class_name = "Dynamic"', 'class_name = "No Such"'))
    proc = run_dwf("dev", str(folder), "--port", str(free_port()))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "wrangler.toml: workflows[0].class_name: 'No Such' is not a valid name" in proc.stderr


def test_a_busy_port_is_one_clear_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_dwf("dev", str(PROJECT), "--port", str(port), "--db", "memory://", "--trusted")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"cannot listen on 127.0.0.1:{port} (dev): Address already in use" in proc.stderr
