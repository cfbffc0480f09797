"""The host and the CLI stand on the engine's public surface: they read through
``engine.queries`` and act through the engine's methods, never through its storage; the SDK
objects give the host public ways for what it needs from them. (No module reading another's
private names is checked package-wide by ``test_architecture.py``.)"""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import dynamic_workflows
from dynamic_workflows.workers import ExecutionContext, Request, hosting

PACKAGE = Path(dynamic_workflows.__file__).parent
ABOVE_THE_ENGINE = [*sorted((PACKAGE / "host").glob("*.py")), PACKAGE / "cli.py"]


def _storage_reads(source: str, label: str) -> list[str]:
    return [
        f"{label}:{node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(ast.parse(source, label))
        if isinstance(node, ast.Attribute) and node.attr == "storage"
    ]


def test_the_host_and_cli_never_read_the_engines_storage() -> None:
    assert len(ABOVE_THE_ENGINE) > 5
    found = [
        read
        for path in ABOVE_THE_ENGINE
        for read in _storage_reads(path.read_text(), str(path.relative_to(PACKAGE)))
    ]
    assert found == []


def test_the_check_finds_a_storage_read() -> None:
    source = "async def f(project):\n    return await project.engine.storage.load_journal(1)\n"
    assert _storage_reads(source, "probe.py") == ["probe.py:2: project.engine.storage"]


async def test_the_sdk_gives_the_host_public_ways() -> None:
    assert sorted(hosting.__all__) == ["incoming_request", "make_request", "use_http_client"]
    ctx = ExecutionContext()
    assert ctx.pending == 0
    gate = asyncio.Event()
    ctx.wait_until(gate.wait())
    assert ctx.pending == 1
    gate.set()
    await ctx.drain()
    assert ctx.pending == 0
    request = hosting.incoming_request("http://h/p", "post", [("x-a", "1")], b"body")
    assert isinstance(request, Request)
    assert (request.method, request.headers.get("X-A"), await request.text()) == (
        "POST",
        "1",
        "body",
    )
