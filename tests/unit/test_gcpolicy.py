"""The garbage-collection policy: the interpreter's backstop threshold, and the idle collector's
full and young collections."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Iterator

import pytest

from dynamic_workflows.gcpolicy import GC_THRESHOLD, IdleCollector, tune_gc

PERIOD = 0.01
NO_YOUNG = 10**9  # young_batch that is never owed: the full-collection tests see only those


@pytest.fixture(autouse=True)
def gc_state() -> Iterator[None]:
    """Automatic collection off (so only the test and the collector move ``gc.get_count()``),
    and the collector's thresholds, state and freeze put back afterwards."""
    enabled = gc.isenabled()
    threshold = gc.get_threshold()
    frozen = gc.get_freeze_count()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() > frozen:
            gc.unfreeze()
        gc.set_threshold(*threshold)
        if enabled:
            gc.enable()


def owe(promotions: int) -> None:
    """Make ``gc.get_count()[2]`` exactly ``promotions``: a full collection resets it, and every
    middle-generation collection adds one."""
    gc.collect()
    for _ in range(promotions):
        gc.collect(1)
    assert gc.get_count()[2] == promotions


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(PERIOD)


async def busy_for(seconds: float) -> None:
    """Burn CPU in the loop's own thread, yielding every couple of milliseconds so that the
    collector's checks do run (and find the process busy)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        spin = time.process_time() + 0.002
        while time.process_time() < spin:
            pass
        await asyncio.sleep(0)


async def test_collects_when_idle_and_owed() -> None:
    owe(3)
    collector = IdleCollector(period=PERIOD, min_promotions=3, young_batch=NO_YOUNG)
    collector.start()
    try:
        await wait_until(lambda: collector.collections > 0)
        assert gc.get_count()[2] == 0
        # Not owed any more: idle periods go by without another collection.
        await asyncio.sleep(10 * PERIOD)
        assert collector.collections == 1
        # Owed again: collected again.
        owe(3)
        await wait_until(lambda: collector.collections > 1)
        assert collector.collections == 2
        assert gc.get_count()[2] == 0
    finally:
        collector.stop()


async def test_does_not_collect_below_the_bar() -> None:
    owe(2)
    collector = IdleCollector(period=PERIOD, min_promotions=3, young_batch=NO_YOUNG)
    collector.start()
    try:
        await asyncio.sleep(15 * PERIOD)
        assert collector.collections == 0
        assert gc.get_count()[2] == 2
        gc.collect(1)  # now at the bar
        await wait_until(lambda: collector.collections > 0)
        assert gc.get_count()[2] == 0
    finally:
        collector.stop()


async def test_does_not_collect_while_not_quiet() -> None:
    quiet = False
    asked = 0

    def is_quiet() -> bool:
        nonlocal asked
        asked += 1
        return quiet

    owe(5)
    collector = IdleCollector(quiet=is_quiet, period=PERIOD, min_promotions=3, young_batch=NO_YOUNG)
    collector.start()
    try:
        await wait_until(lambda: asked >= 5)
        assert collector.collections == 0
        assert gc.get_count()[2] == 5
        quiet = True
        await wait_until(lambda: collector.collections > 0)
        assert gc.get_count()[2] == 0
    finally:
        collector.stop()


async def test_does_not_collect_while_busy() -> None:
    period = 2 * PERIOD
    owe(5)
    collector = IdleCollector(period=period, min_promotions=3, young_batch=NO_YOUNG)
    checks = 0
    check = collector._check

    def counted_check() -> None:
        nonlocal checks
        checks += 1
        check()

    collector._check = counted_check  # type: ignore[method-assign]
    collector.start()
    try:
        await busy_for(15 * period)  # across many periods
        assert checks >= 5
        assert collector.collections == 0
        assert gc.get_count()[2] == 5
        # Idle again: the owed collection is made.
        await wait_until(lambda: collector.collections > 0)
        assert gc.get_count()[2] == 0
    finally:
        collector.stop()


async def test_stop_stops_checking() -> None:
    owe(0)
    collector = IdleCollector(period=PERIOD, min_promotions=1, young_batch=NO_YOUNG)
    collector.start()
    await asyncio.sleep(5 * PERIOD)  # some checks ran (nothing owed) and rescheduled
    collector.stop()
    collector.stop()  # idempotent
    owe(3)
    await asyncio.sleep(15 * PERIOD)
    assert collector.collections == 0
    assert gc.get_count()[2] == 3
    # And it can start again.
    collector.start()
    try:
        await wait_until(lambda: collector.collections > 0)
        assert gc.get_count()[2] == 0
    finally:
        collector.stop()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"period": 0},
        {"period": -0.5},
        {"busy_fraction": 0},
        {"busy_fraction": 1},
        {"busy_fraction": -0.1},
        {"busy_fraction": 1.5},
        {"min_promotions": 0},
        {"min_promotions": -1},
        {"young_batch": 0},
        {"max_busy": 0},
        {"max_busy": -1},
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="period and max_busy must be positive"):
        IdleCollector(**kwargs)  # type: ignore[arg-type]


def test_good_arguments_are_kept() -> None:
    def quiet() -> bool:
        return True

    collector = IdleCollector(
        quiet=quiet, period=0.5, busy_fraction=0.5, min_promotions=1, young_batch=7, max_busy=2
    )
    assert (collector.period, collector.busy_fraction, collector.min_promotions) == (0.5, 0.5, 1)
    assert (collector.young_batch, collector.max_busy) == (7, 2)
    assert collector.quiet is quiet
    assert collector.collections == collector.young_collections == 0


def owe_young(allocations: int) -> list[list[int]]:
    """Make at least ``allocations`` young allocations owed (kept alive: freeing them would
    take the count back down), with nothing owed to the oldest generation."""
    gc.collect()
    kept = [[i] for i in range(allocations)]
    assert gc.get_count()[0] >= allocations
    return kept


async def test_young_collection_when_idle_and_owed() -> None:
    kept = owe_young(500)
    collector = IdleCollector(period=PERIOD, young_batch=400)
    collector.start()
    try:
        await wait_until(lambda: collector.young_collections > 0)
        assert collector.collections == 0  # nothing was owed to the oldest generation
        assert gc.get_count()[0] < 400
        assert gc.get_count()[1] >= 1  # a young collection, counted as the interpreter does
    finally:
        collector.stop()
    del kept


async def test_no_young_collection_below_the_batch_or_while_not_quiet() -> None:
    quiet = False
    kept = owe_young(500)
    collector = IdleCollector(quiet=lambda: quiet, period=PERIOD, young_batch=100_000)
    collector.start()
    try:
        await asyncio.sleep(10 * PERIOD)
        assert collector.young_collections == 0  # below the batch
        collector.young_batch = 400
        await asyncio.sleep(10 * PERIOD)
        assert collector.young_collections == 0  # owed, but something is due soon
        quiet = True
        await wait_until(lambda: collector.young_collections > 0)
    finally:
        collector.stop()
    del kept


async def test_a_short_burst_is_not_interrupted_but_sustained_work_is() -> None:
    period = 2 * PERIOD
    kept = owe_young(500)
    # Never quiet: only the rule for sustained work may collect.
    collector = IdleCollector(quiet=lambda: False, period=period, young_batch=400, max_busy=0.3)
    collector.start()
    try:
        await busy_for(0.15)  # a burst shorter than max_busy: left alone
        assert collector.young_collections == 0
        await busy_for(1.0)  # unbroken work past max_busy: collected in it
        assert collector.young_collections >= 1
        assert collector.collections == 0
    finally:
        collector.stop()
    del kept


def test_tune_gc_without_freeze_sets_the_young_threshold() -> None:
    gc.set_threshold(700, 11, 12)
    frozen = gc.get_freeze_count()
    tune_gc(freeze=False)
    assert gc.get_threshold() == (GC_THRESHOLD, 11, 12)
    assert gc.get_freeze_count() == frozen


def test_tune_gc_with_freeze_freezes_what_exists() -> None:
    frozen = gc.get_freeze_count()
    made_since = [[i] for i in range(100)]  # tracked objects that are not frozen yet
    gc.set_threshold(700, 11, 12)
    tune_gc()
    assert gc.get_freeze_count() >= frozen + len(made_since)
    assert gc.get_threshold() == (GC_THRESHOLD, 11, 12)
    # (the fixture unfreezes)
