"""The worker process's main loop: one tenant's code, served over one socket.

A worker is forked by the zygote, confined, warmed up, and then speaks :mod:`.protocol` with the
host: it says :class:`~.protocol.Hello`, receives the tenant's code as data (:class:`Load`), and
serves calls. Several calls may be in flight at once, multiplexed by id, each in its own task.

Everything that leaves the process goes through the host over the socket: binding methods
(:class:`CapabilityProxy`), the global ``fetch``, and a workflow's durable steps
(:class:`RemoteStepChannel`): the sandbox runs the same replay logic as the engine
(:class:`~dynamic_workflows.core.step.WorkflowStep` +
:func:`~dynamic_workflows.core.replay.drive`), with the host's journal sent along with the call.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from .. import errors as _errors
from ..core.clock import Clock, SystemClock
from ..core.journal import ErrorInfo, Failed, RunOutcome
from ..core.limits import DEFAULT_LIMITS
from ..core.logs import LogBook, LogLine
from ..core.replay import ParkPolicy, drive
from ..core.rollback import run_with_rollback
from ..core.step import RunState, WorkflowStep
from ..core.step_errors import rebuild_error
from ..core.tracebacks import attach_traceback, error_info
from ..gcpolicy import QUIET_BEFORE_WAKE_UP, IdleCollector, tune_gc
from ..workers import FetchResponse, Request, Response
from .capture import BatchSink, RunSink, current_sink, install_in_worker
from .code import ModuleSource, module_import_name
from .errors import WorkerCodeError
from .framing import DEFAULT_MAX_FRAME, FrameProtocol
from .interrupt import AttemptInterrupter
from .protocol import (
    PROTOCOL_VERSION,
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
    Pause,
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
)
from .runtime import TenantRuntime

__all__ = ["CapabilityProxy", "RemoteStepChannel", "WorkerServer", "current_call", "remote_error"]

current_call: contextvars.ContextVar[int] = contextvars.ContextVar("dwf_current_call", default=0)
"""The host call a piece of tenant code runs for (capability calls are scoped to it)."""

_CONTROL_ERRORS: dict[str, type[BaseException]] = {
    "RunCancelled": _errors.RunCancelled,
}
_PACKAGE_ERRORS: dict[str, type[Exception]] = {
    name: getattr(_errors, name)
    for name in _errors.__all__
    if isinstance(getattr(_errors, name), type)
    and issubclass(getattr(_errors, name), _errors.DynamicWorkflowsError)
    and name
    not in (
        "InvalidInstanceIdError",
        "InstanceAlreadyExistsError",
        "InstanceNotFoundError",
        "InvalidEventTypeError",
        "CannotTerminateError",
    )
}


def remote_error(info: ErrorInfo) -> BaseException:
    """The exception to raise in the sandbox for an error the host reported."""
    control = _CONTROL_ERRORS.get(info.name)
    if control is not None:
        return control()
    cls = _PACKAGE_ERRORS.get(info.name)
    if cls is not None:
        try:
            return cls(info.message)
        except Exception:
            pass
    return attach_traceback(rebuild_error(info.name, info.message), info.traceback)


class CapabilityProxy:
    """A binding living on the host. Attribute reads answer from the snapshot taken when the
    capability was sent; any other attribute is a method whose calls travel to the host."""

    __slots__ = ("_ref", "_server")

    def __init__(self, server: WorkerServer, ref: CapRef) -> None:
        self._server = server
        self._ref = ref

    def __getattr__(self, name: str) -> Any:
        attrs = self._ref.attrs
        if name in attrs:
            return attrs[name]
        if name.startswith("_"):
            raise AttributeError(name)
        return _RemoteMethod(self._server, self._ref.id, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _RemoteMethod(self._server, self._ref.id, "")(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<binding #{self._ref.id}>"


class _RemoteMethod:
    __slots__ = ("_cap", "_name", "_server")

    def __init__(self, server: WorkerServer, cap: int, name: str) -> None:
        self._server = server
        self._cap = cap
        self._name = name

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        call = current_call.get()
        return await self._server.request(
            lambda i: CapCall(i, call, self._cap, self._name, list(args), kwargs)
        )

    def __repr__(self) -> str:
        return f"<remote method {self._name!r} of binding #{self._cap}>"


class _Registration:
    __slots__ = ("deadline", "value")

    def __init__(self, deadline: float, value: bytes | None) -> None:
        self.deadline = deadline
        self.value = value


class RemoteStepChannel:
    """The sandbox side of :class:`~dynamic_workflows.core.channel.StepChannel`: every method is a
    request to the host, which performs it on the engine's live run."""

    def __init__(
        self,
        server: WorkerServer,
        call: int,
        *,
        timers: Clock | None = None,
        logs: RunSink | None = None,
    ) -> None:
        self._server = server
        self._call = call
        # The host's wall clock, read here (see Run.local_timers); None: the host wakes sleeps.
        self._timers = timers
        # What the run printed: sent with its next message (see protocol.py).
        self._logs = logs

    async def complete(
        self,
        name: str,
        count: int,
        value: bytes,
        attempt: int = 1,
        rollback: bool = False,
        sensitive: bool = False,
    ) -> None:
        logs = None if self._logs is None else self._logs.take()
        await self._server.request(
            lambda i: StepComplete(
                i, self._call, name, count, value, attempt, logs, rollback, sensitive
            )
        )

    async def fail(
        self,
        name: str,
        count: int,
        attempt: int,
        error: ErrorInfo,
        retry_in: float | None,
        rollback: bool = False,
        sensitive: bool = False,
    ) -> float | None:
        logs = None if self._logs is None else self._logs.take()
        result = await self._server.request(
            lambda i: StepFail(
                i, self._call, name, count, attempt, error, retry_in, logs, rollback, sensitive
            )
        )
        return None if result is None else float(result)

    async def sleep(self, name: str, count: int, until: float | None, seconds: float) -> float:
        logs = None if self._logs is None else self._logs.take()
        result = await self._server.request(
            lambda i: StepSleep(i, self._call, name, count, until, seconds, logs)
        )
        return float(result)

    async def wait_for_event(
        self, name: str, count: int, event_type: str, timeout: float
    ) -> _Registration:
        logs = None if self._logs is None else self._logs.take()
        deadline, value = await self._server.request(
            lambda i: StepWaitForEvent(i, self._call, name, count, event_type, timeout, logs)
        )
        return _Registration(float(deadline), value)

    async def wake(self, name: str, count: int, timer: float | None = None) -> bytes | None:
        if timer is not None and self._timers is not None:
            # A sleep or back-off on the host's own wall clock: this process's timer wakes the
            # run, with no message; its next step (or its end) tells the host.
            await self._timers.sleep_until(timer)
            return None
        result = await self._server.request(lambda i: StepWake(i, self._call, name, count, timer))
        return result if result is None else bytes(result)

    def attempt_started(
        self,
        name: str,
        count: int,
        attempt: int,
        retry_in: float | None,
        rollback: bool = False,
    ) -> None:
        # Written now, not at the end of the loop iteration: the host must know of the attempt
        # before its body runs, or a body that kills the process would not count as one. The
        # step told the guard the attempt's timeout just before (see core/guard.py).
        timeout = self._server.interrupter.latest_timeout
        logs = None if self._logs is None else self._logs.take()
        self._server.send(
            StepAttempt(self._call, name, count, attempt, retry_in, timeout, logs, rollback),
            flush=True,
        )

    def log(self, lines: list[LogLine]) -> None:
        # (The capture writes to the run's sink itself; this is for a caller with lines.)
        if self._logs is not None:
            self._logs.book.add_all(lines)


class WorkerServer:
    """Serves the protocol on ``sock`` until the host closes it or says :class:`Shutdown`.

    ``stats_fds``: descriptors of ``/proc/self/smaps_rollup`` and ``/proc/self/statm`` opened
    before confinement (Landlock forbids opening ``/proc`` afterwards); they let the worker
    report its private memory and measure its baseline address space for the memory limit.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        isolation: str = "",
        stats_fds: tuple[int | None, int | None] = (None, None),
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self._sock = sock
        self._isolation = isolation
        self._smaps_fd, self._statm_fd = stats_fds
        self._max_frame = max_frame
        self._codec = Codec(export=self._export, resolve=self._resolve, response_type=FetchResponse)
        self._protocol: FrameProtocol | None = None
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._next_id = 1
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._runs: dict[int, RunState] = {}
        self._runtime: TenantRuntime | None = None
        self._done: asyncio.Future[None] | None = None
        self._clock = SystemClock()
        self.interrupter = AttemptInterrupter()
        """Stops step bodies that run past their timeout without awaiting (installed by
        :func:`run_worker`, in the worker's main thread)."""
        # The address space parked runs may grow to (see _room_to_park); None: no memory limit.
        self._park_ceiling: int | None = None
        self._parked: dict[int, float] = {}  # call -> wake-up of each parked run
        self.output = BatchSink(DEFAULT_LIMITS.log_bytes_per_attempt)
        """What the tenant writes outside any run: sent with the next call's result."""
        self._handlers: dict[type, Callable[[Any], None]] = {
            Call: self._on_call,
            Run: self._on_run,
            Reply: self._on_reply,
            Load: self._on_load,
            Ping: self._on_ping,
            Cancel: self._on_cancel,
            Pause: self._on_pause,
            Shutdown: self._on_shutdown,
        }

    # -- connection ------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Say Hello, then serve until the connection ends."""
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        _, protocol = await loop.create_connection(
            lambda: FrameProtocol(self._on_frame, self._on_close, max_size=self._max_frame),
            sock=self._sock,
        )
        self._protocol = protocol
        self.send(Hello(PROTOCOL_VERSION, os.getpid(), self._isolation))
        await self._done

    def send(self, message: BaseMessage, *, flush: bool = False) -> None:
        """Send one message to the host (dropped if the connection is gone): at the end of this
        loop iteration, with the others sent in it, or at once (with them) if ``flush``."""
        if self._protocol is None or self._protocol.closed:
            return
        self._protocol.send(self._codec.encode(message), now=flush)

    async def request(self, make: Callable[[int], BaseMessage]) -> Any:
        """Send the request ``make(id)`` and return the value of the host's :class:`Reply`."""
        request_id = self._next_id
        self._next_id += 1
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self.send(make(request_id))
            reply = await future
        finally:
            self._pending.pop(request_id, None)
        if reply.error is not None:
            raise remote_error(reply.error)
        return reply.value

    def _on_frame(self, frame: bytes) -> None:
        message: Message = self._codec.decode(frame)
        handler = self._handlers.get(type(message))
        if handler is None:
            raise _errors.DynamicWorkflowsError(
                f"unexpected {type(message).__name__} message from the host"
            )
        handler(message)

    def _on_close(self, exc: BaseException | None) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        for future in self._pending.values():
            if not future.done():
                future.cancel()
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    # -- capabilities ----------------------------------------------------------------------------

    def _export(self, obj: object) -> CapRef:
        if isinstance(obj, CapabilityProxy):
            return obj._ref
        raise TypeError(
            f"a {type(obj).__name__} cannot be sent across the worker boundary (only JSON-like "
            "values, bytes, datetimes, Request, Response and bindings can)"
        )

    def _resolve(self, ref: CapRef) -> object:
        return CapabilityProxy(self, ref)

    async def _outbound(self, request: Request) -> Response:
        call = current_call.get()
        response = await self.request(lambda i: Fetch(i, call, request))
        if not isinstance(response, Response):
            raise TypeError("the outbound fetch did not return a Response")
        return response

    # -- handlers --------------------------------------------------------------------------------

    def _on_reply(self, message: Reply) -> None:
        future = self._pending.get(message.id)
        if future is not None and not future.done():
            future.set_result(message)

    def _on_ping(self, message: Ping) -> None:
        self.send(Pong(message.id, time.process_time(), self.private_bytes()))

    def _on_cancel(self, message: Cancel) -> None:
        task = self._tasks.get(message.id)
        if task is not None:
            task.cancel()

    def _on_pause(self, message: Pause) -> None:
        state = self._runs.get(message.call)
        if state is not None and state.paused != message.paused:
            state.set_paused(message.paused)

    def _on_shutdown(self, message: Shutdown) -> None:
        if self._protocol is not None:
            self._protocol.close()
        self._on_close(None)

    def _on_load(self, message: Load) -> None:
        try:
            if self._runtime is not None:
                raise RuntimeError("this worker already has code loaded")
            if message.memory_bytes is not None:
                self._limit_memory(message.memory_bytes)
            sources = [
                ModuleSource(m.name, module_import_name(m.name), m.kind, m.data)
                for m in message.modules
            ]
            outbound = None if message.outbound == "none" else self._outbound
            runtime = TenantRuntime(
                message.tenant, sources, message.main_module, message.env, outbound
            )
            runtime.main  # noqa: B018 - run the main module now: errors belong to the load
            self._runtime = runtime
        except Exception as exc:
            error = error_info(exc)
            self._log_error("loading the code", error)
            self.send(Result(message.id, error=error, logs=self.output.take()))
            return
        self.send(Result(message.id, logs=self.output.take()))

    def _log_error(self, what: str, error: ErrorInfo) -> None:
        """A call's error in the tenant's output too, with its traceback."""
        text = f"{what} raised {error.name}: {error.message}"
        self.output.record(
            "ERROR", f"{text}\n{error.traceback}" if error.traceback else text, time.time()
        )

    def _on_call(self, message: Call) -> None:
        self._tasks[message.id] = asyncio.get_running_loop().create_task(self._call(message))

    def _on_run(self, message: Run) -> None:
        self._tasks[message.id] = asyncio.get_running_loop().create_task(self._run(message))

    async def _call(self, message: Call) -> None:
        current_call.set(message.id)
        try:
            if self._runtime is None:
                raise RuntimeError("no code is loaded in this worker")
            value = await self._runtime.call(
                message.entrypoint, message.method, message.args, message.kwargs, message.props
            )
            try:
                self.send(Result(message.id, value, logs=self.output.take()))
            except TypeError as exc:
                raise TypeError(
                    f"{message.method}() returned a value that cannot cross: {exc}"
                ) from None
        except asyncio.CancelledError:
            pass  # the host gave up on this call; nobody waits for an answer
        except Exception as exc:
            error = error_info(exc)
            self._log_error(f"{message.method}()", error)
            self.send(Result(message.id, error=error, logs=self.output.take()))
        finally:
            self._tasks.pop(message.id, None)

    async def _run(self, message: Run) -> None:
        current_call.set(message.id)
        state = RunState()
        if message.paused:
            state.set_paused(True)
        self._runs[message.id] = state
        limits = message.limits
        room = message.log_room
        book = LogBook(
            limits.log_bytes_per_attempt,
            limits.log_bytes_per_instance if room is None else room,
            limits.log_bytes_per_instance,
            relay=True,
        )
        logs = RunSink(book)
        current_sink.set(logs)  # this task's, and the tasks it starts: the run's own
        try:
            outcome: RunOutcome
            try:
                if self._runtime is None:
                    raise RuntimeError("no code is loaded in this worker")
                entry = self._runtime.new_entrypoint(message.entrypoint)
                step = WorkflowStep(
                    RemoteStepChannel(
                        self,
                        message.id,
                        timers=self._clock if message.local_timers else None,
                        logs=logs,
                    ),
                    message.journal,
                    clock=self._clock,
                    now=message.now,
                    state=state,
                    limits=message.limits,
                    guard=self.interrupter,
                    terminating=message.terminating,
                )
                event = message.event
                state.park_policy = self._park_policy(message)
                logs.replaying = lambda: step.replaying
                outcome = await drive(
                    lambda: run_with_rollback(lambda: entry.run(event, step), step),
                    state,
                    limits=message.limits,
                )
            except Exception as exc:
                outcome = Failed(error_info(exc))
            self.send(RunResult(message.id, outcome, logs.take()))
        finally:
            self._runs.pop(message.id, None)
            self._tasks.pop(message.id, None)

    def _park_policy(self, message: Run) -> ParkPolicy | None:
        """Keep a quiescent run live when its wake-up is within the host's horizon, telling
        the host (which owns the timers and counts parked runs)."""
        horizon = message.warm_horizon
        if horizon <= 0:
            return None
        # The host's clock at the run's start, carried forward by ours: a host on virtual time
        # that jumps ahead only makes this estimate err towards unwinding, which is always safe.
        started = time.monotonic()
        call = message.id

        def park(wake_at: float | None) -> Callable[[], None] | None:
            if wake_at is None:
                return None
            host_now = message.now + (time.monotonic() - started)
            if wake_at - host_now > horizon or not self._room_to_park():
                return None
            self.send(RunParked(call, wake_at))
            self._parked[call] = wake_at
            return lambda: self._unparked(call)

        return park

    # -- accounting ------------------------------------------------------------------------------

    def private_bytes(self) -> int | None:
        """Private (not shared with the zygote) memory of this process, in bytes."""
        if self._smaps_fd is None:
            return None
        try:
            text = os.pread(self._smaps_fd, 4096, 0).decode()
        except OSError:
            return None
        total = 0
        for line in text.splitlines():
            if line.startswith(("Private_Clean:", "Private_Dirty:", "Private_Hugetlb:")):
                total += int(line.split()[1]) * 1024
        return total

    def _unparked(self, call: int) -> None:
        # No message: the run's next one tells the host (see RunParked).
        self._parked.pop(call, None)

    def quiet(self) -> bool:
        """Whether no parked run wakes up within :data:`QUIET_BEFORE_WAKE_UP` (for the idle
        collector)."""
        parked = self._parked
        return not parked or min(parked.values()) - time.time() > QUIET_BEFORE_WAKE_UP

    def _room_to_park(self) -> bool:
        """Whether one more run may be kept live. Parked runs are the engine's choice, not the
        tenant's: they may take half of the tenant's memory allowance, and past that a run
        hibernates as it would with no warm horizon (unwinding frees what it held)."""
        size = self._address_space()
        return self._park_ceiling is None or size is None or size < self._park_ceiling

    def _address_space(self) -> int | None:
        """This process's address space in bytes (what RLIMIT_AS counts)."""
        if self._statm_fd is None:
            return None
        return int(os.pread(self._statm_fd, 256, 0).split()[0]) * os.sysconf("SC_PAGE_SIZE")

    def _limit_memory(self, extra: int) -> None:
        # The tenant's limit is headroom above the warmed worker: its address space at fork is
        # mostly the zygote's shared, already-paid-for mappings.
        import resource

        base = self._address_space()
        if base is None:
            return
        limit = base + extra
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY and limit > hard:
            # Not clamped in silence: the tenant would get less than its limit says.
            raise WorkerCodeError(
                "limits.memory_mb",
                f"{extra >> 20} MiB on top of the {base >> 20} MiB a warmed worker maps does "
                f"not fit in the sandbox's address-space cap of {hard >> 20} MiB "
                "(ConfinementPolicy.memory_bytes)",
            )
        if soft == resource.RLIM_INFINITY or limit < soft:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        else:
            limit = soft
        self._park_ceiling = base + max(0, limit - base) // 2


# -- process entry ---------------------------------------------------------------------------------

_WARM_UP_SOURCE = """
from workers import Response, WorkerEntrypoint, WorkflowEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response.json({"echo": await request.json(), "url": request.url})

    async def add(self, a, b):
        return a + b


class Flow(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do("first")
        async def first():
            return event["payload"]

        @step.do("second")
        async def second(first, ctx):
            return [first, ctx["attempt"]]

        return await second()
"""


class _MemoryChannel:
    """A StepChannel that commits nothing: enough to exercise the replay code paths."""

    async def complete(
        self,
        name: str,
        count: int,
        value: bytes,
        attempt: int = 1,
        rollback: bool = False,
        sensitive: bool = False,
    ) -> None:
        return None

    async def fail(
        self,
        name: str,
        count: int,
        attempt: int,
        error: ErrorInfo,
        retry_in: float | None,
        rollback: bool = False,
        sensitive: bool = False,
    ) -> float | None:
        return None

    async def sleep(self, name: str, count: int, until: float | None, seconds: float) -> float:
        return 0.0

    async def wait_for_event(
        self, name: str, count: int, event_type: str, timeout: float
    ) -> _Registration:
        return _Registration(0.0, None)

    async def wake(self, name: str, count: int, timer: float | None = None) -> bytes | None:
        return None

    def attempt_started(
        self,
        name: str,
        count: int,
        attempt: int,
        retry_in: float | None,
        rollback: bool = False,
    ) -> None:
        return None

    def log(self, lines: list[LogLine]) -> None:
        return None


async def warm_up() -> None:
    """Exercise the code a real call runs (module loading, a fetch, an RPC call, a workflow run,
    the codec), so the copy-on-write faults of a fresh fork are paid before the worker says it
    is ready rather than during its first request."""
    from ..core.limits import DEFAULT_LIMITS
    from .protocol import ModuleData

    runtime = TenantRuntime(
        "warm-up", [ModuleSource("main.py", "main", "py", _WARM_UP_SOURCE)], "main.py", {}, None
    )
    request = Request("http://warm.up/", method="POST", body=b'{"a": [1, 2.5, "x"]}')
    response = await runtime.call(None, "fetch", [request], {})
    await runtime.call(None, "add", [1, 2], {})
    state = RunState()
    entry = runtime.new_entrypoint("Flow")
    step = WorkflowStep(_MemoryChannel(), [], clock=SystemClock(), now=time.time(), state=state)
    event = {"payload": {"k": "v"}, "timestamp": None, "instanceId": "warm-up"}
    outcome = await drive(lambda: entry.run(event, step), state)
    codec = Codec(resolve=lambda ref: ref)
    for message in (
        Call(1, None, "fetch", [request], {}),
        Result(1, response),
        RunResult(1, outcome),
        Load(1, "t", "main.py", [ModuleData("main.py", "py", _WARM_UP_SOURCE)], {"A": 1}, "none"),
        Run(1, "Flow", event, [], 0.0, DEFAULT_LIMITS),
        StepComplete(1, 1, "first", 1, b"1"),
    ):
        codec.decode(codec.encode(message))


def _new_loop() -> asyncio.AbstractEventLoop:
    # uvloop, as in the host: ten thousand parked runs woken at the same instant cost half the
    # time on it (its timers and transports are C); the fork server imported it already.
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_worker(
    sock: socket.socket,
    *,
    isolation: str = "",
    stats_fds: tuple[int | None, int | None] = (None, None),
    max_frame: int = DEFAULT_MAX_FRAME,
) -> None:
    """The worker's life after confinement: warm up, then serve ``sock`` until it closes."""
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    tune_gc(freeze=False)
    server = WorkerServer(sock, isolation=isolation, stats_fds=stats_fds, max_frame=max_frame)
    server.interrupter.install()
    install_in_worker(server.output)
    collector = IdleCollector(quiet=server.quiet)
    try:
        loop.run_until_complete(warm_up())
        loop.call_soon(collector.start)
        loop.run_until_complete(server.serve())
    finally:
        collector.stop()
        asyncio.set_event_loop(None)
        loop.close()
