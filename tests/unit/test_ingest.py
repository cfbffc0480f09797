"""core/ingest.py: creates yield to running work, each tenant within its share."""

from __future__ import annotations

import pytest

from dynamic_workflows.core.ingest import INGEST_BURST, RUNS_ACTIVE, IngestGate


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _gate(share: float = 0.25) -> tuple[IngestGate, _Clock]:
    clock = _Clock()
    return IngestGate(share, clock=clock), clock


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
        gate.spent(None, 0.001)  # run work goes on all the time
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
    gate.spent(None, 0.001)
    while gate.wait(["a"]) == 0:  # a drains its bucket, and owes
        gate.spent(["a"], 0.005)
    assert gate.wait(["a"]) > 0
    assert gate.wait(["b"]) == 0  # b's first batch goes at once
    gate.spent(["b"], 0.005)
    assert gate.wait(["a", "b"]) > 0  # a batch for both waits for the one that owes


def test_tenants_creating_at_once_split_the_share() -> None:
    gate, _clock = _gate(share=0.2)
    for scope in ("a", "b"):
        gate.spent([scope], INGEST_BURST)  # both empty their buckets
    gate.spent(None, 0.001)
    gate.spent(["a"], INGEST_BURST)  # a now owes a burst: it refills at share / 2
    assert gate.wait(["a"]) == pytest.approx(INGEST_BURST / 0.1, rel=0.05)
    alone, _ = _gate(share=0.2)
    alone.spent(None, 0.001)
    alone.spent(["a"], 2 * INGEST_BURST)  # alone, the same debt refills at the whole share
    assert alone.wait(["a"]) == pytest.approx(INGEST_BURST / 0.2, rel=0.05)


def test_runs_count_as_active_only_for_a_while() -> None:
    gate, clock = _gate()
    gate.spent(None, 0.001)
    gate.spent(["a"], 1.0)  # deep in debt (bounded by the burst)
    assert 0 < gate.wait(["a"]) <= 2 * INGEST_BURST / 0.25 + 1e-3
    clock.now += RUNS_ACTIVE * 1.01  # no run work since: creates go
    assert gate.wait(["a"]) == 0
