"""Storage faults: the disk full and back, the SQLite database locked by another process."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from dynamic_workflows import Engine, MemoryStorage
from dynamic_workflows.errors import StorageError
from dynamic_workflows.workers import WorkflowEntrypoint

from .scenarios import Tmpfs, database_locked, disk_full

pytestmark = pytest.mark.chaos


async def test_a_full_disk_refuses_creates_cleanly_and_everything_resumes(
    tmp_path: Path,
) -> None:
    why = Tmpfs.available()
    if why is not None:
        pytest.skip(why)
    figures = await disk_full(tmp_path, rounds=1, full_seconds=2)
    assert "full" in figures["error (admin API)"]


async def test_a_database_locked_by_another_process_is_waited_for(tmp_path: Path) -> None:
    figures = await database_locked(tmp_path, holds=[3])
    assert figures["failed requests"] == 0


class FullDisk(MemoryStorage):
    """A storage whose deletes fail as SQLite's do on a full disk."""

    async def delete_instance(self, pk: int) -> bool:
        raise StorageError("SQLite: database or disk is full")


class Napping(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        @step.do("before")
        async def before() -> int:
            return 1

        await before()
        await step.sleep("nap", "300 milliseconds")

        @step.do("after")
        async def after() -> int:
            return 2

        return await before() + await after()


async def test_a_delete_that_fails_leaves_the_run_going() -> None:
    """The long form's disk-full rounds left an instance `running` for good: its delete (from
    the admin API) failed on the full disk after the engine had already stopped its live run,
    whose row then read `running` with no run behind it and nothing in the process to claim it
    again. The delete now comes first, the run is stopped only once it is done."""
    async with Engine(FullDisk()) as engine:
        binding = engine.register("wf", Napping)
        instance = await binding.create(id="kept")
        deadline = time.monotonic() + 5
        while engine.live_runs() == 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        row = await engine.storage.get_instance("wf", "", "kept")
        assert row is not None
        with pytest.raises(StorageError):
            await engine.delete(row)
        deadline = time.monotonic() + 10
        while (status := await instance.status())["status"] not in ("complete", "errored"):
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.01)
    assert status["status"] == "complete"
    assert status["output"] == 3
