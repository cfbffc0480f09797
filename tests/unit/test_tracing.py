"""OpenTelemetry (tracing.py): a span per run and per step attempt when on, none when off."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from unit_support import EnvFactory, through_hibernations

from dynamic_workflows import tracing


async def flaky_run(event: Any, step: Any) -> Any:
    config = {"retries": {"limit": 1, "delay": "1 second", "backoff": "constant"}}

    @step.do("flaky", config=config)
    async def flaky(ctx: Any) -> str:
        await asyncio.sleep(0)
        if ctx["attempt"] < 2:
            raise ValueError("no")
        return "ok"

    return await flaky()


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    assert tracing.enable(provider)
    try:
        yield spans
    finally:
        tracing.disable()


async def test_a_span_per_run_and_per_attempt(
    make_env: EnvFactory, exporter: InMemorySpanExporter
) -> None:
    async with make_env(flaky_run) as wf:
        instance = await wf.binding.create()
        status = await through_hibernations(wf, instance, 1)
        assert status["output"] == "ok"
    spans = exporter.get_finished_spans()
    runs = [s for s in spans if s.name == "dwf.run"]
    steps = [s for s in spans if s.name == "dwf.step"]
    assert [s.attributes["dwf.outcome"] for s in runs] == ["suspended", "completed"]
    assert all(s.attributes["dwf.instance.id"] == instance.id for s in runs + steps)
    assert all(s.attributes["dwf.workflow"] == wf.binding.name for s in runs + steps)
    assert all("dwf.tenant.scope" in s.attributes for s in runs + steps)
    assert [
        (
            s.attributes["dwf.step.name"],
            s.attributes["dwf.step.attempt"],
            s.attributes["dwf.outcome"],
        )
        for s in steps
    ] == [("flaky", 1, "retrying"), ("flaky", 2, "ok")]
    for run, step in zip(runs, steps, strict=True):
        assert step.parent is not None
        assert step.parent.span_id == run.context.span_id


async def test_off_there_are_no_spans(make_env: EnvFactory) -> None:
    assert tracing.TRACER is None
    async with make_env(flaky_run) as wf:
        instance = await wf.binding.create()
        await through_hibernations(wf, instance, 1)
    assert tracing.TRACER is None
