"""Process faults: the host SIGKILLed at random moments under the mixed load and started again
(``dwf dev`` on SQLite; ``dwf serve`` on PostgreSQL, whose connections are also killed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .scenarios import process_kills

pytestmark = pytest.mark.chaos


async def test_dwf_dev_sigkilled_under_load_loses_nothing_and_reruns_nothing(
    tmp_path: Path,
) -> None:
    figures = await process_kills(tmp_path, kills=3)
    assert figures["kills"] == 3
    assert figures["instances"] >= 20


async def test_dwf_serve_on_postgresql_sigkilled_and_disconnected_under_load(
    tmp_path: Path, pg_url: str
) -> None:
    figures = await process_kills(
        tmp_path, kills=2, connection_kills=2, db=f"{pg_url}&lease_seconds=2"
    )
    assert figures["connections terminated"] > 0
    assert figures["instances"] >= 20
