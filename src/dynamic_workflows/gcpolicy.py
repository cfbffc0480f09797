"""Garbage collection for the long-running processes: the host and every sandboxed worker.

The cyclic collector has two costs, and :class:`IdleCollector` moves both out of the bursts
of work into the quiet moments between them:

- Young collections walk every object made since the last one that is still alive. In a
  burst, that is everything in flight: ten thousand runs woken at the same instant hold
  about a hundred thousand young objects, and a collection in their midst (the interpreter's
  own rule makes one every few thousand allocations) walked them all for 40-50 ms and found
  nothing to free. The interpreter's threshold (:data:`GC_THRESHOLD`) is only a backstop
  now; the idle collector makes the young collections, when the process is idle or after a
  second of unbroken work (sustained load must still free its reference cycles).
- Full collections walk every object. The interpreter starts one when the objects that
  survived into the oldest generation since the last one reach a quarter of those it held
  then, which is exactly what happens just after ten thousand runs were replayed ahead of a
  common due time and parked: the full collection (a quarter of a second in a sandboxed worker
  holding them) then lands in the burst that wakes them all. The idle collector makes
  these collections in the quiet moments instead, so that the interpreter has none to make in
  the burst.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable

__all__ = ["GC_THRESHOLD", "QUIET_BEFORE_WAKE_UP", "YOUNG_BATCH", "IdleCollector", "tune_gc"]

QUIET_BEFORE_WAKE_UP = 1.0
"""Seconds: no idle collection this close to the wake-up of a parked run."""

YOUNG_BATCH = 10_000
"""Allocations owed before :class:`IdleCollector` makes a young collection (Python's own
threshold: 700). At this size a busy host spent less than half the time collecting that it
did at the default."""

GC_THRESHOLD = 200_000
"""The interpreter's own young-collection threshold: a backstop for a process whose loop
cannot run the idle collector (code that allocates for a long time without yielding), high
enough that a burst of ten thousand runs does not reach it."""

MAX_BUSY = 1.0
"""Seconds of unbroken work after which :class:`IdleCollector` makes a young collection
anyway."""


def tune_gc(*, freeze: bool = True) -> None:
    """The interpreter's young collections only every :data:`GC_THRESHOLD` allocations (see
    :class:`IdleCollector` for the rest). With ``freeze``, everything
    made so far (modules, the project, the server) is first moved out of the collector's reach,
    so a full collection walks only what requests and runs made since (a ``dwf dev`` reload
    cannot free the first project's reference cycles then: one project's memory, once). A
    sandboxed worker passes ``freeze=False``: its fork server froze what it shares with it."""
    if freeze:
        gc.collect()
        gc.freeze()
    _, *older = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, *older)


class IdleCollector:
    """Makes the collections when the process is idle, rather than when the interpreter's own
    rules trigger them mid-burst.

    Every ``period`` seconds it compares the process's CPU time with the last check: below
    ``busy_fraction`` of the period counts as idle. An idle process that ``quiet()`` says has
    nothing due soon (a collection of ten thousand parked runs takes a few hundred
    milliseconds, which must not end after their wake-up) gets:

    - a full collection if at least ``min_promotions`` middle-generation collections have moved
      objects to the oldest generation since the last one (the interpreter's own bar is 10,
      plus the quarter rule);
    - else a young collection (the middle generation too, every tenth as the interpreter
      does) if ``young_batch`` allocations are owed.

    A process busy for ``max_busy`` seconds without a break gets its owed young collection
    then, quiet or not (a full one if the interpreter's own bar for it is reached). One that is
    idle and makes nothing costs a clock read per period.
    """

    def __init__(
        self,
        *,
        quiet: Callable[[], bool] | None = None,
        period: float = 0.25,
        busy_fraction: float = 0.05,
        min_promotions: int = 3,
        young_batch: int = YOUNG_BATCH,
        max_busy: float = MAX_BUSY,
    ) -> None:
        if (
            period <= 0
            or not 0 < busy_fraction < 1
            or min_promotions < 1
            or young_batch < 1
            or max_busy <= 0
        ):
            raise ValueError(
                "period and max_busy must be positive, busy_fraction within (0, 1), "
                "min_promotions and young_batch >= 1"
            )
        self.period = period
        self.busy_fraction = busy_fraction
        self.min_promotions = min_promotions
        self.young_batch = young_batch
        self.max_busy = max_busy
        self.quiet = quiet
        self.collections = 0
        """Full collections made."""
        self.young_collections = 0
        self._cpu = 0.0
        self._busy_since: float | None = None
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Start checking, on the running loop."""
        if self._handle is None:
            self._cpu = time.process_time()
            self._busy_since = None
            self._handle = asyncio.get_running_loop().call_later(self.period, self._check)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        cpu = time.process_time()
        now = time.monotonic()
        young, middle, old = gc.get_count()
        if cpu - self._cpu < self.period * self.busy_fraction:
            self._busy_since = None
            if (old >= self.min_promotions or young >= self.young_batch) and (
                self.quiet is None or self.quiet()
            ):
                if old >= self.min_promotions:
                    gc.collect()
                    self.collections += 1
                else:
                    self._collect_young(middle)
                cpu = time.process_time()  # the collection's own time is not activity
        elif self._busy_since is None:
            self._busy_since = now
        elif now - self._busy_since >= self.max_busy and young >= self.young_batch:
            if old >= gc.get_threshold()[2]:
                gc.collect()  # the interpreter's own bar: sustained load frees old cycles too
                self.collections += 1
            else:
                self._collect_young(middle)
            self._busy_since = time.monotonic()  # the next one after as much work again
        self._cpu = cpu
        self._handle = asyncio.get_running_loop().call_later(self.period, self._check)

    def _collect_young(self, middle: int) -> None:
        gc.collect(1 if middle >= gc.get_threshold()[1] else 0)
        self.young_collections += 1
