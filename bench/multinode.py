"""Throughput of N `dwf serve` nodes sharing one PostgreSQL database.

``python bench/multinode.py --nodes 3 [--instances 2000] [--db postgresql://...]`` starts N
``dwf serve bench/nodes_project --trusted`` processes on one empty database (without ``--db``: a
fresh one on ``$DWF_BENCH_POSTGRES``, dropped after), creates the instances over HTTP, a batch of
``--batch`` per ``POST /create?n=K`` request, sent round robin to the nodes, and measures
completed instances per second from the first creation request until every instance is complete.
Completion is read from the database (one ``count(*) GROUP BY status`` every 50 ms on a
connection of its own), not through the nodes, so polling costs the nodes nothing. Prints one
JSON object.

Whichever node is free claims whatever is due: an instance created through one node commonly
runs on another, which is what the figure includes (claims racing over one table, leases,
NOTIFYs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pgdb

PROJECT = Path(__file__).resolve().parent / "nodes_project"
FINISHED = ("complete", "errored", "terminated")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    """One `dwf serve` process, in a process group of its own, logging to a file."""

    def __init__(self, db: str, log: Path, token: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dynamic_workflows.cli",
                "serve",
                str(PROJECT),
                "--db",
                db,
                "--port",
                str(self.port),
                "--admin-port",
                str(free_port()),
                "--trusted",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "DWF_ADMIN_TOKEN": token},
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    async def wait_ready(self, client: httpx.AsyncClient, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"a node exited:\n{self.log()}")
            try:
                await client.get(f"{self.url}/ready")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        raise RuntimeError(f"a node did not answer in {timeout} s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(20)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(5)
        self._log.close()


async def counts(conn: Any) -> dict[str, int]:
    rows = await conn.fetch("SELECT status, count(*) FROM instances GROUP BY status")
    return {r[0]: int(r[1]) for r in rows}


async def wait_finished(conn: Any, total: int, nodes: list[Node], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        c = await counts(conn)
        if sum(c.get(s, 0) for s in FINISHED) >= total:
            return c
        if time.monotonic() > deadline:
            raise RuntimeError(f"not finished after {timeout} s: {c}\n{nodes[0].log()}")
        for node in nodes:
            if node.proc.poll() is not None:
                raise RuntimeError(f"a node exited:\n{node.log()}")
        await asyncio.sleep(0.05)


async def create(
    client: httpx.AsyncClient, nodes: list[Node], n: int, batch: int, parallel: int
) -> None:
    """``n`` instances, ``batch`` per request, requests round robin over the nodes with
    ``parallel`` in flight."""
    sizes = [min(batch, n - i) for i in range(0, n, batch)]
    queue = list(enumerate(sizes))

    async def sender() -> None:
        while queue:
            i, size = queue.pop(0)
            node = nodes[i % len(nodes)]
            resp = await client.post(f"{node.url}/create?n={size}")
            if resp.status_code != 200 or resp.json()["created"] != size:
                raise RuntimeError(f"create through node {i % len(nodes)}: {resp.text[:300]}")

    await asyncio.gather(*(sender() for _ in range(parallel)))


async def measure(
    db: str, n_nodes: int, instances: int, batch: int, parallel: int, logs: Path
) -> dict[str, Any]:
    import asyncpg

    token = secrets.token_hex(32)
    nodes: list[Node] = []
    conn = None
    try:
        nodes = [Node(db, logs / f"node-{i}.log", token) for i in range(n_nodes)]
        async with httpx.AsyncClient(timeout=60.0) as client:
            for node in nodes:
                await node.wait_ready(client)
            conn = await asyncpg.connect(db)
            # Warm every node's path (import, first claim, first writes) before timing.
            warm = 10 * n_nodes
            await create(client, nodes, warm, 10, n_nodes)
            await wait_finished(conn, warm, nodes, timeout=60)
            t0 = time.perf_counter()
            await create(client, nodes, instances, batch, parallel)
            created = time.perf_counter() - t0
            final = await wait_finished(conn, warm + instances, nodes, timeout=600)
            elapsed = time.perf_counter() - t0
            nodes_seen = await conn.fetchval("SELECT count(*) FROM nodes")
    finally:
        if conn is not None:
            await conn.close()
        for node in nodes:
            node.stop()
    return {
        "nodes": n_nodes,
        "instances": instances,
        "batch": batch,
        "parallel_requests": parallel,
        "seconds": elapsed,
        "creation_seconds": created,
        "per_second": instances / elapsed,
        "errored": final.get("errored", 0),
        "statuses": final,
        "nodes_registered": nodes_seen,
    }


def migrate(db: str) -> None:
    """As documented for several nodes on one database: migrate first, then start them (nodes
    started together on an empty database race to create the schema)."""
    proc = subprocess.run(
        [sys.executable, "-m", "dynamic_workflows.cli", "migrate", "--db", db],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"dwf migrate failed: {proc.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=50, help="instances per HTTP request")
    parser.add_argument("--parallel", type=int, default=6, help="HTTP requests in flight")
    parser.add_argument("--db", default=None, help="a postgresql:// URL (an empty database)")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        db = args.db or stack.enter_context(pgdb.fresh_database())
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        migrate(db)
        result = asyncio.run(
            measure(db, args.nodes, args.instances, args.batch, args.parallel, logs)
        )
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
