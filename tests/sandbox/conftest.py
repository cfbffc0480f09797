"""A test-only harness: fork a child, confine it, run hostile code in it, read back a verdict.

``run_confined(attempt, context)`` forks the test process (standing in for the fork server),
calls ``confine_child(prepare(policy, report))`` in the child, runs ``attempt(context)`` and
sends ``{"ok": bool, "detail": str}`` back over the socketpair the child keeps. ``ok`` means
*the escape worked*. A child that confined itself badly reports ``ok: None``; one that died
reports nothing and the :class:`Outcome` carries its wait status instead.

The test process stands in for the fork server, and in a full test run it maps far more than
a real one (threads of earlier tests leave 64 MiB malloc arenas reserved): unless a test says
otherwise, a child's ``memory_bytes`` is 256 MiB *on top of* the test process's address space.

``targets`` opens what a tenant would like to reach (TCP, UDP, abstract and pathname unix
listeners, another tenant's code, the host database, a signal handler standing for the fork
server's life) and checks afterwards that nothing reached them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from dynamic_workflows.sandbox.confine import (
    ConfinementPolicy,
    IsolationReport,
    PreparedConfinement,
    SandboxUnavailableError,
    address_space_bytes,
    confine_child,
    prepare,
    probe,
)

Context = dict[str, Any]
Attempt = Callable[[Context], tuple[bool, str]]

ALLOW_MISSING = os.environ.get("DWF_SANDBOX_ALLOW_MISSING") == "1"
CHILD_CONFINE_FAILED = 70


@dataclass(frozen=True)
class Outcome:
    """What came back from a confined child."""

    result: dict[str, Any] | None
    """The child's verdict, or None if it died before sending one."""
    status: int
    """Its wait status."""

    @property
    def signal(self) -> int | None:
        """The signal that killed the child, if one did."""
        return os.WTERMSIG(self.status) if os.WIFSIGNALED(self.status) else None

    @property
    def exit_code(self) -> int | None:
        """Its exit code, if it exited."""
        return os.WEXITSTATUS(self.status) if os.WIFEXITED(self.status) else None

    @property
    def detail(self) -> str:
        """The child's own account, or how it ended."""
        if self.result is not None:
            return str(self.result["detail"])
        if self.signal is not None:
            return f"killed by {signal.Signals(self.signal).name}"
        return f"exited with {self.exit_code} without a verdict"

    def assert_blocked(self, expect: str = "") -> None:
        """The attempt ran, inside a confined child, and failed (matching ``expect``)."""
        assert self.result is not None, f"no verdict from the child: {self.detail}"
        assert self.result["ok"] is not None, f"confinement failed: {self.detail}"
        assert self.result["ok"] is False, f"ESCAPED: {self.detail}"
        if expect:
            assert re.search(expect, self.detail), f"blocked, but not as expected: {self.detail}"


def _child(
    prepared: PreparedConfinement, sock: socket.socket, attempt: Attempt, ctx: Context
) -> None:
    code = 0
    try:
        try:
            confine_child(prepared)
        except BaseException as exc:
            verdict: dict[str, Any] = {"ok": None, "detail": f"{type(exc).__name__}: {exc}"}
            code = CHILD_CONFINE_FAILED
        else:
            try:
                ok, detail = attempt(ctx)
            except BaseException as exc:  # an unforeseen failure still counts as blocked...
                ok, detail = False, f"raised {type(exc).__name__}: {exc}"  # ...if it matches
            verdict = {"ok": bool(ok), "detail": str(detail)}
        sock.sendall(json.dumps(verdict).encode())
    finally:
        os._exit(code)


def run_in_child(
    prepared_for: Callable[[int], PreparedConfinement],
    attempt: Attempt,
    ctx: Context | None = None,
    *,
    timeout: float = 10.0,
) -> Outcome:
    """Fork, confine with ``prepared_for(kept_fd)``, run ``attempt(ctx)``, collect the outcome."""
    ours, theirs = socket.socketpair()
    prepared = prepared_for(theirs.fileno())
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            ours.close()
            _child(prepared, theirs, attempt, ctx or {})
    finally:
        prepared.close()
        theirs.close()
    deadline = time.monotonic() + timeout
    data = b""
    with ours:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([ours], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = ours.recv(65536)
            if not chunk:
                break
            data += chunk
    status = _reap(pid, deadline)
    return Outcome(json.loads(data) if data else None, status)


def _reap(pid: int, deadline: float) -> int:
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return os.waitpid(pid, 0)[1]
        time.sleep(0.005)


@pytest.fixture(scope="session")
def sandbox_report() -> IsolationReport:
    """What this machine offers; on CI (and here) every layer must be there."""
    report = probe()
    if report.level() != "full" and not ALLOW_MISSING:
        pytest.fail(
            f"the sandbox is incomplete on this machine: {report.summary()} "
            "(set DWF_SANDBOX_ALLOW_MISSING=1 to run with what there is)"
        )
    return report


def default_policy(**fields: Any) -> ConfinementPolicy:
    """The default policy, with 256 MiB of address space above what the test process maps."""
    mapped = address_space_bytes() or 0
    return ConfinementPolicy(**({"memory_bytes": mapped + (256 << 20)} | fields))


RunConfined = Callable[..., Outcome]
RunPrepared = Callable[..., Outcome]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sandbox: confinement and escape tests (fast; run everywhere, CI included)"
    )


@pytest.fixture(name="default_policy")
def default_policy_fixture() -> Callable[..., ConfinementPolicy]:
    """``default_policy(**fields)``: see :func:`default_policy`."""
    return default_policy


@pytest.fixture
def run_prepared() -> RunPrepared:
    """``run_prepared(prepared_for, attempt, ctx)``: confine with ``prepared_for(kept_fd)``."""
    return run_in_child


@pytest.fixture
def run_confined(sandbox_report: IsolationReport) -> RunConfined:
    """``run_confined(attempt, ctx, policy=default_policy(), timeout=10)`` -> Outcome."""

    def run(
        attempt: Attempt,
        ctx: Context | None = None,
        *,
        policy: ConfinementPolicy | None = None,
        timeout: float = 10.0,
    ) -> Outcome:
        base = policy or default_policy()
        try:
            prepare(base, sandbox_report).close()
        except SandboxUnavailableError as exc:
            if not ALLOW_MISSING:
                raise
            pytest.skip(f"DWF_SANDBOX_ALLOW_MISSING=1 and this machine cannot: {exc}")

        def prepared_for(fd: int) -> PreparedConfinement:
            return prepare(replace(base, keep_fds=(fd,)), sandbox_report)

        return run_in_child(prepared_for, attempt, ctx, timeout=timeout)

    return run


# --- what a tenant would like to reach ------------------------------------------------------


@dataclass
class Targets:
    """Listeners, files and a signal handler a hostile tenant goes after."""

    tmp: Path
    sockets: dict[str, socket.socket] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    must_not_exist: list[Path] = field(default_factory=list)
    signals: list[int] = field(default_factory=list)
    context: Context = field(default_factory=dict)

    def assert_untouched(self) -> None:
        """Nothing connected, nothing was received, written, mounted or signalled."""
        for name, sock in self.sockets.items():
            sock.setblocking(False)
            if sock.type == socket.SOCK_STREAM:
                with contextlib.suppress(BlockingIOError):
                    conn, _ = sock.accept()
                    conn.close()
                    pytest.fail(f"the {name} listener received a connection")
            else:
                with contextlib.suppress(BlockingIOError):
                    data = sock.recv(65536)
                    pytest.fail(f"the {name} socket received {data!r}")
        for path, content in self.files.items():
            assert Path(path).read_bytes() == content, f"{path} was changed"
        for path in self.must_not_exist:
            assert not path.exists(), f"{path} was created"
        assert not os.path.ismount(self.context["mount_point"]), "something was mounted"
        assert not self.signals, f"the parent received signals {self.signals}"


@pytest.fixture
def targets(tmp_path: Path) -> Iterator[Targets]:
    """Fresh targets for one attempt; checked by the test, closed afterwards."""
    t = Targets(tmp_path)
    tag = uuid.uuid4().hex[:12]

    def listen(name: str, family: int, kind: int, address: Any) -> socket.socket:
        sock = socket.socket(family, kind)
        sock.bind(address)
        if kind == socket.SOCK_STREAM:
            sock.listen(8)
        t.sockets[name] = sock
        return sock

    tcp = listen("tcp", socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 0))
    t.context["tcp_port"] = tcp.getsockname()[1]
    udp = listen("udp", socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 0))
    t.context["udp_port"] = udp.getsockname()[1]
    t.context["tcp6_port"] = 9
    with contextlib.suppress(OSError):  # a machine without IPv6 on loopback
        tcp6 = listen("tcp6", socket.AF_INET6, socket.SOCK_STREAM, ("::1", 0))
        t.context["tcp6_port"] = tcp6.getsockname()[1]
    t.context["abstract"] = f"\0dwf-escape-{tag}"
    listen("abstract unix", socket.AF_UNIX, socket.SOCK_STREAM, t.context["abstract"])
    t.context["unix_path"] = str(tmp_path / "host.sock")
    listen("pathname unix", socket.AF_UNIX, socket.SOCK_STREAM, t.context["unix_path"])
    t.context["unix_dgram_path"] = str(tmp_path / "host-dgram.sock")
    listen("unix datagram", socket.AF_UNIX, socket.SOCK_DGRAM, t.context["unix_dgram_path"])

    other = tmp_path / "tenants" / "acme" / "workflow.py"
    other.parent.mkdir(parents=True)
    other.write_text("API_KEY = 'acme-secret-key'\n")
    t.context["other_tenant_file"] = str(other)
    t.context["other_tenant_dir"] = str(other.parent)
    database = tmp_path / "host.sqlite3"
    with contextlib.closing(sqlite3.connect(database)) as conn:
        conn.execute("CREATE TABLE secrets (value TEXT)")
        conn.execute("INSERT INTO secrets VALUES ('db-secret')")
        conn.commit()
    t.context["database"] = str(database)
    for path in (other, database):
        t.files[str(path)] = path.read_bytes()

    written = [Path(f"/tmp/dwf-escape-{tag}"), tmp_path / "written-by-tenant"]
    t.must_not_exist += written
    t.context["write_paths"] = [str(path) for path in written]
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    t.context["mount_point"] = str(mount_point)
    t.context["parent_pid"] = os.getpid()

    previous = signal.signal(signal.SIGTERM, lambda signum, frame: t.signals.append(signum))
    try:
        yield t
    finally:
        signal.signal(signal.SIGTERM, previous)
        for sock in t.sockets.values():
            sock.close()
        for path in written:
            path.unlink(missing_ok=True)
        if os.path.ismount(mount_point):  # only if an escape worked: undo it
            import ctypes

            ctypes.CDLL(None).umount2(str(mount_point).encode(), 2)
