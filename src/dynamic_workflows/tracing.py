"""OpenTelemetry spans of runs and step attempts, optional: ``dynamic-workflows[otel]``.

Off unless :func:`enable` is called (``dwf dev/serve`` call it when ``OTEL_EXPORTER_OTLP_ENDPOINT``
is set, see :func:`enable_from_environment`) and the OpenTelemetry packages import. Off, the
engine pays one None check per run and per step attempt: :data:`TRACER` is None.

On, each run (one wake-up of an instance) is a ``dwf.run`` span and each step attempt a
``dwf.step`` span under it, with attributes ``dwf.tenant.scope``, ``dwf.workflow``,
``dwf.instance.id``, ``dwf.step.name``, ``dwf.step.count``, ``dwf.step.attempt`` and
``dwf.outcome`` (a run: completed, failed, suspended, cancelled; an attempt: ok, retrying,
failed).
"""

from __future__ import annotations

import logging
import os
from typing import Any

__all__ = ["TRACER", "RunTracer", "disable", "enable", "enable_from_environment"]

log = logging.getLogger(__name__)


class RunTracer:
    """Starts the spans of runs and step attempts on an OpenTelemetry tracer."""

    __slots__ = ("_set_in_context", "_tracer")

    def __init__(self, tracer: Any, set_in_context: Any) -> None:
        self._tracer = tracer
        self._set_in_context = set_in_context

    def start_run(self, scope: str, workflow: str, instance_id: str) -> Any:
        """The span of one run of an instance (end it with :meth:`end`)."""
        return self._tracer.start_span(
            "dwf.run",
            attributes={
                "dwf.tenant.scope": scope,
                "dwf.workflow": workflow,
                "dwf.instance.id": instance_id,
            },
        )

    def start_attempt(
        self,
        run: Any,
        scope: str,
        workflow: str,
        instance_id: str,
        name: str,
        count: int,
        attempt: int,
    ) -> Any:
        """The span of one attempt of a step, a child of its run's span when there is one."""
        context = None if run is None else self._set_in_context(run)
        return self._tracer.start_span(
            "dwf.step",
            context=context,
            attributes={
                "dwf.tenant.scope": scope,
                "dwf.workflow": workflow,
                "dwf.instance.id": instance_id,
                "dwf.step.name": name,
                "dwf.step.count": count,
                "dwf.step.attempt": attempt,
            },
        )

    @staticmethod
    def end(span: Any, outcome: str) -> None:
        span.set_attribute("dwf.outcome", outcome)
        span.end()


TRACER: RunTracer | None = None
"""The tracer the engine uses, None when tracing is off."""


def enable(tracer_provider: Any = None) -> bool:
    """Turn tracing on, on ``tracer_provider`` (else one exporting over OTLP/HTTP to
    ``OTEL_EXPORTER_OTLP_ENDPOINT``). False, and tracing stays off, without the packages."""
    global TRACER
    try:
        from opentelemetry import trace
    except ImportError:
        log.warning(
            "tracing asked for, but opentelemetry is not installed (dynamic-workflows[otel])"
        )
        return False
    if tracer_provider is None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            log.warning("tracing asked for, but the OpenTelemetry SDK or OTLP exporter is missing")
            return False
        tracer_provider = TracerProvider(
            resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "dwf")})
        )
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    TRACER = RunTracer(tracer_provider.get_tracer("dynamic_workflows"), trace.set_span_in_context)
    return True


def enable_from_environment() -> bool:
    """:func:`enable` when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; False otherwise."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    return enable()


def disable() -> None:
    """Turn tracing off (spans already started still end)."""
    global TRACER
    TRACER = None
