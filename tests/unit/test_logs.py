"""What a run's code prints or logs, in the host (``--trusted``: the in-process loader), on
every backend: kept per instance, step and attempt, bounded, never mixed between concurrent
runs, not repeated by replays, read back through ``engine.queries.logs``; and the tracebacks
kept with errors."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

import pytest
from unit_support import EnvFactory, through_hibernations

from dynamic_workflows.core.limits import Limits
from dynamic_workflows.core.logs import LogBook, LogLine
from dynamic_workflows.host.logformat import JSONFormatter
from dynamic_workflows.queries import LogPage
from dynamic_workflows.sandbox.loader import InProcessLoader
from dynamic_workflows.testing import WorkflowTestEnv
from dynamic_workflows.workers import WorkflowEntrypoint


def tenant_runner(loader: InProcessLoader, sources: dict[str, str]) -> type[WorkflowEntrypoint]:
    """A dispatcher: each instance runs the tenant its params name, in process."""

    class Dispatcher(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            tenant = event["payload"]["tenant"]
            code = {"main_module": "main.py", "modules": {"main.py": sources[tenant]}}
            stub = loader.get(tenant, lambda: code)
            return await stub.get_entrypoint("TenantWorkflow").run(event, step)

    return Dispatcher


async def page(wf: WorkflowTestEnv, instance_id: str, **kwargs: Any) -> LogPage:
    view = await wf.engine.queries.get_instance(wf.binding.name, "", instance_id)
    assert view is not None
    return await wf.engine.queries.logs(view, **kwargs)


RETRYING = """
import logging
from workers import WorkflowEntrypoint

class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        print("starting", event["instanceId"])

        @step.do("flaky", config={"retries": {"limit": 2, "delay": "1 minute"}})
        async def flaky(ctx):
            print("attempt", ctx["attempt"])
            logging.getLogger("tenant").error("failing? %s", ctx["attempt"] < 3)
            if ctx["attempt"] < 3:
                raise ValueError("try again")
            return "ok"

        result = await flaky()
        await step.sleep("rest", "1 hour")
        print("finished with", result)
        return result
"""


async def test_lines_per_step_and_attempt_and_no_repeats_on_replay(
    make_env: EnvFactory, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    loader = InProcessLoader()
    wf = make_env(tenant_runner(loader, {"acme": RETRYING}))
    async with wf, wf.clock.frozen():
        instance = await wf.binding.create(id="r1", params={"tenant": "acme"})
        # Two back-offs and a sleep: three hibernations, run() replayed from the top each time.
        status = await through_hibernations(wf, instance, 3)
        assert status["status"] == "complete"
        got = await page(wf, "r1")
    assert [(line.stream, line.text, line.step, line.attempt) for line in got.lines] == [
        ("stdout", "starting r1", None, 0),
        ("stdout", "attempt 1", "flaky", 1),
        ("ERROR", "tenant: failing? True", "flaky", 1),
        ("stdout", "attempt 2", "flaky", 2),
        ("ERROR", "tenant: failing? True", "flaky", 2),
        ("stdout", "attempt 3", "flaky", 3),
        ("ERROR", "tenant: failing? False", "flaky", 3),
        ("stdout", "finished with ok", None, 0),
    ]
    assert [line.seq for line in got.lines] == sorted(line.seq for line in got.lines)
    assert got.cursor == got.lines[-1].seq
    assert not got.more
    assert got.status == "complete"
    assert got.bytes > 0
    assert got.dropped == 0
    # The tenant's output went to its log only: not to the host's stdout, nor its log.
    assert "attempt 1" not in capsys.readouterr().out
    assert "failing?" not in caplog.text


async def test_paging_with_the_cursor_and_filters(make_env: EnvFactory) -> None:
    loader = InProcessLoader()
    wf = make_env(tenant_runner(loader, {"acme": RETRYING}))
    async with wf, wf.clock.frozen():
        instance = await wf.binding.create(id="p1", params={"tenant": "acme"})
        await through_hibernations(wf, instance, 3)
        first = await page(wf, "p1", limit=3)
        assert [line.text for line in first.lines] == [
            "starting p1",
            "attempt 1",
            "tenant: failing? True",
        ]
        assert first.more
        rest = await page(wf, "p1", after=first.cursor)
        assert len(rest.lines) == 5
        assert not rest.more
        empty = await page(wf, "p1", after=rest.cursor)
        assert (empty.lines, empty.cursor) == ([], rest.cursor)
        second = await page(wf, "p1", step=("flaky", 1), attempt=2)
        assert [line.text for line in second.lines] == ["attempt 2", "tenant: failing? True"]
        assert [line.text for line in (await page(wf, "p1", step=("flaky", 2))).lines] == []


CHATTER = """
import asyncio
from workers import WorkflowEntrypoint

class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        me = "TENANT/" + event["instanceId"]

        @step.do("talk")
        async def talk():
            for i in range(20):
                print(me, i)
                await asyncio.sleep(0)
            return 1

        for i in range(5):
            print(me, "run", i)
            await asyncio.sleep(0)
        return await talk()
"""


async def test_concurrent_runs_in_the_host_never_mix(make_env: EnvFactory) -> None:
    loader = InProcessLoader()
    sources = {t: CHATTER.replace("TENANT", t) for t in ("acme", "globex")}
    wf = make_env(tenant_runner(loader, sources))
    # Frozen: the virtual clock must not jump to the steps' timeouts while they yield.
    async with wf, wf.clock.frozen():
        made = [
            await wf.binding.create(id=f"{tenant}-{i}", params={"tenant": tenant})
            for i in range(4)
            for tenant in sources
        ]
        for instance in made:
            assert (await wf.wait_for(instance))["status"] == "complete"
        for instance in made:
            tenant = instance.id.split("-")[0]
            lines = (await page(wf, instance.id)).lines
            assert len(lines) == 25
            assert all(line.text.startswith(f"{tenant}/{instance.id} ") for line in lines)
            assert {line.step for line in lines} == {None, "talk"}


LOUD = """
from workers import WorkflowEntrypoint

class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        for n in range(3):
            @step.do("loud")
            async def loud():
                for i in range(1000):
                    print("line", i, "z" * 50)
                return n
            await loud()
        return "done"
"""


async def test_the_host_bounds_what_it_stores(make_env: EnvFactory) -> None:
    loader = InProcessLoader()
    limits = Limits(log_bytes_per_attempt=2000, log_bytes_per_instance=5000)
    wf = make_env(tenant_runner(loader, {"t": LOUD}), limits=limits)
    async with wf, wf.clock.frozen():
        instance = await wf.binding.create(id="b1", params={"tenant": "t"})
        assert (await wf.wait_for(instance))["status"] == "complete"
        got = await page(wf, "b1", limit=1000)
    kept = [line for line in got.lines if line.stream == "stdout"]
    notes = [line for line in got.lines if line.stream == "dwf"]
    assert 2 * 20 <= len(kept) <= 3 * 28
    assert got.bytes <= 5000 + 3 * 200
    assert len(kept) + got.dropped == 3000
    assert [n.step for n in notes] == ["loud", "loud", "loud"]
    assert [n.count for n in notes] == [1, 2, 3]
    assert "limit of 1 KiB" not in notes[0].text
    assert "2,000 bytes" in notes[0].text or "over the limit" in notes[0].text
    assert "instance's logs reached their limit" in notes[-1].text


async def test_an_errors_traceback_and_message(
    make_env: EnvFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async def run(event: Any, step: Any) -> Any:
        @step.do("look up", config={"retries": {"limit": 1, "delay": "1 minute"}})
        async def look_up() -> Any:
            order: dict[str, Any] = {}
            return order["customer"]

        return await look_up()

    caplog.set_level(logging.WARNING, logger="dynamic_workflows.engine")
    wf = make_env(run)
    async with wf, wf.clock.frozen():
        instance = await wf.binding.create(id="e1")
        status = await through_hibernations(wf, instance, 1)  # the retry is a replay
        view = await wf.engine.queries.get_instance(wf.binding.name, "", "e1")
        assert view is not None
        details = await wf.engine.queries.describe(view)
    # Cloudflare's shape, and the key itself as the message (str(KeyError) is its repr).
    assert status["error"] == {"name": "KeyError", "message": "customer"}
    error = details.instance.error
    assert error is not None
    (step,) = details.steps
    assert step.error is not None
    assert step.error.traceback == error.traceback  # the replay raised the recorded one
    assert error.traceback is not None
    assert f'File "{__file__}", line ' in error.traceback
    assert "in look_up\nKeyError: customer" in error.traceback
    assert "dynamic_workflows" not in error.traceback
    assert error.traceback.startswith("Traceback (most recent call last):")
    # The history keeps each attempt's error without its traceback.
    assert [a.error for a in step.attempts if a.error] == [
        step.error.__class__("KeyError", "customer")
    ] * 2
    (line,) = [r for r in caplog.records if getattr(r, "event", None) == "instance.errored"]
    assert line.levelno == logging.WARNING
    assert "e1" in line.getMessage()
    assert "KeyError: customer" in line.getMessage()
    assert (line.workflow, line.instance, line.scope) == ("workflow", "e1", "")  # type: ignore[attr-defined]


def test_a_log_book_bounds_scopes_and_the_instance() -> None:
    book = LogBook(per_scope=100, room=150, per_instance=150)
    for i in range(10):
        book.add(LogLine(1.0, "stdout", f"a{i}", "s", 1, 1))
    book.add(LogLine(1.0, "stdout", "run line"))
    book.add(LogLine(1.0, "stdout", "x" * 200, "t", 1, 1))
    taken = book.take(2.0)
    texts = [line.text for line in taken.lines]
    assert texts[:5] == ["a0", "a1", "a2", "a3", "a4"]  # 18 bytes each: 5 fit in 100
    assert "run line" in texts
    notes = [line for line in taken.lines if line.dropped]
    assert [(n.step, n.dropped) for n in notes] == [("s", 5), ("t", 1)]
    assert taken.dropped == 6
    assert book.take(3.0).lines == []


def test_the_json_log_format() -> None:
    record = logging.LogRecord(
        "dynamic_workflows.engine", logging.WARNING, "f", 1, "x %s", ("y",), None
    )
    record.__dict__.update(event="instance.errored", instance="i1", workflow="wf")
    line = json.loads(JSONFormatter().format(record))
    assert line["level"] == "WARNING"
    assert line["logger"] == "dynamic_workflows.engine"
    assert line["message"] == "x y"
    assert (line["event"], line["instance"], line["workflow"]) == ("instance.errored", "i1", "wf")
    assert line["time"].endswith("Z")
    try:
        raise ValueError("bad")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, "f", 1, "failed", (), sys.exc_info())
    assert "ValueError: bad" in json.loads(JSONFormatter().format(failed))["exception"]


RING = """
import sys
from workers import Response, WorkerEntrypoint

print("imported")

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        print("fetched", request.url)
        sys.stdout.buffer.write("bytes, décodés\\n".encode())
        return Response("ok")
"""


async def test_output_outside_runs_goes_to_the_tenants_ring(
    capsys: pytest.CaptureFixture[str],
) -> None:
    loader = InProcessLoader()
    stub = loader.get("ringed", lambda: {"main_module": "main.py", "modules": {"main.py": RING}})
    await stub.get_entrypoint().fetch("https://t.example/x")
    print("the host's own line")
    await asyncio.sleep(0)
    ring = loader.logs.get("ringed")
    assert ring is not None
    assert [line.text for _, line in ring.since()] == [
        "imported",
        "fetched https://t.example/x",
        "bytes, décodés",
    ]
    out = capsys.readouterr().out
    assert "the host's own line" in out
    assert "imported" not in out
