"""A misbehaving tenant affects only its own calls; the machine's isolation is really applied."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dynamic_workflows import Engine, MemoryStorage
from dynamic_workflows.core.step_errors import error_name
from dynamic_workflows.errors import DynamicWorkflowsError
from dynamic_workflows.sandbox.confine import (
    ConfinementPolicy,
    IsolationReport,
    LayerStatus,
    SandboxUnavailableError,
)
from dynamic_workflows.sandbox.errors import TenantWorkerError
from dynamic_workflows.sandbox.loader import Loader

from .conftest import _REPORT, worker_code
from .test_workflows import wait_status

BAD = """
    import asyncio, ctypes, os, socket, time
    from workers import WorkerEntrypoint

    class Default(WorkerEntrypoint):
        async def exit(self):
            os._exit(7)

        async def segfault(self):
            ctypes.string_at(0)

        async def hog_memory(self):
            return len(bytearray(1 << 30))

        async def spin(self):
            while True:
                pass

        async def hang(self):
            await asyncio.sleep(30)

        async def block(self):
            time.sleep(30)

        async def leak_fds(self):
            kept = []
            while True:
                kept.append(os.pipe())

        async def ok(self):
            return "ok"
"""
GOOD = """
    from workers import WorkerEntrypoint
    class Default(WorkerEntrypoint):
        async def ok(self):
            return "good"
"""
confined = pytest.mark.skipif(
    not _REPORT.safe_for_untrusted(), reason="this machine cannot confine untrusted code"
)


def bad(loader: Loader, **limits: Any) -> Any:
    return loader.get("acme", lambda: worker_code(BAD, limits=limits or None)).get_entrypoint()


@pytest.mark.parametrize(
    ("method", "limits", "reason"),
    [
        ("exit", {}, "tenant 'acme': the worker process exited with code 7"),
        (
            "segfault",
            {},
            "tenant 'acme': the worker process was killed by SIGSEGV (a crash in native code)",
        ),
        (
            "hog_memory",
            {"memory_mb": 64},
            "tenant 'acme': hog_memory() exceeded the memory limit of 64 MiB",
        ),
        ("spin", {"cpu_ms": 200}, "tenant 'acme': call exceeded the CPU limit of 200 ms"),
        ("hang", {"wall_ms": 200}, "tenant 'acme': hang() exceeded the wall-time limit of 200 ms"),
        (
            "block",
            {"wall_ms": 200},
            "tenant 'acme': block() exceeded the wall-time limit of 200 ms",
        ),
    ],
)
async def test_a_broken_tenant_fails_its_own_call_clearly(
    loader: Loader, method: str, limits: dict[str, int], reason: str
) -> None:
    good = loader.get("good", lambda: worker_code(GOOD)).get_entrypoint()
    assert await good.ok() == "good"
    with pytest.raises(TenantWorkerError) as info:
        await getattr(bad(loader, **limits), method)()
    assert str(info.value) == reason
    assert isinstance(info.value, DynamicWorkflowsError)
    assert info.value.tenant == "acme"
    # The tenant's next call gets a working process; the other tenant never noticed.
    assert await bad(loader, **limits).ok() == "ok"
    assert await good.ok() == "good"


async def test_leaking_descriptors_stays_inside_the_worker(loader: Loader) -> None:
    with pytest.raises(Exception, match="Too many open files"):
        await bad(loader).leak_fds()
    assert await loader.get("good", lambda: worker_code(GOOD)).get_entrypoint().ok() == "good"


@confined
async def test_the_worker_is_confined(loader: Loader) -> None:
    probe_source = """
        import os, socket
        from workers import WorkerEntrypoint

        def attempt(action):
            try:
                action()
            except Exception as exc:
                return type(exc).__name__
            return "allowed"

        class Default(WorkerEntrypoint):
            async def probe(self):
                return {
                    "inet": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)),
                    "passwd": attempt(lambda: open("/etc/passwd").read()),
                    "stat": attempt(lambda: os.stat("/etc/passwd")),
                    "write": attempt(lambda: open("/tmp/dwf-escape", "w")),
                    "fork": attempt(os.fork),
                    "env": sorted(os.environ),
                }
    """
    result = await loader.load(worker_code(probe_source)).get_entrypoint().probe()
    assert result["inet"] != "allowed"
    assert result["passwd"] != "allowed"
    assert result["write"] != "allowed"
    assert result["fork"] != "allowed"
    assert set(result["env"]) <= {"PATH", "LANG"}
    if _REPORT.available("mountns"):
        # the minimal root, entered once by the fork server: nothing else exists
        assert result["stat"] == "FileNotFoundError"
        assert "mountns=yes" in loader.stats()["isolation"]


async def test_memory_per_warm_worker_is_small(loader: Loader) -> None:
    await loader.get("m", lambda: worker_code(GOOD)).get_entrypoint().ok()
    memory = await loader.memory()
    assert memory["m"] is not None
    assert 0 < memory["m"] < 32 * 1024 * 1024


BIG = """
    from workers import WorkerEntrypoint
    class Default(WorkerEntrypoint):
        async def ok(self):
            return "good"

        async def allocate(self, mib):
            return len(bytearray(mib << 20))
"""


@confined
async def test_a_memory_limit_over_the_sandboxs_cap_fails_the_load_naming_both() -> None:
    """A tenant limit the worker's address-space cap cannot hold is the tenant's error, named
    with the cap, rather than a smaller limit than the code says."""
    reason = (
        r"^WorkerCode\.limits\.memory_mb: 1024 MiB on top of the \d+ MiB a warmed worker maps "
        r"does not fit in the sandbox's address-space cap of 256 MiB "
        r"\(ConfinementPolicy\.memory_bytes\)$"
    )
    policy = ConfinementPolicy(memory_bytes=256 << 20)
    async with Loader(policy=policy, warm=1, report=_REPORT) as loader:
        over = loader.get("over", lambda: worker_code(BIG, limits={"memory_mb": 1024}))
        for _ in range(2):  # every call says so; none reaches the code
            with pytest.raises(Exception, match=reason) as info:
                await over.get_entrypoint().ok()
            # the load's own error, by name (not a dead worker, not the call's)
            assert error_name(info.value) == "WorkerCodeError"
        # A limit that fits under the same cap loads, and holds.
        fits = loader.get("fits", lambda: worker_code(BIG, limits={"memory_mb": 64}))
        assert await fits.get_entrypoint().ok() == "good"
        with pytest.raises(TenantWorkerError, match="exceeded the memory limit of 64 MiB"):
            await fits.get_entrypoint().allocate(128)


async def test_a_larger_default_memory_limit_sizes_the_sandboxs_cap() -> None:
    """``Loader(limits={"memory_mb": N})`` leaves room for N MiB above a warmed worker in every
    worker's address space, so code that sets no limit of its own gets all of it."""
    unconfined = not _REPORT.safe_for_untrusted()
    assert Loader(report=_REPORT, unconfined=unconfined).policy.memory_bytes == (256 << 20)
    async with Loader(
        limits={"memory_mb": 512}, warm=1, report=_REPORT, unconfined=unconfined
    ) as loader:
        assert loader.policy.memory_bytes >= (512 + 128) << 20
        entry = loader.get("roomy", lambda: worker_code(BIG)).get_entrypoint()
        assert await entry.ok() == "good"
        # more than the address-space cap of the default policy (256 MiB) could ever hold
        assert await entry.allocate(384) == 384 << 20


async def test_fail_closed_without_isolation() -> None:
    nothing = IsolationReport(
        tuple(
            LayerStatus(n, False, "absent")
            for n in ("seccomp", "landlock", "userns", "netns", "rlimits")
        )
    )
    with pytest.raises(SandboxUnavailableError, match="pass unconfined=True"):
        Loader(report=nothing)
    Loader(report=nothing, unconfined=True)  # explicit trusted mode starts


async def test_eviction_and_zygote_rotation() -> None:
    loads: list[str] = []

    def code_for(name: str) -> Any:
        def get_code() -> dict[str, Any]:
            loads.append(name)
            return worker_code(GOOD)

        return get_code

    async with Loader(
        unconfined=not _REPORT.safe_for_untrusted(),
        report=_REPORT,
        warm=0,
        max_workers=2,
        zygote_max_forks=2,
        idle_timeout=0.2,
    ) as loader:
        for name in ("a", "b", "c", "a"):
            assert await loader.get(name, code_for(name)).get_entrypoint().ok() == "good"
        assert loads == ["a", "b", "c", "a"]  # 'a' was evicted (least recently used)
        await asyncio.sleep(0.5)  # idle eviction
        assert await loader.get("c", code_for("c")).get_entrypoint().ok() == "good"
        assert loads[-1] == "c"
        assert loader.pool.spawned >= 5  # across at least two fork servers


async def test_one_tenant_crashing_and_hanging_does_not_stop_another(loader: Loader) -> None:
    crash = """
        import os, time
        from workers import WorkflowEntrypoint
        class TenantWorkflow(WorkflowEntrypoint):
            async def run(self, event, step):
                @step.do("doomed", config={"retries": {"limit": 0}})
                async def doomed():
                    if event["payload"]["how"] == "crash":
                        os._exit(1)
                    time.sleep(30)
                return await doomed()
    """
    fine = """
        from workers import WorkflowEntrypoint
        class TenantWorkflow(WorkflowEntrypoint):
            async def run(self, event, step):
                @step.do("one")
                async def one():
                    return event["payload"]["n"]
                await step.sleep("pause", 50)
                return await one() * 2
    """

    class Routes:
        def __init__(self) -> None:
            self.codes = {
                "bad": worker_code(crash, limits={"wall_ms": 300}),
                "fine": worker_code(fine),
            }

    routes = Routes()

    def routed(tenant: str) -> Any:
        return lambda: routes.codes[tenant]

    async with Engine(MemoryStorage()) as engine:
        from dynamic_workflows.workers import WorkflowEntrypoint

        class Dispatcher(WorkflowEntrypoint):
            async def run(self, event: Any, step: Any) -> Any:
                tenant = event["payload"]["tenant"]
                stub = loader.get(tenant, routed(tenant))
                return await stub.get_entrypoint("TenantWorkflow").run(event, step)

        binding = engine.register("wf", Dispatcher)
        bad_ones = [
            await binding.create(params={"tenant": "bad", "how": how})
            for how in ("crash", "hang", "crash")
        ]
        good_ones = [await binding.create(params={"tenant": "fine", "n": n}) for n in range(8)]
        good = [await wait_status(i, {"complete", "errored"}) for i in good_ones]
        failed = [await wait_status(i, {"complete", "errored"}) for i in bad_ones]
    assert [s["output"] for s in good] == [n * 2 for n in range(8)]
    assert all(s["status"] == "errored" for s in failed)
    # The three share the tenant's worker: the hanging one fails by the wall-time limit or
    # with the crash that took the process down, whichever came first.
    for status in failed:
        assert status["error"]["name"] == "SandboxError"
        assert status["error"]["message"] in (
            "tenant 'bad': the worker process exited with code 1",
            "tenant 'bad': run() exceeded the wall-time limit of 300 ms",
        )


async def test_a_dead_fork_server_is_replaced(loader: Loader) -> None:
    import os
    import signal

    zygote_pid = loader.pool.stats()["zygote_pid"]
    os.kill(zygote_pid, signal.SIGKILL)  # its pre-forked workers die with it
    await asyncio.sleep(0.1)
    assert await loader.get("after", lambda: worker_code(GOOD)).get_entrypoint().ok() == "good"
    assert loader.pool.stats()["zygote_pid"] != zygote_pid
