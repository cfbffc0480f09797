"""Garbage collection for the long-running processes: the host and every sandboxed worker.

The cyclic collector has two costs, and each gets its setting:

- Young collections walk what was allocated since the last one. Under load they walk every
  request and run in flight again and again; :data:`GC_THRESHOLD` spaces them out.
- Full collections walk every object. The interpreter starts one when the objects that
  survived into the oldest generation since the last one reach a quarter of those it held
  then, which is exactly what happens just after ten thousand runs were replayed ahead of a
  common due time and parked: the full collection (a quarter of a second in a sandboxed worker
  holding them) then lands in the burst that wakes them all. :class:`IdleCollector` makes
  these collections in the quiet moments instead, so that the interpreter has none to make in
  the burst.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable

__all__ = ["GC_THRESHOLD", "QUIET_BEFORE_WAKE_UP", "IdleCollector", "tune_gc"]

QUIET_BEFORE_WAKE_UP = 1.0
"""Seconds: no idle collection this close to the wake-up of a parked run."""

GC_THRESHOLD = 10_000
"""Allocations between two young collections of the garbage collector (Python's default: 700).
Under load every collection walks all the requests and runs in flight again; at the default,
collecting took ~15% of a busy host's time, at this threshold less than half of that (pauses
of a few ms)."""


def tune_gc(*, freeze: bool = True) -> None:
    """Young collections every :data:`GC_THRESHOLD` allocations. With ``freeze``, everything
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
    """Makes full collections when the process is idle and has made enough long-lived objects
    to owe one, rather than when the interpreter's own rule triggers one mid-burst.

    Every ``period`` seconds it compares the process's CPU time with the last check: below
    ``busy_fraction`` of the period counts as idle. It then collects if at least
    ``min_promotions`` middle-generation collections have moved objects to the oldest
    generation since the last full collection (the interpreter's own bar is 10, plus the
    quarter rule), and if ``quiet()`` says nothing is due soon: a collection of ten thousand
    parked runs takes a few hundred milliseconds, which must not end after their wake-up. A
    process that stays busy is left to the interpreter's rule; one that is idle and makes
    nothing costs a clock read per period.
    """

    def __init__(
        self,
        *,
        quiet: Callable[[], bool] | None = None,
        period: float = 0.25,
        busy_fraction: float = 0.05,
        min_promotions: int = 3,
    ) -> None:
        if period <= 0 or not 0 < busy_fraction < 1 or min_promotions < 1:
            raise ValueError(
                "period must be positive, busy_fraction within (0, 1), min_promotions >= 1"
            )
        self.period = period
        self.busy_fraction = busy_fraction
        self.min_promotions = min_promotions
        self.quiet = quiet
        self.collections = 0
        self._cpu = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Start checking, on the running loop."""
        if self._handle is None:
            self._cpu = time.process_time()
            self._handle = asyncio.get_running_loop().call_later(self.period, self._check)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        cpu = time.process_time()
        if (
            cpu - self._cpu < self.period * self.busy_fraction
            and gc.get_count()[2] >= self.min_promotions
            and (self.quiet is None or self.quiet())
        ):
            gc.collect()
            self.collections += 1
            cpu = time.process_time()  # the collection's own time is not activity
        self._cpu = cpu
        self._handle = asyncio.get_running_loop().call_later(self.period, self._check)
