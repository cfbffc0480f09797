"""Prometheus metrics of one host, in a registry the host owns (never the global one).

::

    dwf_instances{workflow,status}                 instances by status (engine.queries; zeros too)
    dwf_runs_total                                 runs (wake-ups) started by the engine
    dwf_steps_committed_total                      step results committed
    dwf_instances_completed_total / _errored_total instances the engine finished
    dwf_runs_suspended_total                       runs that hibernated
    dwf_live_runs                                  runs executing now (parked ones included)
    dwf_parked_runs                                live runs parked for a near wake-up
    dwf_http_request_duration_seconds{handler,method,status}   request latency
    dwf_reloads_total                              dev reloads

Engine counters are process-local: they restart at zero with the process, as Prometheus
counters may.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from .live import LiveProject

__all__ = ["CONTENT_TYPE", "HostMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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
        try:
            project = live.project
        except RuntimeError:
            return
        counters = project.engine.counters
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

    def __init__(self, live: LiveProject) -> None:
        self.live = live
        self.registry = CollectorRegistry(auto_describe=True)
        self.instance_counts: dict[tuple[str, str], int] = {}
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
        counts: dict[tuple[str, str], int] = {}
        for wf in project.config.workflows:
            counted = await project.engine.queries.count_instances(wf.name)
            for status, n in counted.by_status.items():
                counts[(wf.name, status)] = n
        self.instance_counts = counts

    async def endpoint(self, request: Request) -> Response:
        await self.refresh()
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE)
