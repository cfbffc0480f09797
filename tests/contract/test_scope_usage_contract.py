"""``Storage.scope_usage``: instances per scope and status, steps per scope, the newest
instance's params, ordered and paged, with the totals of every scope; the same on every
backend."""

from __future__ import annotations

import pytest

from dynamic_workflows.core.journal import ErrorInfo, JournalEntry, StepKind, StepState
from dynamic_workflows.storage import Storage
from dynamic_workflows.storage.base import SCOPE_ORDERS, NewInstance, ScopeUsagePage, Status

T0 = 1_000_000.0


def done(name: str) -> JournalEntry:
    return JournalEntry(name, 1, StepKind.DO, StepState.DONE, value=b"1", attempt=1)


async def make(
    storage: Storage,
    id: str,
    scope: str,
    at: float,
    *,
    workflow: str = "wf",
    steps: int = 0,
    end: str | None = None,
    run: bool = False,
) -> None:
    """Create ``id`` at ``at``; with ``run`` (or ``steps``/``end``) claim it (nothing else is
    due then), record ``steps`` steps and end it as ``end`` (else it stays running)."""
    params = f'{{"id":"{id}"}}'.encode()
    (row,) = await storage.create_instances([NewInstance(workflow, scope, id, params)], at)
    assert row is not None
    if not (run or steps or end):
        return
    (claim,) = await storage.claim_due(at, 1)
    assert claim.instance.id == id
    pk, gen = claim.instance.pk, claim.instance.generation
    for n in range(steps):
        assert await storage.record_steps([(pk, gen, done(f"s{n}"))], at)
    if end == Status.COMPLETE:
        assert await storage.finish_run(pk, gen, end, b"1", None, at)
    elif end == Status.ERRORED:
        assert await storage.finish_run(pk, gen, end, None, ErrorInfo("E", "boom"), at)


@pytest.fixture
async def tenants(storage: Storage) -> Storage:
    """Scopes a, b, c and the unscoped one in ``wf``; a also in ``other``."""
    await make(storage, "a1", "a", T0, steps=2, end=Status.COMPLETE)
    await make(storage, "a2", "a", T0 + 1, steps=1, run=True)
    await make(storage, "b1", "b", T0 + 2, steps=3, end=Status.ERRORED)
    await make(storage, "o1", "a", T0 + 3, workflow="other", steps=1, end=Status.COMPLETE)
    await make(storage, "b2", "b", T0 + 4)
    await make(storage, "b3", "b", T0 + 5)
    await make(storage, "u1", "", T0 + 6)
    await make(storage, "c1", "c", T0 + 7)
    return storage


def scopes(page: ScopeUsagePage) -> list[str]:
    return [u.scope for u in page.scopes]


async def test_counts_steps_and_the_newest_instance_per_scope(tenants: Storage) -> None:
    page = await tenants.scope_usage("wf")
    assert page.total == 4
    by_scope = {u.scope: u for u in page.scopes}
    a, b = by_scope["a"], by_scope["b"]
    assert a.by_status == {Status.COMPLETE: 1, Status.RUNNING: 1}
    assert (a.steps, a.instances, a.last_created_at) == (3, 2, T0 + 1)
    assert a.sample_params == b'{"id":"a2"}'  # its newest instance
    assert b.by_status == {Status.ERRORED: 1, Status.QUEUED: 2}
    assert (b.steps, b.last_created_at, b.sample_params) == (3, T0 + 5, b'{"id":"b3"}')
    assert by_scope[""].by_status == {Status.QUEUED: 1}
    assert by_scope["c"].steps == 0
    # The latest change to one of the scope's instances.
    rows = await tenants.list_instances("wf", scope="a")
    assert a.last_updated_at == max(r.updated_at for r in rows)
    # The totals of every scope.
    assert page.by_status == {
        Status.COMPLETE: 1,
        Status.RUNNING: 1,
        Status.ERRORED: 1,
        Status.QUEUED: 4,
    }
    assert page.steps == 6


async def test_every_workflow_together_and_without_the_unscoped(tenants: Storage) -> None:
    every = await tenants.scope_usage(None)
    a = next(u for u in every.scopes if u.scope == "a")
    assert a.by_status == {Status.COMPLETE: 2, Status.RUNNING: 1}
    assert a.steps == 4
    assert a.sample_params == b'{"id":"o1"}'
    assert (every.total, every.steps) == (4, 7)
    other = await tenants.scope_usage("other")
    assert [(u.scope, u.by_status, u.steps) for u in other.scopes] == [
        ("a", {Status.COMPLETE: 1}, 1)
    ]
    scoped = await tenants.scope_usage("wf", unscoped=False)
    assert scopes(scoped) == ["b", "a", "c"]
    assert scoped.total == 3
    assert scoped.by_status[Status.QUEUED] == 3
    assert (await tenants.scope_usage("nothing")) == ScopeUsagePage([], 0, {}, 0)


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        # live: b has 2 (queued); a, c and "" 1 each: a has more instances; c changed last.
        ("live", ["b", "a", "c", ""]),
        ("instances", ["b", "a", "c", ""]),
        # steps: a and b 3 each (b has more instances), then c and "" none.
        ("steps", ["b", "a", "c", ""]),
        ("recent", ["c", "", "b", "a"]),
    ],
)
async def test_orders(tenants: Storage, order: str, expected: list[str]) -> None:
    assert scopes(await tenants.scope_usage("wf", order=order)) == expected


async def test_pages_do_not_overlap_and_keep_the_totals(tenants: Storage) -> None:
    for order in SCOPE_ORDERS:
        whole = scopes(await tenants.scope_usage("wf", order=order))
        paged: list[str] = []
        for offset in range(0, 4, 2):
            page = await tenants.scope_usage("wf", order=order, limit=2, offset=offset)
            assert page.total == 4
            assert page.steps == 6
            paged += scopes(page)
        assert paged == whole
    past = await tenants.scope_usage("wf", limit=2, offset=10)
    assert past.scopes == []
    assert (past.total, past.steps, past.by_status[Status.QUEUED]) == (4, 6, 4)


async def test_a_deleted_instance_and_its_steps_are_gone_from_the_counts(
    tenants: Storage,
) -> None:
    (b1,) = [r for r in await tenants.list_instances("wf", scope="b") if r.id == "b1"]
    assert await tenants.delete_instance(b1.pk)
    page = await tenants.scope_usage("wf")
    b = next(u for u in page.scopes if u.scope == "b")
    assert (b.by_status, b.steps) == ({Status.QUEUED: 2}, 0)
    assert page.steps == 3


async def test_an_unknown_order_is_refused(storage: Storage) -> None:
    with pytest.raises(ValueError, match="order: 'busiest' is not one of live, instances"):
        await storage.scope_usage("wf", order="busiest")


async def test_without_the_steps_the_journal_is_not_read(tenants: Storage) -> None:
    with_steps = await tenants.scope_usage("wf")
    page = await tenants.scope_usage("wf", steps=False)
    assert [(u.scope, u.by_status, u.steps) for u in page.scopes] == [
        (u.scope, u.by_status, 0) for u in with_steps.scopes
    ]
    assert (page.total, page.by_status, page.steps) == (4, with_steps.by_status, 0)
    with pytest.raises(ValueError, match="order: 'steps' needs the steps counted"):
        await tenants.scope_usage("wf", order="steps", steps=False)


async def test_a_read_sees_every_acknowledged_write(storage: Storage) -> None:
    # SQLite reads this on a connection of its own, beside the writer's.
    for i in range(20):
        await make(storage, f"x{i}", f"s{i % 3}", T0 + i, steps=1, run=True)
        page = await storage.scope_usage("wf", order="recent", limit=1)
        assert page.scopes[0].scope == f"s{i % 3}"
        assert (page.total, page.steps) == (min(i + 1, 3), i + 1)
