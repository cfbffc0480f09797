"""Helpers for the host's acceptance tests: a ``dwf dev``/``dwf serve`` subprocess, and a small
validator for the OpenAPI subset the admin API spec uses (imported as ``host_support``)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).parents[2]
DWF = [sys.executable, "-m", "dynamic_workflows.cli"]
API = "/cdn-cgi/local/explorer/api"
# The admin API's OpenAPI description, which it also serves (GET .../api/openapi.json).
SPEC = json.loads(resources.files("dynamic_workflows.host").joinpath("openapi.json").read_text())


def wrangler_env(wrangler: str) -> dict[str, str]:
    """The environment ``wrangler`` runs in: no metrics, and the ``node`` installed beside it
    first on the PATH (wrangler 4.109+ needs Node.js 22; scripts/test installs one from the npm
    registry into .tools when the machine's is older)."""
    path = os.path.dirname(wrangler) + os.pathsep + os.environ.get("PATH", "")
    return {**os.environ, "PATH": path, "WRANGLER_SEND_METRICS": "false", "CI": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def copy_project(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".dwf", "__pycache__"))
    return target


class Server:
    """``dwf <command> <folder> ...`` in its own process group, logging to a file; always
    stopped by :meth:`stop` (SIGTERM, then SIGKILL of the whole group)."""

    def __init__(self, command: str, folder: Path, *args: str, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder.parent / f"{folder.name}-{command}-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*DWF, command, str(folder), "--port", str(self.port), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, url: str | None = None, timeout: float = 30.0, **kwargs: Any) -> None:
        deadline = time.monotonic() + timeout
        target = (url or self.url) + API + "/workflows"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited ({self.proc.returncode}):\n{self.log()}")
            try:
                if httpx.get(target, timeout=1.0, **kwargs).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"the server did not answer in {timeout} s:\n{self.log()}")

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 20.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.terminate(15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything the server left behind
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(5)
        self._log.close()


# -- the OpenAPI subset ---------------------------------------------------------------------------


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = SPEC
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
}


def validate(value: Any, schema: dict[str, Any], where: str = "$") -> None:
    """Check ``value`` against ``schema``: type, nullable, enum, required, properties, items,
    min/maxItems, minimum, allOf, oneOf, format date-time, $ref."""
    schema = _resolve(schema)
    for part in schema.get("allOf", []):
        validate(value, part, where)
    if "oneOf" in schema:
        passed = 0
        for option in schema["oneOf"]:
            try:
                validate(value, option, where)
                passed += 1
            except AssertionError:
                pass
        assert passed == 1, f"{where}: matches {passed} of oneOf's schemas"
    if value is None:
        assert schema.get("nullable") or "type" not in schema, f"{where}: null is not allowed"
        return
    kind = schema.get("type")
    if kind is not None:
        ok = isinstance(value, _TYPES[kind]) and not (kind != "boolean" and isinstance(value, bool))
        assert ok, f"{where}: expected {kind}, got {type(value).__name__} {value!r}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} is not one of {schema['enum']}"
    if isinstance(value, dict):
        for name in schema.get("required", []):
            assert name in value, f"{where}: required property {name!r} is missing"
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                validate(value[name], sub, f"{where}.{name}")
    if isinstance(value, list):
        if "minItems" in schema:
            assert len(value) >= schema["minItems"], f"{where}: fewer than minItems"
        if "maxItems" in schema:
            assert len(value) <= schema["maxItems"], f"{where}: more than maxItems"
        for i, item in enumerate(value):
            validate(item, schema.get("items", {}), f"{where}[{i}]")
    if isinstance(value, int | float) and not isinstance(value, bool) and "minimum" in schema:
        assert value >= schema["minimum"], f"{where}: {value} < {schema['minimum']}"
    if schema.get("format") == "date-time" and isinstance(value, str):
        _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def check_response(method: str, template: str, response: httpx.Response) -> dict[str, Any]:
    """Validate ``response`` against the spec's schema for ``method template`` and its status
    (or the ``4XX`` entry); returns the body."""
    operation = SPEC["paths"][template][method.lower()]
    status = str(response.status_code)
    responses = operation["responses"]
    entry = responses.get(status) or responses.get(status[0] + "XX")
    assert entry is not None, f"{method} {template}: the spec has no response {status}"
    body: dict[str, Any] = response.json()
    validate(body, entry["content"]["application/json"]["schema"], f"{method} {template} {status}")
    return body
