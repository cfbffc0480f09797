"""Prometheus metrics of one host, in a registry the host owns (never the global one).

::

    dwf_instances{workflow,status}                 instances by status (engine.queries; zeros too)
    dwf_tenants                                    tenants (scopes) with instances
    dwf_tenant_instances{tenant,status}            instances by status of the top N tenants
                                                   (by live instances) and ``other``: running,
                                                   waiting, queued... per tenant
    dwf_tenant_instances_created_total{tenant}     instances created (this node), same tenants
    dwf_tenant_steps_committed_total{tenant}       step results committed (this node)
    dwf_tenant_creates_throttled_total{tenant}     creates a tenant's caps refused or delayed
    dwf_runs_total                                 runs (wake-ups) started by the engine
    dwf_steps_committed_total                      step results committed
    dwf_workflow_runs_total{workflow}              runs started, per workflow
    dwf_workflow_steps_committed_total{workflow}   step results committed, per workflow
    dwf_instances_completed_total / _errored_total instances the engine finished
    dwf_runs_suspended_total                       runs that hibernated
    dwf_live_runs                                  runs executing now (parked ones included)
    dwf_parked_runs                                live runs parked for a near wake-up
    dwf_http_request_duration_seconds{handler,method,status}   request latency
    dwf_reloads_total                              dev reloads

Engine counters are process-local: they restart at zero with the process, as Prometheus
counters may.

Per-tenant series are bounded: a tenant is the readable form of its dispatcher metadata (as the
admin API's listings name it, :func:`~.tenants.tenant_label`; its scope when it has none), and
only the ``top_tenants`` tenants (default :data:`DEFAULT_TOP_TENANTS`; ``dwf dev``/``dwf serve
--metrics-tenants N``) with the most live (not finished) instances get series of their own (ties
broken by instances in all, then the latest change); everything of every other tenant is summed
under ``tenant="other"``. So there are at most ``top_tenants + 1`` tenants in the series, however
many tenants there are (a platform may have 100,000). Instances without a scope (created straight
through the binding, not by a dispatcher) belong to no tenant and are not counted there.

Each scrape reads the top tenants with one storage read (``engine.queries.tenant_usage``,
without the steps, which would cost a join with every step: the steps are this node's counter)
and what all of them add up to from the same read, so ``other`` is exact without reading the
other tenants one by one. A tenant entering the top N takes its counts out of ``other``, whose
counters then go down: Prometheus reads that as a counter reset, so ``rate()`` over ``other``
is approximate while the top N changes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from ..tenant_usage import TenantUsage
from .live import LiveProject
from .tenants import tenant_label

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_TOP_TENANTS",
    "OTHER_TENANT",
    "HostMetrics",
    "TenantFigures",
    "tenant_series",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

DEFAULT_TOP_TENANTS = 20
"""How many tenants get series of their own by default; the rest are ``other``."""

OTHER_TENANT = "other"
"""The ``tenant`` label of every tenant outside the top N."""


@dataclass
class TenantFigures:
    """What ``/metrics`` shows of one tenant (or of ``other``)."""

    by_status: dict[str, int] = field(default_factory=dict)
    created: int = 0
    steps_committed: int = 0
    throttled: int = 0

    def add(self, other: TenantFigures) -> None:
        for status, n in other.by_status.items():
            self.by_status[status] = self.by_status.get(status, 0) + n
        self.created += other.created
        self.steps_committed += other.steps_committed
        self.throttled += other.throttled


def tenant_series(
    top: list[TenantUsage],
    totals: dict[str, int],
    created: Mapping[str, int],
    steps_committed: Mapping[str, int],
    throttled: Mapping[str, int],
) -> dict[str, TenantFigures]:
    """The series' figures by ``tenant`` label: each of the ``top`` tenants under its name
    (tenants of one name together), and everything else under :data:`OTHER_TENANT`: the
    instances of ``totals`` (every scoped tenant's) less the top ones', and the counters (per
    scope) of every scoped tenant not in the top."""
    series: dict[str, TenantFigures] = {}
    for usage in top:
        label = tenant_label(usage.metadata) or usage.scope
        series.setdefault(label, TenantFigures()).add(
            TenantFigures(
                dict(usage.by_status), usage.created, usage.steps_committed, usage.throttled
            )
        )
    shown = {u.scope for u in top}
    rest = TenantFigures(
        dict(totals),
        sum(n for scope, n in created.items() if scope and scope not in shown),
        sum(n for scope, n in steps_committed.items() if scope and scope not in shown),
        sum(n for scope, n in throttled.items() if scope and scope not in shown),
    )
    for usage in top:
        for status, n in usage.by_status.items():
            rest.by_status[status] = rest.by_status.get(status, 0) - n
    rest.by_status = {s: n for s, n in rest.by_status.items() if n > 0}
    if rest.by_status or rest.created or rest.steps_committed or rest.throttled:
        # A tenant itself named "other" shares the bucket's series.
        series.setdefault(OTHER_TENANT, TenantFigures()).add(rest)
    return series


class _EngineCollector(Collector):
    def __init__(self, metrics: HostMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        live = self._metrics.live
        instances = GaugeMetricFamily(
            "dwf_instances", "Workflow instances by status", labels=["workflow", "status"]
        )
        for (workflow, status), n in sorted(self._metrics.instance_counts.items()):
            instances.add_metric([workflow, status], n)
        yield instances
        yield GaugeMetricFamily(
            "dwf_tenants", "Tenants (scopes) with instances", value=self._metrics.tenants
        )
        series = sorted(self._metrics.tenant_figures.items())
        tenants = GaugeMetricFamily(
            "dwf_tenant_instances",
            'Instances by status of the top tenants by live instances ("other": the rest)',
            labels=["tenant", "status"],
        )
        for tenant, figures in series:
            for status, n in sorted(figures.by_status.items()):
                tenants.add_metric([tenant, status], n)
        yield tenants
        for name, doc, attribute in (
            ("dwf_tenant_instances_created", "Instances created, per tenant", "created"),
            (
                "dwf_tenant_steps_committed",
                "Step results committed, per tenant",
                "steps_committed",
            ),
            (
                "dwf_tenant_creates_throttled",
                "Creates a tenant's caps refused or delayed, per tenant",
                "throttled",
            ),
        ):
            family = CounterMetricFamily(name, doc, labels=["tenant"])
            for tenant, figures in series:
                family.add_metric([tenant], getattr(figures, attribute))
            yield family
        try:
            project = live.project
        except RuntimeError:
            return
        counters = project.engine.counters
        for name, doc, values in (
            ("dwf_workflow_runs", "Runs started, per workflow", counters.runs_by_workflow),
            (
                "dwf_workflow_steps_committed",
                "Step results committed, per workflow",
                counters.steps_by_workflow,
            ),
        ):
            family = CounterMetricFamily(name, doc, labels=["workflow"])
            for workflow, value in sorted(values.items()):
                family.add_metric([workflow], value)
            yield family
        for name, doc, value in (
            ("dwf_runs", "Runs (wake-ups) started by the engine", counters.runs),
            ("dwf_steps_committed", "Step results committed", counters.steps_committed),
            ("dwf_instances_completed", "Instances completed", counters.completed),
            ("dwf_instances_errored", "Instances that ended errored", counters.errored),
            ("dwf_runs_suspended", "Runs that hibernated", counters.suspended),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily(
            "dwf_live_runs", "Runs executing now", value=project.engine.live_runs()
        )
        yield GaugeMetricFamily(
            "dwf_parked_runs",
            "Live runs parked (kept warm) for a wake-up within the warm horizon",
            value=project.engine.parked_runs(),
        )
        yield CounterMetricFamily("dwf_reloads", "Reloads of the project", value=live.reloads)


class HostMetrics:
    """The registry of one host and the ``/metrics`` endpoint."""

    def __init__(self, live: LiveProject, *, top_tenants: int = DEFAULT_TOP_TENANTS) -> None:
        if top_tenants < 0:
            raise ValueError(f"top_tenants: must be at least 0, got {top_tenants}")
        self.live = live
        self.top_tenants = top_tenants
        self.registry = CollectorRegistry(auto_describe=True)
        self.instance_counts: dict[tuple[str, str], int] = {}
        self.tenants = 0
        self.tenant_figures: dict[str, TenantFigures] = {}
        self.request_duration = Histogram(
            "dwf_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["handler", "method", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.registry.register(_EngineCollector(self))
        self._durations: dict[tuple[str, str, int], Histogram] = {}

    def observe(self, handler: str, method: str, status: int, seconds: float) -> None:
        key = (handler, method, status)
        child = self._durations.get(key)
        if child is None:
            child = self.request_duration.labels(handler, method, str(status))
            self._durations[key] = child
        child.observe(seconds)

    async def refresh(self) -> None:
        """Read instance counts from the engine (collectors are synchronous, queries are not)."""
        project = self.live.project
        queries = project.engine.queries
        counts: dict[tuple[str, str], int] = {}
        for wf in project.config.workflows:
            counted = await queries.count_instances(wf.name)
            for status, n in counted.by_status.items():
                counts[(wf.name, status)] = n
        n = self.top_tenants
        page = await queries.tenant_usage(
            None, order="live", limit=max(n, 1), unscoped=False, steps=False
        )
        counters = project.engine.counters
        self.instance_counts = counts
        self.tenants = page.total
        self.tenant_figures = tenant_series(
            page.tenants[:n],
            page.by_status,
            counters.created_by_scope,
            counters.steps_by_scope,
            await queries.throttled_by_scope(),
        )

    async def endpoint(self, request: Request) -> Response:
        await self.refresh()
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE)
