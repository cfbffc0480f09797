"""What sandboxed tenant code prints or logs: kept per instance, step and attempt, bounded,
never mixed between tenants or instances; and its errors' tracebacks."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from dynamic_workflows import Engine, MemoryStorage
from dynamic_workflows.core.limits import Limits
from dynamic_workflows.core.logs import LogLine
from dynamic_workflows.sandbox.loader import Loader
from dynamic_workflows.workers import WorkflowEntrypoint

from .conftest import worker_code
from .test_workflows import wait_status


def dispatcher(loader: Any, codes: dict[str, Any]) -> type[WorkflowEntrypoint]:
    """Runs the tenant named by the instance's params in its own worker."""

    class Dispatcher(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            tenant = event["payload"]["tenant"]
            stub = loader.get(tenant, lambda: codes[tenant])
            return await stub.get_entrypoint("TenantWorkflow").run(event, step)

    return Dispatcher


async def lines_of(engine: Engine, instance_id: str) -> list[LogLine]:
    row = await engine.storage.get_instance("wf", "", instance_id)
    assert row is not None
    return [line for _, line in await engine.storage.load_logs(row.pk)]


CHATTY = """
    import logging
    import sys
    from workers import WorkflowEntrypoint

    log = logging.getLogger("billing")

    class TenantWorkflow(WorkflowEntrypoint):
        async def run(self, event, step):
            print("run starts for", event["instanceId"])

            @step.do("charge", config={"retries": {"limit": 2, "delay": 10,
                                                   "backoff": "constant"}})
            async def charge(ctx):
                print(f"charging, attempt {ctx['attempt']}")
                log.info("card %s", "4242")
                if ctx["attempt"] == 1:
                    sys.stderr.write("declined\\n")
                    raise ValueError("card declined")
                return 42

            amount = await charge()
            await step.sleep("nap", 20)
            print("charged", amount)
            return amount
"""


async def test_a_tenants_lines_are_kept_per_step_and_attempt(loader: Loader) -> None:
    codes = {"acme": worker_code(CHATTY)}
    # No warm horizon: the back-off and the sleep hibernate, and run() is replayed from the top.
    async with Engine(MemoryStorage(), warm_horizon=0) as engine:
        binding = engine.register("wf", dispatcher(loader, codes))
        instance = await binding.create(id="order-1", params={"tenant": "acme"})
        status = await wait_status(instance, {"complete", "errored"})
        lines = await lines_of(engine, "order-1")
    assert status["status"] == "complete", status
    seen = [(line.stream, line.text, line.step, line.attempt) for line in lines]
    assert seen == [
        ("stdout", "run starts for order-1", None, 0),
        ("stdout", "charging, attempt 1", "charge", 1),
        ("INFO", "billing: card 4242", "charge", 1),
        ("stderr", "declined", "charge", 1),
        ("stdout", "charging, attempt 2", "charge", 2),
        ("INFO", "billing: card 4242", "charge", 2),
        ("stdout", "charged 42", None, 0),
    ]
    # Replays (after the back-off and after the sleep) printed "run starts" again: kept once.
    assert all(line.count == (1 if line.step else 0) for line in lines)
    assert lines == sorted(lines, key=lambda line: line.at)


MARKER = """
    import asyncio
    import logging
    from workers import WorkflowEntrypoint

    class TenantWorkflow(WorkflowEntrypoint):
        async def run(self, event, step):
            me = event["payload"]["tenant"] + "/" + event["instanceId"]

            async def chatter(n):
                for i in range(n):
                    print(me, i)
                    logging.warning("%s %d", me, i)
                    await asyncio.sleep(0)

            @step.do("one")
            async def one():
                await chatter(30)
                return 1

            @step.do("two")
            async def two():
                await chatter(30)
                return 2

            await chatter(5)
            return sum(await asyncio.gather(one(), two()))
"""


async def test_concurrent_tenants_and_instances_never_mix(loader: Loader) -> None:
    codes = {"acme": worker_code(MARKER), "globex": worker_code(MARKER)}
    async with Engine(MemoryStorage()) as engine:
        binding = engine.register("wf", dispatcher(loader, codes))
        made = [
            await binding.create(id=f"{tenant}-{i}", params={"tenant": tenant})
            for i in range(3)
            for tenant in codes
        ]
        for instance in made:
            assert (await wait_status(instance, {"complete", "errored"}))["status"] == "complete"
        for instance in made:
            tenant = instance.id.split("-")[0]
            lines = await lines_of(engine, instance.id)
            assert len(lines) == 2 * (5 + 30 + 30), instance.id
            for line in lines:
                assert f"{tenant}/{instance.id} " in line.text, (instance.id, line)
            # Each gathered step's lines are its own: the branches ran interleaved.
            by_step = {(line.step, line.attempt) for line in lines}
            assert by_step == {(None, 0), ("one", 1), ("two", 1)}


FLOOD = """
    from workers import WorkflowEntrypoint

    class TenantWorkflow(WorkflowEntrypoint):
        async def run(self, event, step):
            @step.do("flood")
            async def flood():
                line = "x" * 99
                for _ in range(1_000_000):   # 100 MB
                    print(line)
                return "flooded"

            return await flood()
"""

QUICK = """
    from workers import WorkflowEntrypoint

    class TenantWorkflow(WorkflowEntrypoint):
        async def run(self, event, step):
            @step.do("quick")
            async def quick():
                print("quick")
                return "quick"

            return await quick()
"""


async def test_a_tenant_printing_100_mb_is_bounded_quickly_and_the_engine_stays_responsive(
    loader: Loader,
) -> None:
    codes = {"flooder": worker_code(FLOOD), "other": worker_code(QUICK)}
    async with Engine(MemoryStorage()) as engine:
        binding = engine.register("wf", dispatcher(loader, codes))
        start = time.monotonic()
        flooding = await binding.create(id="flood", params={"tenant": "flooder"})
        # While the flood runs, another tenant's instance runs to its end, and the host's loop
        # answers at once.
        await asyncio.sleep(0.2)
        lag = time.monotonic()
        await asyncio.sleep(0)
        assert time.monotonic() - lag < 0.1
        other = await binding.create(id="other", params={"tenant": "other"})
        other_status = await wait_status(other, {"complete", "errored"}, timeout=10)
        assert other_status["status"] == "complete"
        status = await wait_status(flooding, {"complete", "errored"}, timeout=60)
        elapsed = time.monotonic() - start
        lines = await lines_of(engine, "flood")
        row = await engine.storage.get_instance("wf", "", "flood")
    assert status["status"] == "complete", status
    assert elapsed < 30, elapsed
    limits = engine.limits
    kept = [line for line in lines if line.stream == "stdout"]
    assert kept
    assert all(line.text == "x" * 99 for line in kept)
    assert row is not None
    assert row.log_bytes <= limits.log_bytes_per_attempt + 200
    (note,) = [line for line in lines if line.stream == "dwf"]
    assert note.dropped == 1_000_000 - len(kept)
    assert note.step == "flood"
    assert "dropped" in note.text
    assert "64 KiB" in note.text
    assert row.log_dropped == note.dropped


PER_STEP = """
    from workers import WorkflowEntrypoint

    class TenantWorkflow(WorkflowEntrypoint):
        async def run(self, event, step):
            for i in range(8):
                @step.do(f"s{i}")
                async def s():
                    for j in range(20):
                        print(f"step {i} line {j} " + "y" * 40)
                    return i
                await s()
            return "done"
"""


async def test_an_instance_s_logs_stop_at_its_limit_and_count_the_rest(loader: Loader) -> None:
    limits = Limits(log_bytes_per_attempt=800, log_bytes_per_instance=3000)
    async with Engine(MemoryStorage(), limits=limits, warm_horizon=0) as engine:
        binding = engine.register("wf", dispatcher(loader, {"t": worker_code(PER_STEP)}))
        instance = await binding.create(id="capped", params={"tenant": "t"})
        assert (await wait_status(instance, {"complete", "errored"}))["status"] == "complete"
        lines = await lines_of(engine, "capped")
        row = await engine.storage.get_instance("wf", "", "capped")
    assert row is not None
    assert 2500 <= row.log_bytes <= 3000 + 1000  # (notes count, beyond the room)
    notes = [line for line in lines if line.stream == "dwf"]
    assert any("instance's logs reached their limit" in n.text for n in notes)
    printed = 8 * 20
    stored = len([line for line in lines if line.stream == "stdout"])
    assert stored + row.log_dropped == printed


FAILING = {
    "main.py": """
from workers import WorkflowEntrypoint
from lib import lookup


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do("look up", config={"retries": {"limit": 0}})
        async def look_up():
            return lookup({})

        return await look_up()
""",
    "lib.py": """
def lookup(order):
    return order["customer"]
""",
}


async def test_a_tenants_error_keeps_its_traceback_with_its_file_names(
    loader: Loader, caplog: pytest.LogCaptureFixture
) -> None:
    code = {"main_module": "main.py", "modules": FAILING}
    caplog.set_level(logging.WARNING, logger="dynamic_workflows.engine")
    async with Engine(MemoryStorage()) as engine:
        binding = engine.register("wf", dispatcher(loader, {"t": code}))
        instance = await binding.create(id="broken", params={"tenant": "t"})
        status = await wait_status(instance, {"complete", "errored"})
        row = await engine.storage.get_instance("wf", "", "broken")
        assert row is not None
        (step,) = await engine.storage.load_journal(row.pk)
        details = await engine.queries.describe(engine.queries.view(row))
    # Cloudflare's shape, and the exception's own message (not the repr of the key).
    assert status["error"] == {"name": "KeyError", "message": "customer"}
    assert row.error is not None
    assert step.error is not None
    for traceback in (row.error.traceback, step.error.traceback):
        assert traceback is not None
        assert 'File "lib.py", line 3, in lookup' in traceback
        assert 'File "main.py", line 10, in look_up' in traceback
        assert traceback.endswith("KeyError: customer")
        assert "dynamic_workflows" not in traceback
        assert "site-packages" not in traceback
    assert details.instance.error == row.error
    # One line in the host's log for the errored instance.
    errored = [r for r in caplog.records if getattr(r, "event", None) == "instance.errored"]
    assert len(errored) == 1
    assert errored[0].levelno == logging.WARNING
    assert "broken" in errored[0].getMessage()
    assert "lib.py:3" in errored[0].getMessage()


RING = """
    from workers import Response, WorkerEntrypoint

    print("imported")

    class Default(WorkerEntrypoint):
        async def fetch(self, request):
            print("fetching", request.url)
            return Response("ok")

        async def boom(self):
            raise KeyError("nope")
"""


async def test_output_outside_runs_goes_to_the_tenants_ring(loader: Loader) -> None:
    stub = loader.get("ringed", lambda: worker_code(RING))
    response = await stub.get_entrypoint().fetch("https://tenant.example/a")
    assert response.status == 200
    with pytest.raises(KeyError):
        await stub.get_entrypoint().boom()
    ring = loader.logs.get("ringed")
    assert ring is not None
    texts = [line.text for _, line in ring.since()]
    assert texts[:2] == ["imported", "fetching https://tenant.example/a"]
    assert texts[2].startswith("boom() raised KeyError: nope")
    assert 'File "main.py", line 12, in boom' in texts[2]
