"""The Worker Loader (``env.LOADER``): tenant code loaded at runtime, each tenant in its own
confined process.

::

    stub = env.LOADER.get("acme", get_code)        # at once; get_code runs on (re)load only
    resp = await stub.get_entrypoint().fetch("https://x/", method="POST", body="...")
    n    = await stub.get_entrypoint("Api").add(1, 2)                 # RPC
    out  = await stub.get_entrypoint("TenantWorkflow").run(event, step)  # durable, see bridge

:class:`Loader` runs each tenant in a worker process forked by the fork server (see
:mod:`.pool`); a worker is reused for the same id only, least-recently-used workers beyond
``max_workers`` are shut down, and so are workers idle for ``idle_timeout`` seconds.
:class:`InProcessLoader` has the same interface and runs trusted code in the host process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from ..core.logs import LogBook
from ..core.step import WorkflowStep
from ..workers import Request, Response
from ..workers.hosting import make_request
from .bridge import RunBridge, death_outside_steps
from .capture import RingSink, RunSink, current_sink, install_in_process
from .code import INHERIT, WorkerCode, WorkerLimits
from .confine import ConfinementPolicy, IsolationReport, SandboxUnavailableError, probe
from .errors import TenantWorkerError
from .outbound import fetch_via_host
from .pool import WorkerPool
from .process import WorkerProcess
from .runtime import Outbound, TenantRuntime
from .tenant_logs import TenantLogs

__all__ = [
    "DEFAULT_LIMITS",
    "EntrypointStub",
    "InProcessLoader",
    "Loader",
    "WorkerStub",
]

log = logging.getLogger("dynamic_workflows.sandbox")

_WORKER_BASE_MB = 128
"""Room for what a warmed worker maps before its tenant allocates anything (30-50 MiB, plus
malloc arenas), when sizing the default address-space cap for a larger default limit."""

DEFAULT_LIMITS = WorkerLimits(cpu_ms=30_000, memory_mb=128, wall_ms=60_000, sub_requests=1000)
"""Limits for a worker whose code sets none (Cloudflare's CPU default is 30 s per request)."""

GetCode = Callable[[], Any]
"""``get_code()``: returns (or resolves to) a WorkerCode or a dict."""


class _Entry:
    """One loaded (or loadable) worker: the code's source and, when loaded, its process."""

    __slots__ = ("cached", "code", "get_code", "key", "loading", "runtime", "worker")

    def __init__(
        self,
        key: str,
        *,
        get_code: GetCode | None = None,
        code: WorkerCode | None = None,
        cached: bool,
    ) -> None:
        self.key = key
        self.get_code = get_code
        self.code = code
        self.cached = cached
        self.worker: WorkerProcess | None = None
        self.runtime: TenantRuntime | None = None
        self.loading: asyncio.Future[Any] | None = None

    async def resolve_code(self) -> WorkerCode:
        if self.code is not None:
            return self.code
        assert self.get_code is not None
        value = self.get_code()
        if inspect.isawaitable(value):
            value = await value
        return WorkerCode.from_value(value)


class _Backend(Protocol):
    async def call_entrypoint(
        self,
        entry: _Entry,
        name: str | None,
        method: str,
        args: list[Any],
        kwargs: dict[str, Any],
        props: dict[str, Any] | None,
    ) -> Any: ...

    async def run_entrypoint(
        self, entry: _Entry, name: str | None, event: Any, step: Any
    ) -> Any: ...


class WorkerStub:
    """What ``LOADER.get`` and ``LOADER.load`` return: a handle on one dynamic worker."""

    __slots__ = ("_backend", "_entry")

    def __init__(self, backend: _Backend, entry: _Entry) -> None:
        self._backend = backend
        self._entry = entry

    @property
    def id(self) -> str:
        """The loader id (for ``load()``, a generated one)."""
        return self._entry.key

    def get_entrypoint(
        self, name: str | None = None, *, props: Mapping[str, Any] | None = None
    ) -> EntrypointStub:
        """The entrypoint class ``name`` of the main module (None: ``Default``)."""
        if name is not None and (not isinstance(name, str) or not name.isidentifier()):
            raise TypeError(f"entrypoint name must be a class name or None, got {name!r}")
        return EntrypointStub(self._backend, self._entry, name, dict(props) if props else None)

    getEntrypoint = get_entrypoint

    def __repr__(self) -> str:
        return f"<WorkerStub {self._entry.key!r}>"


class EntrypointStub:
    """One entrypoint of a dynamic worker: ``fetch``, ``run`` and RPC methods by attribute."""

    __slots__ = ("_backend", "_entry", "_name", "_props")

    def __init__(
        self, backend: _Backend, entry: _Entry, name: str | None, props: dict[str, Any] | None
    ) -> None:
        self._backend = backend
        self._entry = entry
        self._name = name
        self._props = props

    async def fetch(
        self, resource: Any, init: Mapping[str, Any] | None = None, /, **options: Any
    ) -> Response:
        """Send an HTTP request (a Request, or a URL plus method/headers/body) to its fetch."""
        request = make_request(resource, init, **options)
        result = await self._backend.call_entrypoint(
            self._entry, self._name, "fetch", [request], {}, self._props
        )
        assert isinstance(result, Response)
        return result

    async def run(self, event: Any, step: Any) -> Any:
        """Run the workflow entrypoint for one wake-up of an instance (``step`` is the step
        object the engine passed to the dispatcher's ``run``)."""
        return await self._backend.run_entrypoint(self._entry, self._name, event, step)

    def __getattr__(self, method: str) -> Callable[..., Awaitable[Any]]:
        if method.startswith("_"):
            raise AttributeError(method)
        backend, entry, name, props = self._backend, self._entry, self._name, self._props

        async def rpc(*args: Any, **kwargs: Any) -> Any:
            return await backend.call_entrypoint(entry, name, method, list(args), kwargs, props)

        rpc.__name__ = method
        return rpc

    def __repr__(self) -> str:
        return f"<EntrypointStub {self._entry.key!r}:{self._name or 'Default'}>"


def _limits(value: WorkerLimits | Mapping[str, Any] | None) -> WorkerLimits:
    return WorkerLimits.from_value(value)


def _merge(base: WorkerLimits, override: WorkerLimits) -> WorkerLimits:
    return WorkerLimits(
        **{
            f.name: getattr(override, f.name)
            if getattr(override, f.name) is not None
            else getattr(base, f.name)
            for f in dataclasses.fields(WorkerLimits)
        }
    )


class _Cache:
    """Entries by id and live workers in least-recently-used order: shared by both loaders."""

    def __init__(self, max_workers: int) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self.entries: dict[str, _Entry] = {}
        self.live: OrderedDict[_Entry, None] = OrderedDict()
        self._anonymous = itertools.count(1)

    def get(self, key: str, get_code: GetCode) -> _Entry:
        if not isinstance(key, str) or not key:
            raise TypeError(f"LOADER.get(id, ...): id must be a non-empty string, got {key!r}")
        if not callable(get_code):
            raise TypeError("LOADER.get(id, get_code): get_code must be callable")
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = _Entry(key, get_code=get_code, cached=True)
        else:
            entry.get_code = get_code
        return entry

    def anonymous(self, code: Any) -> _Entry:
        return _Entry(
            f"load:{next(self._anonymous)}", code=WorkerCode.from_value(code), cached=False
        )

    def current(self, entry: _Entry) -> _Entry:
        """The registered entry for ``entry``'s id (a stub may outlive its entry's eviction)."""
        if not entry.cached:
            return entry
        registered = self.entries.setdefault(entry.key, entry)
        if registered is not entry and entry.get_code is not None:
            registered.get_code = entry.get_code
        return registered

    def touch(self, entry: _Entry) -> None:
        self.live[entry] = None
        self.live.move_to_end(entry)

    def drop(self, entry: _Entry) -> None:
        self.live.pop(entry, None)
        if entry.cached and self.entries.get(entry.key) is entry:
            del self.entries[entry.key]


async def _maybe(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class Loader:
    """``env.LOADER``: loads tenant code into confined worker processes.

    Refuses to start (SandboxUnavailableError) when this machine cannot confine untrusted code
    (see :func:`~.confine.probe`), unless ``unconfined=True`` is given explicitly for trusted
    code. ``limits`` are the defaults for code that sets none; ``warm`` pre-forked workers are
    kept ready so a new tenant's first request does not wait for a fork.
    """

    def __init__(
        self,
        *,
        unconfined: bool = False,
        policy: ConfinementPolicy | None = None,
        limits: WorkerLimits | Mapping[str, Any] | None = None,
        max_workers: int = 128,
        idle_timeout: float = 300.0,
        warm: int = 2,
        zygote_max_forks: int = 256,
        start_timeout: float = 15.0,
        report: IsolationReport | None = None,
    ) -> None:
        if idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive")
        self.report = report if report is not None else probe()
        log.info("%s", self.report.summary())
        self.default_limits = _merge(DEFAULT_LIMITS, _limits(limits))
        if policy is None:
            # The address-space cap of every worker must hold the default tenant limit on top
            # of what a warmed worker maps (a limit over the cap fails the load, naming both).
            memory_mb = self.default_limits.memory_mb or 0
            policy = ConfinementPolicy(
                memory_bytes=max(
                    ConfinementPolicy.memory_bytes, (memory_mb + _WORKER_BASE_MB) << 20
                ),
                unconfined=unconfined,
            )
        elif unconfined and not policy.unconfined:
            policy = dataclasses.replace(policy, unconfined=True)
        if not policy.unconfined and not self.report.safe_for_untrusted():
            raise SandboxUnavailableError(
                "refusing to load untrusted code: this machine cannot confine it "
                f"({self.report.summary()}); pass unconfined=True to run trusted code anyway"
            )
        self.policy = policy
        self.idle_timeout = idle_timeout
        self.pool = WorkerPool(
            policy, warm=warm, zygote_max_forks=zygote_max_forks, start_timeout=start_timeout
        )
        self._cache = _Cache(max_workers)
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False
        self._strikes: dict[str, int] = {}
        self.logs = TenantLogs()
        """What each tenant wrote outside workflow runs (imports, fetch, RPC), a ring each."""

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the fork server and warm the pool (otherwise done on first use)."""
        await self.pool.start()
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.ensure_future(self._sweep())

    async def close(self) -> None:
        """Stop every worker and the fork server."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.pool.close()

    async def __aenter__(self) -> Loader:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the Worker Loader API ---------------------------------------------------------------

    def get(self, id: str, get_code: GetCode) -> WorkerStub:
        """A stub for the worker ``id``, at once. ``get_code`` (sync or async) is called when
        the worker must be loaded: first use, or after it was evicted or died."""
        return WorkerStub(self, self._cache.get(id, get_code))

    def load(self, code: Any) -> WorkerStub:
        """A stub for a fresh worker running ``code``; never cached or shared."""
        return WorkerStub(self, self._cache.anonymous(code))

    # -- backend ---------------------------------------------------------------------------------

    async def _worker_for(self, entry: _Entry) -> WorkerProcess:
        if self._closed:
            raise RuntimeError("the loader is closed")
        entry = self._cache.current(entry)
        worker = entry.worker
        if worker is not None:
            if worker.usable:
                self._cache.touch(entry)
                return worker
            if not worker.busy:
                worker.shutdown()
            entry.worker = None
        if entry.loading is None or entry.loading.done():
            entry.loading = asyncio.ensure_future(self._load(entry))
        result: WorkerProcess = await asyncio.shield(entry.loading)
        return result

    async def _load(self, entry: _Entry) -> WorkerProcess:
        code = await entry.resolve_code()
        limits = _merge(self.default_limits, code.limits)
        if self._sweeper is None:
            await self.start()
        worker = await self.pool.acquire()
        worker.output = self.logs.ring(entry.key)
        try:
            await worker.load(entry.key, code, limits)
        except BaseException:
            worker.shutdown()
            raise
        entry.worker = worker
        self._cache.touch(entry)
        self._evict()
        return worker

    def _evict(self) -> None:
        live = self._cache.live
        if len(live) <= self._cache.max_workers:
            return
        for entry in list(live):
            if len(live) <= self._cache.max_workers:
                return
            worker = entry.worker
            if worker is None or not worker.busy:
                self._retire(entry)

    def _retire(self, entry: _Entry) -> None:
        if entry.worker is not None:
            entry.worker.shutdown()
            entry.worker = None
        self._cache.drop(entry)

    async def _sweep(self) -> None:
        interval = max(0.05, min(self.idle_timeout / 4, 30.0))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for entry in list(self._cache.live):
                worker = entry.worker
                if worker is None or worker.dead:
                    self._cache.drop(entry)
                elif not worker.busy and (
                    worker.retired or now - worker.last_used > self.idle_timeout
                ):
                    self._retire(entry)

    async def call_entrypoint(
        self,
        entry: _Entry,
        name: str | None,
        method: str,
        args: list[Any],
        kwargs: dict[str, Any],
        props: dict[str, Any] | None,
    ) -> Any:
        """Call ``method`` of entrypoint ``name`` in the entry's worker (a fresh one if a step
        that does not await holds that worker's loop: see WorkerProcess.responsive)."""
        worker = await self._worker_for(entry)
        if worker.stepping and not await worker.responsive():
            worker = await self._worker_for(entry)
        try:
            return await worker.call(name, method, args, kwargs, props)
        except TenantWorkerError:
            if worker.dead or worker.retired:
                self._cache.live.pop(self._cache.current(entry), None)
            raise

    async def run_entrypoint(self, entry: _Entry, name: str | None, event: Any, step: Any) -> Any:
        """Run a workflow entrypoint in the entry's worker, bridging the host's step."""
        if not isinstance(step, WorkflowStep):
            raise TypeError(
                "run(event, step): step must be the step object the engine passed to run(), "
                f"got {type(step).__name__}"
            )
        instance = event.get("instanceId") if isinstance(event, Mapping) else None
        key = f"{entry.key}\x00{instance if instance is not None else id(step)}"
        details = step.run_details()
        try:
            worker = await self._worker_for(entry)
        except TenantWorkerError as exc:
            # No worker would start (or load) for the run: as a death before any step, it is
            # replayed soon, and fails with the reason only if that keeps happening.
            now = details.clock.now()
            raise death_outside_steps(self._strikes, key, exc, now) from None
        bridge = RunBridge(worker, details, strikes=self._strikes, key=key)
        return await bridge.run(name, event)

    # -- introspection ---------------------------------------------------------------------------

    async def memory(self) -> dict[str, int | None]:
        """Private memory (bytes) of each live tenant worker, by loader id."""
        out: dict[str, int | None] = {}
        for entry in list(self._cache.live):
            if entry.worker is not None and not entry.worker.dead:
                try:
                    out[entry.key] = await entry.worker.private_bytes()
                except (TimeoutError, TenantWorkerError):
                    out[entry.key] = None
        return out

    def stats(self) -> dict[str, Any]:
        """Counts for status pages, with the isolation report."""
        return {
            **self.pool.stats(),
            "tenants": len(self._cache.live),
            "report": self.report.as_dict(),
        }

    def __repr__(self) -> str:
        return f"<Loader tenants={len(self._cache.live)} {self.report.level()}>"


class InProcessLoader:
    """The Worker Loader for trusted code: the same interface, tenant code in this process.

    Modules are still loaded from source strings with the ``workers`` alias, bindings are
    passed as they are, and ``run`` hands the engine's step straight to the tenant. No limits
    are enforced and nothing is isolated: use it for tests and for code you wrote.
    """

    def __init__(self, *, max_workers: int = 128) -> None:
        self._cache = _Cache(max_workers)
        self.logs = TenantLogs()
        """What each tenant wrote outside workflow runs (imports, fetch, RPC), a ring each."""

    async def start(self) -> None:
        """Nothing to start (for symmetry with :class:`Loader`)."""

    async def close(self) -> None:
        """Forget every loaded worker."""
        self._cache.live.clear()
        self._cache.entries.clear()

    async def __aenter__(self) -> InProcessLoader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def get(self, id: str, get_code: GetCode) -> WorkerStub:
        """A stub for the worker ``id``; ``get_code`` runs when it must be loaded."""
        return WorkerStub(self, self._cache.get(id, get_code))

    def load(self, code: Any) -> WorkerStub:
        """A stub for fresh, uncached code."""
        return WorkerStub(self, self._cache.anonymous(code))

    async def _runtime_for(self, entry: _Entry) -> TenantRuntime:
        entry = self._cache.current(entry)
        if entry.runtime is not None:
            self._cache.touch(entry)
            return entry.runtime
        if entry.loading is None or entry.loading.done():
            entry.loading = asyncio.ensure_future(self._load(entry))
        runtime: TenantRuntime = await asyncio.shield(entry.loading)
        return runtime

    async def _load(self, entry: _Entry) -> TenantRuntime:
        code = await entry.resolve_code()
        outbound: Outbound | None
        binding = code.global_outbound
        if binding is None:
            outbound = None
        elif binding is INHERIT:
            outbound = fetch_via_host
        else:

            async def outbound(request: Request) -> Response:
                response = await _maybe(binding.fetch(request))
                if not isinstance(response, Response):
                    raise TypeError(
                        f"global_outbound.fetch() returned {type(response).__name__}, "
                        "not a Response"
                    )
                return response

        runtime = TenantRuntime(
            entry.key, code.sources().values(), code.main_module, code.env, outbound
        )
        install_in_process()
        token = current_sink.set(RingSink(self.logs.ring(entry.key)))
        try:
            runtime.main  # noqa: B018 - import errors belong to the load
        finally:
            current_sink.reset(token)
        entry.runtime = runtime
        self._cache.touch(entry)
        while len(self._cache.live) > self._cache.max_workers:
            oldest = next(iter(self._cache.live))
            oldest.runtime = None
            self._cache.drop(oldest)
        return runtime

    async def call_entrypoint(
        self,
        entry: _Entry,
        name: str | None,
        method: str,
        args: list[Any],
        kwargs: dict[str, Any],
        props: dict[str, Any] | None,
    ) -> Any:
        """Call ``method`` of entrypoint ``name``, in process."""
        runtime = await self._runtime_for(entry)
        install_in_process()
        token = current_sink.set(RingSink(self.logs.ring(entry.key)))
        try:
            return await runtime.call(name, method, args, kwargs, props)
        finally:
            current_sink.reset(token)

    async def run_entrypoint(self, entry: _Entry, name: str | None, event: Any, step: Any) -> Any:
        """``run(event, step)`` of a workflow entrypoint, with the host's step as it is; what
        it prints or logs goes to the run's log (see :mod:`.capture`)."""
        runtime = await self._runtime_for(entry)
        if not isinstance(step, WorkflowStep):
            return await runtime.new_entrypoint(name).run(event, step)
        details = step.run_details()
        limits = details.limits
        book = LogBook(
            limits.log_bytes_per_attempt,
            limits.log_bytes_per_instance,
            limits.log_bytes_per_instance,
            relay=True,
        )
        sink = RunSink(book, replaying=lambda: step.replaying, forward=details.channel.log)
        install_in_process()
        step.capture_logs()
        token = current_sink.set(sink)
        try:
            return await runtime.new_entrypoint(name).run(event, step)
        finally:
            sink.close()
            current_sink.reset(token)

    def __repr__(self) -> str:
        return f"<InProcessLoader tenants={len(self._cache.live)}>"
