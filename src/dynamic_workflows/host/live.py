"""The running project, swapped on reload without dropping requests.

Requests enter through :meth:`LiveProject.use`; a reload waits for the ones in flight (up to
``drain_timeout``), stops the old project (its live runs go back to the queue), starts the new
one and lets the held requests through. A project that fails to load leaves the old one serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from .project import Project

__all__ = ["LiveProject", "watch_files"]

log = logging.getLogger("dynamic_workflows.host")


class LiveProject:
    """Holds the current :class:`Project`; ``factory`` builds a fresh one (for reloads)."""

    def __init__(self, factory: Callable[[], Project], *, drain_timeout: float = 10.0) -> None:
        self._factory = factory
        self._project: Project | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._open = asyncio.Event()
        self._open.set()
        self._lock = asyncio.Lock()
        self.drain_timeout = drain_timeout
        self.reloads = 0

    @property
    def project(self) -> Project:
        if self._project is None:
            raise RuntimeError("the project is not started")
        return self._project

    async def start(self, project: Project | None = None) -> Project:
        """Start ``project`` (or a fresh one from the factory)."""
        self._project = project or self._factory()
        await self._project.start()
        return self._project

    async def stop(self) -> None:
        async with self._lock:
            if self._project is not None:
                await self._project.stop()
                self._project = None

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[Project]:
        """The current project, held for the duration of one request."""
        project = await self.acquire()
        try:
            yield project
        finally:
            self.release()

    async def acquire(self) -> Project:
        """The current project, held until :meth:`release` (what :meth:`use` does, without a
        context manager: every request of the dispatcher goes through here)."""
        if not self._open.is_set():
            await self._open.wait()
        project = self.project
        self._in_flight += 1
        self._idle.clear()
        return project

    def release(self) -> None:
        """Let go of a project taken with :meth:`acquire`."""
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    async def reload(self) -> bool:
        """Replace the project with a fresh one from the files; False if the new one failed to
        load (the old one keeps serving)."""
        async with self._lock:
            try:
                fresh = self._factory()
            except Exception as exc:
                log.error("reload failed, still serving the previous version:\n%s", exc)
                return False
            self._open.clear()
            try:
                try:
                    await asyncio.wait_for(self._idle.wait(), self.drain_timeout)
                except TimeoutError:
                    log.warning(
                        "reload: %d request(s) still running after %.0f s; reloading anyway",
                        self._in_flight,
                        self.drain_timeout,
                    )
                if self._project is not None:
                    await self._project.stop()
                self._project = fresh
                await fresh.start()
            finally:
                self._open.set()
            self.reloads += 1
            return True


def _snapshot(paths: list[Path], folder: Path) -> dict[Path, float]:
    out: dict[Path, float] = {}
    for path in paths:
        with contextlib.suppress(OSError):
            out[path] = path.stat().st_mtime
    for path in folder.rglob("*.py"):
        if any(
            part.startswith(".") or part == "__pycache__"
            for part in path.parts[len(folder.parts) :]
        ):
            continue
        with contextlib.suppress(OSError):
            out[path] = path.stat().st_mtime
    return out


async def watch_files(
    live: LiveProject, config_path: Path, code_folder: Path, *, interval: float = 1.0
) -> None:
    """Reload ``live`` whenever the configuration or a .py file under ``code_folder`` changes."""
    before = await asyncio.to_thread(_snapshot, [config_path], code_folder)
    while True:
        await asyncio.sleep(interval)
        now = await asyncio.to_thread(_snapshot, [config_path], code_folder)
        if now != before:
            changed = sorted(str(p) for p in set(now) | set(before) if now.get(p) != before.get(p))
            log.info(
                "reloading: %s changed",
                ", ".join(changed[:3]) + (" ..." if len(changed) > 3 else ""),
            )
            before = now
            if await live.reload():
                log.info("reloaded")
