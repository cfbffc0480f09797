"""Creates yield to other tenants' running work: how a flood of creates is kept from slowing
every other tenant's runs.

A backend has one resource every operation shares (SQLite's writer thread; on PostgreSQL the
server's CPU and disk, shared with the node). Creating instances (*ingest*) admits new work;
claims, step results and run ends (*run work*) are what admitted instances need to progress. A
tenant creating 50,000 instances as fast as it can must not slow every step of the others', so
while other tenants' instances are being run, the creates of a tenant with a backlog (due
instances the last claim left unclaimed: creating faster only lengthens its own queue) may keep
the backend busy at most :data:`INGEST_SHARE` of the time, split evenly among the tenants whose
creates wait (:class:`IngestGate`, a token bucket of busy time per tenant). A tenant that starts
creating starts with a full bucket, so its first batch does not wait behind another's flood. A
tenant alone on the engine is never held: it would only slow itself (a first version held it
whenever any run was active, and cost a lone tenant's throughput 5% on PostgreSQL). The callers
of a create wait for it, which is the backpressure: a flooding tenant's client is slowed to what
the engine can take, not refused (refusing is what a tenant's ``create_rate`` is for).

No I/O here: the backends time their transactions and ask the gate (:mod:`..storage.sqlite`,
:mod:`..storage.postgres`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

__all__ = ["INGEST_SHARE", "IngestGate"]

INGEST_SHARE = 0.15
"""The share of the backend's time that a backlogged tenant's creates may keep it busy while
other tenants run, split evenly among the tenants whose creates wait (module docstring).
Measured with ``bench/noisy.py``: with no limit a flooding tenant's inserts kept SQLite's writer
about 70% busy and every step of another tenant's waited behind them (its runs took twice as
long); at 0.3 the other tenant's p99 was still 2.5-3x what it was alone, at 0.15 1.5-2x, while
the flood still created faster (6,000-7,000/s) than the engine completed its instances."""
INGEST_BURST = 0.02
"""Seconds of busy time a tenant's creates may bank (and the most they may owe)."""
OTHERS_ACTIVE = 0.5
"""Seconds after a claim of a tenant's instances during which its runs count as going on."""
_MAX_BUCKETS = 1024
"""Buckets kept before the full ones are forgotten (a full bucket is a new one)."""


class IngestGate:
    """When each tenant's creates may go: per tenant, a token bucket of busy time that fills
    at ``share`` seconds per second divided among the tenants whose creates are waiting
    (``contenders``; up to :data:`INGEST_BURST`), and that each of its ingest transactions
    drains by its duration (split among the tenants it created for). Unless another tenant's
    instances were claimed in the last :data:`OTHERS_ACTIVE` seconds, creates go whatever their
    buckets hold. A tenant that
    starts creating starts with a full bucket: its first batch does not wait behind another's
    flood. ``clock``: monotonic seconds. Used from one thread (the SQLite writer's) or one
    event loop."""

    def __init__(
        self, share: float = INGEST_SHARE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.share = share
        self._clock = clock
        self._buckets: dict[str, list[float]] = {}  # scope: [budget, refilled at]
        self._claimed: dict[str, float] = {}  # scope: when its instances were last claimed
        self.backlogged: set[str] = set()
        """The tenants that had due work left unclaimed at the last claim: only their creates
        yield (a tenant the engine keeps up with gains nothing from waiting)."""

    def _bucket(self, scope: str, now: float, rate: float) -> list[float]:
        bucket = self._buckets.get(scope)
        if bucket is None:
            if len(self._buckets) >= _MAX_BUCKETS:
                for old, (budget, at) in list(self._buckets.items()):
                    if budget + (now - at) * self.share >= INGEST_BURST:
                        del self._buckets[old]
            bucket = self._buckets[scope] = [INGEST_BURST, now]
        else:
            bucket[0] = min(INGEST_BURST, bucket[0] + (now - bucket[1]) * rate)
            bucket[1] = now
        return bucket

    def claimed(self, scopes: Iterable[str]) -> None:
        """Instances of ``scopes`` were just claimed: their runs are going on."""
        now = self._clock()
        claimed = self._claimed
        if len(claimed) >= _MAX_BUCKETS:
            for old in [k for k, at in claimed.items() if now - at >= OTHERS_ACTIVE]:
                del claimed[old]
        for scope in scopes:
            claimed[scope] = now

    def spent(self, scopes: Sequence[str], seconds: float, contenders: int = 1) -> None:
        """Count ``seconds`` just spent on creates for ``scopes``, while ``contenders`` tenants
        had creates waiting."""
        now = self._clock()
        rate = self.share / max(1, contenders)
        for scope in scopes:
            bucket = self._bucket(scope, now, rate)
            bucket[0] = max(-INGEST_BURST, bucket[0] - seconds / len(scopes))

    def wait(self, scopes: Sequence[str], contenders: int = 1) -> float:
        """Seconds creates for ``scopes`` must wait before they may go (0: now), while
        ``contenders`` tenants (these included) have creates waiting."""
        now = self._clock()
        if self.backlogged.isdisjoint(scopes) or not any(
            now - at < OTHERS_ACTIVE and scope not in scopes for scope, at in self._claimed.items()
        ):
            return 0.0
        rate = self.share / max(1, contenders)
        short = 0.0
        for scope in scopes:
            budget = self._bucket(scope, now, rate)[0]
            if budget <= 0:
                short = max(short, -budget / rate + 1e-4)
        return short
