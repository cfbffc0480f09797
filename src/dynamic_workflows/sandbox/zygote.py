"""The fork server ("zygote"): a process that has imported the runtime once and forks workers.

Started by the host as ``python -I -m dynamic_workflows.sandbox.zygote --control-fd N`` with
the environment of :func:`~.confine.scrubbed_environment`: no secrets, no database handle, no
tenant data ever reach it, since every worker inherits its memory. It pre-imports the runtime,
calls :func:`~.confine.probe` and :func:`~.confine.prepare` once, moves itself into the
workers' minimal root (:func:`~.confine.enter_fork_server_root`: a private mount namespace
holding only what tenant code reads, which every worker then shares), then answers
:class:`~.protocol.Spawn` requests on its control socket (``SOCK_SEQPACKET``: one message per
datagram, with file descriptors alongside):

1. the host sends ``Spawn`` with the worker's end of a fresh socketpair (SCM_RIGHTS);
2. the zygote forks; the child moves that socket to fd 3, opens its ``/proc/self`` accounting
   files (fds 4 and 5), applies :func:`~.confine.confine_child`, warms up, and serves
   :mod:`.worker` on the socket;
3. the zygote answers ``Spawned`` with a pidfd of the child (so the host can kill exactly that
   process, never a recycled pid) and later ``Exited`` with its exit status.

Workers are children of the zygote and die with it (``PR_SET_PDEATHSIG``); a retired zygote
(:class:`~.protocol.Retire`) therefore stays until its last worker has exited.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import gc
import json
import os
import select
import signal
import socket
import sys
import traceback
from typing import Any

from .protocol import (
    PROTOCOL_VERSION,
    Codec,
    Exited,
    Hello,
    Retire,
    Spawn,
    Spawned,
    ZygoteReady,
    decode_control,
    encode_control,
)

__all__ = ["SMAPS_FD", "STATM_FD", "WORKER_FD", "main"]

WORKER_FD = 3
"""Where a worker finds its socket (kept across confinement)."""
SMAPS_FD = 4
STATM_FD = 5
_RESERVED = (WORKER_FD, SMAPS_FD, STATM_FD)
_HIGH_FD = 64
_PR_SET_PDEATHSIG = 1

_PREIMPORTS = (
    # What tenant code commonly imports: a sys.modules hit in a worker, shared with the zygote,
    # instead of a read of the standard library through Landlock and a fresh module per worker.
    "asyncio",
    "base64",
    "collections",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "functools",
    "hashlib",
    "hmac",
    "inspect",
    "itertools",
    "json",
    "math",
    "random",
    "re",
    "resource",
    "secrets",
    "string",
    "struct",
    "textwrap",
    "time",
    "typing",
    "urllib.parse",
    "uuid",
    "zoneinfo",
    "msgspec",
    "dynamic_workflows.workers",
    "dynamic_workflows.core.step",
    "dynamic_workflows.core.replay",
    "dynamic_workflows.sandbox.worker",
    "dynamic_workflows.sandbox.runtime",
)


def _set_pdeathsig() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class _ForkServer:
    def __init__(self, control: socket.socket, prepared: Any, summary: str) -> None:
        self.control = control
        self.prepared = prepared
        self.summary = summary
        self.children: set[int] = set()
        self.retiring = False
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def serve(self) -> int:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        while True:
            if self.retiring and not self.children:
                return 0
            ready, _, _ = select.select([self.control.fileno(), self.wake_r], [], [])
            if self.wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self.wake_r, 512):
                        pass
                self._reap()
            if self.control.fileno() in ready:
                try:
                    data, fds, _, _ = socket.recv_fds(self.control, 65536, 4)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data, fds = b"", []
                if not data:
                    # The host is gone: so are its workers.
                    for fd in fds:
                        os.close(fd)
                    self._kill_all()
                    return 0
                message = decode_control(data)
                if isinstance(message, Spawn):
                    self._spawn(message, fds)
                elif isinstance(message, Retire):
                    self.retiring = True
                for fd in fds[1:] if isinstance(message, Spawn) else fds:
                    os.close(fd)

    def _spawn(self, message: Spawn, fds: list[int]) -> None:
        if not fds or self.retiring:
            error = "no socket was passed" if not fds else "this fork server is retiring"
            socket.send_fds(self.control, [encode_control(Spawned(message.id, 0, error))], [])
            return
        sock_fd = fds[0]
        pid = os.fork()
        if pid == 0:
            self._child(sock_fd)  # never returns
        os.close(sock_fd)
        self.children.add(pid)
        pidfd = os.pidfd_open(pid)
        try:
            socket.send_fds(self.control, [encode_control(Spawned(message.id, pid))], [pidfd])
        finally:
            os.close(pidfd)

    def _child(self, sock_fd: int) -> None:
        code = 70
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self.control.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            os.dup2(sock_fd, WORKER_FD)
            os.close(sock_fd)
            stats: list[int | None] = []
            proc = self.prepared.proc_fd if self.prepared is not None else None
            for path, fd in (("self/smaps_rollup", SMAPS_FD), ("self/statm", STATM_FD)):
                try:
                    if proc is None:
                        opened = os.open("/proc/" + path, os.O_RDONLY)
                    else:  # the fork server lives in the minimal root, with no /proc
                        opened = os.open(path, os.O_RDONLY, dir_fd=proc)
                except OSError:
                    stats.append(None)
                    continue
                os.dup2(opened, fd)
                os.close(opened)
                stats.append(fd)
            sock = socket.socket(fileno=WORKER_FD)
            try:
                from .confine import confine_child

                confine_child(self.prepared)
            except Exception as exc:
                hello = Hello(
                    PROTOCOL_VERSION,
                    os.getpid(),
                    self.summary,
                    error=f"{type(exc).__name__}: {exc}",
                )
                from .framing import send_frame

                send_frame(sock, Codec().encode(hello))
                code = 78
                return
            from .worker import run_worker

            run_worker(sock, isolation=self.summary, stats_fds=(stats[0], stats[1]))
            code = 0
        except BaseException:
            with contextlib.suppress(BaseException):
                traceback.print_exc()
        finally:
            os._exit(code)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            cgroup = self.prepared.cgroup_fd if self.prepared is not None else None
            if cgroup is not None:
                from . import cgroups
                from .confine import cgroup_name

                cgroups.remove(cgroup, cgroup_name(pid))
            with contextlib.suppress(OSError):
                socket.send_fds(
                    self.control,
                    [encode_control(Exited(pid, os.waitstatus_to_exitcode(status)))],
                    [],
                )

    def _kill_all(self) -> None:
        for pid in list(self.children):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the fork server process."""
    parser = argparse.ArgumentParser(prog="dynamic_workflows.sandbox.zygote")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--policy", default="{}", help="ConfinementPolicy fields as JSON")
    args = parser.parse_args(argv)
    _set_pdeathsig()
    # Keep the control socket far from the low fds the workers use, and hold those fds so that
    # nothing prepare() opens lands on them.
    control_fd = fcntl.fcntl(args.control_fd, fcntl.F_DUPFD_CLOEXEC, _HIGH_FD)
    os.close(args.control_fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    for fd in _RESERVED:
        if fd != devnull:
            os.dup2(devnull, fd)
    if devnull not in _RESERVED:
        os.close(devnull)
    control = socket.socket(fileno=control_fd)
    control.set_inheritable(False)

    error: str | None = None
    summary = ""
    safe = False
    prepared: Any = None
    try:
        for name in _PREIMPORTS:
            __import__(name)
        with contextlib.suppress(ImportError):  # the workers' event loop, where installed
            __import__("uvloop")
        from .confine import ConfinementPolicy, enter_fork_server_root, prepare, probe

        fields = json.loads(args.policy)
        fields["keep_fds"] = tuple(fields.get("keep_fds", ())) + _RESERVED
        if "read_paths" in fields:
            fields["read_paths"] = tuple(fields["read_paths"])
        policy = ConfinementPolicy(**fields)
        report = probe()
        summary = report.summary()
        safe = report.safe_for_untrusted()
        prepared = prepare(policy, report)
        enter_fork_server_root(prepared)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    # Objects allocated so far are never freed; keeping the collector off them keeps their
    # pages shared with every worker instead of dirtied by each worker's first collection.
    gc.freeze()
    socket.send_fds(
        control,
        [encode_control(ZygoteReady(PROTOCOL_VERSION, os.getpid(), summary, safe, error))],
        [],
    )
    if error is not None:
        return 1
    return _ForkServer(control, prepared, summary).serve()


if __name__ == "__main__":
    sys.exit(main())
