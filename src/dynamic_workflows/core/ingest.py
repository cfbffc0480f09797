"""Creates yield to running work: how a flood of creates is kept from slowing every run.

A backend has one resource every operation shares (SQLite's writer thread; on PostgreSQL the
server's CPU and disk, shared with the node). Creating instances (*ingest*) admits new work;
claims, step results and run ends (*run work*) are what admitted instances need to progress. A
tenant creating 50,000 instances as fast as it can must not slow every step of the others', so
while runs are active creates may keep the backend busy at most :data:`INGEST_SHARE` of the
time, split evenly among the tenants creating: :class:`IngestGate`, a token bucket of busy time
per tenant. A tenant that starts creating starts with a full bucket, so its first batch does not
wait behind another's flood. With no run work about, creates go at once. The callers of a create
wait for it, which is the backpressure: a flooding tenant's client is slowed to what the engine
can take, not refused (refusing is what a tenant's ``create_rate`` is for).

No I/O here: the backends time their transactions and ask the gate (:mod:`..storage.sqlite`,
:mod:`..storage.postgres`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

__all__ = ["INGEST_SHARE", "IngestGate"]

INGEST_SHARE = 0.3
"""The share of the backend's time that creates may keep it busy while runs are active, split
evenly among the tenants creating (module docstring). Measured with ``bench/noisy.py``: with no
limit a flooding tenant's inserts kept the writer about 70% busy and every step of another
tenant's waited behind them (its runs took twice as long)."""
INGEST_BURST = 0.02
"""Seconds of busy time a tenant's creates may bank (and the most they may owe)."""
RUNS_ACTIVE = 0.05
"""Seconds after a run-work transaction during which runs count as active."""
INGEST_ACTIVE = 1.0
"""Seconds after its last create during which a tenant counts among those creating."""


class IngestGate:
    """When each tenant's creates may go: per tenant, a token bucket of busy time that
    fills at ``share`` seconds per second divided among the tenants creating (up to
    :data:`INGEST_BURST`), and that each of its ingest transactions drains by its duration
    (split among the tenants it created for). With no run work in the last
    :data:`RUNS_ACTIVE` seconds, creates go whatever their buckets hold. A tenant that starts
    creating starts with a full bucket: its first batch does not wait behind another's flood.
    ``clock``: monotonic seconds."""

    def __init__(
        self, share: float = INGEST_SHARE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.share = share
        self._clock = clock
        self._buckets: dict[str, list[float]] = {}  # scope: [budget, refilled at, last used]
        self._last_run = -math.inf

    def _rate(self, now: float) -> float:
        active = sum(1 for v in self._buckets.values() if now - v[2] < INGEST_ACTIVE)
        return self.share / max(1, active)

    def _bucket(self, scope: str, now: float) -> list[float]:
        bucket = self._buckets.get(scope)
        if bucket is None:
            if len(self._buckets) >= 1024:  # forget those that stopped creating
                for old in [k for k, v in self._buckets.items() if now - v[2] > INGEST_ACTIVE]:
                    del self._buckets[old]
            bucket = self._buckets[scope] = [INGEST_BURST, now, now]
        else:
            bucket[0] = min(INGEST_BURST, bucket[0] + (now - bucket[1]) * self._rate(now))
            bucket[1] = now
        return bucket

    def spent(self, scopes: Sequence[str] | None, seconds: float) -> None:
        """Count ``seconds`` just spent on run work (``scopes`` None) or on creates for
        ``scopes``."""
        now = self._clock()
        if scopes is None:
            self._last_run = now
            return
        for scope in scopes:
            bucket = self._bucket(scope, now)
            bucket[0] = max(-INGEST_BURST, bucket[0] - seconds / len(scopes))
            bucket[2] = now

    def wait(self, scopes: Sequence[str]) -> float:
        """Seconds creates for ``scopes`` must wait before it may have the writer (0: now)."""
        now = self._clock()
        if now - self._last_run >= RUNS_ACTIVE:
            return 0.0
        short = 0.0
        for scope in scopes:
            budget = self._bucket(scope, now)[0]
            if budget <= 0:
                short = max(short, -budget / self._rate(now) + 1e-4)
        return short
