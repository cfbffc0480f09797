"""The dispatcher: ``/t/<tenant>/...`` goes to the tenant's code (loaded in its own worker, with a
wrapped binding); ``/status``, ``/webhook`` and ``/support`` are the platform's own routes, over
the unwrapped ``env.WORKFLOWS`` only."""

from urllib.parse import urlparse

from workers import Response, WorkerEntrypoint

from dynamic_workflows import create_dynamic_workflow_entrypoint, wrap_workflow_binding
from dynamic_workflows.errors import AmbiguousInstanceError, InstanceNotFoundError

TENANT = """
from urllib.parse import urlparse

from workers import Response, WorkerEntrypoint, WorkflowEntrypoint


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do("reserve")
        async def reserve():
            return "reserved " + event["payload"]["sku"]

        approval = await step.wait_for_event("approval", "approved", timeout="1 hour")
        return {"reserve": await reserve(), "approved_by": approval["payload"]["by"]}


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        parts = urlparse(request.url).path.split("/")
        if parts[3] == "peek":  # another tenant's id must look like one that does not exist
            try:
                await self.env.WORKFLOWS.get(parts[4])
            except Exception as exc:
                return Response.json({"found": False, "error": str(exc)})
            return Response.json({"found": True})
        body = await request.json()
        instance = await self.env.WORKFLOWS.create(id=body["id"], params=body["params"])
        return Response.json({"id": instance.id})
"""


def tenant_worker(env, tenant):
    def get_code():
        return {
            "compatibility_date": "2026-01-01",
            "main_module": "tenant.py",
            "modules": {"tenant.py": TENANT},
            "env": {"WORKFLOWS": wrap_workflow_binding({"tenant": tenant})},
            "global_outbound": None,
        }

    return env.LOADER.get(f"tenant-{tenant}", get_code)


TenantOrders = create_dynamic_workflow_entrypoint(
    lambda args: tenant_worker(args["env"], args["metadata"]["tenant"]).get_entrypoint(
        "TenantWorkflow"
    )
)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        parts = urlparse(request.url).path.split("/")
        if parts[1] == "t":
            return await tenant_worker(self.env, parts[2]).get_entrypoint().fetch(request)
        try:
            instance = await self.env.WORKFLOWS.get(parts[2])
        except InstanceNotFoundError:
            return Response.json({"error": "not found"}, status=404)
        except AmbiguousInstanceError as exc:
            return Response.json({"error": str(exc), "code": exc.code}, status=409)
        if parts[1] == "status":
            return Response.json(await instance.status())
        if parts[1] == "webhook":
            await instance.send_event(type=parts[3], payload=await request.json())
            return Response.json({"ok": True})
        if parts[1] == "support":
            await getattr(instance, parts[3])()
            return Response.json({"ok": True})
        return Response.json({"error": "no route"}, status=404)
