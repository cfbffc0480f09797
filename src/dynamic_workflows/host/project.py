"""A project brought to life: its dispatcher module, its engine, its Worker Loaders, its env.

::

    ProjectConfig --Project(config, storage_url)--> main module (sources.ProjectModules)
        env = vars + {LOADER: Loader()} + {WORKFLOWS: engine.register(name, class_name)}
        fetch(request)  ->  Default(ctx, env).fetch(request)      (inside bind_env(env))
        engine runs     ->  <class_name>(ctx, env).run(event, step)   (inside bind_env(env))

Every call into dispatcher code runs inside :func:`~dynamic_workflows.dispatch.bind_env` (so
``wrap_workflow_binding`` finds the real binding) and with the project's shared HTTP client
bound for ``workers.fetch``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import traceback
import types
from typing import TYPE_CHECKING, Any, Literal

from ..core.ids import uuid4_str
from ..dispatch import DynamicWorkflowEntrypoint, bind_env
from ..engine import Engine
from ..errors import ProjectLoadError
from ..storage import open_storage
from ..workers import Env, ExecutionContext, Request, Response, WorkerEntrypoint
from ..workers.hosting import use_http_client
from .config import ProjectConfig, display_path
from .sources import ProjectModules

if TYPE_CHECKING:
    import httpx

__all__ = ["LoaderMode", "Project", "ProjectLoadError"]

log = logging.getLogger("dynamic_workflows.host")

LoaderMode = Literal["sandbox", "unconfined", "in-process"]
"""How ``worker_loaders`` run tenant code: confined worker processes (the default), worker
processes without confinement (``--unconfined``, for machines that cannot confine), or in the
host process itself (``--trusted``)."""

DRAIN_TIMEOUT = 10.0
"""How long a stop waits for ``ctx.wait_until`` work of finished requests."""


class _Bound:
    """``bind_env(env)`` and ``use_http_client(http)`` in one context manager."""

    __slots__ = ("_env", "_http")

    def __init__(self, env: Any, http: httpx.AsyncClient | None) -> None:
        self._env = bind_env(env)
        self._http = use_http_client(http)

    def __enter__(self) -> None:
        self._env.__enter__()
        self._http.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._http.__exit__(*exc)
        self._env.__exit__(*exc)


class _HostRun:
    """A workflow entrypoint of the dispatcher, run inside its env's bindings."""

    __slots__ = ("_entry", "_project")

    def __init__(self, project: Project, entry: Any) -> None:
        self._project = project
        self._entry = entry

    async def run(self, event: Any, step: Any) -> Any:
        with self._project.bound():
            return await self._entry.run(event, step)


def _user_traceback(exc: BaseException, root: str) -> str:
    """The traceback of ``exc`` restricted to the frames in the project's files."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(root)]
    lines = traceback.format_list(frames) if frames else []
    return "".join(lines) + "".join(traceback.format_exception_only(type(exc), exc))


class Project:
    """One project, loaded (not started): see the module docstring."""

    def __init__(
        self,
        config: ProjectConfig,
        *,
        storage_url: str,
        loader_mode: LoaderMode = "sandbox",
        engine: Engine | None = None,
    ) -> None:
        self.config = config
        self.storage_url = storage_url
        self.loader_mode = loader_mode
        self.modules = ProjectModules(config.main.parent)
        try:
            main = self._import_main()
            self.default_class = self._default_class(main)
            classes = {
                wf.name: self._workflow_class(main, i) for i, wf in enumerate(config.workflows)
            }
            self.workflow_classes: dict[str, type] = classes
            """Each workflow's class (``class_name`` of the config), by workflow name."""
            self.engine = engine or Engine(
                open_storage(storage_url),
                id_factory=uuid4_str,
                tenant_defaults=config.tenant_defaults,
                fair=config.fair,
            )
            self.loaders, self.isolation = self._make_loaders()
        except BaseException:
            self.modules.close()
            raise
        values: dict[str, Any] = dict(config.vars)
        values.update(self.loaders)
        if config.retention is not None:
            self.engine.retention = config.retention
        for wf in config.workflows:
            values[wf.binding] = self.engine.register(
                wf.name,
                self._factory(classes[wf.name]),
                concurrency=wf.concurrency,
                schedules=wf.schedules,
                retention=wf.retention,
            )
        self.env = Env(values)
        for wf in config.workflows:
            self.engine.set_env(wf.name, self.env)
        self.http: httpx.AsyncClient | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._started = False

    # -- loading ------------------------------------------------------------------------------

    def _import_main(self) -> types.ModuleType:
        config = self.config
        try:
            return self.modules.load(config.main.stem)
        except Exception as exc:
            raise ProjectLoadError(
                f"{display_path(config.main)} (main in {display_path(config.path)}) failed to "
                f"import:\n{_user_traceback(exc, str(config.main.parent))}".rstrip()
            ) from None

    def _default_class(self, main: types.ModuleType) -> type[WorkerEntrypoint]:
        cls = main.__dict__.get("Default")
        if not (isinstance(cls, type) and issubclass(cls, WorkerEntrypoint)):
            raise ProjectLoadError(
                f"{display_path(self.config.main)} (main in {display_path(self.config.path)}) "
                "must export `class Default(WorkerEntrypoint)` with a fetch() method, which "
                "receives the requests dwf serves"
            )
        return cls

    def _workflow_class(self, main: types.ModuleType, index: int) -> type:
        wf = self.config.workflows[index]
        cls = main.__dict__.get(wf.class_name)
        if cls is None:
            raise ProjectLoadError(
                f"{display_path(self.config.path)}: workflows[{index}].class_name: "
                f"{display_path(self.config.main)} exports no {wf.class_name!r}"
            )
        if not (isinstance(cls, type) and callable(getattr(cls, "run", None))):
            raise ProjectLoadError(
                f"{display_path(self.config.path)}: workflows[{index}].class_name: "
                f"{wf.class_name!r} in {display_path(self.config.main)} is not a workflow class "
                "(a WorkflowEntrypoint with async run(self, event, step))"
            )
        if wf.schedules and issubclass(cls, DynamicWorkflowEntrypoint):
            # A tick's instance carries no dispatch envelope: every one would fail at once with
            # MissingDispatcherMetadataError (as on Cloudflare). Said now, not every tick.
            raise ProjectLoadError(
                f"{display_path(self.config.path)}: workflows[{index}].schedules: "
                f"{wf.class_name!r} is a dynamic workflow entrypoint "
                "(create_dynamic_workflow_entrypoint), and a cron tick's instance names no "
                "tenant to run; schedule a workflow class of the dispatcher's own, which may "
                "run tenant code through its Worker Loader"
            )
        return cls

    def _factory(self, cls: type) -> Any:
        def factory(ctx: ExecutionContext, env: Any) -> _HostRun:
            return _HostRun(self, cls(ctx, env))

        return factory

    def _make_loaders(self) -> tuple[dict[str, Any], str]:
        bindings = [lb.binding for lb in self.config.worker_loaders]
        if not bindings:
            return {}, "no worker_loaders configured"
        from ..sandbox.loader import InProcessLoader, Loader

        if self.loader_mode == "in-process":
            loaders: dict[str, Any] = {b: InProcessLoader() for b in bindings}
            return loaders, (
                "sandbox: off (--trusted): tenant code runs inside the host process, "
                "unconfined; use only for code you trust"
            )
        from ..sandbox.confine import probe

        report = probe()
        # Loader() logs the same summary; this module logs it once for all bindings.
        sandbox_log = logging.getLogger("dynamic_workflows.sandbox")
        level = sandbox_log.level
        sandbox_log.setLevel(logging.WARNING)
        try:
            unconfined = self.loader_mode == "unconfined"
            loaders = {b: Loader(unconfined=unconfined, report=report) for b in bindings}
        finally:
            sandbox_log.setLevel(level)
        summary = report.summary()
        if self.loader_mode == "unconfined":
            summary += " (--unconfined: worker processes are NOT confined)"
        return loaders, summary

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the loaders and the engine (which resumes what a stop or crash interrupted)."""
        import httpx

        if self._started:
            return
        self.http = httpx.AsyncClient(timeout=30.0, follow_redirects=False)
        for loader in self.loaders.values():
            await loader.start()
        await self.engine.start()
        self._started = True

    async def stop(self) -> None:
        """Let ``wait_until`` work finish (for a while), stop the engine (live runs go back to
        the queue), then the loaders."""
        if self._background:
            _, pending = await asyncio.wait(list(self._background), timeout=DRAIN_TIMEOUT)
            for task in pending:
                task.cancel()
        if self._started:
            await self.engine.stop()
        for loader in self.loaders.values():
            with contextlib.suppress(Exception):
                await loader.close()
        if self.http is not None:
            await self.http.aclose()
            self.http = None
        self.modules.close()
        self._started = False

    async def __aenter__(self) -> Project:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- calls into dispatcher code --------------------------------------------------------------

    def bound(self) -> _Bound:
        """The context every call into dispatcher code runs in."""
        return _Bound(self.env, self.http)

    async def fetch(self, request: Request) -> Response:
        """``Default(ctx, env).fetch(request)``; exceptions propagate to the caller."""
        ctx = ExecutionContext()
        entry = self.default_class(ctx, self.env)
        handler = getattr(entry, "fetch", None)
        if not callable(handler):
            raise TypeError("Default has no fetch(self, request) method")
        with _Bound(self.env, self.http):
            result = handler(request)
            if inspect.isawaitable(result):
                result = await result
            if ctx.pending:
                task = asyncio.ensure_future(ctx.drain())
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        if not isinstance(result, Response):
            raise TypeError(f"Default.fetch() returned {type(result).__name__}, not a Response")
        return result

    def __repr__(self) -> str:
        return f"<Project {self.config.name} {self.storage_url}>"
