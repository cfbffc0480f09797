"""Retention on the engine, in virtual time, on every backend: the create option over the
workflow's default over the project's, per outcome, and a backlog swept in bounded batches while
the engine goes on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from unit_support import EnvFactory

from dynamic_workflows.core.retention import Retention
from dynamic_workflows.core.step_errors import NonRetryableError
from dynamic_workflows.errors import ConfigurationError

HOUR = 3600.0


async def ok_or_fail(event: Any, step: Any) -> Any:
    if event["payload"] == "fail":
        raise NonRetryableError("no")
    return "ok"


async def test_create_option_over_workflow_default_over_project_default(
    make_env: EnvFactory,
) -> None:
    async with make_env(ok_or_fail, retention={"successRetention": "1 hour"}) as wf:
        wf.engine.retention = Retention(success=10 * HOUR, error=2 * HOUR)
        wf.clock.autojump = False
        default = await wf.binding.create(id="default", params="ok")
        own = await wf.binding.create(
            {"id": "own", "params": "ok", "retention": {"successRetention": 60_000}}
        )
        failed = await wf.binding.create(id="failed", params="fail")
        kept = await wf.binding.create(
            {"id": "kept", "params": "fail", "retention": {"errorRetention": "3 hours"}}
        )
        for instance in (default, own, failed, kept):
            await wf.wait_for(instance)

        async def ids() -> set[str]:
            return {r.id for r in await wf.storage.list_instances("workflow")}

        assert await wf.engine.sweeper.sweep() == 0
        wf.clock.advance(60)
        assert await wf.engine.sweeper.sweep() == 1  # own: 1 minute
        assert await ids() == {"default", "failed", "kept"}
        wf.clock.advance(HOUR - 60)
        assert await wf.engine.sweeper.sweep() == 1  # default: the workflow's 1 hour
        wf.clock.advance(HOUR)
        assert await wf.engine.sweeper.sweep() == 1  # failed: the project's 2 hours
        assert await ids() == {"kept"}
        wf.clock.advance(HOUR)
        assert await wf.engine.sweeper.sweep() == 1  # kept: its own 3 hours
        assert await ids() == set()


async def test_the_engines_default_is_given_as_cloudflare_spells_it() -> None:
    from dynamic_workflows import Engine, MemoryStorage

    engine = Engine(MemoryStorage(), retention={"successRetention": "2 days"})
    assert engine.retention == Retention(success=2 * 24 * HOUR)
    with pytest.raises(ConfigurationError, match=r"retention\.errorRetention: cannot parse"):
        Engine(MemoryStorage(), retention={"errorRetention": "later"})


async def test_without_any_retention_instances_are_kept(make_env: EnvFactory) -> None:
    async with make_env(ok_or_fail) as wf:
        wf.clock.autojump = False
        await wf.wait_for(await wf.binding.create(id="a", params="ok"))
        wf.clock.advance(1000 * 24 * HOUR)
        assert await wf.engine.sweeper.sweep() == 0
        assert await wf.binding.get("a")


async def test_a_bad_retention_names_the_field(make_env: EnvFactory) -> None:
    async with make_env(ok_or_fail) as wf:
        with pytest.raises(
            ConfigurationError, match=r"retention\.errorRetention: cannot parse 'soon'"
        ):
            await wf.binding.create({"params": 1, "retention": {"errorRetention": "soon"}})
        with pytest.raises(ConfigurationError, match=r"retention: unknown field\(s\) success"):
            await wf.binding.create({"params": 1, "retention": {"success": 1}})
        with pytest.raises(ConfigurationError, match=r"workflow 'w2': retention\.successRetention"):
            wf.engine.register("w2", ok_or_fail, retention={"successRetention": -1})


async def test_a_backlog_is_swept_in_batches_while_the_engine_goes_on(
    make_env: EnvFactory, backend: str
) -> None:
    n = 600 if backend != "postgresql" else 300
    async with make_env(ok_or_fail, sweep_batch=25, retention={"errorRetention": 0}) as wf:
        await wf.engine.create("workflow", "", [(f"i{k}", "fail") for k in range(n)])
        for k in range(n):
            await wf.wait_for(await wf.binding.get(f"i{k}"))
        sweeper = wf.engine.sweeper
        before = sweeper.batches  # (the engine swept once as it started)
        sweep = asyncio.ensure_future(sweeper.sweep())
        # Meanwhile the engine creates and runs an instance: the sweep's batches leave room.
        created = await wf.binding.create(id="meanwhile", params="ok")
        batches_then = sweeper.batches
        assert (await wf.wait_for(created))["status"] == "complete"
        assert await sweep == n
        assert batches_then < sweeper.batches
        assert sweeper.batches - before == n // 25 + 1  # 25 per transaction, and a short one
        assert [r.id for r in await wf.storage.list_instances("workflow")] == ["meanwhile"]


async def test_the_query_layer_says_when_an_instance_goes(make_env: EnvFactory) -> None:
    async with make_env(ok_or_fail, retention={"successRetention": "1 hour"}) as wf:
        instance = await wf.binding.create(id="a", params="ok")
        await wf.wait_for(instance)
        (view,) = (await wf.engine.queries.list_instances("workflow")).instances
        assert view.ended_at is not None
        assert view.retain_until == view.ended_at + HOUR
        assert view.schedule is None
