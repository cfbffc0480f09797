"""A sustained mixed load (30 s here; minutes in ``python -m tests.chaos.soak``): host RSS
and descriptors flat after the warm-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from .scenarios import python_heap, soak

pytestmark = pytest.mark.chaos


async def test_a_short_soak_keeps_memory_and_descriptors_flat(tmp_path: Path) -> None:
    figures = await soak(tmp_path, seconds=30, warmup=10)
    assert figures["instances"] >= 100


async def test_the_python_heap_stays_flat_while_instances_come_and_go(tmp_path: Path) -> None:
    figures = await python_heap(tmp_path, instances=3000, warm=1000)
    assert figures["Python heap growth (KiB, tracemalloc)"] < 2048
