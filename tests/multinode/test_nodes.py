"""Several `dwf serve` nodes on one PostgreSQL database, as a platform runs them.

Every step of the project's workflow reports each execution to a counting server run here and
returns the count it got back. A step's committed result is therefore the last count of its key
exactly when no execution happened after the one that was committed: that is the check that no
committed step ever ran again, whatever was killed.

These tests need the PostgreSQL server (they skip without one, and fail under CI=true).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

import pg_support
from chaos.hosts import Counting  # the loopback counting server the chaos suite uses too

PROJECT = Path(__file__).parent / "project"
DWF = [sys.executable, "-m", "dynamic_workflows.cli"]
TOKEN = "multinode-test-token"
LEASE = 2.0
FINISHED = ("complete", "errored", "terminated")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Node:
    """One `dwf serve` process (its own process group), logging to a file."""

    def __init__(self, folder: Path, db: str, name: str) -> None:
        self.name = name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder.parent / f"node-{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                *DWF,
                "serve",
                str(folder),
                "--db",
                db,
                "--port",
                str(self.port),
                "--admin-port",
                str(_free_port()),
                "--trusted",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "DWF_ADMIN_TOKEN": TOKEN},
        )
        self.client = httpx.Client(base_url=self.url, timeout=30.0)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node {self.name} exited:\n{self.log()}")
            try:
                self.client.get("/ready")
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"node {self.name} did not answer:\n{self.log()}")

    def post(self, path: str, iid: str, body: Any = None) -> dict[str, Any]:
        resp = self.client.post(f"{path}?id={iid}", json=body or {})
        assert resp.status_code == 200, f"node {self.name} {path} {iid}: {resp.text}"
        result: dict[str, Any] = resp.json()
        return result

    def status(self, iid: str) -> dict[str, Any]:
        resp = self.client.get(f"/status?id={iid}")
        assert resp.status_code == 200, f"node {self.name} status {iid}: {resp.text}"
        result: dict[str, Any] = resp.json()
        return result

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(5)
        self.client.close()
        self._log.close()


@pytest.fixture
def counting() -> Iterator[Counting]:
    server = Counting()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def cluster(
    tmp_path: Path, pg_url: str, counting: Counting, pg_server: pg_support.PgServer
) -> Iterator[tuple[list[Node], Any]]:
    folder = tmp_path / "project"
    shutil.copytree(PROJECT, folder, ignore=shutil.ignore_patterns("__pycache__", ".dwf"))
    config = folder / "wrangler.toml"
    config.write_text(
        config.read_text().replace(
            'COUNTER_URL = "http://127.0.0.1:1"', f'COUNTER_URL = "{counting.url}"'
        )
    )
    db = f"{pg_url}&lease_seconds={LEASE}"
    nodes = [Node(folder, db, name) for name in ("a", "b", "c")]
    try:
        for node in nodes:
            node.wait_ready()
        yield nodes, _dumper(pg_server, pg_url)
    finally:
        for node in nodes:
            node.stop()


def _dumper(pg_server: pg_support.PgServer, url: str) -> Any:
    """What the database holds about some instances (for a failure's message)."""
    schema = parse_qs(urlparse(url).query)["schema"][0]

    def dump(ids: list[str]) -> str:
        out = []
        for iid in ids:
            for table, sql in (
                ("instance", f'SELECT * FROM "{schema}".instances WHERE id = $1'),
                (
                    "steps",
                    f'SELECT s.* FROM "{schema}".steps s JOIN "{schema}".instances i '
                    "ON i.pk = s.instance_pk WHERE i.id = $1",
                ),
                (
                    "events",
                    f'SELECT e.* FROM "{schema}".events e JOIN "{schema}".instances i '
                    "ON i.pk = e.instance_pk WHERE i.id = $1",
                ),
            ):
                for r in pg_server.fetch(sql, iid):
                    out.append(f"{iid} {table}: {dict(r)}")
        return "\n".join(out)

    return dump


def wait_finished(
    nodes: list[Node], ids: list[str], timeout: float, dump: Any = None
) -> dict[str, dict[str, Any]]:
    """Every instance's final status, read through the nodes in turn (any node answers for
    any instance); fails after ``timeout`` seconds naming the ones still going."""
    deadline = time.monotonic() + timeout
    done: dict[str, dict[str, Any]] = {}
    alive = [n for n in nodes if n.proc.poll() is None]
    i = 0
    while time.monotonic() < deadline:
        for iid in ids:
            if iid in done:
                continue
            node = alive[i % len(alive)]
            i += 1
            status = node.status(iid)
            if status["status"] in FINISHED:
                done[iid] = status
        if len(done) == len(ids):
            return done
        time.sleep(0.2)
    pending = {iid: alive[0].status(iid)["status"] for iid in ids if iid not in done}
    logs = "\n".join(f"--- node {n.name}\n{n.log()[-3000:]}" for n in nodes)
    rows = "" if dump is None else dump(list(pending))
    raise AssertionError(f"not finished after {timeout} s: {pending}\n{rows}\n{logs}")


def check_exactly_once(counting: Counting, finished: dict[str, dict[str, Any]]) -> int:
    """Every instance completed, and every committed step's result is the last execution of
    its key: no committed step ran again. Returns how many steps were checked."""
    checked = 0
    for iid, status in finished.items():
        assert status["status"] == "complete", (iid, status)
        out = status["output"]
        for name in ("first", "last", "timed_out"):
            if name in out:
                key = f"{iid}:{name.replace('_', '-')}"
                assert out[name] == counting.counts[key], (iid, name, out, counting.counts[key])
                checked += 1
        attempt, n = out["flaky"]
        assert n == counting.counts[f"{iid}:flaky:{attempt}"], (iid, out)
        assert attempt >= 2  # its first attempt always fails
        checked += 1
    return checked


def test_three_nodes_share_a_mixed_load(cluster: Any, counting: Counting) -> None:
    nodes, dump = cluster
    ids = [f"mix-{i}" for i in range(30)]
    for i, iid in enumerate(ids):
        params: dict[str, Any] = {"sleep": 300 if i % 3 == 0 else 0}
        if i % 2 == 0:
            params["wait"] = True
        nodes[i % 3].post("/create", iid, params)
    # Events and control actions through a node other than the creating one.
    for i, iid in enumerate(ids):
        if i % 5 == 1:
            nodes[(i + 1) % 3].post("/pause", iid)
    time.sleep(0.5)
    for i, iid in enumerate(ids):
        if i % 5 == 1:
            nodes[(i + 2) % 3].post("/resume", iid)
        if i % 2 == 0:
            nodes[(i + 1) % 3].post("/event", iid, {"by": nodes[(i + 1) % 3].name})
    finished = wait_finished(nodes, ids, timeout=30, dump=dump)
    assert check_exactly_once(counting, finished) >= len(ids) * 3
    for i, iid in enumerate(ids):
        if i % 2 == 0:
            assert finished[iid]["output"]["event"] == {"by": nodes[(i + 1) % 3].name}
        # No step of an uninterrupted load ran twice.
        assert counting.counts[f"{iid}:first"] == 1
        assert counting.counts[f"{iid}:last"] == 1


def test_a_node_killed_mid_load_costs_nothing(
    cluster: Any, counting: Counting, pg_server: pg_support.PgServer, pg_url: str
) -> None:
    nodes, dump = cluster
    schema = parse_qs(urlparse(pg_url).query)["schema"][0]
    ids = [f"kill-{i}" for i in range(30)]
    for i, iid in enumerate(ids):
        nodes[i % 3].post("/create", iid, {"work": 0.3, "sleep": 200})
    # Mid-load: the first moment several instances are held (not a fixed sleep: on a fast
    # machine every instance could be done by then, on a slow one none started).
    deadline = time.monotonic() + 10
    while True:
        owners = [
            r["owner"]
            for r in pg_server.fetch(
                f'SELECT owner FROM "{schema}".instances WHERE owner IS NOT NULL AND id LIKE $1',
                "kill-%",
            )
        ]
        if len(owners) >= 5 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    # The node holding the most instances at this moment is the one killed.
    victim = max(nodes, key=lambda n: sum(f":{n.proc.pid}:" in o for o in owners))
    held = [
        r["id"]
        for r in pg_server.fetch(
            f'SELECT id FROM "{schema}".instances WHERE owner LIKE $1', f"%:{victim.proc.pid}:%"
        )
    ]
    victim.kill9()
    killed_at = time.monotonic()
    assert held, "the killed node held no instance at the moment it was killed"
    # Its instances are the others' once its leases lapse (LEASE), found at the next renewal
    # poll (LEASE / 3), then finish their remaining work (about a second): all within the lease
    # time and a few seconds of slack for this small, shared machine.
    others = [n for n in nodes if n is not victim]
    orphans = wait_finished(others, held, timeout=LEASE + 8, dump=dump)
    orphans_done = time.monotonic() - killed_at
    finished = wait_finished(others, ids, timeout=LEASE * 3 + 40, dump=dump)
    assert check_exactly_once(counting, finished) == len(ids) * 3
    assert all(s["status"] == "complete" for s in orphans.values())
    assert orphans_done < LEASE + 8, orphans_done


def test_database_connections_killed_mid_load(
    cluster: Any, counting: Counting, pg_server: pg_support.PgServer
) -> None:
    nodes, _ = cluster
    ids = [f"pgkill-{i}" for i in range(30)]
    for i, iid in enumerate(ids):
        nodes[i % 3].post("/create", iid, {"work": 0.1, "sleep": 200})
    for _ in range(3):
        time.sleep(0.7)
        pg_server.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finished = wait_finished(nodes, ids, timeout=90)
    assert check_exactly_once(counting, finished) == len(ids) * 3


def test_timers_and_event_timeouts_fire_once_across_nodes(cluster: Any, counting: Counting) -> None:
    nodes, _ = cluster
    ids = [f"timer-{i}" for i in range(12)]
    for i, iid in enumerate(ids):
        nodes[i % 3].post("/create", iid, {"sleep": 500, "wait": True, "timeout": "1 second"})
    finished = wait_finished(nodes, ids, timeout=60)
    assert check_exactly_once(counting, finished) == len(ids) * 4
    for iid in ids:
        # The sleep ended once (the step after it ran once) and the wait timed out once.
        assert counting.counts[f"{iid}:flaky:2"] == 1
        assert counting.counts[f"{iid}:timed-out"] == 1
        assert "timed_out" in finished[iid]["output"]


def test_a_parked_run_reads_waiting_everywhere_and_is_taken_over_when_its_node_dies(
    cluster: Any, counting: Counting, pg_server: pg_support.PgServer, pg_url: str
) -> None:
    # A sleep shorter than the engine's warm horizon (5 s) keeps its run parked in the node that
    # runs it: the row must read `waiting` on every node, and stay its node's until it dies.
    nodes, dump = cluster
    schema = parse_qs(urlparse(pg_url).query)["schema"][0]
    ids = [f"park-{i}" for i in range(9)]
    for i, iid in enumerate(ids):
        nodes[i % 3].post("/create", iid, {"sleep": 3500})
    deadline = time.monotonic() + 20
    rows: list[Any] = []
    while time.monotonic() < deadline:
        rows = pg_server.fetch(
            f'SELECT id, status, owner FROM "{schema}".instances WHERE id LIKE $1', "park-%"
        )
        if len(rows) == len(ids) and all(r["status"] == "waiting" and r["owner"] for r in rows):
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"not all parked and held: {[dict(r) for r in rows]}")
    for node in nodes:
        for iid in ids:
            assert node.status(iid)["status"] == "waiting", (node.name, iid)
    victim = next(n for n in nodes if any(f":{n.proc.pid}:" in r["owner"] for r in rows))
    held = [r["id"] for r in rows if f":{victim.proc.pid}:" in r["owner"]]
    victim.kill9()
    others = [n for n in nodes if n is not victim]
    finished = wait_finished(others, ids, timeout=LEASE * 3 + 30, dump=dump)
    assert check_exactly_once(counting, finished) == len(ids) * 3
    assert held, "the killed node held none of the parked runs"
