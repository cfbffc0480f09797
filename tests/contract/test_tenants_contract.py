"""The storage contract for tenants (core/tenancy.py): policies stored per scope, create caps
and rates, and claims that are fair across scopes and never pass a cap. Every backend."""

from __future__ import annotations

import pytest

from dynamic_workflows.core.tenancy import TenantPolicy
from dynamic_workflows.errors import TenantLimitError
from dynamic_workflows.storage import Storage
from dynamic_workflows.storage.base import NewInstance, Status

T0 = 1_000_000.0


def new(id: str, scope: str, workflow: str = "wf") -> NewInstance:
    return NewInstance(workflow, scope, id, b"null")


async def fill(storage: Storage, scope: str, n: int, at: float = T0, workflow: str = "wf") -> None:
    items = [new(f"{scope}-{workflow}-{i}", scope, workflow) for i in range(n)]
    rows = await storage.create_instances(items, at)
    assert all(r is not None for r in rows)


async def test_every_scope_gets_a_row_and_a_policy_given_is_stored(storage: Storage) -> None:
    await fill(storage, "a", 1)
    policy = TenantPolicy(max_running=3, max_live=10, create_rate=5.0, weight=2)
    await storage.create_instances([new("x", "b")], T0, tenants={"b": policy})
    a, b = await storage.get_tenant("a"), await storage.get_tenant("b")
    assert a is not None
    assert a.policy == TenantPolicy()
    assert b is not None
    assert b.policy == policy
    assert b.tokens == pytest.approx(4.0)
    assert b.tokens_at == T0
    assert [t.scope for t in await storage.list_tenants()] == ["a", "b"]
    assert await storage.get_tenant("nobody") is None


async def test_max_live_refuses_the_create_that_would_pass_it(storage: Storage) -> None:
    policy = {"s": TenantPolicy(max_live=3)}
    await storage.create_instances([new("1", "s"), new("2", "s")], T0, tenants=policy)
    with pytest.raises(TenantLimitError) as caught:
        await storage.create_instances([new("3", "s"), new("4", "s")], T0, tenants=policy)
    assert caught.value.limit == "max_live"
    assert caught.value.value == 3
    assert "max_live of 3" in str(caught.value)
    assert await storage.get_instance("wf", "s", "3") is None  # all or nothing
    await storage.create_instances([new("3", "s")], T0, tenants=policy)
    # A finished instance is not live any more: room for one.
    (claim,) = await storage.claim_due(T0, 1)
    assert await storage.finish_run(
        claim.instance.pk, claim.instance.generation, Status.COMPLETE, b"1", None, T0
    )
    await storage.create_instances([new("4", "s")], T0, tenants=policy)
    with pytest.raises(TenantLimitError):
        await storage.create_instances([new("5", "s")], T0, tenants=policy)


async def test_the_create_bucket_refills_at_the_rate(storage: Storage) -> None:
    policy = {"s": TenantPolicy(create_rate=2.0, create_burst=4)}
    await storage.create_instances([new(str(i), "s") for i in range(4)], T0, tenants=policy)
    with pytest.raises(TenantLimitError) as caught:
        await storage.create_instances([new("4", "s")], T0, tenants=policy)
    assert caught.value.limit == "create_rate"
    assert caught.value.retry_after == pytest.approx(0.5)
    assert "create_rate of 2/s" in str(caught.value)
    await storage.create_instances([new("4", "s")], T0 + 0.5, tenants=policy)
    with pytest.raises(TenantLimitError):
        await storage.create_instances([new("5", "s")], T0 + 0.5, tenants=policy)
    with pytest.raises(TenantLimitError) as too_big:
        await storage.create_instances(
            [new(f"b{i}", "s") for i in range(5)], T0 + 100, tenants=policy
        )
    assert too_big.value.limit == "create_burst"
    assert too_big.value.retry_after is None
    # Another tenant is not concerned.
    await storage.create_instances([new("x", "t")], T0, tenants={"t": TenantPolicy()})


async def test_claims_take_turns_across_scopes_by_weight(storage: Storage) -> None:
    await storage.create_instances([new("a0", "a")], T0, tenants={"a": TenantPolicy(weight=3)})
    await fill(storage, "a", 200, T0 - 10)  # a's backlog is older than b's work
    await storage.create_instances([new("b0", "b")], T0, tenants={"b": TenantPolicy(weight=1)})
    await fill(storage, "b", 200, T0)
    got = {"a": 0, "b": 0}
    for _ in range(40):  # one at a time, as a busy engine claims
        (claim,) = await storage.claim_due(T0, 1)
        got[claim.instance.scope] += 1
    assert got == {"a": 30, "b": 10}
    many = await storage.claim_due(T0, 40)
    assert sum(c.instance.scope == "a" for c in many) == 30


async def test_first_come_when_fairness_is_off(storage: Storage) -> None:
    await fill(storage, "a", 20, T0 - 10)
    await fill(storage, "b", 5, T0)
    claims = await storage.claim_due(T0, 20, fair=False)
    assert {c.instance.scope for c in claims} == {"a"}


async def test_a_backlog_of_one_scope_does_not_delay_another(storage: Storage) -> None:
    await fill(storage, "a", 500, T0 - 100)
    await fill(storage, "b", 3, T0)
    claims = await storage.claim_due(T0, 6)
    assert sum(c.instance.scope == "b" for c in claims) == 3


async def test_max_running_holds_and_waiting_instances_do_not_count(storage: Storage) -> None:
    await storage.create_instances([new("x", "s")], T0, tenants={"s": TenantPolicy(max_running=2)})
    await fill(storage, "s", 5)
    first = await storage.claim_due(T0, 10)
    assert len(first) == 2
    assert await storage.claim_due(T0, 10) == []
    # One hibernates (a timer): its slot is free; the other finishes: free too.
    a, b = first[0].instance, first[1].instance
    assert await storage.suspend_run(a.pk, a.generation, T0 + 60, False, T0) == Status.WAITING
    assert len(await storage.claim_due(T0, 10)) == 1
    assert await storage.finish_run(b.pk, b.generation, Status.COMPLETE, b"1", None, T0)
    assert len(await storage.claim_due(T0, 10)) == 1
    assert await storage.claim_due(T0, 10) == []
    # Other scopes are not held back by it.
    await fill(storage, "t", 3)
    assert len(await storage.claim_due(T0, 10)) == 3


async def test_workflow_limits_cap_runs_of_a_workflow_across_scopes(storage: Storage) -> None:
    await fill(storage, "a", 4, workflow="capped")
    await fill(storage, "b", 4, workflow="capped")
    await fill(storage, "b", 2, workflow="free")
    limits = {"capped": 3}
    claims = await storage.claim_due(T0, 20, workflow_limits=limits)
    by_workflow = [c.instance.workflow for c in claims]
    assert by_workflow.count("capped") == 3
    assert by_workflow.count("free") == 2
    assert await storage.claim_due(T0, 20, workflow_limits=limits) == []
    done = next(c.instance for c in claims if c.instance.workflow == "capped")
    assert await storage.finish_run(done.pk, done.generation, Status.COMPLETE, b"1", None, T0)
    assert len(await storage.claim_due(T0, 20, workflow_limits=limits)) == 1
    assert len(await storage.claim_due(T0, 20, workflow_limits=limits, fair=False)) == 0


async def test_timers_due_at_once_take_turns_across_scopes(storage: Storage) -> None:
    await fill(storage, "a", 60, T0 - 10)
    await fill(storage, "b", 2, T0)
    # Every instance runs, then sleeps until T0 + 60: a thundering herd of timers.
    for claim in await storage.claim_due(T0, 100):
        row = claim.instance
        status = await storage.suspend_run(row.pk, row.generation, T0 + 60, False, T0)
        assert status == Status.WAITING
    assert await storage.claim_due(T0 + 59, 100) == []
    woken = await storage.claim_due(T0 + 60, 4)
    assert sorted(c.instance.scope for c in woken) == ["a", "a", "b", "b"]


async def test_a_scope_claimed_dry_is_claimed_again_on_every_path_that_gives_it_due_work(
    storage: Storage,
) -> None:
    """The claim reads only the scopes that may have due work (SQLite and PostgreSQL keep a
    lower bound of each scope's next wake-up): a scope whose due instances were all claimed
    must still be found by the next create, timer and event."""
    await fill(storage, "idle", 3)  # another scope, claimed dry and done with
    for c in await storage.claim_due(T0, 10):
        row = c.instance
        assert await storage.finish_run(row.pk, row.generation, Status.COMPLETE, b"1", None, T0)
    await fill(storage, "s", 2)
    a, b = (c.instance for c in await storage.claim_due(T0, 10))
    assert await storage.claim_due(T0 + 1, 10) == []  # s claimed dry
    # A timer: a sleeps until T0 + 60.
    assert await storage.suspend_run(a.pk, a.generation, T0 + 60, False, T0) == Status.WAITING
    assert await storage.claim_due(T0 + 59, 10) == []
    (woken,) = await storage.claim_due(T0 + 60, 10)
    assert woken.instance.pk == a.pk
    # An event: b waits for one (an hour's deadline), which comes at T0 + 61.
    assert await storage.register_wait(b.pk, b.generation, "w", 1, "go", T0 + 3600, T0)
    assert await storage.suspend_run(b.pk, b.generation, T0 + 3600, False, T0) == Status.WAITING
    assert await storage.claim_due(T0 + 61, 10) == []
    assert await storage.add_event(b.pk, "go", b"1", T0 + 61) is not None
    (delivered,) = await storage.claim_due(T0 + 61, 10)
    assert delivered.instance.pk == b.pk
    # A create, in a scope claimed dry twice over.
    assert (await storage.create_instances([new("late", "s")], T0 + 62))[0] is not None
    assert [c.instance.scope for c in await storage.claim_due(T0 + 62, 10)] == ["s"]
