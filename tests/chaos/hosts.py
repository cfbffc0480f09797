"""Real processes on loopback: the counting server, and ``dwf dev`` / ``dwf serve`` hosts of the
chaos project that a scenario starts, SIGKILLs and starts again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

PROJECT = Path(__file__).parent / "project"
DWF = [sys.executable, "-m", "dynamic_workflows.cli"]
API = "/cdn-cgi/local/explorer/api"
TOKEN = "chaos-admin-token"
WORKFLOW = "chaos"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Counting:
    """A loopback HTTP server counting ``POST /hit?key=K`` and answering K's new count."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        counting = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_POST(self) -> None:
                key = parse_qs(urlparse(self.path).query)["key"][0]
                with counting.lock:
                    counting.counts[key] += 1
                    n = counting.counts[key]
                body = str(n).encode()
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def hits(self) -> int:
        with self.lock:
            return sum(self.counts.values())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def copy_project(target: Path, counter_url: str) -> Path:
    """The chaos project in ``target``, its tenants' fetches going to ``counter_url``."""
    shutil.copytree(PROJECT, target, ignore=shutil.ignore_patterns("__pycache__", ".dwf"))
    config = target / "wrangler.jsonc"
    config.write_text(config.read_text().replace("http://127.0.0.1:1", counter_url))
    return target


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        ppid = int(data[data.rindex(b")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(name))
    return tree


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``."""
    tree = _children()
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    """Running, not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2 :].split()[0] != b"Z"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Host:
    """The chaos project served by ``dwf dev`` (SQLite in the folder's .dwf/) or, with ``db``,
    ``dwf serve --db db``; each start appends to one log file. Always stop it with :meth:`stop`.
    """

    def __init__(self, folder: Path, *, db: str | None = None, name: str = "host") -> None:
        self.folder = folder
        self.db = db
        self.port = free_port()
        self.admin_port = free_port() if db else self.port
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        self.admin_headers = {"authorization": f"Bearer {TOKEN}"} if db else {}
        self.log_path = folder.parent / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        if self.db is None:
            args = ["dev", str(self.folder), "--no-reload"]
        else:
            args = [
                "serve",
                str(self.folder),
                "--db",
                self.db,
                "--admin-port",
                str(self.admin_port),
            ]
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {self.starts} at {time.strftime('%X')}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [*DWF, *args, "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "DWF_ADMIN_TOKEN": TOKEN},
            )

    def log(self, tail: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    async def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds until the admin API answered (it is up after recovery has started)."""
        started = time.monotonic()
        deadline = started + timeout
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"the host exited ({self.proc.returncode}):\n{self.log()}")
                with contextlib.suppress(httpx.TransportError):
                    resp = await client.get(
                        f"{self.admin_url}{API}/workflows", headers=self.admin_headers
                    )
                    if resp.status_code == 200:
                        return time.monotonic() - started
                await asyncio.sleep(0.05)
        raise AssertionError(f"the host did not answer in {timeout} s:\n{self.log()}")

    def kill9(self, *, whole_group: bool = True) -> list[int]:
        """SIGKILL the host (and its process group: the fork server; workers have groups of
        their own). Returns the processes that were below it, for :meth:`orphans`."""
        assert self.proc is not None
        below = descendants(self.proc.pid)
        if whole_group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            self.proc.kill()
        self.proc.wait(10)
        return below

    @staticmethod
    def orphans(pids: list[int], wait: float = 5.0) -> list[int]:
        """Those of ``pids`` still alive after ``wait`` seconds (a dead host's sandbox processes
        must follow it)."""
        deadline = time.monotonic() + wait
        left = [p for p in pids if alive(p)]
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = [p for p in left if alive(p)]
        return left

    def assert_never_restarted(self) -> None:
        """Started once, and still running."""
        assert self.starts == 1, f"the host was started {self.starts} times"
        assert self.proc is not None
        assert self.proc.poll() is None, f"the host exited:\n{self.log()}"

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait(5)

    # -- the sandbox's processes ------------------------------------------------------------------

    def fork_servers(self) -> list[int]:
        """The host's fork servers (its children running the zygote)."""
        return [p for p in _children().get(self.pid, []) if _is_zygote(p)]

    def workers(self) -> list[int]:
        """Worker processes (children of the fork servers)."""
        tree = _children()
        return [w for z in self.fork_servers() for w in tree.get(z, []) if alive(w)]

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def open_fds(self) -> int:
        return open_fds(self.pid)


def _is_zygote(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"sandbox.zygote" in f.read()
    except OSError:
        return False
