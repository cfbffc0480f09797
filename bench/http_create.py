"""Instance creation through the HTTP API: ``POST /`` to the dispatcher's fetch, which creates
through its wrapped Workflow binding, over keep-alive connections.

``python bench/http_create.py [--requests 5000] [--connections 32]`` starts ``dwf serve`` on
``bench/project`` (SQLite, durable commits) and prints one JSON object. The client is a minimal
HTTP/1.1 keep-alive client on raw asyncio streams, so that the load generator, which shares the
machine's cores with the server, costs as little as possible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent / "project"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_ready(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise TimeoutError(f"dwf serve did not answer on port {port}")


async def connection(port: int, count: int, latencies: list[float], ids: set[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = b'{"n": 1}'
    request = (
        b"POST / HTTP/1.1\r\nHost: bench\r\nx-tenant-id: bench\r\n"
        b"content-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    for _ in range(count):
        t0 = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        payload = await reader.readexactly(length)
        latencies.append(time.perf_counter() - t0)
        if status != b"200":
            raise RuntimeError(f"HTTP {status.decode()}: {payload[:200]!r}")
        ids.add(json.loads(payload)["id"])
    writer.close()
    await writer.wait_closed()


async def measure(requests: int, connections: int, port: int) -> dict[str, Any]:
    await wait_ready(port)
    warm: list[float] = []
    await connection(port, 50, warm, set())  # loads the path (and the tenant) once
    latencies: list[float] = []
    ids: set[str] = set()
    per = requests // connections
    t0 = time.perf_counter()
    await asyncio.gather(*(connection(port, per, latencies, ids) for _ in range(connections)))
    elapsed = time.perf_counter() - t0
    lat = sorted(latencies)
    return {
        "requests": per * connections,
        "connections": connections,
        "seconds": elapsed,
        "per_second": per * connections / elapsed,
        "distinct_ids": len(ids),
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, DWF_ADMIN_TOKEN="bench-token")
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dynamic_workflows.cli",
                "serve",
                str(PROJECT),
                "--db",
                str(Path(tmp) / "bench.sqlite3"),
                "--port",
                str(port),
                "--admin-port",
                str(free_port()),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            result = asyncio.run(measure(args.requests, args.connections, port))
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.communicate()
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
