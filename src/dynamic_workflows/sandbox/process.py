"""One worker process, seen from the host: its connection, calls, capabilities and limits.

Calls in flight are multiplexed by id (Load, Call, Run). The capabilities it holds are the env
bindings it was loaded with (for its lifetime) and the objects returned to it during a call
(released when that call ends). Limits: wall time per call (here), CPU while a call is in
flight (the pool's watchdog calls :meth:`WorkerProcess.check_cpu`, which reads
``/proc/<pid>/stat``), memory (RLIMIT_AS in the worker).

A worker process does not know its pool: it is built with callbacks (``on_call_started``,
``on_closed``), so this module does not import :mod:`.pool`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from .. import errors as _errors
from ..core.journal import ErrorInfo
from ..core.step_errors import error_name, rebuild_error
from ..errors import SerializationError, WorkflowError
from ..workers import Response
from .code import INHERIT, WorkerCode, WorkerLimits
from .errors import FrameTooLargeError, ProtocolError, TenantWorkerError
from .framing import DEFAULT_MAX_FRAME, FrameProtocol
from .interrupt import GRACE
from .outbound import fetch_via_host
from .protocol import (
    BaseMessage,
    Call,
    Cancel,
    CapCall,
    CapRef,
    Codec,
    Fetch,
    Hello,
    Load,
    Message,
    ModuleData,
    Ping,
    Pong,
    Reply,
    Result,
    Run,
    RunParked,
    RunResult,
    Shutdown,
    StepAttempt,
    StepComplete,
    StepFail,
    StepSleep,
    StepWaitForEvent,
    StepWake,
    check_hello,
)
from .runtime import NO_NETWORK_MESSAGE
from .tenant_logs import TenantLog

if TYPE_CHECKING:
    from .confine import ConfinementPolicy
    from .forkserver import ZygoteProcess

__all__ = ["STALL_TIMEOUT", "RunListener", "WorkerProcess", "max_call_bytes"]

log = logging.getLogger("dynamic_workflows.sandbox")

_EXIT_STATUS_WAIT = 0.5
"""How long a dead worker's calls wait for the fork server to report how it died."""
_PING_GRACE = 0.5
"""How long a worker whose call ran out of time has to answer a ping before it is killed."""
STALL_TIMEOUT = 0.1
"""How long a worker with a step attempt in progress has to answer a ping before a new call of
its tenant goes to a fresh worker instead (its loop is held by a body that does not await)."""
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_STEP_MESSAGES = (
    StepComplete,
    StepFail,
    StepSleep,
    StepWaitForEvent,
    StepWake,
    StepAttempt,
    RunParked,
)
_ONE_WAY = (StepAttempt, RunParked)
_SIMPLE = (str, int, float, bool, type(None))


class RunListener(Protocol):
    """What a :class:`WorkerProcess` needs from the host side of a ``run`` (see :mod:`.bridge`)."""

    def on_step_message(self, message: Any) -> None:
        """A step-channel message of the run arrived."""
        ...


@dataclasses.dataclass
class _Pending:
    future: asyncio.Future[Any]
    cpu_ms: int | None
    cpu_start: float | None = None
    fetches: int = 0
    what: str = ""


class WorkerProcess:
    """The host's side of one worker process: its connection, calls, capabilities, limits.

    ``policy``: the confinement it was forked under (its CPU allowance names a SIGXCPU death).
    ``on_call_started(worker)``: a call was sent (the CPU watchdog starts watching it).
    ``on_closed(worker)``: the connection is gone, once (the process is dead or dying).
    """

    def __init__(
        self,
        zygote: ZygoteProcess,
        pid: int,
        pidfd: int,
        sock: socket.socket,
        *,
        policy: ConfinementPolicy,
        max_frame: int,
        on_call_started: Callable[[WorkerProcess], None],
        on_closed: Callable[[WorkerProcess], None],
    ) -> None:
        self.zygote = zygote
        self.policy = policy
        self.max_frame = max_frame
        self._on_call_started = on_call_started
        self._on_closed = on_closed
        self.pid = pid
        self._pidfd: int | None = pidfd
        self._sock = sock
        self.tenant = "<unassigned>"
        self.code: WorkerCode | None = None
        self.limits = WorkerLimits()
        self.dead = False
        self.retired = False
        """Set when the worker must not take new calls (it is shut down once idle)."""
        self.isolation = ""
        self.last_used = time.monotonic()
        self.cpu_seconds = 0.0
        self._protocol: FrameProtocol | None = None
        self._codec = Codec(export=self._export, resolve=self._resolve)
        self._hello: asyncio.Future[Hello] | None = None
        self._next_id = 1
        self._pending: dict[int, _Pending] = {}
        self._caps: dict[int, tuple[object, int | None]] = {}
        self._owned: dict[int, list[int]] = {}
        self._next_cap = 1
        self._export_owner: int | None = None
        self._listeners: dict[int, RunListener] = {}
        # Step attempts in progress, (call, name, count) -> (deadline on the monotonic clock,
        # timeout in seconds), from the worker's StepAttempt notices: see check_steps.
        self._steps: dict[tuple[int, str, int], tuple[float, float]] = {}
        self._next_step_look = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._kill_reason: str | None = None
        self._shut_down = False
        self._death: asyncio.Future[str] | None = None
        self.output: TenantLog | None = None
        """Where what the tenant writes outside any run goes (its loader sets it)."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, timeout: float) -> None:
        """Connect and wait for the worker's Hello (it is confined and warm by then)."""
        loop = asyncio.get_running_loop()
        self._hello = loop.create_future()
        self._death = loop.create_future()
        _, self._protocol = await loop.create_connection(
            lambda: FrameProtocol(self._on_first_frame, self._on_close, max_size=self.max_frame),
            sock=self._sock,
        )
        try:
            hello = await asyncio.wait_for(asyncio.shield(self._hello), timeout)
        except TimeoutError:
            self.kill("did not become ready in time")
            raise TenantWorkerError(
                "<pool>", f"worker {self.pid} did not start within {timeout:.0f} s"
            ) from None
        if hello.error is not None:
            self.kill("could not be confined")
            from .confine import SandboxUnavailableError

            raise SandboxUnavailableError(f"worker {self.pid} could not be confined: {hello.error}")
        self.isolation = hello.isolation

    def _on_first_frame(self, frame: bytes) -> None:
        assert self._protocol is not None
        assert self._hello is not None
        hello = check_hello(frame)
        self._protocol.on_frame = self._on_frame  # every later frame is a regular message
        if not self._hello.done():
            self._hello.set_result(hello)

    @property
    def busy(self) -> bool:
        """Calls are in flight."""
        return bool(self._pending)

    @property
    def usable(self) -> bool:
        """Alive and not retired."""
        return not self.dead and not self.retired

    def kill(self, reason: str) -> None:
        """Kill the process (SIGKILL through its pidfd); its calls fail naming ``reason``."""
        if self._kill_reason is None:
            self._kill_reason = reason
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.abort()

    def shutdown(self) -> None:
        """Ask the worker to exit (idle eviction); calls still in flight fail."""
        self.retired = True
        self._shut_down = True
        if not self.dead:
            with contextlib.suppress(ProtocolError):
                self._send(Shutdown())
            if self._protocol is not None:
                self._protocol.close()

    def _on_close(self, exc: BaseException | None) -> None:
        if self.dead:
            return
        self.dead = True
        if isinstance(exc, ProtocolError) and self._kill_reason is None:
            self.kill(f"protocol error: {exc}")
        self._on_closed(self)
        self._spawn(self._bury())

    async def _bury(self) -> None:
        reason = self._kill_reason
        if reason is None and self._shut_down:
            # Only an exit the host asked for: a worker merely retired (no new calls) that dies
            # died of something (SIGXCPU...), which its exit status says.
            reason = "the worker was shut down (idle or evicted) while calls were in flight"
        if reason is None:
            status = await self.zygote.exit_status(self.pid, _EXIT_STATUS_WAIT)
            reason = _describe_exit(status, self.policy)
        else:
            await self.zygote.exit_status(self.pid, 0.05)  # reap the record
        if not self._shut_down or self._kill_reason is not None:
            # Not an exit the host asked for: one line in the host's log, or it goes unseen.
            doing = ", ".join(p.what for p in self._pending.values() if p.what) or "idle"
            how = "was killed by the host" if self._kill_reason is not None else "died"
            log.warning(
                "tenant %r: worker %d %s (%s); it was %s",
                self.tenant,
                self.pid,
                how,
                reason,
                doing if doing == "idle" else "running " + doing,
                extra={
                    "event": "worker.died",
                    "tenant": self.tenant,
                    "pid": self.pid,
                    "reason": reason,
                },
            )
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(
                TenantWorkerError(
                    "<pool>", f"worker {self.pid} exited before it was ready: {reason}"
                )
            )
        error = TenantWorkerError(self.tenant, reason)
        assert self._death is not None
        if not self._death.done():
            self._death.set_result(reason)
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_exception(error)

    # -- sending -----------------------------------------------------------------------------

    def _send(
        self, message: BaseMessage, owner: int | None = None, max_size: int | None = None
    ) -> None:
        if self._protocol is None or self._protocol.closed:
            raise ProtocolError("the worker's connection is closed")
        self._export_owner = owner
        try:
            data = self._codec.encode(message)
        finally:
            self._export_owner = None
        if max_size is not None and len(data) > max_size:
            raise FrameTooLargeError(len(data), max_size)
        self._protocol.send(data)

    def _new_id(self) -> int:
        request_id = self._next_id
        self._next_id += 1
        return request_id

    async def _round_trip(
        self,
        request_id: int,
        message: BaseMessage,
        what: str,
        *,
        owner: int | None,
        kill_on_timeout: bool = False,
        max_size: int | None = None,
    ) -> Any:
        if self.dead:
            raise TenantWorkerError(self.tenant, "the worker process is gone")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = _Pending(future, self.limits.cpu_ms, what=what)
        self.last_used = time.monotonic()
        try:
            self._send(message, owner=owner, max_size=max_size)
            self._on_call_started(self)
            wall_ms = self.limits.wall_ms
            try:
                if wall_ms is None:
                    return await future
                async with asyncio.timeout(wall_ms / 1000):
                    return await future
            except TimeoutError:
                if future.done() and not future.cancelled() and future.exception() is not None:
                    raise
                reason = f"{what} exceeded the wall-time limit of {wall_ms} ms"
                log.warning(
                    "tenant %r: %s",
                    self.tenant,
                    reason,
                    extra={"event": "limit.hit", "limit": "wall_ms", "tenant": self.tenant},
                )
                if kill_on_timeout:
                    self.kill(reason)
                else:
                    self._after_wall_limit(request_id)
                raise TenantWorkerError(self.tenant, reason) from None
            except asyncio.CancelledError:
                if not self.dead:
                    with contextlib.suppress(ProtocolError):
                        self._send(Cancel(request_id))
                raise
        finally:
            self._pending.pop(request_id, None)
            self._release(request_id)
            self.last_used = time.monotonic()
            self._shut_down_if_retired_and_idle()

    def _shut_down_if_retired_and_idle(self) -> None:
        # A retired worker gets no new calls, and the loader may have handed its tenant to a
        # fresh worker already: nobody else would shut it down once its last call is over.
        if self.retired and not self._pending and not self.dead and not self._shut_down:
            self.shutdown()

    def _after_wall_limit(self, request_id: int) -> None:
        # New calls go to a fresh worker: this one may be stuck in code that never yields.
        self.retired = True
        with contextlib.suppress(ProtocolError):
            self._send(Cancel(request_id))

        async def check() -> None:
            try:
                await self.ping(_PING_GRACE)
            except (TenantWorkerError, TimeoutError):
                self.kill("stopped answering after a call exceeded its wall-time limit")

        self._spawn(check())

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- requests --------------------------------------------------------------------------------

    async def load(self, tenant: str, code: WorkerCode, limits: WorkerLimits) -> None:
        """Load ``code`` into this fresh worker for ``tenant``."""
        self.tenant = tenant
        self.code = code
        self.limits = limits
        outbound = (
            "none"
            if code.global_outbound is None
            else "host"
            if code.global_outbound is INHERIT
            else "binding"
        )
        modules = [ModuleData(s.filename, s.kind, s.data) for s in code.sources().values()]
        request_id = self._new_id()
        message = Load(
            request_id,
            tenant,
            code.main_module,
            modules,
            dict(code.env),
            outbound,
            None if limits.memory_mb is None else limits.memory_mb * 1024 * 1024,
            code.compatibility_date,
            list(code.compatibility_flags),
        )
        # Env bindings live as long as the worker: exported with no owning call. A module
        # stuck at import time cannot be cancelled, so a load past its time kills the worker.
        result = await self._round_trip(
            request_id, message, "loading the code", owner=None, kill_on_timeout=True
        )
        self._raise_error(result, "load")

    async def call(
        self,
        entrypoint: str | None,
        method: str,
        args: list[Any],
        kwargs: dict[str, Any],
        props: dict[str, Any] | None = None,
    ) -> Any:
        """Call ``method`` of an entrypoint; returns its value or raises its error."""
        request_id = self._new_id()
        try:
            result = await self._round_trip(
                request_id,
                Call(request_id, entrypoint, method, args, kwargs, props),
                f"{method}()",
                owner=request_id,
                max_size=self.call_limit,
            )
        except FrameTooLargeError as exc:
            # Refused before sending: the worker would have died receiving it.
            raise TenantWorkerError(
                self.tenant,
                f"{method}(): the call is {exc.size:,} bytes (a request body, or arguments), "
                f"more than this worker is sent: {exc.limit:,} bytes, a quarter of its memory "
                "allowance (raise limits.memory_mb, or send less)",
            ) from None
        return self._raise_error(result, method)

    @property
    def call_limit(self) -> int:
        """The largest call this worker is sent (see :func:`max_call_bytes`)."""
        memory_mb = self.limits.memory_mb
        allowance = memory_mb << 20 if memory_mb else self.policy.memory_bytes // 2
        return max_call_bytes(allowance, self.max_frame)

    async def run(self, message_for: Callable[[int], Run], listener: RunListener) -> RunResult:
        """Send a workflow Run; ``listener`` receives its step-channel messages."""
        request_id = self._new_id()
        self._listeners[request_id] = listener
        try:
            result = await self._round_trip(
                request_id, message_for(request_id), "run()", owner=request_id
            )
        finally:
            self._listeners.pop(request_id, None)
            if self._steps:
                for key in [key for key in self._steps if key[0] == request_id]:
                    del self._steps[key]
        assert isinstance(result, RunResult)
        return result

    def send_pause(self, call: int, paused: bool) -> None:
        """Forward a pause/resume of the instance behind the run ``call``."""
        from .protocol import Pause

        if not self.dead:
            with contextlib.suppress(ProtocolError):
                self._send(Pause(call, paused))

    def reply(
        self,
        request_id: int,
        value: Any = None,
        error: ErrorInfo | None = None,
        *,
        owner: int | None = None,
    ) -> None:
        """Answer a worker request (dropped if the worker is gone)."""
        if self.dead:
            return
        try:
            self._send(Reply(request_id, value, error), owner=owner)
        except ProtocolError:
            pass
        except TypeError as exc:
            self._send(Reply(request_id, None, ErrorInfo("TypeError", str(exc))))

    async def ping(self, timeout: float) -> Pong:
        """Round trip a Ping; TimeoutError if the worker does not answer in time."""
        request_id = self._new_id()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = _Pending(future, None)
        try:
            self._send(Ping(request_id))
            pong = await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(request_id, None)
            self._shut_down_if_retired_and_idle()
        assert isinstance(pong, Pong)
        return pong

    @property
    def stepping(self) -> bool:
        """A step attempt of a run is in progress in the worker."""
        return bool(self._steps)

    async def responsive(self) -> bool:
        """Whether this worker can take a call now. With a step attempt in progress it must
        answer a ping within :data:`STALL_TIMEOUT`: a body that computes without awaiting holds
        its loop (until its timeout interrupts it, or the CPU limit), and a call sent to it
        would wait as long. One that does not answer is retired: its runs go on, and the
        tenant's next calls go to a fresh worker. Without a step in progress: no round trip."""
        if self.dead or self.retired:
            return False
        if not self._steps:
            return True
        try:
            await self.ping(STALL_TIMEOUT)
        except (TimeoutError, TenantWorkerError, ProtocolError):
            if not self.dead and not self.retired:
                self.retired = True
                log.info(
                    "tenant %r: worker %d did not answer within %d ms while a step ran (a "
                    "body that does not await); new calls go to a fresh worker",
                    self.tenant,
                    self.pid,
                    STALL_TIMEOUT * 1000,
                )
            return False
        return True

    def check_steps(self) -> None:
        """The watchdog's look at step attempts in progress (see :mod:`.interrupt`): a worker
        still in an attempt :data:`~.interrupt.GRACE` seconds past its timeout, which then
        does not answer a ping, could not interrupt the body itself: it is killed, and the
        attempt fails with the reason (its retry policy applies)."""
        if not self._steps or self.dead:
            return
        now = time.monotonic()
        if now < self._next_step_look:
            return
        overdue = next(
            (
                (key[1], timeout)
                for key, (deadline, timeout) in self._steps.items()
                if deadline + GRACE < now
            ),
            None,
        )
        if overdue is None:
            return
        name, timeout = overdue
        self._next_step_look = now + GRACE
        reason = (
            f"step {name!r} ran past its timeout of {round(timeout * 1000)} ms and could not be "
            "interrupted (code that does not return to the interpreter, or that caught the "
            "timeout)"
        )

        async def look() -> None:
            try:
                await self.ping(_PING_GRACE)
            except (TimeoutError, TenantWorkerError, ProtocolError):
                self.kill(reason)

        self._spawn(look())

    async def private_bytes(self) -> int | None:
        """Private memory of the process: from /proc when readable, else as it reports it."""
        size = _private_bytes_of(self.pid)
        if size is None:
            # A confined worker is not dumpable: only it can read its own smaps.
            size = (await self.ping(2.0)).private_bytes
        return size

    def check_cpu(self) -> float | None:
        """The CPU watchdog's look at this worker while calls are in flight: reads its CPU time
        (kept in :attr:`cpu_seconds`) and kills it if a call has used more than its CPU limit
        since the first look. Returns the CPU time, None if it could not be read or the worker
        was killed."""
        cpu = self.read_cpu_seconds()
        if cpu is None:
            return None
        self.cpu_seconds = cpu
        for pending in self._pending.values():
            if pending.cpu_start is None:
                pending.cpu_start = cpu
            elif pending.cpu_ms is not None and (cpu - pending.cpu_start) * 1000 > pending.cpu_ms:
                self.kill(f"call exceeded the CPU limit of {pending.cpu_ms} ms")
                return None
        return cpu

    def cancel_tasks(self) -> None:
        """Cancel the worker's own background tasks (burying it, serving its requests)."""
        for task in list(self._tasks):
            task.cancel()

    def read_cpu_seconds(self) -> float | None:
        """User + system CPU time of the process (from /proc/<pid>/stat)."""
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            return None
        fields = data[data.rindex(b")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def _raise_error(self, result: Any, what: str) -> Any:
        assert isinstance(result, Result)
        if result.error is None:
            return result.value
        if result.error.name == "MemoryError":
            self.retired = True
            limit = self.limits.memory_mb
            raise TenantWorkerError(
                self.tenant,
                f"{what}() exceeded the memory limit" + (f" of {limit} MiB" if limit else ""),
            )
        raise _crossed_error(result.error.name, result.error.message)

    # -- receiving -------------------------------------------------------------------------------

    def _on_frame(self, frame: bytes) -> None:
        message: Message = self._codec.decode(frame)
        kind = type(message)
        if kind is Result or kind is RunResult or kind is Pong:
            if isinstance(message, Result) and message.logs and self.output is not None:
                self.output.add(message.logs)
            pending = self._pending.get(message.id)  # type: ignore[union-attr]
            if pending is not None and not pending.future.done():
                pending.future.set_result(message)
        elif kind is CapCall:
            self._spawn(self._serve_capability(message))  # type: ignore[arg-type]
        elif kind is Fetch:
            self._spawn(self._serve_fetch(message))  # type: ignore[arg-type]
        elif kind in _STEP_MESSAGES:
            if kind is StepAttempt:
                self._step_started(message)  # type: ignore[arg-type]
            elif kind is StepComplete or kind is StepFail:
                self._steps.pop((message.call, message.name, message.count), None)  # type: ignore[union-attr]
            listener = self._listeners.get(message.call)  # type: ignore[union-attr]
            if listener is not None:
                listener.on_step_message(message)
            elif kind not in _ONE_WAY:
                self.reply(message.id, error=ErrorInfo("RunCancelled", "the run has ended"))  # type: ignore[union-attr]
        else:
            raise ProtocolError(f"unexpected {kind.__name__} message from a worker")

    def _step_started(self, message: StepAttempt) -> None:
        timeout = message.timeout
        if timeout is not None and message.call in self._listeners:
            key = (message.call, message.name, message.count)
            self._steps[key] = (time.monotonic() + timeout, timeout)

    # -- capabilities ----------------------------------------------------------------------------

    def _export(self, obj: object) -> CapRef:
        cap_id = self._next_cap
        self._next_cap += 1
        owner = self._export_owner
        self._caps[cap_id] = (obj, owner)
        if owner is not None:
            self._owned.setdefault(owner, []).append(cap_id)
        return CapRef(cap_id, _snapshot(obj))

    def _resolve(self, ref: CapRef) -> object:
        entry = self._caps.get(ref.id)
        if entry is None:
            raise ProtocolError(f"the worker used capability #{ref.id}, which it does not hold")
        return entry[0]

    def _release(self, owner: int) -> None:
        for cap_id in self._owned.pop(owner, ()):
            self._caps.pop(cap_id, None)

    async def _serve_capability(self, message: CapCall) -> None:
        try:
            entry = self._caps.get(message.cap)
            if entry is None:
                raise ReferenceError(
                    f"binding #{message.cap} is no longer valid (it was returned to a call "
                    "that has ended)"
                )
            target = entry[0]
            if message.method:
                if message.method.startswith("_"):
                    raise AttributeError(f"{message.method!r} cannot be called on a binding")
                fn = getattr(target, message.method, None)
                if fn is None or not callable(fn):
                    raise AttributeError(
                        f"binding {type(target).__name__} has no method {message.method!r}"
                    )
            elif callable(target):
                fn = target
            else:
                raise TypeError(f"binding {type(target).__name__} is not callable")
            value = fn(*message.args, **message.kwargs)
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            self.reply(message.id, error=ErrorInfo(error_name(exc), str(exc)))
            return
        owner = message.call if message.call in self._pending else None
        self.reply(message.id, value, owner=owner)

    async def _serve_fetch(self, message: Fetch) -> None:
        try:
            response = await self._outbound(message)
        except Exception as exc:
            self.reply(message.id, error=ErrorInfo(error_name(exc), str(exc)))
            return
        self.reply(message.id, response)

    async def _outbound(self, message: Fetch) -> Response:
        code = self.code
        if code is None or code.global_outbound is None:
            raise RuntimeError(NO_NETWORK_MESSAGE)
        pending = self._pending.get(message.call)
        if pending is not None:
            pending.fetches += 1
            limit = self.limits.sub_requests
            if limit is not None and pending.fetches > limit:
                raise RuntimeError(
                    f"tenant {self.tenant!r}: the call exceeded the limit of {limit} "
                    "subrequests (global fetch calls)"
                )
        request = message.request
        if code.global_outbound is INHERIT:
            timeout = (self.limits.wall_ms or 30_000) / 1000
            return await fetch_via_host(request, timeout=timeout)
        response = code.global_outbound.fetch(request)
        if inspect.isawaitable(response):
            response = await response
        if not isinstance(response, Response):
            raise TypeError(
                f"global_outbound.fetch() returned {type(response).__name__}, not a Response"
            )
        return response

    def __repr__(self) -> str:
        state = "dead" if self.dead else "busy" if self.busy else "idle"
        return f"<WorkerProcess pid={self.pid} tenant={self.tenant!r} {state}>"


def max_call_bytes(memory_bytes: int, max_frame: int = DEFAULT_MAX_FRAME) -> int:
    """The largest call (a ``fetch`` with its request body, an RPC with its arguments) sent to a
    worker allowed ``memory_bytes`` above its baseline: a quarter of it, and never more than the
    frame limit. Receiving a message costs the worker about three times its size (the frame
    buffered, its bytes, the values decoded from them; a 48 MiB body killed a worker allowed
    128 MiB, 40 MiB did not), and the tenant needs room left to use what it received."""
    return min(max_frame, memory_bytes // 4)


_WORKFLOW_ERRORS: dict[str, type[WorkflowError | SerializationError]] = {
    cls.__name__: cls
    for cls in (getattr(_errors, name) for name in _errors.__all__)
    if isinstance(cls, type) and issubclass(cls, WorkflowError | SerializationError)
}


def _crossed_error(name: str, message: str) -> Exception:
    """The exception for the error a tenant's call ended with. The package's WorkflowError
    classes (what a binding refuses with: an id that exists, an invalid id, no such instance)
    and SerializationError (a value that cannot be stored or cannot cross) come back as
    themselves with the worker's message, so that a dispatcher catches them by class as it
    would in-process; anything else as :func:`rebuild_error` makes it."""
    cls = _WORKFLOW_ERRORS.get(name)
    if cls is None:
        return rebuild_error(name, message)
    # Not cls(message): several take an instance id, and the message is already the whole text.
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    return error


def _private_bytes_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            text = f.read()
    except OSError:
        return None
    return sum(
        int(line.split()[1]) * 1024
        for line in text.splitlines()
        if line.startswith(("Private_Clean:", "Private_Dirty:", "Private_Hugetlb:"))
    )


def _snapshot(obj: object) -> dict[str, Any]:
    """The simple public attributes of ``obj`` (``instance.id``...), read once."""
    attrs: dict[str, Any] = {}
    for name in dir(obj):
        if name.startswith("_"):
            continue
        try:
            static = inspect.getattr_static(obj, name)
        except AttributeError:
            continue
        if inspect.isroutine(static) or isinstance(static, classmethod | staticmethod):
            continue
        try:
            value = getattr(obj, name)
        except Exception:
            continue
        if isinstance(value, _SIMPLE):
            attrs[name] = value
    return attrs


def _describe_exit(status: int | None, policy: ConfinementPolicy) -> str:
    if status is None:
        return "the worker process closed its connection"
    if status >= 0:
        return f"the worker process exited with code {status}"
    try:
        name = signal.Signals(-status).name
    except ValueError:
        name = f"signal {-status}"
    hint = {
        "SIGSEGV": " (a crash in native code)",
        "SIGBUS": " (a crash in native code)",
        "SIGABRT": " (aborted)",
        "SIGXCPU": f" (it used up the worker's {policy.cpu_seconds} s of CPU time)",
        "SIGSYS": " (a forbidden system call)",
    }.get(name, "")
    return f"the worker process was killed by {name}{hint}"
