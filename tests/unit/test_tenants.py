"""Tenants on a running engine (core/tenancy.py): throttled creates, caps on running instances per
tenant and per workflow (waiting ones do not count), weighted and fair claiming. Every backend.

Claim order is made deterministic by holding the engine's only slots with a "gate" instance while
the backlogs are created, then letting it finish: from then on the claims alone decide. Virtual
time is frozen wherever a step body waits for the test (a jump would time the step out)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from unit_support import EnvFactory, until, workflow

from dynamic_workflows.core.tenancy import TenantPolicy
from dynamic_workflows.errors import ConfigurationError, TenantLimitError


async def test_a_create_over_the_rate_is_refused_naming_the_limit(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        return 1

    async with make_env(run) as wf:
        tenant = wf.binding.with_scope("t1", limits={"create_rate": 1, "create_burst": 2})
        await tenant.create()
        await tenant.create()
        with pytest.raises(TenantLimitError) as caught:
            await tenant.create()
        assert "create_rate of 1/s (burst 2)" in str(caught.value)
        assert caught.value.limit == "create_rate"
        assert wf.engine.throttled_creates("t1") == 1
        assert wf.engine.throttled_creates("t2") == 0
        assert wf.engine.counters.throttled_by_scope == {"t1": 1}
        # Another tenant, and the same tenant a second later, may create.
        await wf.binding.with_scope("t2", limits={"create_rate": 1}).create()
        wf.clock.advance(1.0)
        await tenant.create()
        stored = await wf.engine.tenant_policy("t1")
        assert stored == TenantPolicy(create_rate=1.0, create_burst=2)
        row = await wf.engine.queries.tenant("t1")
        assert row is not None
        assert row.policy == stored
        assert row.tokens == pytest.approx(0.0)
        assert [t.scope for t in await wf.engine.queries.tenants()] == ["t1", "t2"]
        # A create without the dispatcher's policy (the admin API) keeps the stored one.
        with pytest.raises(TenantLimitError):
            await wf.binding.with_scope("t1").create()
        assert await wf.engine.tenant_policy("t1") == stored


async def test_the_read_side_shows_each_tenants_stored_limits_and_throttled_creates(
    make_env: EnvFactory,
) -> None:
    """What /tenants, /metrics, dwf tenants and the dashboard read (queries.EnginePolicy): the
    caps a tenant's last create stored, and the creates its policy refused."""

    async def run(event: Any, step: Any) -> Any:
        return 1

    async with make_env(run) as wf:
        queries = wf.engine.queries
        capped = wf.binding.with_scope("t1", limits={"create_rate": 1, "max_running": 3})
        await capped.create()
        with pytest.raises(TenantLimitError):
            await capped.create()
        await wf.binding.with_scope("t2").create()
        assert await queries.tenant_limits("t1") == {
            "max_running": 3,
            "create_rate": 1.0,
            "weight": 1,
        }
        assert await queries.tenant_limits("t2") is None  # no cap, weight 1: nothing set
        assert await queries.tenant_limits("never-created") is None
        assert await queries.throttled_by_scope() == {"t1": 1}
        page = await queries.tenant_usage()
        by_scope = {t.scope: t for t in page.tenants}
        assert by_scope["t1"].limits == {"max_running": 3, "create_rate": 1.0, "weight": 1}
        assert by_scope["t1"].throttled == 1
        assert by_scope["t2"].limits is None


async def test_max_live_refuses_creates_until_instances_finish(make_env: EnvFactory) -> None:
    gate = asyncio.Event()

    async def run(event: Any, step: Any) -> Any:
        @step.do("wait")
        async def wait() -> int:
            await gate.wait()
            return 1

        return await wait()

    async with make_env(run) as wf:
        tenant = wf.binding.with_scope("t", limits={"max_live": 2})
        async with wf.clock.frozen():
            first = await tenant.create()
            await tenant.create()
            with pytest.raises(TenantLimitError, match="max_live of 2"):
                await tenant.create()
            gate.set()
            await wf.wait_for(first)
            await tenant.create()


def test_bad_limits_name_the_field_and_the_limit(make_env: EnvFactory) -> None:
    wf = make_env(lambda event, step: None)
    with pytest.raises(ConfigurationError, match=r"limits\.max_running must be an integer"):
        wf.binding.with_scope("t", limits={"max_running": 0})
    with pytest.raises(ConfigurationError, match=r"limits\.weight must be at most 10000"):
        wf.binding.with_scope("t", limits={"weight": 10**6})
    with pytest.raises(ConfigurationError, match="unknown field"):
        wf.binding.with_scope("t", limits={"max_runing": 3})
    with pytest.raises(ConfigurationError, match=r"concurrency\.limit must be a positive integer"):
        wf.engine.register("other", workflow(lambda event, step: None), concurrency=0)


async def _held_at_most(make_env: EnvFactory, *, tenant_cap: bool) -> None:
    """Six instances whose step waits to be released one at a time: never more than two in
    their bodies at once, whichever cap (the tenant's or the workflow's) says two."""
    inside: list[int] = []
    most = 0
    releases: asyncio.Queue[None] = asyncio.Queue()

    async def run(event: Any, step: Any) -> Any:
        @step.do("hold")
        async def hold() -> int:
            nonlocal most
            inside.append(1)
            most = max(most, len(inside))
            await releases.get()
            inside.pop()
            return 1

        return await hold()

    async with make_env(run) as wf:
        binding = wf.binding
        if tenant_cap:
            binding = binding.with_scope("t", limits={"max_running": 2})
        else:
            wf.engine.register(binding.name, workflow(run), concurrency=2)
        async with wf.clock.frozen():
            instances = [await binding.create() for _ in range(6)]
            await until(lambda: len(inside) == 2)
            for _ in range(6):
                releases.put_nowait(None)
            for instance in instances:
                await wf.wait_for(instance)
    assert most == 2


async def test_a_tenants_max_running_holds(make_env: EnvFactory) -> None:
    await _held_at_most(make_env, tenant_cap=True)


async def test_a_workflows_concurrency_limit_holds(make_env: EnvFactory) -> None:
    await _held_at_most(make_env, tenant_cap=False)


async def test_a_waiting_instance_does_not_hold_a_slot(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        if event["payload"] == "waits":
            return await step.wait_for_event("go", "go", timeout="1 hour")
        return "done"

    async with make_env(run) as wf, wf.clock.frozen():
        wf.engine.register(wf.binding.name, workflow(run), concurrency=1)
        waiter = await wf.binding.create(params="waits")
        await wf.wait_for(waiter, "waiting")
        other = await wf.binding.create(params="runs")
        assert (await wf.wait_for(other))["status"] == "complete"
        await waiter.send_event(type="go", payload=1)
        assert (await wf.wait_for(waiter))["status"] == "complete"


async def _start_order(
    make_env: EnvFactory, backlogs: dict[str, tuple[int, int]], *, fair: bool, slots: int = 1
) -> list[str]:
    """The tenants of the runs started, in order, after the backlogs (tenant: (weight, n)) were
    all created while ``slots`` gate instances held every slot."""
    started: list[str] = []
    gate = asyncio.Event()

    async def run(event: Any, step: Any) -> Any:
        if event["payload"] == "gate":
            await gate.wait()
            return 0
        started.append(event["payload"])
        return 1

    async with make_env(run, concurrency=slots) as wf, wf.clock.frozen():
        wf.engine.fair = fair
        gates = [await wf.binding.with_scope("gate").create(params="gate") for _ in range(slots)]
        for tenant, (weight, n) in backlogs.items():
            binding = wf.binding.with_scope(tenant, limits={"weight": weight})
            for _ in range(n // 50):
                await binding.create_batch({"count": 50, "params": tenant})
        gate.set()
        for g in gates:
            await wf.wait_for(g)
        total = sum(n for _, n in backlogs.values())
        await until(lambda: len(started) == total, timeout=30.0)
    return started


async def test_weights_split_throughput_in_proportion(make_env: EnvFactory) -> None:
    order = await _start_order(make_env, {"a": (3, 150), "b": (1, 150)}, fair=True)
    window = order[:100]  # both backlogged throughout
    assert window.count("a") == pytest.approx(75, rel=0.10)
    assert window.count("b") == pytest.approx(25, rel=0.10)


async def test_a_backlog_of_one_tenant_does_not_delay_another(make_env: EnvFactory) -> None:
    order = await _start_order(make_env, {"a": (1, 300), "b": (1, 50)}, fair=True, slots=2)
    last_b = max(i for i, tenant in enumerate(order) if tenant == "b")
    assert last_b < 110  # in turns with a: b's 50 are done within a's first ~50
    unfair = await _start_order(make_env, {"a": (1, 300), "b": (1, 50)}, fair=False, slots=2)
    assert unfair[:300] == ["a"] * 300  # first come: b waits for all of a (what fairness fixes)
