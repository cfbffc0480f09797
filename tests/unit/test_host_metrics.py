"""/metrics' per-tenant series: the top N tenants by live instances plus ``other``, exact from
the totals (the host end to end: test_host_admin.py)."""

from __future__ import annotations

import pytest

from dynamic_workflows.host.metrics import OTHER_TENANT, HostMetrics, tenant_series
from dynamic_workflows.tenant_usage import TenantUsage


def usage(
    scope: str, tenant: str | None, by_status: dict[str, int], **counters: int
) -> TenantUsage:
    metadata = None if tenant is None else {"tenant": tenant}
    return TenantUsage(scope, metadata, by_status, 0, 0.0, 0.0, **counters)


def test_the_top_tenants_by_name_and_the_rest_as_other() -> None:
    top = [
        usage("s-c", "c", {"waiting": 3}, created=3, steps_committed=9, throttled=1),
        usage("s-d", "d", {"queued": 2, "errored": 7}, created=9),
    ]
    totals = {"waiting": 3, "queued": 2, "errored": 7, "complete": 105, "running": 1}
    created = {"s-c": 3, "s-d": 9, "s-a": 100, "s-b": 6, "": 50}  # "": unscoped, no tenant
    series = tenant_series(top, totals, created, {"s-c": 9, "s-a": 1}, {"s-c": 1, "s-b": 4})
    assert series["c"].by_status == {"waiting": 3}
    assert (series["c"].created, series["c"].steps_committed, series["c"].throttled) == (3, 9, 1)
    assert series["d"].by_status == {"queued": 2, "errored": 7}
    other = series[OTHER_TENANT]
    assert other.by_status == {"complete": 105, "running": 1}
    assert (other.created, other.steps_committed, other.throttled) == (106, 1, 4)
    assert len(series) == 3


def test_tenants_of_one_name_share_a_series_and_a_scope_names_one_without_metadata() -> None:
    top = [
        usage("s1", "acme", {"running": 1}, created=1),
        usage("s2", "acme", {"running": 2}, created=2),
        usage("s3", None, {"queued": 1}),
        usage("s4", "other", {"queued": 5}),
    ]
    totals = {"running": 3, "queued": 6}
    series = tenant_series(top, totals, {}, {}, {})
    assert series["acme"].by_status == {"running": 3}
    assert series["acme"].created == 3
    assert series["s3"].by_status == {"queued": 1}
    # A tenant named "other" is the bucket's series; nothing is left for the bucket itself.
    assert series[OTHER_TENANT].by_status == {"queued": 5}
    assert set(series) == {"acme", "s3", OTHER_TENANT}


def test_the_series_stay_bounded_however_many_tenants() -> None:
    # The top N of 100,000 tenants: N + 1 series, and every instance counted once.
    top = [usage(f"s{i}", f"t{i}", {"running": 100 - i}) for i in range(20)]
    totals = {"running": sum(100 - i for i in range(20)) + 99_980, "complete": 5_000_000}
    created = {f"s{i}": 1 for i in range(100_000)}
    series = tenant_series(top, totals, created, {}, {})
    assert len(series) == 21
    assert series[OTHER_TENANT].by_status == {"running": 99_980, "complete": 5_000_000}
    assert series[OTHER_TENANT].created == 99_980
    assert sum(sum(f.by_status.values()) for f in series.values()) == sum(totals.values())


def test_no_other_when_every_tenant_is_shown() -> None:
    top = [usage("s1", "a", {"complete": 2}, created=2)]
    assert set(tenant_series(top, {"complete": 2}, {"s1": 2, "": 7}, {}, {})) == {"a"}


def test_a_negative_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="top_tenants: must be at least 0, got -1"):
        HostMetrics(None, top_tenants=-1)  # type: ignore[arg-type]


def test_the_bound_is_an_option_of_dev_and_serve() -> None:
    from click.testing import CliRunner

    from dynamic_workflows.cli import dev, serve
    from dynamic_workflows.host.metrics import DEFAULT_TOP_TENANTS

    for command in (dev, serve):
        option = next(p for p in command.params if p.name == "metrics_tenants")
        assert option.default == DEFAULT_TOP_TENANTS
    refused = CliRunner().invoke(dev, ["--metrics-tenants", "-1"])
    assert refused.exit_code == 2
    assert "-1 is not in the range x>=0" in refused.output
