"""The dispatcher's own (unwrapped) binding is the platform's trusted view, as on Cloudflare.

A Cloudflare dispatcher hands each tenant ``wrap_workflow_binding(metadata)`` and keeps
``env.WORKFLOWS`` for itself: its status pages, webhooks that ``send_event`` and support tools
call ``env.WORKFLOWS.get(id)`` on instances that tenants created. The dispatcher below is written
the way such a dispatcher is (a ``Default`` worker entrypoint routing on the URL, tenant code
reached through the wrapped binding only) and uses nothing but the unwrapped binding for
everything after creation. Tenants stay confined to their own scope.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from unit_support import EnvFactory

from dynamic_workflows import InstanceNotFoundError
from dynamic_workflows.core.codec import encode
from dynamic_workflows.dispatch import (
    bind_env,
    create_dynamic_workflow_entrypoint,
    wrap_workflow_binding,
)
from dynamic_workflows.errors import AmbiguousInstanceError
from dynamic_workflows.queries import wait_for_status
from dynamic_workflows.testing import WorkflowTestEnv
from dynamic_workflows.workers import (
    Env,
    ExecutionContext,
    Request,
    Response,
    WorkerEntrypoint,
    WorkflowEntrypoint,
)

# -- tenant code (what each tenant uploads) ----------------------------------------------------


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        @step.do("reserve")
        async def reserve() -> str:
            return f"reserved {event['payload']['sku']}"

        approval = await step.wait_for_event("approval", "approved", timeout="1 hour")
        return {"reserve": await reserve(), "approved_by": approval["payload"]["by"]}


class TenantWorker(WorkerEntrypoint):
    """The tenant's own fetch handler: it only ever sees its wrapped binding."""

    async def fetch(self, request: Request) -> Response:
        body = await request.json()
        instance = await self.env.WORKFLOWS.create(id=body.get("id"), params=body["params"])
        return Response.json({"id": instance.id})


# -- the dispatcher (the platform's worker) -------------------------------------------------


def load_runner(args: dict[str, Any]) -> Any:
    return TenantWorkflow(ExecutionContext(), Env())


DynamicWorkflow = create_dynamic_workflow_entrypoint(load_runner)


class Dispatcher(WorkerEntrypoint):
    """Routes ``/tenants/<t>/...`` to tenant code; the rest is the platform's own API over the
    unwrapped ``env.WORKFLOWS``."""

    async def fetch(self, request: Request) -> Response:
        parts = request.url.split("://", 1)[-1].split("/")[1:]
        if parts[0] == "tenants":
            tenant = TenantWorker(ExecutionContext(), Env({"WORKFLOWS": self.tenant(parts[1])}))
            return await tenant.fetch(request)
        try:
            instance = await self.env.WORKFLOWS.get(parts[1])
        except InstanceNotFoundError:
            return Response.json({"error": "not found"}, status=404)
        except AmbiguousInstanceError as exc:
            return Response.json({"error": str(exc), "code": exc.code}, status=409)
        if parts[0] == "status":
            return Response.json(await instance.status())
        if parts[0] == "webhook":  # a third party approves: /webhook/<id>/<type>
            await instance.send_event(type=parts[2], payload=await request.json())
            return Response.json({"ok": True})
        if parts[0] == "support":  # /support/<id>/<pause|resume|terminate|restart>
            await getattr(instance, parts[2])()
            return Response.json({"ok": True})
        return Response.json({"error": "no route"}, status=404)

    def tenant(self, tenant_id: str) -> Any:
        with bind_env(self.env):
            return wrap_workflow_binding({"tenantId": tenant_id})


# -- harness ------------------------------------------------------------------------------------


class Platform:
    def __init__(self, wf: WorkflowTestEnv) -> None:
        self.engine = wf.engine
        self.raw = wf.binding
        self.env = Env({"WORKFLOWS": self.raw})
        self.engine.set_env("dynamic", self.env)

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        request = Request(
            f"http://dispatcher{path}", method=method, body=None if body is None else encode(body)
        )
        with bind_env(self.env):
            response = await Dispatcher(ExecutionContext(), self.env).fetch(request)
        return response.status, await response.json_body()

    async def status(self, iid: str, wanted: str) -> dict[str, Any]:
        for _ in range(5000):
            code, body = await self.call("GET", f"/status/{iid}")
            assert code == 200, body
            if body["status"] == wanted:
                return dict(body)
            await asyncio.sleep(0.001)
        raise AssertionError(f"{iid} still {body}")


@pytest.fixture
async def platform(make_env: EnvFactory) -> AsyncIterator[Platform]:
    # Frozen: nothing here needs time to pass, and an idle moment (a few ms of a database round
    # trip) must not let the clock jump past the tenant's one-hour wait.
    async with make_env(DynamicWorkflow, name="dynamic") as wf, wf.clock.frozen():
        yield Platform(wf)


async def test_the_dispatcher_runs_tenant_instances_through_its_unwrapped_binding(
    platform: Platform,
) -> None:
    code, body = await platform.call(
        "POST", "/tenants/acme/orders", {"id": "order-7", "params": {"sku": "A-1"}}
    )
    assert (code, body) == (200, {"id": "order-7"})
    # The instance lives in acme's scope, yet the platform's status page finds it by id.
    await platform.status("order-7", "waiting")

    # Support pauses and resumes it; a webhook delivers the event while it is paused.
    assert (await platform.call("POST", "/support/order-7/pause"))[0] == 200
    await platform.status("order-7", "paused")
    code, _ = await platform.call("POST", "/webhook/order-7/approved", {"by": "ops"})
    assert code == 200
    assert (await platform.call("POST", "/support/order-7/resume"))[0] == 200
    done = await platform.status("order-7", "complete")
    assert done["output"] == {"reserve": "reserved A-1", "approved_by": "ops"}

    # Restart runs it again (in its tenant's scope, with its tenant's params); terminate ends it.
    assert (await platform.call("POST", "/support/order-7/restart"))[0] == 200
    await platform.status("order-7", "waiting")
    assert (await platform.call("POST", "/support/order-7/terminate"))[0] == 200
    await platform.status("order-7", "terminated")

    # Nothing was created in the dispatcher's own scope on the way.
    rows = await platform.engine.queries.find_instances("dynamic", "order-7")
    assert len(rows) == 1
    assert rows[0].scope != ""


async def test_an_id_that_several_tenants_hold_is_ambiguous_with_a_clear_error(
    platform: Platform,
) -> None:
    for tenant in ("acme", "globex"):
        await platform.call("POST", f"/tenants/{tenant}/o", {"id": "dup", "params": {"sku": "X"}})
    code, body = await platform.call("GET", "/status/dup")
    assert code == 409
    assert body["code"] == "instance.ambiguous"
    assert "dup" in body["error"]
    assert "2 tenants' scopes" in body["error"]
    assert "wrap_workflow_binding(metadata).get(id)" in body["error"]
    with pytest.raises(AmbiguousInstanceError) as info:
        await platform.raw.get("dup")
    assert len(info.value.scopes) == 2
    # Through a tenant's wrapped binding the id is unambiguous.
    with bind_env(platform.env):
        acme = wrap_workflow_binding({"tenantId": "acme"})
    assert (await acme.get("dup")).id == "dup"


async def test_the_unwrapped_binding_prefers_its_own_scope(platform: Platform) -> None:
    await platform.call("POST", "/tenants/acme/o", {"id": "mine", "params": {"sku": "X"}})
    own = await platform.raw.create(id="mine", params=None)  # no envelope: it errors, but exists
    assert (await platform.raw.get("mine")).id == own.id
    # The one in the dispatcher's own scope, not acme's (which waits for its event).
    status = await wait_for_status(await platform.raw.get("mine"), "errored", interval=0.001)
    assert status["error"]["name"] == "MissingDispatcherMetadataError"


async def test_create_through_the_unwrapped_binding_stays_in_its_own_scope(
    platform: Platform,
) -> None:
    await platform.call("POST", "/tenants/acme/o", {"id": "shared", "params": {"sku": "X"}})
    await platform.raw.create(id="shared")  # not a duplicate: another scope
    scopes = sorted(
        v.scope for v in await platform.engine.queries.find_instances("dynamic", "shared")
    )
    assert scopes[0] == ""
    assert len(scopes) == 2


async def test_a_tenant_still_cannot_reach_another_tenants_instance(platform: Platform) -> None:
    await platform.call("POST", "/tenants/acme/o", {"id": "acme-only", "params": {"sku": "X"}})
    with bind_env(platform.env):
        globex = wrap_workflow_binding({"tenantId": "globex"})
    with pytest.raises(InstanceNotFoundError) as info:
        await globex.get("acme-only")
    assert str(info.value) == "(instance.not_found) Instance not found"
    # Unknown ids are not found through the unwrapped binding either.
    assert (await platform.call("GET", "/status/nobody"))[0] == 404
