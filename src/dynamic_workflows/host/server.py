"""Serving a project with uvicorn: the sockets, the signals, and the order of a clean stop.

One event loop serves every listener (``dwf dev``: one; ``dwf serve``: public + admin) over one
:class:`~.live.LiveProject`. On SIGINT or SIGTERM: every listener stops accepting and lets the
requests in flight finish (up to ``graceful_timeout``), then the project stops: ``engine.stop()``
hands live runs back to the queue (their uncommitted steps run again on the next start), and the
Worker Loaders shut their worker processes down. A second signal skips the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from .. import tracing
from ..errors import ListenError
from ..gcpolicy import IdleCollector, tune_gc
from .config import load_config
from .live import LiveProject, watch_files
from .logformat import JSONFormatter
from .metrics import DEFAULT_TOP_TENANTS, HostMetrics
from .project import LoaderMode, Project

__all__ = ["ListenError", "Listener", "bind", "run_listeners", "serve_project", "setup_logging"]

log = logging.getLogger("dynamic_workflows.host")


@dataclass
class Listener:
    """One address and the app it serves."""

    name: str
    app: ASGIApp
    ip: str
    port: int
    access_log: bool = False
    sock: socket.socket | None = None

    @property
    def url(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        port = self.sock.getsockname()[1] if self.sock is not None else self.port
        return f"http://{host}:{port}"


def bind(listener: Listener) -> None:
    """Bind the listener's socket now, so a busy port is a clear error before anything starts."""
    try:
        infos = socket.getaddrinfo(
            listener.ip, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {listener.ip}:{listener.port}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ListenError(
            f"cannot listen on {listener.ip}:{listener.port} ({listener.name}): "
            f"{exc.strerror or exc}"
        ) from None
    sock.set_inheritable(False)
    listener.sock = sock


class _Server(uvicorn.Server):
    """A uvicorn server whose signals are handled by :func:`run_listeners` (for all of them)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_listeners(
    live: LiveProject,
    listeners: list[Listener],
    *,
    graceful_timeout: int = 30,
    watch: tuple[Path, Path] | None = None,
    ready: Callable[[], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM, then stop cleanly (see the module docstring). The project
    must be started already; it is stopped on the way out, whatever happens."""
    servers = []
    for listener in listeners:
        if listener.sock is None:
            bind(listener)
        config = uvicorn.Config(
            listener.app,
            lifespan="off",
            log_config=None,
            access_log=listener.access_log,
            timeout_graceful_shutdown=graceful_timeout,
            server_header=False,
        )
        servers.append(_Server(config))

    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        name = signal.Signals(signum).name
        if signals == 1:
            log.info("%s: finishing requests in flight, then stopping", name)
        else:
            log.warning("%s again: stopping now", name)
        for server in servers:
            server.should_exit = True
            if signals > 1:
                server.force_exit = True

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    watcher = asyncio.ensure_future(watch_files(live, watch[0], watch[1])) if watch else None
    try:
        tasks = [
            asyncio.ensure_future(server.serve(sockets=[listener.sock]))
            for server, listener in zip(servers, listeners, strict=True)
            if listener.sock is not None
        ]
        while not all(server.started for server in servers):
            if any(task.done() for task in tasks):
                break
            await asyncio.sleep(0.01)
        else:
            if ready is not None:
                ready()
        # Until a signal, or until one listener fails: then the others stop too.
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for server in servers:
            server.should_exit = True
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        log.info("stopping the engine: live runs go back to the queue")
        await live.stop()
        for listener in listeners:
            if listener.sock is not None:
                listener.sock.close()
        log.info("stopped", extra={"event": "node.stop"})


class _QuietExplorer(logging.Filter):
    """Keeps the dashboard's polling (every 1.5 s) out of the access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (
            isinstance(args, tuple)
            and len(args) >= 3
            and str(args[2]).startswith(("/cdn-cgi/local/", "/cdn-cgi/explorer"))
            and record.levelno <= logging.INFO
        )


def setup_logging(verbose: bool, log_format: str = "text") -> None:
    """Log lines on stderr: timestamped text, or one JSON object each (``log_format="json"``,
    see :mod:`.logformat`); the explorer's polling left out unless ``verbose``."""
    level = logging.DEBUG if verbose else logging.INFO
    if log_format == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JSONFormatter())
        logging.basicConfig(level=level, handlers=[handler])
    else:
        logging.basicConfig(
            level=level, format="%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S"
        )
    if not verbose:
        logging.getLogger("uvicorn.access").addFilter(_QuietExplorer())


def serve_project(
    directory: Path,
    storage_url: str | None,
    mode: LoaderMode,
    listeners: Callable[[LiveProject, HostMetrics], list[Listener]],
    *,
    reload: bool,
    banner: Callable[[Project, list[Listener]], None],
    metrics_tenants: int = DEFAULT_TOP_TENANTS,
) -> None:
    """Load the project in ``directory`` (state in ``DIR/.dwf/state.sqlite3`` unless
    ``storage_url``), bind the listeners, start, serve until a signal, stop. Errors (config,
    project, sandbox, busy port) propagate before anything is served. ``metrics_tenants``: how
    many tenants get ``/metrics`` series of their own (the rest are ``other``)."""

    def build() -> Project:
        config = load_config(directory)
        url = storage_url or str(config.root / ".dwf" / "state.sqlite3")
        return Project(config, storage_url=url, loader_mode=mode)

    async def main() -> None:
        tracing.enable_from_environment()
        live = LiveProject(build)
        metrics = HostMetrics(live, top_tenants=metrics_tenants)
        project = build()
        for name in project.config.unused:
            log.info("%s: %r is not used by dwf", project.config.path.name, name)
        chosen = listeners(live, metrics)
        try:
            for listener in chosen:
                bind(listener)
        except BaseException:
            await project.stop()
            for listener in chosen:
                if listener.sock is not None:
                    listener.sock.close()
            raise
        await live.start(project)
        tune_gc()
        collector = IdleCollector(quiet=lambda: live.project.engine.quiet())
        collector.start()
        watch = (project.config.path, project.config.main.parent) if reload else None
        try:
            await run_listeners(live, chosen, watch=watch, ready=lambda: banner(project, chosen))
        finally:
            collector.stop()

    _run(main())


def _run(coro: Any) -> None:
    # uvloop when available: it is the faster loop, and everything here (uvicorn, the sandbox's
    # worker connections) works on it.
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(coro)
    else:
        uvloop.run(coro)
