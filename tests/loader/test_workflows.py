"""Workflow runs whose tenant code runs in a sandboxed worker, driven by the real engine."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any

import pytest

from dynamic_workflows import Engine, MemoryStorage
from dynamic_workflows.binding import Instance
from dynamic_workflows.core.clock import MockClock
from dynamic_workflows.sandbox.bridge import RunBridge
from dynamic_workflows.sandbox.loader import InProcessLoader, Loader
from dynamic_workflows.sandbox.protocol import RunParked, StepAttempt, StepWake
from dynamic_workflows.testing import WorkflowTestEnv
from dynamic_workflows.workers import WorkflowEntrypoint

from .conftest import worker_code

TENANT = """
    import os
    from workers import WorkflowEntrypoint
    from workers.workflows import NonRetryableError

    class TenantWorkflow(WorkflowEntrypoint):
        async def run(self, event, step):
            @step.do("greet")
            async def greet():
                await self.env.LOG.hit("greet")
                return "Hello, " + event["payload"]["name"]

            @step.do("flaky", config={"retries": {"limit": 3, "delay": 20,
                                                  "backoff": "constant"}})
            async def flaky(ctx):
                await self.env.LOG.hit(f"flaky#{ctx['attempt']}")
                if ctx["attempt"] < 3:
                    raise ValueError("not yet")
                return ctx["attempt"]

            @step.do("crashy", config={"retries": {"limit": 2, "delay": 20}})
            async def crashy(ctx):
                await self.env.LOG.hit(f"crashy#{ctx['attempt']}")
                if ctx["attempt"] == 1 and event["payload"].get("crash"):
                    os._exit(9)
                return "survived"

            hello = await greet()
            attempts = await flaky()
            await step.sleep("nap", 50)
            approval = await step.wait_for_event("approve", "approval", timeout="30 seconds")
            survived = await crashy()
            return {"hello": hello, "attempts": attempts, "approval": approval["payload"],
                    "survived": survived, "instance": event["instanceId"]}
"""


class Log:
    """A host binding the tenant reports to: counts every callback that really ran."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.first = asyncio.Event()

    async def hit(self, name: str) -> None:
        self.hits.append(name)
        self.first.set()


def dispatcher(loader: Any, get_code: Any) -> type[WorkflowEntrypoint]:
    class Dispatcher(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            stub = loader.get("t1", get_code)
            return await stub.get_entrypoint("TenantWorkflow").run(event, step)

    return Dispatcher


async def wait_status(
    instance: Instance, wanted: set[str], timeout: float = 20.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = await instance.status()
        if status["status"] in wanted:
            return status
        assert time.monotonic() < deadline, f"instance is {status} after {timeout} s"
        await asyncio.sleep(0.01)


async def test_sandboxed_workflow_completes_replays_and_survives_a_crash(loader: Loader) -> None:
    log = Log()
    loads: list[int] = []

    def get_code() -> dict[str, Any]:
        loads.append(1)
        return worker_code(TENANT, env={"LOG": log})

    # No warm horizon: every back-off, sleep and wait hibernates, so run() is replayed each time.
    async with Engine(MemoryStorage(), warm_horizon=0) as engine:
        binding = engine.register("wf", dispatcher(loader, get_code))
        instance = await binding.create(id="run-1", params={"name": "Ada", "crash": True})
        await wait_status(instance, {"waiting"})
        await instance.send_event(type="approval", payload={"ok": True})
        status = await wait_status(instance, {"complete", "errored"})
        row = await engine.storage.get_instance("wf", "", "run-1")
        assert row is not None
        journal = {e.name: e for e in await engine.storage.load_journal(row.pk)}
    # the attempt that produced each result crossed the boundary with it (the crash counted)
    assert journal["flaky"].attempt == 3
    assert journal["crashy"].attempt == 2
    assert status["status"] == "complete", status
    assert status["output"] == {
        "hello": "Hello, Ada",
        "attempts": 3,
        "approval": {"ok": True},
        "survived": "survived",
        "instance": "run-1",
    }
    # Every callback ran once per attempt although run() was replayed after each retry
    # back-off, the sleep, the event wait and the crash.
    assert log.hits == ["greet", "flaky#1", "flaky#2", "flaky#3", "crashy#1", "crashy#2"]
    assert engine.counters.runs >= 5
    assert len(loads) == 2  # loaded once, and once more after the worker died


async def test_a_limit_broken_in_a_step_is_a_failed_attempt(loader: Loader) -> None:
    source = """
        import time
        from workers import WorkflowEntrypoint

        class TenantWorkflow(WorkflowEntrypoint):
            async def run(self, event, step):
                @step.do("slow", config={"retries": {"limit": 1, "delay": 10}})
                async def slow(ctx):
                    if ctx["attempt"] == 1:
                        time.sleep(5)  # blocks the worker's loop: only the host can stop it
                    return ctx["attempt"]
                return await slow()
    """
    async with Engine(MemoryStorage()) as engine:
        code = worker_code(source, limits={"wall_ms": 300})
        binding = engine.register("wf", dispatcher(loader, lambda: code))
        instance = await binding.create(params={})
        status = await wait_status(instance, {"complete", "errored"})
    assert status == {"status": "complete", "output": 2, "error": None}


async def test_an_error_in_run_errors_the_instance(loader: Loader) -> None:
    source = """
        from workers import WorkflowEntrypoint
        from workers.workflows import NonRetryableError

        class TenantWorkflow(WorkflowEntrypoint):
            async def run(self, event, step):
                @step.do("once")
                async def once():
                    raise NonRetryableError("do not retry me")
                return await once()
    """
    async with Engine(MemoryStorage()) as engine:
        binding = engine.register("wf", dispatcher(loader, lambda: worker_code(source)))
        instance = await binding.create(params={})
        status = await wait_status(instance, {"complete", "errored"})
    assert status["status"] == "errored"
    assert status["error"] == {"name": "NonRetryableError", "message": "do not retry me"}


async def test_in_process_loader_passes_the_step_through() -> None:
    log = Log()
    async with InProcessLoader() as loader:
        get_code = lambda: worker_code(TENANT, env={"LOG": log})  # noqa: E731
        async with WorkflowTestEnv(dispatcher(loader, get_code)) as wf:
            instance = await wf.binding.create(id="ip", params={"name": "Bo"})
            await wf.wait_for(instance, "waiting")
            await instance.send_event(type="approval", payload=1)
            status = await wf.wait_for(instance)
    assert status["output"]["hello"] == "Hello, Bo"
    assert status["output"]["attempts"] == 3
    assert log.hits.count("greet") == 1


SLOW_STEP = """
    import asyncio
    from workers import WorkflowEntrypoint

    class TenantWorkflow(WorkflowEntrypoint):
        async def run(self, event, step):
            @step.do("slow")
            async def slow():
                await self.env.LOG.hit("slow")
                await asyncio.sleep(event["payload"]["seconds"])
                return "done"

            @step.do("after")
            async def after():
                await self.env.LOG.hit("after")
                return "after"

            return [await slow(), await after()]
"""


async def test_pause_reaches_the_sandbox_and_resume_replays(loader: Loader) -> None:
    log = Log()
    async with Engine(MemoryStorage()) as engine:
        code = worker_code(SLOW_STEP, env={"LOG": log})
        binding = engine.register("wf", dispatcher(loader, lambda: code))
        instance = await binding.create(params={"seconds": 0.3})
        await asyncio.wait_for(log.first.wait(), 10)
        await instance.pause()
        assert (await instance.status())["status"] == "waitingForPause"
        await wait_status(instance, {"paused"})
        assert log.hits == ["slow"]  # the next step did not start
        await instance.resume()
        status = await wait_status(instance, {"complete", "errored"})
    assert status["output"] == ["done", "after"]
    assert log.hits == ["slow", "after"]


async def test_terminate_cancels_the_sandboxed_run(loader: Loader) -> None:
    log = Log()
    async with Engine(MemoryStorage()) as engine:
        code = worker_code(SLOW_STEP, env={"LOG": log})
        binding = engine.register("wf", dispatcher(loader, lambda: code))
        instance = await binding.create(params={"seconds": 30})
        await asyncio.wait_for(log.first.wait(), 10)
        await instance.terminate()
        status = await wait_status(instance, {"terminated"}, timeout=5)
        assert status["status"] == "terminated"
        # The tenant's worker stopped that run and still serves the next one.
        again = await binding.create(params={"seconds": 0})
        assert (await wait_status(again, {"complete", "errored"}))["output"] == ["done", "after"]


WARM_TENANT = """
    from workers import WorkflowEntrypoint

    class TenantWorkflow(WorkflowEntrypoint):
        async def run(self, event, step):
            await self.env.LOG.hit("run")
            await step.sleep("nap", "1 second")

            @step.do("after")
            async def after():
                await self.env.LOG.hit("after")
                return "woke"

            return await after()
"""


async def test_a_sandboxed_run_with_a_near_wake_up_stays_warm(loader: Loader) -> None:
    """The worker keeps the quiescent run live and tells the host, which counts it as parked
    (reported ``waiting``, no concurrency slot) and wakes it by its timer: no replay."""
    log = Log()

    def get_code() -> dict[str, Any]:
        return worker_code(WARM_TENANT, env={"LOG": log})

    async with Engine(MemoryStorage(), warm_horizon=5.0, concurrency=1) as engine:
        binding = engine.register("wf", dispatcher(loader, get_code))
        instance = await binding.create(id="warm")
        await wait_status(instance, {"waiting"})
        assert engine.parked_runs() == 1
        other = await binding.create(id="other")  # the parked run holds no slot
        await wait_status(other, {"waiting"})
        assert engine.parked_runs() == 2
        status = await wait_status(instance, {"complete", "errored"})
        assert (await wait_status(other, {"complete", "errored"}))["output"] == "woke"
    assert status["output"] == "woke"
    assert log.hits.count("run") == 2  # once per instance: neither was replayed
    assert log.hits.count("after") == 2


async def test_a_sandboxed_run_hibernates_without_a_warm_horizon(loader: Loader) -> None:
    log = Log()

    def get_code() -> dict[str, Any]:
        return worker_code(WARM_TENANT, env={"LOG": log})

    async with Engine(MemoryStorage(), warm_horizon=0) as engine:
        binding = engine.register("wf", dispatcher(loader, get_code))
        instance = await binding.create(id="cold")
        status = await wait_status(instance, {"complete", "errored"})
    assert status["output"] == "woke"
    assert log.hits == ["run", "run", "after"]  # hibernated, then replayed


def test_parked_runs_may_take_half_the_tenants_memory_allowance() -> None:
    """A worker keeps a run warm only while its address space is under its parking ceiling
    (half of the tenant's allowance above the warmed worker); past it, runs hibernate instead
    of pushing the tenant into its memory limit."""
    from dynamic_workflows.sandbox.worker import WorkerServer

    a, b = socket.socketpair()
    statm = os.open("/proc/self/statm", os.O_RDONLY)
    try:
        server = WorkerServer(a, stats_fds=(None, statm))
        assert server._room_to_park()  # no memory limit: no ceiling
        server._park_ceiling = 0
        assert not server._room_to_park()
        server._park_ceiling = 1 << 60
        assert server._room_to_park()
    finally:
        os.close(statm)
        a.close()
        b.close()


# -- timers: the worker waits for them by itself on the wall clock; asks the host on a virtual one

TIMED_TENANT = """
    from workers import WorkflowEntrypoint

    class TenantWorkflow(WorkflowEntrypoint):
        async def run(self, event, step):
            await self.env.LOG.hit("run")
            await step.sleep("nap", event["payload"]["nap"])

            @step.do("flaky", config={"retries": {"limit": 1, "delay": event["payload"]["delay"],
                                                  "backoff": "constant"}})
            async def flaky(ctx):
                await self.env.LOG.hit(f"flaky#{ctx['attempt']}")
                if ctx["attempt"] < event["payload"]["attempts"]:
                    raise ValueError("not yet")
                return ctx["attempt"]

            return await flaky()
"""


class TimedLog(Log):
    """Also notes, for every hit, the host's wall time and how many runs the engine counts as
    parked at that moment (the worker's next message after a wake-up must have unparked it)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.at: dict[str, float] = {}
        self.parked_at: dict[str, int] = {}

    async def hit(self, name: str) -> None:
        self.at[name] = time.time()
        self.parked_at[name] = self.engine.parked_runs()
        await super().hit(name)


def record_step_messages(monkeypatch: pytest.MonkeyPatch, engine: Engine) -> list[tuple[Any, int]]:
    """Every step-channel message the host's bridges receive, with the engine's parked count
    right after the bridge handled it."""
    seen: list[tuple[Any, int]] = []
    original = RunBridge.on_step_message

    def on_step_message(self: RunBridge, message: Any) -> None:
        original(self, message)
        seen.append((message, engine.parked_runs()))

    monkeypatch.setattr(RunBridge, "on_step_message", on_step_message)
    return seen


async def test_a_sandboxed_sleep_on_the_wall_clock_wakes_in_the_worker(
    loader: Loader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the host on the wall clock the parked run's own worker wakes it: the host gets no
    StepWake, and the run's next step message is what unparks it."""
    async with Engine(MemoryStorage(), warm_horizon=5.0) as engine:
        seen = record_step_messages(monkeypatch, engine)
        log = TimedLog(engine)
        code = worker_code(TIMED_TENANT, env={"LOG": log})
        binding = engine.register("wf", dispatcher(loader, lambda: code))
        params = {"nap": "300 milliseconds", "delay": 10, "attempts": 1}
        instance = await binding.create(id="nap", params=params)
        status = await wait_status(instance, {"complete", "errored"}, timeout=10)
        assert engine.parked_runs() == 0
    assert status == {"status": "complete", "output": 1, "error": None}
    assert log.hits == ["run", "flaky#1"]  # kept live through the sleep: not replayed
    assert log.at["flaky#1"] - log.at["run"] >= 0.29  # the worker did wait for the instant
    kinds = [type(m) for m, _ in seen]
    assert StepWake not in kinds, kinds
    assert kinds.count(RunParked) == 1
    parked = next(m for m, _ in seen if isinstance(m, RunParked))
    assert [n for m, n in seen if m is parked] == [1]  # the host counted it as parked
    # the step after the sleep reached the host only once the run was unparked
    assert log.parked_at["flaky#1"] == 0
    after = kinds.index(RunParked) + 1
    assert kinds[after] is StepAttempt
    assert seen[after][1] == 0


async def test_a_sandboxed_retry_back_off_on_the_wall_clock_wakes_in_the_worker(
    loader: Loader, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Engine(MemoryStorage(), warm_horizon=5.0) as engine:
        seen = record_step_messages(monkeypatch, engine)
        log = TimedLog(engine)
        code = worker_code(TIMED_TENANT, env={"LOG": log})
        binding = engine.register("wf", dispatcher(loader, lambda: code))
        params = {"nap": 0, "delay": "100 milliseconds", "attempts": 2}
        instance = await binding.create(id="retry", params=params)
        status = await wait_status(instance, {"complete", "errored"}, timeout=10)
        assert engine.parked_runs() == 0
        row = await engine.storage.get_instance("wf", "", "retry")
        assert row is not None
        journal = {e.name: e for e in await engine.storage.load_journal(row.pk)}
    assert status == {"status": "complete", "output": 2, "error": None}
    assert journal["flaky"].attempt == 2
    assert log.hits == ["run", "flaky#1", "flaky#2"]  # retried in the live run, not replayed
    assert log.at["flaky#2"] - log.at["flaky#1"] >= 0.09  # the back-off was waited for
    kinds = [type(m) for m, _ in seen]
    assert StepWake not in kinds, kinds
    assert RunParked in kinds
    assert log.parked_at["flaky#2"] == 0


async def test_a_sandboxed_run_on_a_virtual_clock_asks_the_host_for_its_timers(
    loader: Loader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A MockClock's instants exist only in the host: the worker asks with StepWake (carrying
    the instant), and the host arms the timer that answers it, so hours pass in no real time."""
    clock = MockClock()
    start = clock.now()
    # A horizon of a day: the run is parked through both waits, so only the host's timers (armed
    # when the StepWake arrives) can wake it.
    async with Engine(MemoryStorage(), clock=clock, warm_horizon=86_400.0) as engine:
        seen = record_step_messages(monkeypatch, engine)
        log = TimedLog(engine)
        code = worker_code(TIMED_TENANT, env={"LOG": log})
        binding = engine.register("wf", dispatcher(loader, lambda: code))
        params = {"nap": "2 hours", "delay": "1 hour", "attempts": 2}
        began = time.monotonic()
        instance = await binding.create(id="virtual", params=params)
        status = await wait_status(instance, {"complete", "errored"}, timeout=10)
        real = time.monotonic() - began
        row = await engine.storage.get_instance("wf", "", "virtual")
        assert row is not None
        journal = {e.name: e for e in await engine.storage.load_journal(row.pk)}
    assert status == {"status": "complete", "output": 2, "error": None}
    assert log.hits == ["run", "flaky#1", "flaky#2"]  # parked through both: not replayed
    assert real < 5
    assert clock.now() - start >= 3 * 3600
    wakes = [m for m, _ in seen if isinstance(m, StepWake)]
    assert [(w.name, w.count) for w in wakes] == [("nap", 1), ("flaky", 1)]
    nap, back_off = (w.timer for w in wakes)
    assert nap is not None
    assert back_off is not None
    assert nap == journal["nap"].wake_at
    assert nap - start >= 2 * 3600
    assert back_off - nap >= 3600
    assert sum(isinstance(m, RunParked) for m, _ in seen) == 2


DELAYED = """
    from pyodide.ffi import to_js
    from js import Object
    from workers import WorkflowEntrypoint

    class TenantWorkflow(WorkflowEntrypoint):
        async def run(self, event, step):
            def delay(ctx, error):  # runs in this worker, with the step machinery
                if "rate limit" in str(error):
                    return ctx["attempt"] * 150
                return "10 seconds"

            @step.do("sync", config={"retries": {"limit": 3, "delay": delay,
                                                 "backoff": "constant"}})
            async def sync(ctx):
                await self.env.LOG.hit(str(ctx["attempt"]))
                if ctx["attempt"] < 3:
                    raise RuntimeError("rate limit")
                return to_js({"attempts": ctx["attempt"], "workflow": event["workflowName"]},
                             dict_converter=Object.fromEntries)

            @step.do("broken", config={"retries": {"limit": 3, "delay": lambda: "soon"}})
            async def broken():
                raise ValueError("no")

            try:
                await broken()
            except Exception as exc:
                failed = [type(exc).__name__, str(exc)]
            return {"sync": await sync(), "broken": failed}
"""


async def test_a_dynamic_retry_delay_runs_in_the_sandboxed_worker(loader: Loader) -> None:
    log = Log()
    times: dict[str, float] = {}
    real_hit = log.hit

    async def hit(name: str) -> None:
        times[name] = time.monotonic()
        await real_hit(name)

    log.hit = hit  # type: ignore[method-assign]

    def get_code() -> dict[str, Any]:
        return worker_code(DELAYED, env={"LOG": log})

    async with Engine(MemoryStorage(), warm_horizon=0) as engine:
        binding = engine.register("wf", dispatcher(loader, get_code))
        instance = await binding.create(id="delayed")
        status = await wait_status(instance, {"complete", "errored"})
    assert status["status"] == "complete", status
    assert status["output"]["sync"] == {"attempts": 3, "workflow": "wf"}
    name, message = status["output"]["broken"]
    assert name == "NonRetryableDelayError"
    assert message.startswith('The delay function for step "broken" returned an invalid delay')
    # 150 ms after attempt 1 and 300 ms after attempt 2, from the function in the worker
    assert log.hits == ["1", "2", "3"]
    assert times["2"] - times["1"] >= 0.14
    assert times["3"] - times["2"] >= 0.29


SENSITIVE = """
    from workers import WorkflowEntrypoint

    class TenantWorkflow(WorkflowEntrypoint):
        async def run(self, event, step):
            @step.do("secret", config={"sensitive": "output",
                                       "retries": {"limit": 1, "delay": 10}})
            async def secret(ctx):
                if ctx["attempt"] == 1:
                    raise ValueError("not yet")
                return {"token": "s3cr3t", "config": ctx["config"]}

            value = await secret()
            await step.sleep("nap", 20)  # hibernates: the rest is a replay in a new run

            @step.do("use")
            async def use():
                return value["token"].upper()

            return [value, await use()]
"""


async def test_a_sensitive_steps_flag_crosses_the_sandbox_with_its_result(loader: Loader) -> None:
    async with Engine(MemoryStorage(), warm_horizon=0) as engine:
        binding = engine.register("wf", dispatcher(loader, lambda: worker_code(SENSITIVE)))
        instance = await binding.create(id="sensitive")
        status = await wait_status(instance, {"complete", "errored"})
        view = await engine.queries.get_instance("wf", "", "sensitive")
        assert view is not None
        steps = {s.name: s for s in await engine.queries.journal(view)}
        stored = {e.name: e for e in await engine.storage.load_journal(view.row.pk)}
    assert status["status"] == "complete", status
    value, used = status["output"]
    assert (value["token"], used) == ("s3cr3t", "S3CR3T")  # replayed unredacted to the run
    assert value["config"]["sensitive"] == "output"
    assert (stored["secret"].sensitive, stored["secret"].attempt) == (True, 2)
    assert not stored["use"].sensitive
    assert (steps["secret"].value, steps["secret"].sensitive) == ("[REDACTED]", True)
    assert steps["use"].value == "S3CR3T"
    # its failed attempt crossed with the flag too, and its error is not redacted
    assert steps["secret"].attempts[0].error is not None
    assert steps["secret"].attempts[0].error.message == "not yet"


async def test_a_cron_ticks_schedule_reaches_sandboxed_tenant_code(loader: Loader) -> None:
    source = """
        from workers import WorkflowEntrypoint

        class TenantWorkflow(WorkflowEntrypoint):
            async def run(self, event, step):
                @step.do("see")
                async def see():
                    return event.get("schedule")

                return {"schedule": await see(), "keys": sorted(event)}
    """
    clock = MockClock(1_767_225_660.0, autojump=False)  # 2026-01-01T00:01:00Z
    engine = Engine(MemoryStorage(), clock=clock, warm_horizon=0)
    binding = engine.register(
        "wf", dispatcher(loader, lambda: worker_code(source)), schedules="*/5 * * * *"
    )
    async with engine:
        clock.advance(240)  # 00:05: a tick
        deadline = time.monotonic() + 20
        while not (rows := await engine.storage.list_instances("wf")):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        status = await wait_status(await binding.get(rows[0].id), {"complete", "errored"})
    assert status["status"] == "complete", status
    schedule = {"cron": "*/5 * * * *", "scheduledTime": 1_767_225_900_000}
    assert status["output"] == {
        "schedule": schedule,
        "keys": ["instanceId", "payload", "schedule", "timestamp", "workflowName"],
    }
