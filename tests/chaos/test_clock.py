"""The wall clock jumping forward and back: no timer fires twice, none is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from .clockjumps import clock_jumps

pytestmark = pytest.mark.chaos


@pytest.mark.parametrize("warm_horizon", [0.0, 5.0], ids=["hibernating", "parked"])
async def test_clock_jumps_on_sqlite(tmp_path: Path, warm_horizon: float) -> None:
    figures = await clock_jumps(tmp_path, instances=30, jumps=200, warm_horizon=warm_horizon)
    assert figures["jumps back"] > 20


async def test_clock_jumps_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    figures = await clock_jumps(tmp_path, instances=30, jumps=200, storage=pg_url)
    assert figures["jumps back"] > 20
