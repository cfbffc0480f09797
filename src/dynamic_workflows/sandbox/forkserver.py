"""The host's handle on the fork server (see :mod:`.zygote` for the process itself).

The control socket is ``SOCK_SEQPACKET``: one message per datagram, with descriptors alongside
(SCM_RIGHTS): a worker's socket goes to the fork server with :class:`~.protocol.Spawn`, a pidfd
of the new worker comes back with :class:`~.protocol.Spawned`, and :class:`~.protocol.Exited`
reports how each worker ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

from .errors import ProtocolError
from .framing import DEFAULT_MAX_FRAME
from .protocol import (
    Exited,
    Retire,
    Spawn,
    Spawned,
    ZygoteReady,
    decode_control,
    encode_control,
)

if TYPE_CHECKING:
    from .confine import ConfinementPolicy

__all__ = ["ZygoteProcess"]

log = logging.getLogger("dynamic_workflows.sandbox")


class ZygoteProcess:
    """The host's handle on one fork server process."""

    def __init__(self, policy: ConfinementPolicy, *, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.policy = policy
        self.max_frame = max_frame
        self.forks = 0
        self.ready: ZygoteReady | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._next_id = 1
        self._spawns: dict[int, asyncio.Future[tuple[Spawned, int | None]]] = {}
        self._exits: dict[int, int] = {}
        self._exit_waiters: dict[int, asyncio.Future[int]] = {}
        self._ready_future: asyncio.Future[ZygoteReady] | None = None
        self.closed = False
        self._retired = False
        self._reports: set[asyncio.Task[None]] = set()

    async def start(self, timeout: float = 15.0) -> ZygoteReady:
        """Start the process and wait until it has imported the runtime and prepared."""
        from .confine import scrubbed_environment

        loop = asyncio.get_running_loop()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        fields = dataclasses.asdict(self.policy)
        try:
            # Started from the loop's own thread on purpose: the fork server's parent-death
            # signal fires when the *thread* that forked it ends. Fork+exec takes ~1 ms.
            self._proc = subprocess.Popen(  # noqa: ASYNC220
                [
                    sys.executable,
                    "-I",
                    "-m",
                    "dynamic_workflows.sandbox.zygote",
                    "--control-fd",
                    str(child.fileno()),
                    "--policy",
                    json.dumps(fields),
                ],
                pass_fds=(child.fileno(),),
                env=scrubbed_environment(),
                stdin=subprocess.DEVNULL,
            )
        finally:
            child.close()
        parent.setblocking(False)
        self._sock = parent
        self._ready_future = loop.create_future()
        loop.add_reader(parent.fileno(), self._on_readable)
        try:
            ready = await asyncio.wait_for(self._ready_future, timeout)
        except BaseException:
            await self.close()
            raise
        if ready.error is not None:
            await self.close()
            from .confine import SandboxUnavailableError

            raise SandboxUnavailableError(f"the fork server refused to start: {ready.error}")
        self.ready = ready
        return ready

    def _on_readable(self) -> None:
        sock = self._sock
        while sock is not None:
            try:
                data, fds, _, _ = socket.recv_fds(sock, 65536, 4)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data:
                self._on_eof()
                return
            try:
                message = decode_control(data)
            except ProtocolError:
                log.exception("bad message from the fork server")
                for fd in fds:
                    os.close(fd)
                continue
            if isinstance(message, Spawned):
                future = self._spawns.pop(message.id, None)
                pidfd = fds[0] if fds else None
                if future is not None and not future.done():
                    future.set_result((message, pidfd))
                elif pidfd is not None:
                    os.close(pidfd)
            elif isinstance(message, Exited):
                waiter = self._exit_waiters.pop(message.pid, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(message.status)
                else:
                    self._exits[message.pid] = message.status
                    if len(self._exits) > 4096:  # statuses nobody asked for
                        self._exits.pop(next(iter(self._exits)))
            elif (
                isinstance(message, ZygoteReady)
                and self._ready_future is not None
                and not self._ready_future.done()
            ):
                self._ready_future.set_result(message)

    def _on_eof(self) -> None:
        self._detach()
        if not self._retired and self.ready is not None:
            # Neither closed (close() stops reading first) nor retired: it died.
            report = asyncio.ensure_future(self._report_death())
            self._reports.add(report)
            report.add_done_callback(self._reports.discard)
        error = ProtocolError("the fork server exited")
        if self._ready_future is not None and not self._ready_future.done():
            self._ready_future.set_exception(error)
        for future in self._spawns.values():
            if not future.done():
                future.set_exception(error)
        self._spawns.clear()
        for waiter in self._exit_waiters.values():
            if not waiter.done():
                waiter.cancel()
        self._exit_waiters.clear()
        if self._proc is not None:
            self._proc.poll()

    async def _report_death(self) -> None:
        proc = self._proc
        status = None
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                status = await asyncio.to_thread(proc.wait, 1.0)
        if status is None:
            how = "closed its control socket"
        elif status < 0:
            how = f"was killed by {_signal_name(-status)}"
        else:
            how = f"exited with code {status}"
        log.warning(
            "the fork server (pid %s) %s; its workers are gone, and a new one is started "
            "for the next worker",
            self.pid,
            how,
        )

    def _detach(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        self.closed = True

    async def spawn(self) -> tuple[int, int, socket.socket]:
        """Fork a worker: returns its pid, a pidfd for it, and the host's end of its socket."""
        if self._sock is None:
            raise ProtocolError("the fork server is not running")
        host_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        request_id = self._next_id
        self._next_id += 1
        future: asyncio.Future[tuple[Spawned, int | None]] = (
            asyncio.get_running_loop().create_future()
        )
        self._spawns[request_id] = future
        try:
            socket.send_fds(self._sock, [encode_control(Spawn(request_id))], [worker_end.fileno()])
        except OSError:
            self._spawns.pop(request_id, None)
            host_end.close()
            raise
        finally:
            worker_end.close()
        self.forks += 1
        try:
            spawned, pidfd = await future
        except BaseException:
            host_end.close()
            raise
        if spawned.error is not None or pidfd is None:
            host_end.close()
            raise ProtocolError(f"the fork server could not fork: {spawned.error}")
        return spawned.pid, pidfd, host_end

    async def exit_status(self, pid: int, timeout: float) -> int | None:
        """The exit status of a worker (code, or minus the signal); None if not known in time."""
        if pid in self._exits:
            return self._exits.pop(pid)
        if self._sock is None:
            return None
        waiter = self._exit_waiters.get(pid)
        if waiter is None:
            waiter = asyncio.get_running_loop().create_future()
            self._exit_waiters[pid] = waiter
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except (TimeoutError, asyncio.CancelledError):
            return None

    def retire(self) -> None:
        """Fork no more; the process exits once its workers have."""
        self._retired = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                socket.send_fds(self._sock, [encode_control(Retire())], [])

    async def close(self) -> None:
        """Stop the fork server; its workers are killed with it."""
        self._detach()
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            # With its control socket closed it kills its workers and exits at once.
            await asyncio.to_thread(_wait_or_kill, proc, 5.0)
        if self._reports:  # a death being reported
            await asyncio.gather(*self._reports, return_exceptions=True)

    @property
    def pid(self) -> int | None:
        """The fork server's pid."""
        return self._proc.pid if self._proc is not None else None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _wait_or_kill(proc: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
