"""Fixtures for the Worker Loader tests: a confined loader per test, code builders, a tiny
HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dynamic_workflows.sandbox.confine import probe
from dynamic_workflows.sandbox.loader import Loader

_REPORT = probe()


def worker_code(source: str, **fields: Any) -> dict[str, Any]:
    """A WorkerCode dict whose main module is ``source`` (dedented)."""
    return {"main_module": "main.py", "modules": {"main.py": textwrap.dedent(source)}, **fields}


@pytest.fixture
async def loader() -> AsyncIterator[Loader]:
    """A started Loader, confined when the machine allows it (else explicitly unconfined)."""
    unconfined = not _REPORT.safe_for_untrusted()
    async with Loader(unconfined=unconfined, warm=1, report=_REPORT) as started:
        yield started


class HttpServer:
    """A one-route HTTP/1.1 server: answers every request with what it received."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = dict(line.split(": ", 1) for line in lines[1:] if line)
        length = int(headers.get("Content-Length", headers.get("content-length", "0")))
        body = await reader.readexactly(length) if length else b""
        self.requests.append((method, path, body))
        payload = f"{method} {path} {body.decode()}".encode()
        writer.write(
            b"HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nX-Test: yes\r\n"
            + f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()


@pytest.fixture
async def http_server() -> AsyncIterator[HttpServer]:
    """An HTTP server on 127.0.0.1 (an ephemeral port)."""
    server = HttpServer()
    server.server = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    async with server.server:
        yield server
