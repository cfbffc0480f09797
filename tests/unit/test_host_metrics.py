"""/metrics' per-tenant series: the top N tenants by live instances plus ``other`` (the host
end to end: test_host_admin.py)."""

from __future__ import annotations

from dynamic_workflows.host.metrics import OTHER_TENANT, top_tenants


def test_top_tenants_keeps_n_by_live_instances_and_sums_the_rest() -> None:
    counts = {
        "a": {"complete": 100},
        "b": {"running": 1, "complete": 5},
        "c": {"waiting": 3},
        "d": {"queued": 2, "errored": 7},
    }
    kept = top_tenants(counts, 2)
    # c (3 live) and d (2 live) lead; a has the most instances but none live.
    assert kept == {
        "c": {"waiting": 3},
        "d": {"queued": 2, "errored": 7},
        OTHER_TENANT: {"complete": 105, "running": 1},
    }
    assert top_tenants(counts, 10) == counts
    assert top_tenants(counts, 0) == {
        OTHER_TENANT: {"complete": 105, "running": 1, "waiting": 3, "queued": 2, "errored": 7}
    }
    assert top_tenants({}, 5) == {}


def test_the_tenant_series_stay_bounded_however_many_tenants() -> None:
    counts = {f"t{i}": {"running": i % 7, "complete": i} for i in range(5000)}
    kept = top_tenants(counts, 20)
    assert len(kept) == 21
    assert sum(sum(s.values()) for s in kept.values()) == sum(
        sum(s.values()) for s in counts.values()
    )
