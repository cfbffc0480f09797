"""The dispatch library: envelope, routing back to the tenant, and tenant isolation."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dynamic_workflows import Engine, InstanceNotFoundError, MemoryStorage, MockClock
from dynamic_workflows.dispatch import (
    METADATA_KEY,
    DynamicWorkflowBinding,
    MissingDispatcherMetadataError,
    bind_env,
    create_dynamic_workflow_entrypoint,
    dispatch_workflow,
    scope_of,
    wrap_workflow_binding,
)
from dynamic_workflows.errors import WorkflowError
from dynamic_workflows.workers import Env, ExecutionContext, WorkflowEntrypoint

SEEN: list[dict[str, Any]] = []


class TenantA(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        SEEN.append(dict(event))

        @step.do("hello")
        async def hello() -> str:
            return f"A says hi to {event['payload']}"

        return await hello()


class TenantB(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        SEEN.append(dict(event))
        await step.sleep("nap", "1 hour")
        return {"b": event["payload"]}


TENANTS = {"a": TenantA, "b": TenantB}
LOADS: list[Any] = []


def load_runner(args: dict[str, Any]) -> Any:
    LOADS.append(args["metadata"])
    cls = TENANTS[args["metadata"]["tenant"]]
    return cls(ExecutionContext(), Env())


class Harness:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.raw = engine.register("dynamic", create_dynamic_workflow_entrypoint(load_runner))
        self.env = Env({"WORKFLOWS": self.raw})
        engine.set_env("dynamic", self.env)

    def tenant(self, name: str) -> DynamicWorkflowBinding:
        with bind_env(self.env):
            return wrap_workflow_binding({"tenant": name})

    async def wait(self, instance: Any, status: str = "complete") -> dict[str, Any]:
        import asyncio

        for _ in range(5000):
            st: dict[str, Any] = await instance.status()
            if st["status"] == status:
                return st
            await asyncio.sleep(0.001)
        raise AssertionError(f"still {st}")


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    SEEN.clear()
    LOADS.clear()
    engine = Engine(MemoryStorage(), clock=MockClock())
    harness = Harness(engine)
    async with engine:
        yield harness


async def test_envelope_is_exactly_the_references(h: Harness) -> None:
    inst = await h.tenant("a").create(id="one", params={"x": 1})
    row = await h.engine.storage.list_instances("dynamic")
    from dynamic_workflows.core.codec import decode

    assert decode(row[0].params) == {METADATA_KEY: {"tenant": "a"}, "params": {"x": 1}}
    assert (await h.wait(inst))["output"] == "A says hi to {'x': 1}"


async def test_run_is_routed_to_the_tenant_that_created_it_on_every_wake_up(h: Harness) -> None:
    a = await h.tenant("a").create(params="pa")
    b = await h.tenant("b").create(params="pb")
    assert (await h.wait(a))["output"] == "A says hi to pa"
    assert (await h.wait(b))["output"] == {"b": "pb"}
    # B ran twice (before and after its hour of sleep): load_runner is called on every run
    assert LOADS.count({"tenant": "b"}) == 2
    assert LOADS.count({"tenant": "a"}) == 1


async def test_tenant_sees_only_its_params_never_the_metadata(h: Harness) -> None:
    inst = await h.tenant("a").create(id="secret", params={"p": 1})
    await h.wait(inst)
    (event,) = SEEN
    assert set(event) == {"payload", "timestamp", "instanceId", "workflowName"}
    assert event["payload"] == {"p": 1}
    assert event["instanceId"] == "secret"
    assert event["workflowName"] == "dynamic"
    assert METADATA_KEY not in repr(event)
    assert not any(not k.startswith("_") and "metadata" in k for k in dir(h.tenant("a")))


async def test_absent_params_round_trip_as_none(h: Harness) -> None:
    inst = await h.tenant("a").create()
    await h.wait(inst)
    assert SEEN[0]["payload"] is None
    inst2 = await h.tenant("a").create({"id": "with-dict"})
    await h.wait(inst2)
    assert SEEN[1]["payload"] is None


async def test_ids_are_scoped_per_tenant(h: Harness) -> None:
    a, b = h.tenant("a"), h.tenant("b")
    ia = await a.create(id="order-1", params=1)
    ib = await b.create(id="order-1", params=2)  # the same id, no collision
    assert (await h.wait(ia))["output"] == "A says hi to 1"
    assert (await h.wait(ib))["output"] == {"b": 2}
    # B cannot see, pause, terminate or signal A's instances: they do not exist for it
    with pytest.raises(InstanceNotFoundError):
        await b.get("only-a")
    await a.create(id="only-a", params=3)
    with pytest.raises(InstanceNotFoundError) as info:
        await b.get("only-a")
    assert "instance.not_found" in str(info.value)
    assert (await a.get("only-a")).id == "only-a"


async def test_same_metadata_in_another_order_is_the_same_tenant(h: Harness) -> None:
    with bind_env(h.env):
        one = wrap_workflow_binding({"tenant": "a", "region": "eu"})
        two = wrap_workflow_binding({"region": "eu", "tenant": "a"})
    await one.create(id="shared")
    assert (await two.get("shared")).id == "shared"


async def test_create_batch_wraps_each_item(h: Harness) -> None:
    created = await h.tenant("a").create_batch([{"id": "x1", "params": 1}, {"id": "x2"}])
    assert [i.id for i in created] == ["x1", "x2"]
    for inst in created:
        await h.wait(inst)
    assert sorted(str(e["payload"]) for e in SEEN) == ["1", "None"]


async def test_instance_operations_are_forwarded(h: Harness) -> None:
    b = h.tenant("b")
    inst = await b.create(id="ops")
    await h.wait(inst, "waiting")
    handle = await b.get("ops")
    await handle.pause()
    assert (await handle.status())["status"] == "paused"
    await handle.resume()
    await handle.terminate()
    assert (await handle.status())["status"] == "terminated"
    await handle.restart()
    await h.wait(handle, "complete")
    await handle.delete()
    with pytest.raises(InstanceNotFoundError):
        await b.get("ops")


async def test_raw_binding_create_errors_with_missing_metadata(h: Harness) -> None:
    inst = await h.raw.create(params={"x": 1})
    status = await h.wait(inst, "errored")
    assert status["error"] == {
        "name": "MissingDispatcherMetadataError",
        "message": "dynamic-workflows: workflow event is missing dispatcher metadata. Did you "
        "forget to wrap the Workflow binding with wrap_workflow_binding()?",
    }
    assert LOADS == []


@pytest.mark.parametrize(
    "payload", [None, {"x": 1}, {METADATA_KEY: {}}, {"params": 1}, "text", [1, 2]]
)
async def test_dispatch_workflow_rejects_unwrapped_payloads(payload: Any) -> None:
    with pytest.raises(MissingDispatcherMetadataError):
        await dispatch_workflow(
            env=Env(), ctx=None, event={"payload": payload}, step=None, load_runner=load_runner
        )


async def test_async_load_runner_is_awaited() -> None:
    class Runner:
        async def run(self, event: Any, step: Any) -> Any:
            return ("ran", event["payload"], step)

    async def loader(args: dict[str, Any]) -> Runner:
        assert set(args) == {"metadata", "env", "ctx"}
        return Runner()

    result = await dispatch_workflow(
        env=Env(),
        ctx="c",
        load_runner=loader,
        step="S",
        event={"payload": {METADATA_KEY: 1, "params": "p"}, "timestamp": 0, "instanceId": "i"},
    )
    assert result == ("ran", "p", "S")


async def test_missing_binding_is_a_clear_error() -> None:
    binding = DynamicWorkflowBinding({"t": 1}, binding_name="NOPE", env=Env())
    with pytest.raises(WorkflowError, match='no Workflow binding named "NOPE" found on env'):
        await binding.create()


async def test_metadata_must_be_json() -> None:
    with pytest.raises(WorkflowError, match="JSON-serialisable"):
        DynamicWorkflowBinding({"t": object()}, env=Env())


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"tenantId": "t1"}, {"tenantId": "t2"}),
        ({"n": 1}, {"n": True}),  # equal in Python, not in JSON
        ({"n": 0}, {"n": False}),
        ({"n": 1}, {"n": "1"}),
        ("t1", {"t1": None}),
        (1, True),
    ],
)
def test_scopes_of_different_metadata_differ(a: Any, b: Any) -> None:
    for _ in range(2):  # the second time from the cache
        assert scope_of(a) != scope_of(b)


def test_the_scope_is_a_hash_of_the_sorted_metadata() -> None:
    expected = "m-" + hashlib.sha256(b'{"a":1,"b":["x",2.5]}').hexdigest()[:32]
    for _ in range(2):
        assert scope_of({"b": ["x", 2.5], "a": 1}) == expected
        assert scope_of({"a": 1, "b": ("x", 2.5)}) == expected
    flat = "m-" + hashlib.sha256(b'{"a":"x","b":null}').hexdigest()[:32]
    for _ in range(2):
        assert scope_of({"b": None, "a": "x"}) == flat
        assert scope_of({"a": "x", "b": None}) == flat
    with pytest.raises(WorkflowError, match="JSON-serialisable"):
        scope_of({"a": object()})


async def test_create_batch_object_form_wraps_each_entry(h: Harness) -> None:
    by_count = await h.tenant("a").create_batch({"count": 2, "params": "shared"})
    listed = await h.tenant("a").createBatch(
        {"instances": [{"id": "i1", "params": 1}, {"id": "i1"}]}
    )
    assert [e["index"] for e in listed["errors"]] == [1]
    for inst in [*by_count["created"], *listed["created"]]:
        await h.wait(inst)
    assert sorted(str(e["payload"]) for e in SEEN) == ["1", "shared", "shared"]
    # the created instances live in the tenant's scope
    assert (await h.tenant("a").get("i1")).id == "i1"
    with pytest.raises(InstanceNotFoundError):
        await h.tenant("b").get("i1")


async def test_delete_batch_through_a_tenant_binding_only_sees_its_instances(h: Harness) -> None:
    await h.tenant("a").create(id="mine")
    await h.tenant("b").create(id="theirs")
    result = await h.tenant("a").delete_batch(["mine", "theirs"])
    assert result["deleted"] == [{"id": "mine"}]
    assert [e["id"] for e in result["errors"]] == ["theirs"]
    assert (await h.tenant("b").get("theirs")).id == "theirs"


async def test_a_cron_ticks_schedule_reaches_the_tenants_event() -> None:
    from dynamic_workflows.dispatch import dispatch_workflow

    seen: list[Any] = []

    class Runner:
        async def run(self, event: Any, step: Any) -> Any:
            seen.append(event)
            return None

    schedule = {"cron": "*/5 * * * *", "scheduledTime": 1_767_225_900_000}
    outer = {
        "payload": {"__dispatcherMetadata": {"t": 1}, "params": None},
        "timestamp": None,
        "instanceId": "cron-x",
        "workflowName": "wf",
        "schedule": schedule,
    }
    await dispatch_workflow(
        env=None, ctx=None, event=outer, step=None, load_runner=lambda o: Runner()
    )
    del outer["schedule"]
    await dispatch_workflow(
        env=None, ctx=None, event=outer, step=None, load_runner=lambda o: Runner()
    )
    assert seen[0]["schedule"] == schedule
    assert "schedule" not in seen[1]  # (absent, as Cloudflare's optional field)


async def test_a_tenants_retention_option_is_forwarded(h: Harness) -> None:
    one = {"successRetention": "1 day"}
    await h.tenant("a").create({"id": "one", "params": 1, "retention": one})
    await h.tenant("a").create_batch(
        {
            "instances": [{"id": "two"}, {"id": "three", "retention": {"errorRetention": 5000}}],
            "retention": {"successRetention": 2000},
        }
    )
    await h.tenant("a").create_batch([{"id": "four", "retention": {"errorRetention": 7000}}])
    rows = {r.id: r for r in await h.engine.storage.list_instances("dynamic")}
    kept = {id: (r.success_retention, r.error_retention) for id, r in rows.items()}
    assert kept == {
        "one": (86400.0, None),
        "two": (2.0, None),
        "three": (2.0, 5.0),  # its own fields over the batch's
        "four": (None, 7.0),
    }
