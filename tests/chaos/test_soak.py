"""A sustained mixed load (30 s here; minutes in ``python -m tests.chaos.soak``): host RSS
and descriptors flat after the warm-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from .scenarios import soak

pytestmark = pytest.mark.chaos


async def test_a_short_soak_keeps_memory_and_descriptors_flat(tmp_path: Path) -> None:
    figures = await soak(tmp_path, seconds=30, warmup=10)
    assert figures["instances"] >= 100
