"""Storage faults: the disk full and back, the SQLite database locked by another process."""

from __future__ import annotations

from pathlib import Path

import pytest

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
