"""Prometheus metrics of one host, in a registry the host owns (never the global one).

::

    dwf_instances{workflow,status}                 instances by status (engine.queries; zeros too)
    dwf_tenant_instances{tenant,status}            instances by status of the top N tenants
                                                   (by live instances) and ``other``
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
only the ``top_tenants`` tenants with the most live (not finished) instances get series of their
own (ties broken by instances in all, then name); every other tenant's instances are summed under
``tenant="other"``. So there are at most ``(top_tenants + 1) * statuses`` tenant series, however
many tenants there are. Instances without a scope (created straight through the binding, not by a
dispatcher) belong to no tenant and are not counted there. Tenants are read as the admin API's
``/tenants`` listing reads them (:func:`~.tenants.tenant_counts`, the newest
``tenant_scan_limit`` instances of each workflow).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from ..core.transitions import FINITE_STATUSES
from .live import LiveProject
from .tenants import SCAN_LIMIT, tenant_counts

__all__ = ["CONTENT_TYPE", "DEFAULT_TOP_TENANTS", "OTHER_TENANT", "HostMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

DEFAULT_TOP_TENANTS = 20
"""How many tenants get series of their own by default; the rest are ``other``."""

OTHER_TENANT = "other"
"""The ``tenant`` label of every tenant outside the top N."""


def top_tenants(counts: dict[str, dict[str, int]], n: int) -> dict[str, dict[str, int]]:
    """``counts`` (tenant -> status -> instances) with all but the ``n`` tenants with the most
    live instances summed under :data:`OTHER_TENANT`."""

    def rank(item: tuple[str, dict[str, int]]) -> tuple[int, int, str]:
        name, by_status = item
        live = sum(v for k, v in by_status.items() if k not in FINITE_STATUSES)
        return (-live, -sum(by_status.values()), name)

    ranked = sorted(counts.items(), key=rank)
    kept = {name: dict(by_status) for name, by_status in ranked[: max(n, 0)]}
    rest = ranked[max(n, 0) :]
    if rest:
        # A tenant itself named "other" shares the bucket's series.
        other = kept.setdefault(OTHER_TENANT, {})
        for _, by_status in rest:
            for status, v in by_status.items():
                other[status] = other.get(status, 0) + v
    return kept


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
        tenants = GaugeMetricFamily(
            "dwf_tenant_instances",
            'Instances by status of the top tenants by live instances ("other": the rest)',
            labels=["tenant", "status"],
        )
        for tenant, by_status in sorted(self._metrics.tenant_instances.items()):
            for status, n in sorted(by_status.items()):
                tenants.add_metric([tenant, status], n)
        yield tenants
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

    def __init__(
        self,
        live: LiveProject,
        *,
        top_tenants: int = DEFAULT_TOP_TENANTS,
        tenant_scan_limit: int = SCAN_LIMIT,
    ) -> None:
        self.live = live
        self.top_tenants = top_tenants
        self.tenant_scan_limit = tenant_scan_limit
        self.registry = CollectorRegistry(auto_describe=True)
        self.instance_counts: dict[tuple[str, str], int] = {}
        self.tenant_instances: dict[str, dict[str, int]] = {}
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
        per_tenant: dict[str, dict[str, int]] = {}
        for wf in project.config.workflows:
            counted = await queries.count_instances(wf.name)
            for status, n in counted.by_status.items():
                counts[(wf.name, status)] = n
            if not sum(counted.by_status.values()):
                continue
            scopes = await tenant_counts(queries, wf.name, limit=self.tenant_scan_limit)
            for t in scopes.tenants:
                if not t.scope:
                    continue
                into = per_tenant.setdefault(t.tenant or t.scope, {})
                for status, n in t.by_status.items():
                    into[status] = into.get(status, 0) + n
        self.instance_counts = counts
        self.tenant_instances = top_tenants(per_tenant, self.top_tenants)

    async def endpoint(self, request: Request) -> Response:
        await self.refresh()
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE)
