"""core/ingest.py: creates yield to running work, each tenant within its share."""

from __future__ import annotations

import pytest

from dynamic_workflows.core.ingest import INGEST_BURST, OTHERS_ACTIVE, IngestGate


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _gate(share: float = 0.25) -> tuple[IngestGate, _Clock]:
    clock = _Clock()
    gate = IngestGate(share, clock=clock)
    gate.backlogged = {"a", "b", "main"}  # due work left at the last claim
    return gate, clock


def test_without_run_work_creates_never_wait() -> None:
    gate, clock = _gate()
    for _ in range(100):
        assert gate.wait(["a"]) == 0
        gate.spent(["a"], 0.01)  # a flood, nothing running: the writer is theirs
        clock.now += 0.01


def test_while_runs_are_active_a_flood_gets_its_share() -> None:
    gate, clock = _gate(share=0.25)
    busy = 0.0
    start = clock.now
    while clock.now - start < 2.0:
        gate.claimed(["other"])  # run work goes on all the time
        wait = gate.wait(["a"])
        if wait > 0:
            clock.now += min(wait, 0.001)
            continue
        gate.spent(["a"], 0.004)  # each create batch keeps the backend busy 4 ms
        busy += 0.004
        clock.now += 0.004
    assert busy / (clock.now - start) == pytest.approx(0.25, abs=0.03)


def test_a_tenant_that_starts_creating_does_not_wait_behind_a_flood() -> None:
    gate, _clock = _gate()
    gate.claimed(["other"])
    while gate.wait(["a"]) == 0:  # a drains its bucket, and owes
        gate.spent(["a"], 0.005)
    assert gate.wait(["a"]) > 0
    assert gate.wait(["b"]) == 0  # b's first batch goes at once
    gate.spent(["b"], 0.005)
    assert gate.wait(["a", "b"]) > 0  # a batch for both waits for the one that owes


def test_tenants_whose_creates_wait_at_once_split_the_share() -> None:
    gate, _clock = _gate(share=0.2)
    gate.claimed(["other"])
    gate.spent(["a"], 2 * INGEST_BURST)  # a owes a burst
    alone = gate.wait(["a"], contenders=1)  # refills at the whole share
    assert alone == pytest.approx(INGEST_BURST / 0.2, rel=0.05)
    assert gate.wait(["a"], contenders=2) == pytest.approx(INGEST_BURST / 0.1, rel=0.05)


def test_tenants_that_created_once_do_not_slow_the_next() -> None:
    """1,000 tenants that each created a little, then stopped: the next tenant's creates get
    the whole share (only waiting creates split it)."""
    gate, clock = _gate(share=0.2)
    gate.claimed(["other"])
    for i in range(1000):
        gate.spent([f"t{i}"], 0.0002)
        clock.now += 0.0005
    gate.claimed(["other"])
    gate.spent(["main"], 2 * INGEST_BURST)
    assert gate.wait(["main"]) == pytest.approx(INGEST_BURST / 0.2, rel=0.05)


def test_runs_count_as_active_only_for_a_while() -> None:
    gate, clock = _gate()
    gate.claimed(["other"])
    gate.spent(["a"], 1.0)  # deep in debt (bounded by the burst)
    assert 0 < gate.wait(["a"]) <= 2 * INGEST_BURST / 0.25 + 1e-3
    clock.now += OTHERS_ACTIVE * 1.01  # no other tenant's claim since: creates go
    assert gate.wait(["a"]) == 0


def test_a_tenant_the_engine_keeps_up_with_never_waits() -> None:
    """Only a tenant with due work left unclaimed (a backlog) yields: one whose instances are
    all claimed as they come gains nothing from waiting, however fast it creates."""
    gate, _clock = _gate()
    gate.backlogged = {"a"}
    gate.claimed(["other"])
    gate.spent(["b"], 1.0)
    gate.spent(["a"], 1.0)
    assert gate.wait(["b"]) == 0
    assert gate.wait(["a"]) > 0
    gate.backlogged = set()  # the next claim took all of a's due instances
    assert gate.wait(["a"]) == 0


def test_a_tenant_alone_on_the_engine_is_never_held() -> None:
    """Holding a lone tenant's creates would only slow that tenant: only another tenant's
    runs make a backlogged tenant's creates yield."""
    gate, _clock = _gate()
    gate.claimed(["a"])  # a's own runs
    gate.spent(["a"], 1.0)
    assert gate.wait(["a"]) == 0
    gate.claimed(["b"])  # b's runs start
    assert gate.wait(["a"]) > 0
