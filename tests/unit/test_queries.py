"""The engine's query layer (``engine.queries``): views, counts, listings, journals, paging
checks, parked runs reported as waiting, and the one status-polling loop. On every backend."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import msgspec
import pytest
from unit_support import START, EnvFactory, until

from dynamic_workflows import queries
from dynamic_workflows.errors import InvalidQueryError
from dynamic_workflows.queries import (
    MAX_LIMIT,
    InstanceView,
    StatusCounts,
    StepView,
    wait_for_status,
)
from dynamic_workflows.testing import WorkflowTestEnv


async def waits_for_go(event: Any, step: Any) -> Any:
    @step.do("first")
    async def first() -> Any:
        return {"got": event["payload"]}

    got = await first()
    if event["payload"] == "fail":
        raise ValueError("asked to fail")
    ev = await step.wait_for_event("go", "go", timeout="1 hour")
    return [got, ev["payload"]]


async def created(wf: WorkflowTestEnv, ids: list[str], *, scope: str = "", gap: float = 0) -> None:
    """Create ``ids`` in ``scope``, ``gap`` virtual seconds apart, and let each reach waiting."""
    binding = wf.binding.with_scope(scope)
    for iid in ids:
        instance = await binding.create(id=iid, params=iid)
        await wf.wait_for(instance, "waiting")
        wf.clock.advance(gap)


def test_exports_are_pinned() -> None:
    assert sorted(queries.__all__) == [
        "AttemptView",
        "InstanceDetails",
        "InstancePage",
        "InstanceView",
        "LogPage",
        "LogView",
        "MAX_LIMIT",
        "Queries",
        "StatusCounts",
        "StepView",
        "wait_for_status",
    ]


async def test_counts_and_pages_newest_first(make_env: EnvFactory) -> None:
    wf = make_env(waits_for_go)
    async with wf, wf.clock.frozen():
        q = wf.engine.queries
        empty = await q.count_instances("workflow")
        assert empty.by_status == {
            "queued": 0,
            "running": 0,
            "paused": 0,
            "errored": 0,
            "terminated": 0,
            "complete": 0,
            "waiting": 0,
            "waitingForPause": 0,
        }
        await created(wf, ["a", "b", "c", "d", "e"], gap=1)
        failing = await wf.binding.create(id="f", params="fail")
        await wf.wait_for(failing, "errored")
        counts = await q.count_instances("workflow")
        assert isinstance(counts, StatusCounts)
        assert (counts.get("waiting"), counts.get("errored"), counts.total) == (5, 1, 6)
        assert (await q.count_instances("other")).total == 0

        page = await q.list_instances("workflow", limit=2, offset=1)
        assert [i.id for i in page.instances] == ["e", "d"]
        assert (page.total, page.offset, page.limit) == (6, 1, 2)
        waiting = await q.list_instances("workflow", status="waiting", limit=10)
        assert [i.id for i in waiting.instances] == ["e", "d", "c", "b", "a"]
        assert waiting.total == 5
        errored = await q.list_instances("workflow", status="errored")
        [view] = errored.instances
        assert isinstance(view, InstanceView)
        assert (view.id, view.status, view.scope, view.workflow) == ("f", "errored", "", "workflow")
        assert view.error is not None
        assert (view.error.name, view.error.message) == ("ValueError", "asked to fail")
        assert view.error.traceback is not None
        assert "in waits_for_go\nValueError: asked to fail" in view.error.traceback
        assert (view.params, view.output) == ("fail", None)
        assert view.created_at == START + 5
        assert view.ended_at is not None
        assert (await q.list_instances("workflow", status="complete")).total == 0


async def test_date_filters_are_inclusive(make_env: EnvFactory) -> None:
    wf = make_env(waits_for_go)
    async with wf, wf.clock.frozen():
        await created(wf, ["t0", "t1", "t2", "t3"], gap=10)  # created at START + 0, 10, 20, 30
        q = wf.engine.queries
        page = await q.list_instances(
            "workflow", created_since=START + 10, created_until=START + 20
        )
        assert ([i.id for i in page.instances], page.total) == (["t2", "t1"], 2)
        page = await q.list_instances("workflow", created_since=START + 15, limit=1, offset=1)
        assert ([i.id for i in page.instances], page.total) == (["t2"], 2)
        page = await q.list_instances("workflow", status="complete", created_until=START + 99)
        assert page.total == 0


async def test_scopes_find_get_and_describe(make_env: EnvFactory) -> None:
    wf = make_env(waits_for_go)
    async with wf, wf.clock.frozen():
        await created(wf, ["same"], scope="tenant-a", gap=1)
        await created(wf, ["same", "other"], scope="tenant-b", gap=1)
        q = wf.engine.queries
        found = await q.find_instances("workflow", "same")
        assert [v.scope for v in found] == ["tenant-a", "tenant-b"]  # oldest first
        assert (await q.find_instances("workflow", "ghost")) == []
        assert (await q.get_instance("workflow", "tenant-a", "other")) is None
        view = await q.get_instance("workflow", "tenant-b", "other")
        assert view is not None
        assert (view.id, view.scope, view.status, view.params) == (
            "other",
            "tenant-b",
            "waiting",
            "other",
        )
        page = await q.list_instances("workflow", scope="tenant-b")
        assert [(i.scope, i.id) for i in page.instances] == [
            ("tenant-b", "other"),
            ("tenant-b", "same"),
        ]
        assert (await q.count_instances("workflow", scope="tenant-a")).total == 1

        details = await q.describe(view)
        assert details.instance == view
        first, go = details.steps
        # (the attempt history and the times are covered in test_attempt_history.py)
        assert msgspec.structs.replace(first, attempts=[], started_at=None, ended_at=None) == (
            StepView(
                "first", 1, "do", "done", {"got": "other"}, None, 1, None, None, None, None, [], 1
            )
        )
        assert [(a.attempt, a.success) for a in first.attempts] == [(1, True)]
        assert msgspec.structs.replace(go, started_at=None) == StepView(
            "go", 1, "wait", "waiting", None, None, 0, START + 2 + 3600, "go"
        )
        # A view's row is what the engine's actions take.
        await wf.engine.send_event(view.row, "go", {"n": 1})
        instance = await wf.binding.with_scope("tenant-b").get("other")
        await wf.wait_for(instance)
        done = await q.get_instance("workflow", "tenant-b", "other")
        assert done is not None
        assert (done.status, done.output) == ("complete", [{"got": "other"}, {"n": 1}])
        steps = await q.journal(done)
        assert steps[1].value["payload"] == {"n": 1}
        assert steps[1].state == "done"


async def test_a_sleep_over_is_reported_done(make_env: EnvFactory) -> None:
    async def naps(event: Any, step: Any) -> Any:
        await step.sleep("nap", "1 hour")
        await step.wait_for_event("never", "never", timeout="1 day")

    wf = make_env(naps)
    async with wf, wf.clock.frozen():
        instance = await wf.binding.create(id="n")
        await wf.wait_for(instance, "waiting")
        view = await wf.engine.queries.get_instance("workflow", "", "n")
        assert view is not None
        [nap] = await wf.engine.queries.journal(view)
        assert (nap.kind, nap.state, nap.wake_at) == ("sleep", "sleeping", START + 3600)
        wf.clock.advance(3600)
        # Over once its time has come, whether or not the run has resumed yet.
        [nap] = (await wf.engine.queries.journal(view))[:1]
        assert (nap.state, nap.wake_at) == ("done", START + 3600)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": 0}, "limit: must be an integer from 1 to 1000, got 0"),
        ({"limit": MAX_LIMIT + 1}, "limit: must be an integer from 1 to 1000, got 1001"),
        ({"limit": True}, "limit: "),
        ({"offset": -1}, "offset: must be an integer >= 0, got -1"),
        ({"offset": 1.5}, "offset: "),
        ({"status": "sleepy"}, "status: 'sleepy' is not one of queued, running"),
    ],
)
async def test_bad_paging_is_a_clear_error(
    make_env: EnvFactory, kwargs: dict[str, Any], message: str
) -> None:
    wf = make_env(waits_for_go)
    async with wf:
        with pytest.raises(InvalidQueryError) as caught:
            await wf.engine.queries.list_instances("workflow", **kwargs)
    assert str(caught.value).startswith(message)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("offset", [2**63 - 1, 2**63, 10**30])
async def test_an_offset_past_the_end_is_an_empty_page_however_large(
    make_env: EnvFactory, offset: int
) -> None:
    # SQLite cannot represent an OFFSET past 2**63 - 1: such an offset must never reach it.
    wf = make_env(waits_for_go)
    async with wf, wf.clock.frozen():
        await created(wf, ["x", "y"])
        q = wf.engine.queries
        for kwargs in ({}, {"status": "waiting"}, {"created_since": 0.0}):
            page = await q.list_instances("workflow", offset=offset, **kwargs)  # type: ignore[arg-type]
            assert (page.instances, page.total, page.offset) == ([], 2, offset)


async def test_parked_runs_are_waiting_in_views_counts_and_filters(make_env: EnvFactory) -> None:
    async def short_nap(event: Any, step: Any) -> Any:
        if event["payload"] == "long":
            await step.wait_for_event("go", "go", timeout="1 hour")
        await step.sleep("nap", "2 seconds")
        return "rested"

    wf = make_env(short_nap, warm_horizon=5.0)
    async with wf, wf.clock.frozen():
        hibernated = await wf.binding.create(id="hibernated", params="long")
        await wf.wait_for(hibernated, "waiting")
        wf.clock.advance(1)
        await wf.binding.create(id="parked", params="short")
        await until(lambda: wf.engine.parked_runs() == 1)
        q = wf.engine.queries
        counts = await q.count_instances("workflow")
        assert (counts.get("running"), counts.get("waiting"), counts.total) == (0, 2, 2)
        waiting = await q.list_instances("workflow", status="waiting")
        assert [(i.id, i.status) for i in waiting.instances] == [
            ("parked", "waiting"),
            ("hibernated", "waiting"),
        ]
        assert waiting.total == 2
        second = await q.list_instances("workflow", status="waiting", offset=1)
        assert ([i.id for i in second.instances], second.total) == (["hibernated"], 2)
        running = await q.list_instances("workflow", status="running")
        assert (running.instances, running.total) == ([], 0)
        everything = await q.list_instances("workflow")
        assert [(i.id, i.status) for i in everything.instances] == [
            ("parked", "waiting"),
            ("hibernated", "waiting"),
        ]
        view = await q.get_instance("workflow", "", "parked")
        assert view is not None
        assert view.status == "waiting"
        if wf.engine.storage.shared:
            # Stored as waiting too, still held by this engine: other nodes see what users see.
            async def stored() -> str | None:
                row = await wf.engine.storage.get_instance("workflow", "", "parked")
                return None if row is None else row.status

            for _ in range(200):
                if await stored() == "waiting":
                    break
                await asyncio.sleep(0.01)
            assert await stored() == "waiting"
        else:
            assert view.row.status == "running"  # as stored: the run is live in this engine


async def test_wait_for_status_reports_each_change_once(make_env: EnvFactory) -> None:
    wf = make_env(waits_for_go)
    first: list[str] = []
    then: list[str] = []
    async with wf:
        async with wf.clock.frozen():
            instance = await wf.binding.create(id="w", params=1)
            status = await wait_for_status(
                instance, "waiting", interval=0.001, on_change=first.append
            )
            assert status["status"] == "waiting"
            with pytest.raises(TimeoutError, match=r"instance w is 'waiting' after 0.01 s"):
                await wait_for_status(instance, timeout=0.01, interval=0.001)
        await instance.send_event(type="go", payload=2)
        final = await wait_for_status(instance, interval=0.001, on_change=then.append)
    assert final == {"status": "complete", "output": [{"got": 1}, 2], "error": None}
    for seen, last in ((first, "waiting"), (then, "complete")):
        assert seen[-1] == last
        assert all(a != b for a, b in itertools.pairwise(seen))  # changes, not polls


async def test_tenant_usage_reports_parked_runs_as_waiting_per_scope(
    make_env: EnvFactory,
) -> None:
    async def short_nap(event: Any, step: Any) -> Any:
        await step.sleep("nap", "2 seconds")
        return "rested"

    wf = make_env(short_nap, warm_horizon=5.0)
    async with wf, wf.clock.frozen():
        await wf.binding.with_scope("acme").create(id="parked", params=None)
        await until(lambda: wf.engine.parked_runs() == 1)
        await wf.binding.create(id="raw", params=None)
        await until(lambda: wf.engine.parked_runs() == 2)
        q = wf.engine.queries
        page = await q.tenant_usage("workflow")
        assert {t.scope: t.by_status for t in page.tenants} == {
            "acme": {"waiting": 1},
            "": {"waiting": 1},
        }
        assert page.by_status == {"waiting": 2}
        scoped = await q.tenant_usage(unscoped=False)
        assert [(t.scope, t.waiting, t.running, t.live, t.created) for t in scoped.tenants] == [
            ("acme", 1, 0, 1, 1)
        ]
        assert scoped.by_status == {"waiting": 1}
        assert (scoped.total, scoped.offset, scoped.limit) == (1, 0, 100)
        # No policy: no limits, nothing throttled.
        assert (await q.tenant_limits("acme"), await q.throttled_by_scope()) == (None, {})
        assert scoped.tenants[0].limits is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"order": "busiest"}, "order: 'busiest' is not one of live, instances, steps, recent"),
        ({"order": "steps", "steps": False}, "order: 'steps' needs the steps counted"),
        ({"limit": 0}, "limit: must be an integer from 1 to 1000, got 0"),
        ({"offset": -1}, "offset: must be an integer >= 0, got -1"),
    ],
)
async def test_bad_tenant_usage_queries_name_their_parameter(
    make_env: EnvFactory, kwargs: dict[str, Any], message: str
) -> None:
    wf = make_env(waits_for_go)
    async with wf:
        with pytest.raises(InvalidQueryError) as caught:
            await wf.engine.queries.tenant_usage(**kwargs)
    assert str(caught.value) == message
